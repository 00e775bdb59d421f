"""Shadow prices of binding constraints, in user terms, each labelled with its method.

- Demand and rack capacity: duals of the LP with every integer fixed at the plan's value
  (``LP dual, integers fixed``). Demand duals are turned into $ per extra 1,000 tokens/s of
  *forecast* (the row holds forecast / max utilisation).
- Power cap and capex budget rows hold only integer (fixed) variables, so their LP duals
  are always 0 (DESIGN §5). They are measured by re-solving the MIP with the limit raised
  (``finite difference, MIP re-solve``): $ saved per MW of cap or per $ of budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyomo.core as pyo

from rackplan.planner.core.data import PlanData
from rackplan.planner.core.solve import CUT_SHORT, PlanSolver

INTEGER_COMPONENTS = ("lots", "installed", "replicas", "type_used")
DUAL_TOLERANCE = 1e-9


def fix_integers(solver: PlanSolver) -> list[tuple[pyo.Var, object]]:
    """Fix every integer variable at its (rounded) current value and make it continuous, so
    HiGHS sees an LP and returns duals; return (variable, original domain) for restoring."""
    fixed = []
    for name in INTEGER_COMPONENTS:
        component = getattr(solver.model, name, None)
        if component is None:
            continue
        for var in component.values():
            if var.fixed:
                continue
            fixed.append((var, var.domain))
            var.domain = pyo.Reals
            var.fix(round(pyo.value(var, exception=False) or 0.0))
    return fixed


def restore_integers(fixed: list[tuple[pyo.Var, object]]) -> None:
    for var, domain in fixed:
        var.unfix()
        var.domain = domain


def lp_duals(solver: PlanSolver) -> tuple[float | None, dict]:
    """Solve the LP with integers fixed; return (objective, {constraint: dual}). Within the
    plan's time budget: skipped (no duals) when it is spent."""
    step = "shadow prices: LP duals"
    if solver.budget is not None and solver.budget.skip_if_spent(step):
        return None, {}
    solver.enable_variable_updates(True)
    fixed = fix_integers(solver)
    try:
        results = solver.solver.solve(
            solver.model,
            time_limit=solver.time_limit(),
            load_solutions=False,
            raise_exception_on_nonoptimal_result=False,
        )
        if solver.budget is not None and results.termination_condition in CUT_SHORT:
            solver.budget.cut(step)
        if results.incumbent_objective is None:
            return None, {}
        return results.incumbent_objective, results.solution_loader.get_duals()
    finally:
        restore_integers(fixed)


def _demand_rows(data: PlanData, solver: PlanSolver, duals: dict) -> list[dict]:
    rows = []
    constraint = getattr(solver.model, "demand_cover", None)
    if constraint is None:
        return rows
    for (c, phase, p), con in constraint.items():
        dual = duals.get(con, 0.0)
        if abs(dual) <= DUAL_TOLERANCE:
            continue
        # the row and the objective are both scaled by 1e6, so the dual is already $ per tok/s
        rho = data.scenario.workload_class(c).max_utilisation
        unit = "output" if phase == "decode" else "prompt"
        rows.append(
            {
                "constraint": f"demand_cover[{c},{phase},{p}]",
                "period": p,
                "subject": f"{c} {phase}",
                "value": dual * 1000.0 / rho,
                "unit": f"USD per extra 1,000 {unit} tokens/s of forecast",
                "method": "LP dual, integers fixed",
            }
        )
    return rows


def _capacity_rows(solver: PlanSolver, duals: dict) -> list[dict]:
    """Capacity duals are in objective units (millions of USD) per rack: × objective_scale."""
    scale = getattr(solver.model, "objective_scale", 1.0)
    rows = []
    for (r, p), con in solver.model.rack_capacity.items():
        dual = duals.get(con, 0.0)
        if abs(dual) <= DUAL_TOLERANCE:
            continue
        rows.append(
            {
                "constraint": f"rack_capacity[{r},{p}]",
                "period": p,
                "subject": r,
                "value": -dual * scale,
                "unit": "USD saved per extra allocatable rack",
                "method": "LP dual, integers fixed",
            }
        )
    return rows


@dataclass(frozen=True)
class LimitRow:
    """One limit row a finite difference can price: its value, how much of it is used, the
    step to try, and how to set it."""

    constraint: str
    period: str
    subject: str
    unit: str
    limit: float
    used: float
    step: float
    step_label: str
    set_limit: Callable[[float], None]


def _limit_rows(data: PlanData, solver: PlanSolver) -> list[LimitRow]:
    """Power caps (MW at the meter) and per-period capex budgets (USD) of the model."""
    m = solver.model
    periods = {p.name: p for p in data.scenario.periods}
    largest_rack_kw = max(d.power_kw_at_load for d in data.racks.values())
    largest_capex = max(d.capex_usd for d in data.racks.values())
    rows = []
    for p in m.power_cap_mw:
        cap = pyo.value(m.power_cap_mw[p])
        one_rack_mw = largest_rack_kw * periods[p].pue / 1000.0
        step = max(0.05 * cap, one_rack_mw)
        rows.append(
            LimitRow(
                f"power_cap[{p}]", p, "site power cap", "USD saved per MW of extra cap", cap,
                pyo.value(m.capped_site_mw[p]), step, f"+{step:.3g} MW",
                lambda value, p=p: solver.set_power_cap_mw(p, value),
            )
        )  # fmt: skip
    for p in m.capex_budget_usd:
        budget = pyo.value(m.capex_budget_usd[p])
        step = max(0.05 * budget, largest_capex)
        rows.append(
            LimitRow(
                f"capex_budget[{p}]", p, "capex budget", "USD saved per USD of extra budget",
                budget,
                pyo.value(m.capex_spend_usd[p]), step, f"+${step:,.0f}",
                lambda value, p=p: solver.set_capex_budget_usd(p, value),
            )
        )  # fmt: skip
    return rows


def finite_difference_rows(data: PlanData, solver: PlanSolver, base_objective: float) -> list[dict]:
    """$ per unit of each binding power cap or capex budget: re-solve with the limit raised by
    one step (at least one more rack's worth) and divide the saving by the step.

    A limit is skipped as not binding when its headroom already exceeds one step's worth of
    the largest rack (a higher limit could not change the plan).
    """
    found = []
    for row in _limit_rows(data, solver):
        if row.limit - row.used > row.step:
            continue
        step = f"shadow price: {row.constraint}"
        if solver.budget is not None and solver.budget.skip_if_spent(step):
            continue
        row.set_limit(row.limit + row.step)
        outcome = solver.solve(step)
        row.set_limit(row.limit)
        if not outcome.has_solution:
            continue
        found.append(
            {
                "constraint": row.constraint,
                "period": row.period,
                "subject": row.subject,
                "value": (base_objective - outcome.objective) / row.step,
                "unit": row.unit,
                "method": f"finite difference, MIP re-solve ({row.step_label})",
            }
        )
    return found


def shadow_prices(data: PlanData, solver: PlanSolver, base_objective: float) -> pd.DataFrame:
    """All shadow prices (see module docstring). Leaves the model's solution as the plan's."""
    _, duals = lp_duals(solver)
    rows = _demand_rows(data, solver, duals) + _capacity_rows(solver, duals)
    rows += finite_difference_rows(data, solver, base_objective)
    return pd.DataFrame(
        rows, columns=["constraint", "period", "subject", "value", "unit", "method"]
    )
