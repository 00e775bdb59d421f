"""What-if changes: applied to a solved model in place (persistent solver: no rebuild), or to
the scenario (the model is rebuilt); and Pareto sweeps of TCO against one parameter.

In place (``apply_change``), numbers:
- ``power_cap_scale``: every period's power cap × value;
- ``power_cap_mw``: every period's power cap set to value (MW);
- ``budget_scale``: every period's capex budget × value;
- ``demand_scale``: every class's demand × value; ``demand_scale:<class>`` one class;
  ``demand_scale:<class>@<period>`` one class in one period, ``demand_scale:@<period>`` every
  class in one period (a demand shape is several such changes);
- ``capex_scale:<rack>``: that rack type's price × value;
- ``electricity_scale``: every period's electricity price × value.

On the scenario, rebuilding the model (``scenario_with_change``):
- ``tpot_ms:<class>``, ``ttft_ms:<class>``: the class's SLA target, ms;
  ``sla_percentile:<class>=p99``: the statistic the targets bound (mean, p50 … p99);
- ``first_period:<rack>=2027Q4``: a supply slip, the first period the type can be bought;
- ``supply_limit_scale[:<rack>]``: every (or one) type's per-period supply limit × value
  (rounded down; types without a limit keep none); ``supply_limit:<rack>=N`` sets it;
- ``exclude:<rack>=1`` (or ``exclude=<rack>``): buy none of that type (an existing fleet
  stays; retire it with ``retire``); ``include:<rack>=1`` (or ``include=<rack>``) offers a
  catalog type the scenario does not list;
- ``retire:<rack>=2027Q2``: the existing fleet of that type retires in that period;
- ``power_down:<rack>=N``: N of the existing racks of that type are switched off for the
  whole horizon (no power, no capacity, no maintenance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.core as pyo

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import RackOption, Scenario
from rackplan.planner.core.data import PlanData, prepare
from rackplan.planner.core.solve import PlanSolver, SolveOptions, TimeBudget
from rackplan.planner.core.suggest import did_you_mean

IN_PLACE = (
    "power_cap_scale",
    "power_cap_mw",
    "budget_scale",
    "demand_scale",
    "capex_scale",
    "electricity_scale",
)
REBUILD = (
    "tpot_ms",
    "ttft_ms",
    "sla_percentile",
    "first_period",
    "supply_limit_scale",
    "supply_limit",
    "exclude",
    "include",
    "retire",
    "power_down",
)
TEXT_KEYS = ("sla_percentile", "first_period", "retire", "exclude", "include")
"""Keys whose value may be text (a period, a percentile, a rack id)."""
PERCENTILES = ("mean", "p50", "p90", "p95", "p99")
Value = float | str


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


def key_name(parameter: str) -> str:
    """``capex_scale:gb200`` → ``capex_scale``."""
    return parameter.partition(":")[0].strip()


def demand_target(target: str | None) -> tuple[str | None, str | None]:
    """``chat@2027Q3`` → (``chat``, ``2027Q3``); ``@2027Q3`` → (None, ``2027Q3``)."""
    if target is None:
        return None, None
    cls, _, period = target.partition("@")
    return cls or None, period or None


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
        cls, period = demand_target(target)
        for (c, phase, p), demand in baseline.demand.items():
            if (cls is None or c == cls) and (period is None or p == period):
                solver.set_demand(c, phase, p, demand * value)
    elif name == "capex_scale":
        if target not in baseline.capex_usd:
            raise _bad(parameter, did_you_mean(target or "", baseline.capex_usd, "rack type"))
        solver.set_capex_usd(target, baseline.capex_usd[target] * value)
    elif name == "electricity_scale":
        for p, price in baseline.electricity.items():
            solver.set_electricity_usd_per_kwh(p, price * value)
    else:
        raise _bad(parameter, f"unknown parameter; use one of {', '.join(IN_PLACE + REBUILD)}")


def _bad(parameter: str, message: str, value: object = None) -> InputError:
    return InputError([Problem("what-if", None, parameter, message, _text(value))])


def _text(value: object) -> str | None:
    return None if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def check_change(
    scenario: Scenario,
    catalog: Catalog | None,
    parameter: str,
    value: Value,
    where: str = "what-if",
) -> list[Problem]:
    """Every problem with one what-if change against the scenario (and catalog): unknown keys,
    classes, racks and periods with a "did you mean", values of the wrong kind."""
    name, target = _split(parameter)
    problems: list[str] = []
    periods = [p.name for p in scenario.periods]
    classes = [c.name for c in scenario.classes]
    listed = [r.rack for r in scenario.racks]
    known = list(catalog.racks) if catalog is not None else listed
    if name not in IN_PLACE + REBUILD:
        problems.append(did_you_mean(name, IN_PLACE + REBUILD, "what-if key"))
    elif name in ("exclude", "include") and target is None:
        if not isinstance(value, str):
            problems.append(f"name the rack: {name}=<rack> or {name}:<rack>=1")
        elif value not in (listed if name == "exclude" else known):
            problems.append(did_you_mean(value, listed if name == "exclude" else known, "rack"))
    elif name in TEXT_KEYS and name not in ("exclude", "include"):
        if not isinstance(value, str):
            problems.append("the value must be a name, e.g. 2027Q4 or p99")
        elif name == "sla_percentile" and value not in PERCENTILES:
            problems.append(did_you_mean(value, PERCENTILES, "percentile"))
        elif name in ("first_period", "retire") and value not in periods:
            problems.append(did_you_mean(value, periods, "period"))
    elif isinstance(value, str):
        problems.append("the value must be a number")
    elif not math.isfinite(value) or value < 0:
        problems.append("the value must be a finite number ≥ 0")
    on_target = _target_problems(scenario, name, target, listed, known, classes, periods)
    if name == "power_down" and target in listed and not isinstance(value, str):
        installed = next(r.installed for r in scenario.racks if r.rack == target)
        if value > installed:
            problems.append(f"only {installed} existing {target} racks can be powered down")
    if name == "power_cap_mw" and all(p.power_cap_mw is None for p in scenario.periods):
        problems.append("the scenario has no power cap to change; set power_cap_mw in periods")
    existing = {r.rack: r.installed for r in scenario.racks}
    if name == "retire" and target in listed and existing[target] == 0:
        problems.append(f"the scenario has no existing {target} racks to retire")
    return [Problem(where, None, parameter, m, target) for m in on_target] + [
        Problem(where, None, parameter, m, _text(value)) for m in problems
    ]


TARGETS = {
    "tpot_ms": "class",
    "ttft_ms": "class",
    "sla_percentile": "class",
    "capex_scale": "rack",
    "first_period": "rack",
    "supply_limit": "rack",
    "retire": "rack",
    "power_down": "rack",
}
"""Keys that need a ``:<target>``, and what it names."""


def _target_problems(scenario, name, target, listed, known, classes, periods) -> list[str]:
    """Problems with the ``:<target>`` part of a key."""
    kind = TARGETS.get(name)
    if kind and target is None:
        return [f"name the {kind}: {name}:<{kind}>"]
    if target is None:
        return []
    if name == "demand_scale":
        cls, period = demand_target(target)
        out = []
        if cls is not None and cls not in classes:
            out.append(did_you_mean(cls, classes, "class"))
        if period is not None and period not in periods:
            out.append(did_you_mean(period, periods, "period"))
        return out
    if kind == "class" and target not in classes:
        return [did_you_mean(target, classes, "class")]
    if name == "include":
        return [] if target in known else [did_you_mean(target, known, "rack")]
    if (kind == "rack" or name in ("exclude", "supply_limit_scale")) and target not in listed:
        return [did_you_mean(target, listed, "rack type of the scenario")]
    if kind is None and name not in ("exclude", "include", "supply_limit_scale"):
        return [f"{name} takes no ':<target>'"]
    return []


def rebuilt_scenario(
    scenario: Scenario, parameter: str, value: Value, catalog: Catalog | None = None
) -> Scenario:
    """The scenario with one change applied (any key; in-place keys too, for explanations)."""
    problems = check_change(scenario, catalog, parameter, value)
    if problems:
        raise InputError(problems)
    name, target = _split(parameter)
    if name in ("tpot_ms", "ttft_ms", "sla_percentile"):
        return _with_class(scenario, target, {name: value})
    if name in ("first_period", "supply_limit", "retire", "power_down", "supply_limit_scale"):
        return _with_racks(scenario, name, target, value)
    if name in ("exclude", "include"):
        rack = target if target is not None else str(value)
        on = target is None or float(value) != 0
        return _excluded(scenario, rack) if (name == "exclude") == on else _included(scenario, rack)
    return _in_place_on_scenario(scenario, catalog, name, target, float(value))


def _with_class(scenario: Scenario, target: str | None, update: dict) -> Scenario:
    classes = tuple(
        c.model_copy(update=update) if c.name == target else c for c in scenario.classes
    )
    return scenario.model_copy(update={"classes": classes})


def _with_racks(scenario: Scenario, name: str, target: str | None, value: Value) -> Scenario:
    """Supply slip, supply limit, early retirement or power-down of rack options."""
    racks = []
    for option in scenario.racks:
        if target is not None and option.rack != target:
            racks.append(option)
            continue
        if name == "first_period":
            update = {"first_period": value}
        elif name == "retire":
            update = {"existing_retire_period": value}
        elif name == "power_down":
            update = {"installed": max(0, option.installed - round(float(value)))}
        elif name == "supply_limit":
            update = {"supply_limit_per_period": int(float(value))}
        elif option.supply_limit_per_period is None:
            update = {}
        else:
            update = {"supply_limit_per_period": int(option.supply_limit_per_period * value)}
        racks.append(option.model_copy(update=update))
    return scenario.model_copy(update={"racks": tuple(racks)})


def _excluded(scenario: Scenario, rack: str) -> Scenario:
    """No purchases of ``rack``: the option is dropped, or capped at 0 if racks exist."""
    racks = tuple(
        r.model_copy(update={"supply_limit_per_period": 0}) if r.rack == rack else r
        for r in scenario.racks
        if r.rack != rack or r.installed > 0
    )
    if not racks:
        raise _bad(f"exclude:{rack}", "excluding it leaves no rack type to buy", rack)
    return scenario.model_copy(update={"racks": racks})


def _included(scenario: Scenario, rack: str) -> Scenario:
    """``rack`` offered with the catalog's defaults (a no-op if the scenario lists it)."""
    if any(r.rack == rack for r in scenario.racks):
        return scenario
    return scenario.model_copy(update={"racks": (*scenario.racks, RackOption(rack=rack))})


