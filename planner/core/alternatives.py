"""Near-optimal alternatives (modelling to generate alternatives, as in PyPSA).

After the least-cost plan (TCO*), each alternative re-solves the same model with its TCO
capped at (1 + ε)·TCO* and a different objective: the fewest or the most racks of one type
over the horizon, or the plan that avoids the optimum's rack types most (minimise the racks
bought of every type the optimum buys). The min and max of a type give procurement its
room: "any plan with 60–75 vr-cpx-144 racks costs within 1 %" (every count in the range is
not guaranteed, the two ends are).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import pyomo.core as pyo

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Objective, Scenario
from rackplan.planner.core.data import PlanData, prepare
from rackplan.planner.core.plan import Plan, extract_plan
from rackplan.planner.core.solve import PlanSolver, SolveOptions
from rackplan.planner.core.suggest import did_you_mean


@dataclass(frozen=True)
class Alternative:
    """One near-optimal plan: what it optimised, its status, TCO and rack totals."""

    goal: str
    rack: str | None
    status: str
    plan: Plan | None

    @property
    def tco_usd(self) -> float | None:
        return None if self.plan is None else self.plan.tco_usd

    def racks_bought(self, rack: str) -> float | None:
        """Racks of ``rack`` bought over the horizon (None without a plan)."""
        return None if self.plan is None else total_bought(self.plan, rack)


@dataclass(frozen=True)
class Alternatives:
    """The optimum and the alternatives within ``within_pct`` % of its TCO."""

    optimum: Plan
    within_pct: float
    alternatives: tuple[Alternative, ...]

    @property
    def tco_cap_usd(self) -> float:
        return self.optimum.tco_usd * (1 + self.within_pct / 100)

    def rack_range(self, rack: str) -> tuple[float, float] | None:
        """(fewest, most) racks of ``rack`` among the optimum and the alternatives."""
        counts = [total_bought(self.optimum, rack)]
        counts += [
            a.racks_bought(rack) for a in self.alternatives if a.plan is not None and a.rack == rack
        ]
        return (min(counts), max(counts)) if counts else None

    def statements(self) -> list[str]:
        """ "any plan with 60–75 vr-cpx-144 racks costs within 1 % …" per rack studied."""
        lines = []
        for rack in dict.fromkeys(a.rack for a in self.alternatives if a.rack):
            low, high = self.rack_range(rack)
            optimum = total_bought(self.optimum, rack)
            lines.append(
                f"plans buying {low:,.0f}–{high:,.0f} {rack} racks (optimum {optimum:,.0f}) "
                f"cost within {self.within_pct:g} % of the optimal TCO "
                f"(${self.optimum.tco_usd / 1e6:,.2f}M; cap ${self.tco_cap_usd / 1e6:,.2f}M)"
            )
        return lines

    def frame(self) -> pd.DataFrame:
        """One row per plan (optimum first): goal, status, TCO, Δ %, racks bought per type."""
        rows = [_row("optimum", None, self.optimum.status, self.optimum, self.optimum)]
        rows += [_row(a.goal, a.rack, a.status, a.plan, self.optimum) for a in self.alternatives]
        return pd.DataFrame(rows)


def _row(goal: str, rack: str | None, status: str, plan: Plan | None, optimum: Plan) -> dict:
    row: dict[str, object] = {"goal": goal, "rack": rack, "status": status}
    if plan is None:
        return row
    row["tco_usd"] = plan.tco_usd
    row["tco_above_optimum_pct"] = 100 * (plan.tco_usd / optimum.tco_usd - 1)
    for r in dict.fromkeys(optimum.fleet["rack"]):
        row[f"racks_bought:{r}"] = total_bought(plan, r)
    return row


def total_bought(plan: Plan, rack: str) -> float:
    """Racks of one type bought over the horizon."""
    return float(plan.purchases.loc[plan.purchases["rack"] == rack, "racks_bought"].sum())


GOALS = ("min", "max", "differ")


def near_optimal(
    scenario: Scenario,
    catalog: Catalog,
    within_pct: float,
    racks: list[str] | None = None,
    goals: tuple[str, ...] = ("min", "max"),
    differ: bool = False,
    options: SolveOptions | None = None,
) -> Alternatives:
    """The optimum, then for each rack in ``racks`` (default: every type the scenario
    offers) the plans within ``within_pct`` % of its TCO with the fewest / most racks of that
    type (``goals``), and with ``differ`` the plan most unlike the optimum."""
    if not 0 < within_pct <= 100:
        raise InputError([Problem("alternatives", None, "--within", "give 0 < X ≤ 100 (%)")])
    if scenario.policy.objective is not Objective.min_tco:
        raise InputError(
            [Problem("alternatives", None, "objective", "alternatives need objective min_tco")]
        )
    options = options or SolveOptions()
    data = prepare(scenario, catalog)
    fatal = data.fatal()
    if fatal:
        raise InputError([Problem("alternatives", None, None, d.message) for d in fatal])
    _check_racks(data, racks or [])
    solver = PlanSolver(data, options)
    outcome = solver.solve("optimum")
    if not outcome.has_solution:
        raise InputError(
            [
                Problem(
                    "alternatives", None, None, f"no optimal plan to start from: {outcome.status}"
                )
            ]
        )
    optimum = extract_plan(data, solver, outcome)
    cap = optimum.tco_usd * (1 + within_pct / 100)
    found = []
    for rack in racks or list(data.racks):
        for goal in goals:
            found.append(_alternative(data, options, cap, goal, rack, optimum))
    if differ:
        found.append(_alternative(data, options, cap, "differ", None, optimum))
    return Alternatives(optimum, within_pct, tuple(found))


def _check_racks(data: PlanData, racks: list[str]) -> None:
    problems = [
        Problem("alternatives", None, "--rack", did_you_mean(r, data.racks, "rack type"), r)
        for r in racks
        if r not in data.racks
    ]
    if problems:
        raise InputError(problems)


def _alternative(
    data: PlanData,
    options: SolveOptions,
    cap_usd: float,
    goal: str,
    rack: str | None,
    optimum: Plan,
) -> Alternative:
    """One MGA solve: TCO ≤ cap, objective on the racks bought."""
    solver = PlanSolver(data, replace(options, rel_gap=min(options.rel_gap, 1e-6)))
    m = solver.model
    scale = m.objective_scale
    m.objective.deactivate()
    m.mga_tco_cap = pyo.Constraint(expr=m.tco_usd / scale <= cap_usd / scale)
    if goal == "differ":
        used = [r for r in m.R if total_bought(optimum, r) > 0]
        expr = sum(m.bought[r, p] for r in used for p in m.T)
        sense = pyo.minimize
    else:
        expr = sum(m.bought[rack, p] for p in m.T)
        sense = pyo.minimize if goal == "min" else pyo.maximize
    m.mga_objective = pyo.Objective(expr=expr, sense=sense)
    outcome = solver.solve(f"alternative {goal} {rack or ''}".strip())
    plan = extract_plan(data, solver, outcome) if outcome.has_solution else None
    if plan is not None:
        # The solver's objective here counts racks; the plan's objective is its TCO (what the
        # cap bounds and what the checker recomputes). No bound or gap: none was proven on TCO.
        tco = replace(plan.outcome, objective=plan.tco_usd, best_bound=None, gap=None)
        plan = plan.with_extras(outcome=tco)
    status = outcome.status if plan is None else "feasible"
    if plan is not None and outcome.termination == "convergenceCriteriaSatisfied":
        status = "optimal"
    return Alternative(goal, rack, status, plan)
