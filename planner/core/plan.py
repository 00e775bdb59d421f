"""The plan: a typed, frozen result with tidy tables, filled from a solved model.

Tables (pandas DataFrames, units in column names): purchases, fleet, allocation, service
(per class and phase: capacity against forecast, SLA achieved), power, costs, cost per
million tokens by class, shadow prices, baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd
import pyomo.core as pyo

from rackplan.models.scenario import HOURS_PER_YEAR
from rackplan.planner.core.data import Diagnostic, PlanData
from rackplan.planner.core.solve import PlanSolver, SolveOutcome

VALUE_TOLERANCE = 1e-6
COST_SCOPE = "rack capex, energy and maintenance; excludes facility, network and staff"
"""What the cost per token covers (stated beside every $/token figure)."""
OBJECTIVE_UNITS = {
    "min_tco": "USD",
    "max_served": "output tokens served over the horizon",
    "min_power": "kWh",
}


@dataclass(frozen=True)
class Plan:
    scenario: str
    outcome: SolveOutcome
    purchases: pd.DataFrame
    fleet: pd.DataFrame
    allocation: pd.DataFrame
    service: pd.DataFrame
    power: pd.DataFrame
    costs: pd.DataFrame
    cost_per_million_tokens: pd.DataFrame
    tco_usd: float
    """Discounted TCO of this plan, USD (equals the objective under min_tco)."""
    objective_unit: str = "USD"
    """USD (min_tco), output tokens served over the horizon (max_served) or kWh (min_power)."""
    shadow_prices: pd.DataFrame = field(default_factory=pd.DataFrame)
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)
    explanation: tuple[str, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    cut_short: tuple[str, ...] = ()
    """Steps of the plan that its one time budget stopped early or skipped."""
    warnings: tuple[str, ...] = ()
    """What a buyer must know before acting on the plan (e.g. it buys a withdrawn product)."""

    @property
    def status(self) -> str:
        return self.outcome.status

    def with_extras(self, **changes: object) -> Plan:
        return replace(self, **changes)

    def as_json(self) -> dict:
        """The plan as JSON (the CLI/REST contract keys)."""

        def records(frame: pd.DataFrame) -> list[dict]:
            return json_records(frame)

        o = self.outcome
        in_usd = self.objective_unit == "USD"
        return {
            "scenario": self.scenario,
            "status": o.status,
            "status_text": o.status_text,
            "objective_usd": o.objective if in_usd else None,
            "best_bound_usd": o.best_bound if in_usd else None,
            "objective": o.objective,
            "best_bound": o.best_bound,
            "objective_unit": self.objective_unit,
            "gap": o.gap,
            "tiebreak": o.tiebreak,
            "tco_usd": self.tco_usd,
            "solver": {
                "name": "HiGHS",
                "version": o.highs_version,
                "termination": o.termination,
                "build_s": o.build_s,
                "solve_s": o.solve_s,
                "variables": o.variables,
                "integer_variables": o.integer_variables,
                "constraints": o.constraints,
                "start": o.start,
            },
            "purchases": records(self.purchases),
            "fleet": records(self.fleet),
            "allocation": records(self.allocation),
            "service": records(self.service),
            "power": records(self.power),
            "costs": records(self.costs),
            "cost_per_million_tokens": records(self.cost_per_million_tokens),
            "shadow_prices": records(self.shadow_prices),
            "baselines": records(self.baselines),
            "explanation": list(self.explanation),
            "diagnostics": [d.message for d in self.diagnostics],
            "cut_short": list(self.cut_short),
            "warnings": list(self.warnings),
        }


def json_records(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-safe dicts (NaN → None, numpy scalars → Python)."""
    rows = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            clean[key] = value
        rows.append(clean)
    return rows


def _value(x) -> float:
    v = pyo.value(x, exception=False)
    return 0.0 if v is None else float(v)


def _round_count(x: float) -> float:
    nearest = round(x)
    return float(nearest) if abs(x - nearest) < 1e-6 else x


@dataclass(frozen=True)
class Current:
    """The parameter values in force in the model (what-ifs change them in place)."""

    demand: dict[tuple[str, str, str], float]
    power_cap_mw: dict[str, float]
    capex_usd: dict[str, float]
    electricity_usd_per_kwh: dict[str, float]

    @classmethod
    def of(cls, m: pyo.ConcreteModel) -> Current:
        return cls(
            demand={k: pyo.value(v) for k, v in m.demand.items()},
            power_cap_mw={k: pyo.value(v) for k, v in m.power_cap_mw.items()},
            capex_usd={k: pyo.value(v) for k, v in m.capex_usd.items()},
            electricity_usd_per_kwh={k: pyo.value(v) for k, v in m.electricity_usd_per_kwh.items()},
        )

    def forecast(self, cls, phase: str, period: str) -> float:
        """Forecast tokens/s of a class and phase (the demand row is forecast / max utilisation)."""
        return self.demand[(cls.name, phase, period)] * cls.max_utilisation

    def forecast_output(self, cls, period: str) -> float:
        return self.forecast(cls, "decode", period)


