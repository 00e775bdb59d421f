"""Shadow prices of binding constraints, in user terms, each labelled with its method.

- Demand and rack capacity: duals of the LP with every integer fixed at the plan's value
  (``LP dual, integers fixed``). Demand duals are turned into $ per extra 1,000 tokens/s of
  *forecast* (the row holds forecast / max utilisation).
- Power cap and capex budget rows hold only integer (fixed) variables, so their LP duals
  are always 0 (DESIGN §5). They are measured by re-solving the MIP with the limit raised
  (``finite difference, MIP re-solve``): $ saved per MW of cap or per $ of budget.
"""

from __future__ import annotations

import pandas as pd
import pyomo.environ as pyo

from planner.data import PlanData
from planner.solve import PlanSolver

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
    """Solve the LP with integers fixed; return (objective, {constraint: dual})."""
    solver.enable_variable_updates(True)
    fixed = fix_integers(solver)
    try:
        results = solver.solver.solve(
            solver.model, load_solutions=False, raise_exception_on_nonoptimal_result=False
        )
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


def _finite_difference(
    solver: PlanSolver, base_objective: float, apply, undo, delta: float
) -> float | None:
    apply(delta)
    outcome = solver.solve()
    undo()
    if not outcome.has_solution:
        return None
    return (base_objective - outcome.objective) / delta


def finite_difference_rows(data: PlanData, solver: PlanSolver, base_objective: float) -> list[dict]:
    """$ per MW of each binding power cap and $ per $ of each binding capex budget."""
    rows = []
    m = solver.model
    power = {p.name: p for p in data.scenario.periods}
    largest_rack_mw = max(d.power_kw_at_load for d in data.racks.values()) / 1000.0
    largest_capex = max(d.capex_usd for d in data.racks.values())
    for p in list(m.power_cap_mw.keys()):
        cap = pyo.value(m.power_cap_mw[p])
        used = power[p].pue * pyo.value(m.it_power_kw[p]) / 1000.0
        if cap - used > largest_rack_mw * power[p].pue:
            continue  # not binding: not even one more rack would fit under a higher cap
        delta = max(0.05 * cap, largest_rack_mw * power[p].pue)

        def apply(d, p=p, cap=cap):
            solver.set_power_cap_mw(p, cap + d)

        value = _finite_difference(
            solver,
            base_objective,
            apply,
            lambda p=p, cap=cap: solver.set_power_cap_mw(p, cap),
            delta,
        )
        if value is not None:
            rows.append(
                {
                    "constraint": f"power_cap[{p}]",
                    "period": p,
                    "subject": "site power cap",
                    "value": value,
                    "unit": "USD saved per MW of extra cap",
                    "method": f"finite difference, MIP re-solve (+{delta:.3g} MW)",
                }
            )
    for p in list(m.capex_budget_usd.keys()):
        budget = pyo.value(m.capex_budget_usd[p])
        spent = pyo.value(m.capex_spend_usd[p])
        if budget - spent > largest_capex:
            continue
        delta = max(0.05 * budget, largest_capex)

        def apply(d, p=p, budget=budget):
            solver.set_capex_budget_usd(p, budget + d)

        value = _finite_difference(
            solver,
            base_objective,
            apply,
            lambda p=p, b=budget: solver.set_capex_budget_usd(p, b),
            delta,
        )
        if value is not None:
            rows.append(
                {
                    "constraint": f"capex_budget[{p}]",
                    "period": p,
                    "subject": "capex budget",
                    "value": value,
                    "unit": "USD saved per USD of extra budget",
                    "method": f"finite difference, MIP re-solve (+${delta:,.0f})",
                }
            )
    return rows


def shadow_prices(data: PlanData, solver: PlanSolver, base_objective: float) -> pd.DataFrame:
    """All shadow prices (see module docstring). Leaves the model's solution as the plan's."""
    _, duals = lp_duals(solver)
    rows = _demand_rows(data, solver, duals) + _capacity_rows(solver, duals)
    rows += finite_difference_rows(data, solver, base_objective)
    return pd.DataFrame(
        rows, columns=["constraint", "period", "subject", "value", "unit", "method"]
    )
