"""Independent plan checker: recompute every constraint, the SLAs and the cost of a plan from
the plan's tables, the scenario and the catalog — never from the solver's model.

Rates and latencies of roofline allocations are recomputed from the physics (rack, LLM,
workload, replica size, batch); measured ones are taken from the scenario. Returns the
list of violations (empty = the plan checks out).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from rackplan.catalogs.loader import Catalog
from rackplan.models.base import Phase
from rackplan.models.hardware import RackType
from rackplan.models.operating_points import ReplicaSet
from rackplan.models.scenario import HOURS_PER_YEAR, Scenario
from rackplan.models.serving import aggregated_rates
from rackplan.models.workload import PRECISIONS
from rackplan.planner.core.plan import Plan

REL_TOL = 1e-6
ABS_TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


def _over(value: float, limit: float) -> bool:
    return value > limit + ABS_TOL + REL_TOL * abs(limit)


def _rack_spec(scenario: Scenario, catalog: Catalog, rack_id: str) -> RackType:
    option = next(o for o in scenario.racks if o.rack == rack_id)
    spec = catalog.racks[rack_id]
    update = {
        k: getattr(option, k)
        for k in ("capex_usd", "power_kw_at_load", "power_kw_idle")
        if getattr(option, k) is not None
    }
    return RackType.model_validate(spec.model_dump() | update) if update else spec


def verify_plan(plan: Plan, scenario: Scenario, catalog: Catalog) -> list[Violation]:
    """Every check below; each appends violations with the period, rack or class at fault."""
    racks = {o.rack: _rack_spec(scenario, catalog, o.rack) for o in scenario.racks}
    violations: list[Violation] = []
    installed = _check_fleet(plan, scenario, violations)
    _check_purchases(plan, scenario, violations)
    _check_capacity(plan, scenario, installed, violations)
    powers: dict[int, float] = {}
    verified = _check_rates_and_slas(plan, scenario, catalog, racks, violations, powers)
    _check_demand(plan, scenario, verified, violations)
    _check_power(plan, scenario, racks, installed, powers, violations)
    _check_money_and_space(plan, scenario, racks, installed, violations)
    _check_cost(plan, scenario, racks, installed, violations)
    return violations


def _check_fleet(
    plan: Plan, scenario: Scenario, out: list[Violation]
) -> dict[tuple[str, str], float]:
    """installed[r,t] = existing (until it retires) + purchases still within their lifetime."""
    periods = [p.name for p in scenario.periods]
    bought = defaultdict(float)
    for row in plan.purchases.itertuples():
        bought[(row.rack, row.period)] += row.racks_bought
    installed = {}
    for option in scenario.racks:
        retire = (
            periods.index(option.existing_retire_period) if option.existing_retire_period else None
        )
        for t, p in enumerate(periods):
            count = option.installed if retire is None or t < retire else 0
            for k in range(t + 1):
                life = option.lifetime_periods
                if life is None or t < k + life:
                    count += bought[(option.rack, periods[k])]
            installed[(option.rack, p)] = count
    reported = {(row.rack, row.period): row.racks_installed for row in plan.fleet.itertuples()}
    for key, count in installed.items():
        if abs(reported.get(key, 0.0) - count) > ABS_TOL:
            out.append(
                Violation(
                    "fleet",
                    f"{key[0]} in {key[1]}: plan says {reported.get(key, 0.0):g} installed, "
                    f"purchases and lifetimes give {count:g}",
                )
            )
    return installed


def _check_purchases(plan: Plan, scenario: Scenario, out: list[Violation]) -> None:
    periods = [p.name for p in scenario.periods]
    options = {o.rack: o for o in scenario.racks}
    for row in plan.purchases.itertuples():
        option = options.get(row.rack)
        if option is None:
            out.append(Violation("purchases", f"{row.rack} is not a rack type of the scenario"))
            continue
        if row.racks_bought < 0:
            out.append(
                Violation(
                    "lots", f"{row.rack} in {row.period}: negative purchase {row.racks_bought:g}"
                )
            )
            continue
        if (
            abs(row.racks_bought - round(row.racks_bought)) > ABS_TOL
            or round(row.racks_bought) % option.lot_size
        ):
            out.append(
                Violation(
                    "lots",
                    f"{row.rack} in {row.period}: {row.racks_bought:g} racks is not a multiple of "
                    f"the lot size {option.lot_size}",
                )
            )
        first = periods.index(option.first_period) if option.first_period else 0
        if periods.index(row.period) < first:
            out.append(
                Violation(
                    "availability",
                    f"{row.rack} bought in {row.period}, before it is available "
                    f"({option.first_period})",
                )
            )
        limit = option.supply_limit_per_period
        if limit is not None and _over(row.racks_bought, limit):
            out.append(
                Violation(
                    "supply",
                    f"{row.rack} in {row.period}: {row.racks_bought:g} bought, supply limit "
                    f"{limit}",
                )
            )


def _check_capacity(plan: Plan, scenario: Scenario, installed: dict, out: list[Violation]) -> None:
    spare = scenario.policy.spare_fraction
    used = (
        plan.allocation.groupby(["rack", "period"])["racks"].sum() if len(plan.allocation) else {}
    )
    for (rack, period), racks in dict(used).items():
        limit = (1 - spare) * installed.get((rack, period), 0.0)
        if _over(racks, limit):
            out.append(
                Violation(
                    "capacity",
                    f"{rack} in {period}: {racks:.4g} racks allocated, {limit:.4g} available after "
                    f"{spare:.0%} spares",
                )
            )
    for row in plan.allocation.itertuples():
        if row.racks < -ABS_TOL:
            out.append(Violation("capacity", f"negative allocation {row.racks} of {row.rack}"))


def _check_rates_and_slas(
    plan: Plan,
    scenario: Scenario,
    catalog: Catalog,
    racks: dict,
    out: list[Violation],
    powers: dict[int, float] | None = None,
) -> dict[int, tuple[float, float]]:
    """Recompute each roofline allocation's rate, latency and power; check the class's SLA, the
    serving mode (allowed by the class and the rack's roles) and whole replicas.

    Returns, per allocation row, the (output, prompt) tokens/s per rack the checker derived
    itself (decode: prompt 0; prefill: output 0; aggregated: prompt = output·L/O), for the
    demand check — the plan's own rate columns are never trusted. ``powers`` (if given) receives
    the IT power per rack (kW) the checker derived for each row, for the power-cap check.
    """
    measured = {(m.rack, m.workload_class, m.mode.value): m for m in scenario.measured_rates}
    verified: dict[int, tuple[float, float]] = {}
    integer_all = scenario.policy.integer_replicas
    for index, row in zip(plan.allocation.index, plan.allocation.itertuples(), strict=True):
        classes = {c.name for c in scenario.classes}
        if row._2 not in classes or row.rack not in racks:
            out.append(
                Violation("allocation", f"row names unknown class or rack ({row._2}, {row.rack})")
            )
            continue
        cls = scenario.workload_class(row._2)
        key = (row.rack, cls.name, row.mode)
        allowed = (
            {"prefill", "decode"} if "disaggregated" in {m.value for m in cls.modes} else set()
        )
        if "aggregated" in {m.value for m in cls.modes}:
            allowed.add("aggregated")
        roles = {r.value for r in racks[row.rack].roles}
        needs = {"prefill", "decode"} if row.mode == "aggregated" else {row.mode}
        if row.mode not in allowed or not needs <= roles:
            out.append(
                Violation(
                    "mode",
                    f"{cls.name} served {row.mode} on {row.rack}: not allowed by the class or "
                    "the rack's roles",
                )
            )
        if (integer_all or row.racks_per_replica > 1) and row.racks_per_replica > 0:
            replicas = row.racks / row.racks_per_replica
            if abs(replicas - round(replicas)) > 1e-6 * max(1.0, replicas):
                out.append(
                    Violation(
                        "replicas",
                        f"{cls.name} {row.mode} on {row.rack} in {row.period}: "
                        f"{replicas:.4g} replicas, not whole",
                    )
                )
        if key in measured:
            m = measured[key]
            rate, ttft, tpot, power = m.tokens_per_s_per_rack, m.ttft_ms, m.tpot_ms, m.power_kw
        else:
            rate, ttft, tpot, power = _recompute(row, cls, racks[row.rack], catalog)
            limit = _batch_limit(row, cls, racks[row.rack], catalog)
            if row.batch_size > limit:
                out.append(
                    Violation(
                        "rate",
                        f"{cls.name} {row.mode} on {row.rack} in {row.period}: batch "
                        f"{row.batch_size} on {row.chips_per_replica}-chip replicas exceeds the "
                        f"engine and memory limit of {limit:g} for this mode",
                    )
                )
        plan_rate = (
            row.prompt_tokens_per_s_per_rack
            if row.mode == "prefill"
            else row.output_tokens_per_s_per_rack
        )
        output = 0.0 if row.mode == "prefill" else rate
        prompt = {"prefill": rate, "decode": 0.0}.get(
            row.mode, rate * cls.input_tokens / cls.output_tokens
        )
        verified[index] = (output, prompt)
        if powers is not None:
            powers[index] = power
        if abs(rate - plan_rate) > 1e-6 * max(rate, 1.0):
            out.append(
                Violation(
                    "rate",
                    f"{cls.name} {row.mode} on {row.rack} in {row.period}: plan rate "
                    f"{plan_rate:.6g}, physics gives {rate:.6g} tokens/s per rack",
                )
            )
        if abs(power - row.power_kw_per_rack) > 1e-6 * max(power, 1.0):
            out.append(
                Violation(
                    "rate",
                    f"{cls.name} {row.mode} on {row.rack}: plan power {row.power_kw_per_rack:.6g} "
                    f"kW, physics gives {power:.6g}",
                )
            )
        if cls.ttft_ms is not None and ttft is not None and _over(ttft, cls.ttft_ms):
            out.append(
                Violation(
                    "sla",
                    f"{cls.name} on {row.rack} ({row.mode}) in {row.period}: TTFT {ttft:.4g} ms > "
                    f"{cls.ttft_ms:g} ms",
                )
            )
        if cls.tpot_ms is not None and tpot is not None and _over(tpot, cls.tpot_ms):
            out.append(
                Violation(
                    "sla",
                    f"{cls.name} on {row.rack} ({row.mode}) in {row.period}: TPOT {tpot:.4g} ms > "
                    f"{cls.tpot_ms:g} ms",
                )
            )
    return verified


def _batch_limit(row, cls, rack: RackType, catalog: Catalog) -> float:
    """The largest batch the mode allows on the row's replica size: memory, the engine caps,
    and (decode, aggregated) the weights within max_weight_share of memory; 0 if that replica
    size is not a candidate at all."""
    llm = catalog.llms[cls.llm]
    replicas = ReplicaSet.build(
        rack, llm, PRECISIONS[cls.precision], cls.workload(), catalog.efficiency_for(rack)
    )
    matches = np.flatnonzero(replicas.chips == row.chips_per_replica)
    if matches.size == 0:
        return 0.0
    limits = {
        "prefill": replicas.prefill_batch_limits,
        "decode": replicas.decode_batch_limits,
        "aggregated": replicas.aggregated_batch_limits,
    }[row.mode]()
    return float(limits[matches[0]])


def _recompute(
    row, cls, rack: RackType, catalog: Catalog
) -> tuple[float, float | None, float | None, float]:
    llm = catalog.llms[cls.llm]
    replicas = ReplicaSet.build(
        rack, llm, PRECISIONS[cls.precision], cls.workload(), catalog.efficiency_for(rack)
    )
    matches = np.flatnonzero(replicas.chips == row.chips_per_replica)
    if matches.size == 0:
        return float("nan"), None, None, float("nan")
    size = matches[:1]
    batch = np.array([float(row.batch_size)])
    if row.mode == "aggregated":
        rate, tpot, ttft = aggregated_rates(replicas, size, batch)
        from rackplan.models.roofline import aggregated_step

        times = aggregated_step(
            replicas.hw.take(size), llm, replicas.precision, replicas.workload, batch
        )
        power = (
            rack.power_kw_idle
            + (rack.power_kw_at_load - rack.power_kw_idle)
            * replicas.chips_used_share[size]
            * times.busy_fraction
        )
        return float(rate[0]), float(ttft[0]), float(tpot[0]), float(power[0])
    phase = Phase(row.mode)
    point = replicas.evaluate(phase, size, batch)
    latency = float(point.latency_ms[0])
    return (
        float(point.tokens_per_s_per_rack[0]),
        latency if phase is Phase.prefill else None,
        latency if phase is Phase.decode else None,
        float(point.power_kw[0]),
    )


def _check_demand(
    plan: Plan, scenario: Scenario, verified: dict[int, tuple[float, float]], out: list[Violation]
) -> None:
    """Σ racks·rate ≥ served share · forecast / max utilisation, per class, phase and period,
    with the rates the checker derived (the served share is 1 unless the objective is
    max_served)."""
    shares = {}
    if scenario.policy.objective.value == "max_served" and len(plan.service):
        for row in plan.service.itertuples():
            shares[(row._2, row.period)] = row.served_share
    supplied = defaultdict(float)
    for index, row in zip(plan.allocation.index, plan.allocation.itertuples(), strict=True):
        output, prompt = verified.get(index, (0.0, 0.0))
        supplied[(row._2, "decode", row.period)] += row.racks * output
        supplied[(row._2, "prefill", row.period)] += row.racks * prompt
    for d in scenario.demand:
        cls = scenario.workload_class(d.workload_class)
        prompt, output = d.token_rates(cls)
        for phase, need in (("decode", output), ("prefill", prompt)):
            required = need / cls.max_utilisation * shares.get((cls.name, d.period), 1.0)
            got = supplied[(cls.name, phase, d.period)]
            if got < required * (1 - REL_TOL) - ABS_TOL:
                out.append(
                    Violation(
                        "demand",
                        f"{cls.name} {phase} in {d.period}: {got:.6g} tokens/s provisioned, "
                        f"{required:.6g} needed ({need:.6g} at ρ={cls.max_utilisation:g})",
                    )
                )


def expected_it_kw(
    plan: Plan, racks: dict, installed: dict, powers: dict[int, float], period: str
) -> float:
    """Expected IT draw in ``period`` (kW): Σ_r P_idle,r·installed[r] + Σ_rows racks·(P − P_idle),
    with P the checker's own power per rack of each allocation row (``powers``)."""
    idle = sum(installed[(r, period)] * spec.power_kw_idle for r, spec in racks.items())
    extra = sum(
        row.racks * (powers.get(index, row.power_kw_per_rack) - racks[row.rack].power_kw_idle)
        for index, row in zip(plan.allocation.index, plan.allocation.itertuples(), strict=True)
        if row.period == period and row.rack in racks
    )
    return idle + extra


def _check_power(
    plan: Plan,
    scenario: Scenario,
    racks: dict,
    installed: dict,
    powers: dict[int, float],
    out: list[Violation],
) -> None:
    """PUE × capped IT load ≤ cap (MW at the meter): the nameplate load Σ installed·P_load, or
    with ``power_cap_basis = expected`` the expected draw (``expected_it_kw``)."""
    expected = scenario.policy.power_cap_basis == "expected"
    for period in scenario.periods:
        if expected:
            it_kw = expected_it_kw(plan, racks, installed, powers, period.name)
        else:
            it_kw = sum(
                installed[(r, period.name)] * spec.power_kw_at_load for r, spec in racks.items()
            )
        site_mw = it_kw * period.pue / 1000.0
        if period.power_cap_mw is not None and _over(site_mw, period.power_cap_mw):
            out.append(
                Violation(
                    "power",
                    f"{period.name}: {site_mw:.4g} MW at the meter "
                    f"({scenario.policy.power_cap_basis}), cap {period.power_cap_mw:g} MW",
                )
            )


def _check_money_and_space(
    plan: Plan, scenario: Scenario, racks: dict, installed: dict, out: list[Violation]
) -> None:
    spend = defaultdict(float)
    for row in plan.purchases.itertuples():
        spend[row.period] += row.racks_bought * racks[row.rack].capex_usd
    for period in scenario.periods:
        if period.capex_budget_usd is not None and _over(
            spend[period.name], period.capex_budget_usd
        ):
            out.append(
                Violation(
                    "budget",
                    f"{period.name}: capex ${spend[period.name]:,.0f} > budget "
                    f"${period.capex_budget_usd:,.0f}",
                )
            )
        total_racks = sum(installed[(r, period.name)] for r in racks)
        if scenario.floor_space_racks is not None and _over(
            total_racks, scenario.floor_space_racks
        ):
            out.append(
                Violation(
                    "space",
                    f"{period.name}: {total_racks:g} racks installed, {scenario.floor_space_racks} "
                    "positions",
                )
            )
    if scenario.total_budget_usd is not None and _over(
        sum(spend.values()), scenario.total_budget_usd
    ):
        out.append(
            Violation(
                "budget",
                f"total capex ${sum(spend.values()):,.0f} > ${scenario.total_budget_usd:,.0f}",
            )
        )
    limit = scenario.policy.max_rack_types
    if limit is not None:
        used = {r for (r, _), n in installed.items() if n > ABS_TOL}
        if len(used) > limit:
            out.append(
                Violation(
                    "rack_types",
                    f"{len(used)} rack types used ({', '.join(sorted(used))}), at most {limit}",
                )
            )


def _check_cost(
    plan: Plan, scenario: Scenario, racks: dict, installed: dict, out: list[Violation]
) -> None:
    """TCO = Σ_t df_t·(capex + energy + maintenance) − discounted salvage, from the tables."""
    econ = scenario.economics
    periods = [p.name for p in scenario.periods]
    spend = defaultdict(float)
    for row in plan.purchases.itertuples():
        spend[row.period] += row.racks_bought * racks[row.rack].capex_usd
    active = defaultdict(float)
    for row in plan.allocation.itertuples():
        active[row.period] += row.racks * (row.power_kw_per_rack - racks[row.rack].power_kw_idle)
    total, years = 0.0, 0.0
    for period in scenario.periods:
        p = period.name
        factor = (1 + econ.discount_rate_per_year) ** (-years)
        idle_kw = sum(installed[(r, p)] * spec.power_kw_idle for r, spec in racks.items())
        energy = period.hours * period.pue * (idle_kw + active[p]) * period.electricity_usd_per_kwh
        maintenance = (
            econ.maintenance_fraction_per_year
            * period.hours
            / HOURS_PER_YEAR
            * sum(installed[(r, p)] * spec.capex_usd for r, spec in racks.items())
        )
        total += factor * (spend[p] + energy + maintenance)
        years += period.hours / HOURS_PER_YEAR
    if econ.salvage == "linear":
        end = (1 + econ.discount_rate_per_year) ** (-years)
        options = {o.rack: o for o in scenario.racks}
        for row in plan.purchases.itertuples():
            life = options[row.rack].lifetime_periods
            if life is None:
                continue
            remaining = periods.index(row.period) + life - len(periods)
            if remaining > 0:
                total -= end * remaining / life * row.racks_bought * racks[row.rack].capex_usd
    if abs(total - plan.tco_usd) > 1e-6 * max(abs(total), 1.0):
        out.append(Violation("cost", f"plan TCO ${plan.tco_usd:,.2f}, recomputed ${total:,.2f}"))
    solver_objective = plan.outcome.objective
    if scenario.policy.objective.value == "min_tco" and solver_objective is not None:  # noqa: SIM102
        if abs(solver_objective - total) > 1e-6 * max(abs(total), 1.0):
            out.append(
                Violation(
                    "cost",
                    f"solver objective ${solver_objective:,.2f}, recomputed TCO ${total:,.2f}",
                )
            )