def extract_plan(data: PlanData, solver: PlanSolver, outcome: SolveOutcome) -> Plan:
    """Read the loaded solution into tables. Call only when ``outcome.has_solution``."""
    m = solver.model
    s = data.scenario
    periods = data.periods
    purchases, fleet = [], []
    for p in periods:
        for r, info in data.racks.items():
            bought = _round_count(_value(m.bought[r, p]))
            installed = _round_count(_value(m.installed[r, p]))
            retired = _round_count(_value(m.retired[r, p]))
            if bought > VALUE_TOLERANCE:
                purchases.append(
                    {
                        "period": p,
                        "rack": r,
                        "racks_bought": bought,
                        "lots": bought / info.option.lot_size,
                        "capex_usd": bought * _value(m.capex_usd[r]),
                    }
                )
            fleet.append(
                {
                    "period": p,
                    "rack": r,
                    "racks_installed": installed,
                    "racks_bought": bought,
                    "racks_retired": retired,
                    "it_power_kw_at_load": installed * info.power_kw_at_load,
                }
            )
    allocation = []
    for j, p in m.JT:
        racks = _value(m.alloc[j, p])
        if racks <= VALUE_TOLERANCE:
            continue
        col = data.columns[j]
        allocation.append(
            {
                "period": p,
                "class": col.workload_class,
                "mode": col.mode.value,
                "rack": col.rack,
                "racks": racks,
                "replicas": racks / col.racks_per_replica,
                "batch_size": col.batch_size,
                "chips_per_replica": col.chips_per_replica,
                "racks_per_replica": col.racks_per_replica,
                "output_tokens_per_s_per_rack": col.decode_rate,
                "prompt_tokens_per_s_per_rack": col.prefill_rate,
                "ttft_ms": col.ttft_ms,
                "tpot_ms": col.tpot_ms,
                "power_kw_per_rack": col.power_kw,
                "source": col.source,
                "column": j,
            }
        )
    allocation_frame = pd.DataFrame(allocation, columns=_ALLOCATION_COLUMNS)
    fleet_frame = pd.DataFrame(fleet)
    costs = _costs(data, m)
    now = Current.of(m)
    served = _served_shares(data, m)
    return Plan(
        scenario=s.name,
        outcome=outcome,
        purchases=pd.DataFrame(
            purchases, columns=["period", "rack", "racks_bought", "lots", "capex_usd"]
        ),
        fleet=fleet_frame,
        allocation=allocation_frame,
        service=_service(data, allocation_frame, served, now),
        power=_power(data, fleet_frame, allocation_frame, now),
        costs=costs,
        cost_per_million_tokens=_cost_per_million_tokens(
            data, fleet_frame, allocation_frame, now, served
        ),
        tco_usd=_value(m.tco_usd),
        objective_unit=OBJECTIVE_UNITS[data.scenario.policy.objective.value],
        diagnostics=tuple(data.diagnostics),
        warnings=availability_warnings(data, purchases),
    )


def availability_warnings(data: PlanData, purchases: list[dict]) -> tuple[str, ...]:
    """One warning per rack type the plan buys whose existence is an assumption: a product
    its vendor withdrew, or one never announced (``RackType.availability_is_assumed``)."""
    bought: dict[str, float] = {}
    for row in purchases:
        bought[row["rack"]] = bought.get(row["rack"], 0.0) + row["racks_bought"]
    out = []
    for rack_id, count in bought.items():
        spec = data.racks[rack_id].spec
        if spec.availability_is_assumed:
            detail = spec.status.split(maxsplit=1)[1] if " " in spec.status else ""
            detail = detail.lstrip(":;, ").split(";")[0]
            out.append(
                f"the plan buys {count:g} × {rack_id}, which is {spec.lifecycle}"
                + (f" ({detail})" if detail else "")
                + f"; its availability from {data.periods[data.racks[rack_id].first_period]} is "
                "an assumption: re-plan without it before ordering"
            )
    return tuple(out)


_ALLOCATION_COLUMNS = [
    "period", "class", "mode", "rack", "racks", "replicas", "batch_size", "chips_per_replica",
    "racks_per_replica", "output_tokens_per_s_per_rack", "prompt_tokens_per_s_per_rack", "ttft_ms",
    "tpot_ms", "power_kw_per_rack", "source", "column",
]  # fmt: skip


