"""Baselines solved by the same machinery (the persistent model with variables fixed), so
the optimal plan's savings are measured against real alternatives:

- ``single rack type``: purchases restricted to one type (existing fleets stay usable), the
  cheapest such plan;
- ``all-HBM aggregated``: only HBM racks bought, every class served aggregated;
- ``greedy``: period by period, buy the type with the lowest cost per unit of the short
  phase's rate until every class is covered, then let the LP allocate that fleet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pandas as pd
import pyomo.core as pyo

from rackplan.models.hardware import MemoryKind
from rackplan.models.scenario import HOURS_PER_YEAR, AllocationMode
from rackplan.planner.core.data import PlanData
from rackplan.planner.core.numeric import safe_ceil
from rackplan.planner.core.solve import PlanSolver

NOT_SOLVED = "not solved: time budget spent"


def _with_fixed(solver: PlanSolver, fix: Callable[[], list], step: str) -> tuple[str, float | None]:
    """Fix what ``fix`` fixes, solve, unfix, and restore the caller's solution afterwards.
    Skipped (``NOT_SOLVED``) when the plan's time budget is spent."""
    if solver.budget is not None and solver.budget.skip_if_spent(step):
        return NOT_SOLVED, None
    saved = [(v, v.value) for v in solver.model.component_data_objects(pyo.Var)]
    solver.enable_variable_updates(True)
    fixed = fix()
    try:
        outcome = solver.solve(step)
        objective = outcome.objective if outcome.has_solution else None
        return outcome.status, objective
    finally:
        for var in fixed:
            var.unfix()
        for var, value in saved:
            var.set_value(value, skip_validation=True)


def _fix_purchases(solver: PlanSolver, allowed: Callable[[str], bool]) -> list:
    fixed = []
    for (r, _p), var in solver.model.lots.items():
        if not allowed(r):
            var.fix(0)
            fixed.append(var)
    return fixed


def _fix_columns(solver: PlanSolver, data: PlanData, allowed: Callable[[int], bool]) -> list:
    fixed = []
    m = solver.model
    for (j, p), var in m.alloc.items():
        if not allowed(j):
            var.fix(0)
            fixed.append(var)
            if (j, p) in m.JT_INT:
                m.replicas[j, p].fix(0)
                fixed.append(m.replicas[j, p])
    return fixed


def single_rack_type(data: PlanData, solver: PlanSolver) -> tuple[str, str, float | None]:
    """The cheapest plan that buys only one rack type: (label, status, objective)."""
    best: tuple[str, str, float | None] = ("single rack type: none feasible", "infeasible", None)
    for rack in data.racks:
        status, objective = _with_fixed(
            solver,
            lambda rack=rack: _fix_purchases(solver, lambda r: r == rack),
            f"baseline: single rack type {rack}",
        )
        if objective is not None and (best[2] is None or objective < best[2]):
            best = (f"single rack type: {rack}", status, objective)
    return best


def all_hbm_aggregated(data: PlanData, solver: PlanSolver) -> tuple[str, str, float | None]:
    hbm = {r for r, d in data.racks.items() if d.spec.serving_memory.kind is MemoryKind.HBM}

    def fix() -> list:
        fixed = _fix_purchases(solver, lambda r: r in hbm)
        fixed += _fix_columns(
            solver,
            data,
            lambda j: (
                data.columns[j].rack in hbm and data.columns[j].mode is AllocationMode.aggregated
            ),
        )
        return fixed

    status, objective = _with_fixed(solver, fix, "baseline: all-HBM aggregated")
    return "all-HBM aggregated", status, objective


def _greedy_purchases(data: PlanData) -> dict[tuple[str, str], int]:
    """Lots to buy per (rack, period) by the greedy rule (see module docstring)."""
    s = data.scenario
    periods = data.periods
    spare = s.policy.spare_fraction
    installed = {r: float(d.option.installed) for r, d in data.racks.items()}
    bought: dict[tuple[str, str], int] = defaultdict(int)
    history: dict[tuple[str, int], float] = defaultdict(float)
    for t, p in enumerate(periods):
        for r, d in data.racks.items():
            if d.retire_existing_at == t:
                installed[r] -= d.option.installed
            source = data.retiring_purchase_period(r, t)
            if source is not None:
                installed[r] -= history[(r, source)]
        remaining_years = sum(q.hours for q in s.periods[t:]) / HOURS_PER_YEAR
        need_racks = defaultdict(float)
        for (c, phase), demand in _phase_demand(data, p).items():
            options = []
            for col in data.columns:
                rate = col.decode_rate if phase == "decode" else col.prefill_rate
                if col.workload_class != c or rate <= 0 or not data.available(col.rack, t):
                    continue
                info = data.racks[col.rack]
                yearly = (
                    s.economics.maintenance_fraction_per_year * info.capex_usd
                    + HOURS_PER_YEAR
                    * s.periods[t].pue
                    * s.periods[t].electricity_usd_per_kwh
                    * col.power_kw
                )
                options.append(((info.capex_usd + yearly * remaining_years) / rate, col.rack, rate))
            if options:
                _, rack, rate = min(options)
                need_racks[rack] += demand / rate / (1 - spare)
        for r, need in need_racks.items():
            lot = data.racks[r].option.lot_size
            short = max(0.0, need - installed[r])
            lots = safe_ceil(short / lot)
            limit = data.racks[r].option.supply_limit_per_period
            if limit is not None:
                lots = min(lots, limit // lot)
            if lots > 0:
                bought[(r, p)] = lots
                installed[r] += lots * lot
                history[(r, t)] += lots * lot
    return bought


def _phase_demand(data: PlanData, p: str) -> dict[tuple[str, str], float]:
    demand = {}
    for c in data.classes:
        demand[(c, "decode")] = data.demand_decode[(c, p)]
        demand[(c, "prefill")] = data.demand_prefill[(c, p)]
    return {k: v for k, v in demand.items() if v > 0}


def greedy(data: PlanData, solver: PlanSolver) -> tuple[str, str, float | None]:
    purchases = _greedy_purchases(data)

    def fix() -> list:
        fixed = []
        for (r, p), var in solver.model.lots.items():
            var.fix(purchases.get((r, p), 0))
            fixed.append(var)
        return fixed

    status, objective = _with_fixed(solver, fix, "baseline: greedy")
    return "greedy (cheapest cost per token, period by period)", status, objective


BASELINES = (single_rack_type, all_hbm_aggregated, greedy)


def baselines(data: PlanData, solver: PlanSolver, optimal_objective: float) -> pd.DataFrame:
    """Each baseline's objective and the optimal plan's saving over it."""
    rows = []
    for baseline in BASELINES:
        label, status, objective = baseline(data, solver)
        saving = None if objective is None else objective - optimal_objective
        rows.append(
            {
                "baseline": label,
                "status": status if objective is not None or status == NOT_SOLVED else "infeasible",
                "objective_usd": objective,
                "saving_usd": saving,
                "saving_pct": None
                if objective is None or objective == 0
                else 100.0 * saving / objective,
            }
        )
    return pd.DataFrame(
        rows, columns=["baseline", "status", "objective_usd", "saving_usd", "saving_pct"]
    )
