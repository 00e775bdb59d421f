"""What-if changes applied to a solved model in place (persistent solver: no rebuild), and
Pareto sweeps of TCO against one parameter.

Supported parameters (``apply_change``):
- ``power_cap_scale``: every period's power cap × value;
- ``power_cap_mw``: every period's power cap set to value (MW);
- ``budget_scale``: every period's capex budget × value;
- ``demand_scale``: every class's demand × value; ``demand_scale:<class>`` one class;
- ``capex_scale:<rack>``: that rack type's price × value;
- ``electricity_scale``: every period's electricity price × value.
Changes that alter the rate columns (an SLA, an LLM) need a rebuild: ``tpot_ms:<class>`` and
``ttft_ms:<class>`` sweeps rebuild the model per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.data import PlanData, prepare
from rackplan.planner.solve import PlanSolver, SolveOptions, TimeBudget

IN_PLACE = (
    "power_cap_scale",
    "power_cap_mw",
    "budget_scale",
    "demand_scale",
    "capex_scale",
    "electricity_scale",
)
REBUILD = ("tpot_ms", "ttft_ms")


@dataclass(frozen=True)
class Baseline:
    """The values a what-if scales from (read once from the freshly built model)."""

    power_cap_mw: dict[str, float]
    capex_budget_usd: dict[str, float]
    demand: dict[tuple[str, str, str], float]
    capex_usd: dict[str, float]
    electricity: dict[str, float]

    @classmethod
    def of(cls, solver: PlanSolver) -> Baseline:
        m = solver.model
        return cls(
            power_cap_mw={p: pyo.value(v) for p, v in m.power_cap_mw.items()},
            capex_budget_usd={p: pyo.value(v) for p, v in m.capex_budget_usd.items()},
            demand={k: pyo.value(v) for k, v in m.demand.items()},
            capex_usd={r: pyo.value(v) for r, v in m.capex_usd.items()},
            electricity={p: pyo.value(v) for p, v in m.electricity_usd_per_kwh.items()},
        )


def _split(parameter: str) -> tuple[str, str | None]:
    name, _, target = parameter.partition(":")
    return name, target or None


def apply_change(solver: PlanSolver, baseline: Baseline, parameter: str, value: float) -> None:
    """Set ``parameter`` to ``value`` relative to ``baseline`` (module docstring)."""
    name, target = _split(parameter)
    if name == "power_cap_scale":
        for p, cap in baseline.power_cap_mw.items():
            solver.set_power_cap_mw(p, cap * value)
    elif name == "power_cap_mw":
        if not baseline.power_cap_mw:
            raise _bad(parameter, "the scenario has no power cap to change")
        for p in baseline.power_cap_mw:
            solver.set_power_cap_mw(p, value)
    elif name == "budget_scale":
        for p, budget in baseline.capex_budget_usd.items():
            solver.set_capex_budget_usd(p, budget * value)
    elif name == "demand_scale":
        for (c, phase, p), demand in baseline.demand.items():
            if target is None or c == target:
                solver.set_demand(c, phase, p, demand * value)
    elif name == "capex_scale":
        if target not in baseline.capex_usd:
            raise _bad(
                parameter, f"name a rack type of the scenario: {', '.join(baseline.capex_usd)}"
            )
        solver.set_capex_usd(target, baseline.capex_usd[target] * value)
    elif name == "electricity_scale":
        for p, price in baseline.electricity.items():
            solver.set_electricity_usd_per_kwh(p, price * value)
    else:
        raise _bad(parameter, f"unknown parameter; use one of {', '.join(IN_PLACE + REBUILD)}")


def _bad(parameter: str, message: str) -> InputError:
    return InputError([Problem("what-if", None, parameter, message, parameter)])


def rebuilt_scenario(scenario: Scenario, parameter: str, value: float) -> Scenario:
    """The scenario with a class's TTFT or TPOT target set to ``value`` ms."""
    name, target = _split(parameter)
    if name not in REBUILD or target is None:
        raise _bad(parameter, "use tpot_ms:<class> or ttft_ms:<class>")
    classes = []
    for cls in scenario.classes:
        classes.append(cls.model_copy(update={name: value}) if cls.name == target else cls)
    if all(c.name != target for c in scenario.classes):
        raise _bad(parameter, f"unknown class '{target}'")
    return scenario.model_copy(update={"classes": tuple(classes)})