def _in_place_on_scenario(
    scenario: Scenario, catalog: Catalog | None, name: str, target: str | None, value: float
) -> Scenario:
    """The scenario-level equivalent of an in-place change (same model after ``prepare``)."""
    if name in ("power_cap_scale", "power_cap_mw", "budget_scale", "electricity_scale"):
        return scenario.model_copy(
            update={"periods": tuple(_period(p, name, value) for p in scenario.periods)}
        )
    if name == "demand_scale":
        cls, period = demand_target(target)
        demand = tuple(
            _scaled_demand(d, value)
            if (cls is None or d.workload_class == cls) and (period is None or d.period == period)
            else d
            for d in scenario.demand
        )
        return scenario.model_copy(update={"demand": demand})
    if name == "capex_scale":
        racks = []
        for option in scenario.racks:
            if option.rack == target:
                price = option.capex_usd
                if price is None and catalog is not None:
                    price = catalog.racks[option.rack].capex_usd
                option = option.model_copy(update={"capex_usd": price * value})
            racks.append(option)
        return scenario.model_copy(update={"racks": tuple(racks)})
    raise _bad(name, f"unknown parameter; use one of {', '.join(IN_PLACE + REBUILD)}")


def _period(period, name: str, value: float):
    if name == "power_cap_scale" and period.power_cap_mw is not None:
        return period.model_copy(update={"power_cap_mw": period.power_cap_mw * value})
    if name == "power_cap_mw" and period.power_cap_mw is not None:
        return period.model_copy(update={"power_cap_mw": value})
    if name == "budget_scale" and period.capex_budget_usd is not None:
        return period.model_copy(update={"capex_budget_usd": period.capex_budget_usd * value})
    if name == "electricity_scale":
        price = period.electricity_usd_per_kwh * value
        return period.model_copy(update={"electricity_usd_per_kwh": price})
    return period


def _scaled_demand(demand, value: float):
    update = {}
    if demand.requests_per_s is not None:
        update["requests_per_s"] = demand.requests_per_s * value
    if demand.output_tokens_per_s is not None:
        update["output_tokens_per_s"] = demand.output_tokens_per_s * value
    return demand.model_copy(update=update)


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
            data_used = prepare(
                rebuilt_scenario(scenario, parameter, float(value), catalog), catalog
            )
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


LOOSER_WHEN_HIGHER = (
    "power_cap_scale",
    "power_cap_mw",
    "budget_scale",
    "tpot_ms",
    "ttft_ms",
    "supply_limit_scale",
    "supply_limit",
)
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