def _served_shares(data: PlanData, m: pyo.ConcreteModel) -> dict[tuple[str, str], float]:
    """Share of each class's forecast the plan serves (1 unless the objective is max_served)."""
    served = getattr(m, "served", None)
    return {
        (c, p): (min(1.0, _value(served[c, p])) if served is not None else 1.0)
        for c in data.classes
        for p in data.periods
    }


def _service(data: PlanData, allocation: pd.DataFrame, served: dict, now: Current) -> pd.DataFrame:
    """Per class, phase and period: forecast, share served, capacity, utilisation, SLA achieved."""
    rows = []
    for cls in data.scenario.classes:
        for p in data.periods:
            mine = allocation[(allocation["class"] == cls.name) & (allocation["period"] == p)]
            for phase, rate_column in (
                ("decode", "output_tokens_per_s_per_rack"),
                ("prefill", "prompt_tokens_per_s_per_rack"),
            ):
                used = mine[mine[rate_column] > 0]
                capacity = float((used["racks"] * used[rate_column]).sum())
                forecast = now.forecast(cls, phase, p)
                latency_column = "tpot_ms" if phase == "decode" else "ttft_ms"
                target = cls.tpot_ms if phase == "decode" else cls.ttft_ms
                worst = used[latency_column].max() if len(used) else None
                rows.append(
                    {
                        "period": p,
                        "class": cls.name,
                        "phase": phase,
                        "forecast_tokens_per_s": forecast,
                        "served_share": served[(cls.name, p)],
                        "capacity_tokens_per_s": capacity,
                        "utilisation": forecast * served[(cls.name, p)] / capacity
                        if capacity > 0
                        else None,
                        "max_utilisation": cls.max_utilisation,
                        "worst_latency_ms": None
                        if worst is None or pd.isna(worst)
                        else float(worst),
                        "target_ms": target,
                    }
                )
    return pd.DataFrame(rows)


def capped_site_mw(data: PlanData, provisioned_kw: float, operating_kw: float, pue: float) -> float:
    """The site power (MW at the meter) the cap limits: PUE × the nameplate IT load
    (``provisioned_kw``) or, with ``power_cap_basis = expected``, × the expected draw
    (``operating_kw``: idle power of installed racks + the extra of allocated ones)."""
    basis = data.scenario.policy.power_cap_basis
    return (operating_kw if basis == "expected" else provisioned_kw) * pue / 1000.0


def _power(
    data: PlanData, fleet: pd.DataFrame, allocation: pd.DataFrame, now: Current
) -> pd.DataFrame:
    rows = []
    for period in data.scenario.periods:
        p = period.name
        provisioned = float(fleet.loc[fleet["period"] == p, "it_power_kw_at_load"].sum())
        installed = fleet[fleet["period"] == p].set_index("rack")["racks_installed"]
        idle = sum(installed.get(r, 0.0) * info.power_kw_idle for r, info in data.racks.items())
        here = allocation[allocation["period"] == p]
        extra = sum(
            row.racks * (row.power_kw_per_rack - data.racks[row.rack].power_kw_idle)
            for row in here.itertuples()
        )
        site_mw = provisioned * period.pue / 1000.0
        capped_mw = capped_site_mw(data, provisioned, idle + extra, period.pue)
        rows.append(
            {
                "period": p,
                "it_power_kw_provisioned": provisioned,
                "it_power_kw_operating": idle + extra,
                "pue": period.pue,
                "site_power_mw": site_mw,
                "power_cap_basis": data.scenario.policy.power_cap_basis,
                "capped_power_mw": capped_mw,
                "power_cap_mw": now.power_cap_mw.get(p),
                "headroom_mw": None
                if p not in now.power_cap_mw
                else now.power_cap_mw[p] - capped_mw,
            }
        )
    return pd.DataFrame(rows)


def _costs(data: PlanData, m: pyo.ConcreteModel) -> pd.DataFrame:
    rows = []
    for t, p in enumerate(data.periods):
        capex = _value(m.capex_spend_usd[p])
        energy = _value(m.energy_usd[p])
        maintenance = _value(m.maintenance_usd[p])
        nominal = capex + energy + maintenance
        factor = data.discount_factor(t)
        rows.append(
            {
                "period": p,
                "capex_usd": capex,
                "energy_usd": energy,
                "energy_kwh": _value(m.energy_kwh[p]),
                "maintenance_usd": maintenance,
                "salvage_usd": 0.0,
                "total_usd": nominal,
                "discount_factor": factor,
                "discounted_usd": factor * nominal,
            }
        )
    salvage = _value(m.salvage_usd)
    if salvage:
        end = data.end_discount_factor()
        rows.append(
            {
                "period": "salvage",
                "capex_usd": 0.0,
                "energy_usd": 0.0,
                "energy_kwh": 0.0,
                "maintenance_usd": 0.0,
                "salvage_usd": -salvage / end,
                "total_usd": -salvage / end,
                "discount_factor": end,
                "discounted_usd": -salvage,
            }
        )
    return pd.DataFrame(rows)