def pareto(
    scenario: Scenario,
    catalog: Catalog,
    parameter: str,
    start: float,
    stop: float,
    steps: int,
    options: SolveOptions | None = None,
    progress=None,
) -> pd.DataFrame:
    """TCO at ``steps`` values of ``parameter`` from ``start`` to ``stop``, with the frontier.

    In-place parameters re-solve one persistent model; SLA parameters rebuild per step. The
    whole sweep shares one time budget (``options.time_limit_s``): each step gets what is left;
    steps stopped early or skipped are listed in ``frame.attrs["cut_short"]``.
    ``on_frontier`` marks the points no other point beats on both TCO and the parameter's
    direction of benefit (a looser cap, budget or SLA should never cost more).
    """
    if steps < 2:
        raise _bad(parameter, "use at least 2 steps")
    values = [float(f"{v:.12g}") for v in np.linspace(start, stop, steps)]
    options = options or SolveOptions()
    budget = TimeBudget(options.time_limit_s)
    rows = []
    name, _ = _split(parameter)
    solver = baseline = None
    if name in IN_PLACE:
        data = prepare(scenario, catalog)
        solver = PlanSolver(data, options, budget=budget)
        baseline = Baseline.of(solver)
    elif name not in REBUILD:
        raise _bad(parameter, f"unknown parameter; use one of {', '.join(IN_PLACE + REBUILD)}")
    for value in values:
        step = f"pareto step {parameter}={value:g}"
        if budget.skip_if_spent(step):
            rows.append(_row(parameter, value, NOT_SOLVED, None, None))
            if progress:
                progress()
            continue
        if solver is not None:
            apply_change(solver, baseline, parameter, float(value))
            outcome = solver.solve(step)
            tco = pyo.value(solver.model.tco_usd) if outcome.has_solution else None
            data_used: PlanData = solver.data
        else:
            data_used = prepare(rebuilt_scenario(scenario, parameter, float(value)), catalog)
            if data_used.fatal():
                rows.append(
                    {
                        "parameter": parameter,
                        "value": float(value),
                        "status": "infeasible",
                        "tco_usd": None,
                        "gap": None,
                    }
                )
                if progress:
                    progress()
                continue
            local = PlanSolver(data_used, options, budget=budget)
            outcome = local.solve(step)
            tco = pyo.value(local.model.tco_usd) if outcome.has_solution else None
        rows.append(
            {
                "parameter": parameter,
                "value": float(value),
                "status": outcome.status,
                "tco_usd": tco,
                "gap": outcome.gap,
            }
        )
        if progress:
            progress()
    frame = pd.DataFrame(rows)
    frame["on_frontier"] = _frontier(frame)
    frame.attrs["cut_short"] = list(budget.cut_short)
    return frame


NOT_SOLVED = "not solved: time budget spent"


def _row(parameter: str, value: float, status: str, tco: float | None, gap: float | None) -> dict:
    return {
        "parameter": parameter,
        "value": float(value),
        "status": status,
        "tco_usd": tco,
        "gap": gap,
    }


LOOSER_WHEN_HIGHER = ("power_cap_scale", "power_cap_mw", "budget_scale", "tpot_ms", "ttft_ms")
"""Parameters whose higher values relax the plan (the rest — demand, prices — make it dearer)."""


def _frontier(frame: pd.DataFrame) -> list[bool]:
    """A point is on the frontier if every tighter setting costs strictly more: walking from
    the tightest value (the lowest cap, budget or SLA; the highest demand or price) towards
    the loosest, TCO must strictly fall."""
    flags = [False] * len(frame)
    best = None
    if frame.empty:
        return flags
    name = str(frame["parameter"].iloc[0]).partition(":")[0]
    ascending = name in LOOSER_WHEN_HIGHER
    for i in frame.sort_values("value", ascending=ascending).index:
        tco = frame.loc[i, "tco_usd"]
        if tco is None or pd.isna(tco):
            continue
        if best is None or tco < best - 1e-6 * abs(best):
            flags[i] = True
            best = tco
    return flags
