"""Why a scenario is infeasible, in user terms.

Pre-solve diagnostics come from ``planner.data`` (an LLM that fits nowhere, an SLA no
operating point reaches, demand before any rack is available). When the MIP itself is
infeasible, an elastic copy (slack on every relaxable family, weighted by priority and
scaled by each row's own limit) finds the smallest combined relaxation; then each family
that needed slack is tried alone, others held at zero, to say how much that limit alone
would have to move.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyomo.core as pyo

from rackplan.planner.core.data import PlanData
from rackplan.planner.core.model import RELAXABLE_FAMILIES, SLACK_UNITS
from rackplan.planner.core.solve import PlanSolver, SolveOptions

SLACK_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Relaxation:
    family: str
    index: tuple
    amount: float
    message: str
    alone: bool = False
    """True when this relaxation by itself restores feasibility."""


def _describe(data: PlanData, family: str, index, amount: float) -> str:
    if family == "demand_cover":
        c, phase, p = index
        cls = data.scenario.workload_class(c)
        forecast = amount * cls.max_utilisation
        unit = "output" if phase == "decode" else "prompt"
        need = (data.demand_decode if phase == "decode" else data.demand_prefill)[
            (c, p)
        ] * cls.max_utilisation
        share = forecast / need if need else 0.0
        return (
            f"class {c} {phase} demand in {p} cannot be met: short by {forecast:,.0f} {unit} "
            f"tokens/s ({share:.0%} of the forecast)"
        )
    if family == "power_cap":
        return f"power cap in {index} short by {amount:.2f} MW"
    if family == "capex_budget":
        return f"capex budget in {index} short by ${amount / 1e6:,.1f}M"
    if family == "total_budget":
        return f"total budget short by ${amount / 1e6:,.1f}M"
    if family == "floor_space":
        return f"floor space in {index} short by {amount:,.1f} rack positions"
    rack, p = index
    return f"supply of {rack} in {p} short by {amount:,.1f} racks"


def _slacks(solver: PlanSolver) -> list[tuple[str, tuple, float]]:
    found = []
    for family in RELAXABLE_FAMILIES:
        slack = getattr(solver.model, f"slack_{family}", None)
        if slack is None:
            continue
        for index in slack:
            value = (pyo.value(slack[index], exception=False) or 0.0) * SLACK_UNITS.get(family, 1.0)
            if value > SLACK_TOLERANCE * max(1.0, abs(value)):
                found.append(
                    (
                        family,
                        index
                        if isinstance(index, tuple)
                        else (index,)
                        if family != "total_budget"
                        else (),
                        value,
                    )
                )
    return found


def explain_infeasible(data: PlanData, options: SolveOptions | None = None) -> list[Relaxation]:
    """The smallest relaxations (elastic re-solve) that make the scenario feasible."""
    elastic = PlanSolver(data, options, elastic=True)
    outcome = elastic.solve()
    if not outcome.has_solution:
        return []
    combined = _slacks(elastic)
    relaxations = [
        Relaxation(
            family,
            index,
            amount,
            _describe(data, family, index[0] if len(index) == 1 else index, amount),
        )
        for family, index, amount in combined
    ]
    alone = []
    elastic.enable_variable_updates(True)
    for family in sorted({f for f, _, _ in combined}):
        fixed = []
        for other in RELAXABLE_FAMILIES:
            slack = getattr(elastic.model, f"slack_{other}", None)
            if slack is None or other == family:
                continue
            for index in slack:
                slack[index].fix(0.0)
                fixed.append(slack[index])
        single = elastic.solve()
        if single.has_solution:
            for f, index, amount in _slacks(elastic):
                if f == family:
                    key = index[0] if len(index) == 1 else index
                    alone.append(
                        Relaxation(
                            f,
                            index,
                            amount,
                            _describe(data, f, key, amount)
                            + f" (relaxing only {f.replace('_', ' ')})",
                            True,
                        )
                    )
        for var in fixed:
            var.unfix()
    return relaxations + alone