def _cost_per_million_tokens(
    data: PlanData, fleet: pd.DataFrame, allocation: pd.DataFrame, now: Current, served: dict
) -> pd.DataFrame:
    """Levelised $ per million output tokens by class: Σ_t df·cost_c,t / Σ_t df·tokens_c,t.

    cost_c,t: each rack type's cost in t (capex of purchases spread straight-line over the
    periods they serve within the horizon — their lifetime, or to the horizon end without
    salvage — plus maintenance and idle energy) is shared among the classes using that type by
    their share of its allocated racks; a type installed but used by no class in t is shared
    among all classes by their tokens in t. Each class adds the energy above idle of its own
    allocation. Existing racks carry no capex (sunk). tokens_c,t: served output tokens.
    Prices, demand and capex come from the model (``Current``), so what-ifs report their own.

    Also per million *total* tokens (prompt + output: every prompt token, prefix-cache hits
    included, as a token-priced API bills them), and the cost's scope (``cost_scope``).
    """
    s = data.scenario
    periods = data.periods
    count = len(periods)
    amortised = {(r, p): 0.0 for r in data.racks for p in periods}
    for row in fleet.itertuples():
        if row.racks_bought <= 0:
            continue
        t = periods.index(row.period)
        life = data.racks[row.rack].option.lifetime_periods
        linear = life is not None and s.economics.salvage == "linear"
        span = life if linear else min(life or count, count - t)
        for k in range(t, min(count, t + span)):
            amortised[(row.rack, periods[k])] += row.racks_bought * now.capex_usd[row.rack] / span
    cost = {c.name: 0.0 for c in s.classes}
    tokens = {c.name: 0.0 for c in s.classes}
    prompt_tokens = {c.name: 0.0 for c in s.classes}
    maintenance = s.economics.maintenance_fraction_per_year
    for t, period in enumerate(s.periods):
        p = period.name
        factor = data.discount_factor(t)
        energy_price = period.hours * period.pue * now.electricity_usd_per_kwh[p]
        period_tokens = {
            c.name: now.forecast_output(c, p) * served[(c.name, p)] * period.hours * 3600 / 1e6
            for c in s.classes
        }
        all_tokens = sum(period_tokens.values())
        for c, value in period_tokens.items():
            tokens[c] += factor * value
        for c in s.classes:
            prompt = now.forecast(c, "prefill", p) * served[(c.name, p)] * period.hours * 3600
            prompt_tokens[c.name] += factor * prompt / 1e6
        here = allocation[allocation["period"] == p]
        for r, info in data.racks.items():
            installed = float(
                fleet.loc[(fleet["period"] == p) & (fleet["rack"] == r), "racks_installed"].sum()
            )
            if installed <= 0:
                continue
            rack_cost = (
                amortised[(r, p)]
                + maintenance * period.hours / HOURS_PER_YEAR * now.capex_usd[r] * installed
                + energy_price * info.power_kw_idle * installed
            )
            mine = here[here["rack"] == r]
            used = float(mine["racks"].sum())
            if used <= 0:
                for c, value in period_tokens.items():
                    if all_tokens > 0:
                        cost[c] += factor * rack_cost * value / all_tokens
                continue
            for row in mine.itertuples():
                active = energy_price * (row.power_kw_per_rack - info.power_kw_idle) * row.racks
                cost[row._2] += factor * (rack_cost * row.racks / used + active)
    rows = [
        {
            "class": c,
            "cost_usd_discounted": cost[c],
            "output_tokens_million_discounted": tokens[c],
            "usd_per_million_output_tokens": cost[c] / tokens[c] if tokens[c] > 0 else None,
            "prompt_tokens_million_discounted": prompt_tokens[c],
            "total_tokens_million_discounted": prompt_tokens[c] + tokens[c],
            "usd_per_million_total_tokens": (
                cost[c] / (prompt_tokens[c] + tokens[c])
                if prompt_tokens[c] + tokens[c] > 0
                else None
            ),
            "cost_scope": COST_SCOPE,
        }
        for c in cost
    ]
    return pd.DataFrame(rows)
