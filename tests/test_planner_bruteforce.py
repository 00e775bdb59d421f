"""Brute force: enumerate every integer purchase plan of tiny scenarios, price each with an
independent LP (scipy) per period, and check the MIP finds the same optimum every time.

The instances cover all three objectives, measured-rate overrides where disaggregated serving
is slower but draws less power than aggregated, power caps that admit an exact whole number of
racks, and an at-most-K-rack-types limit with an existing fleet."""

from __future__ import annotations

import itertools
import random
from functools import cache

import numpy as np
import pytest
from scipy.optimize import linprog

from rackplan.models.scenario import (
    Economics,
    MeasuredRate,
    Objective,
    Policy,
    ServingMode,
    WorkloadClass,
)
from rackplan.planner.core.data import prepare
from tests.planning import Demand, RackOption, periods, scenario, solve_checked

RACKS = ("hgx-h100", "hgx-b200")
MAX_LOTS = 3
INSTANCES = {Objective.min_tco: 60, Objective.min_power: 20, Objective.max_served: 20}
SECONDS_PER_HOUR = 3600.0


def _instance(seed: int, objective: Objective = Objective.min_tco):
    rng = random.Random(seed * 7 + list(Objective).index(objective))
    period_names = ("P1", "P2")[: rng.choice((1, 2))]
    options = _rack_options(rng)
    pue = rng.choice((1.0, 1.3))
    cap = rng.choice((None, None, 0.05, 0.08, "exact"))
    if cap == "exact":
        # a cap admitting exactly n racks of the first type (the product carries float noise)
        n, load = rng.randint(1, 6), options[0].power_kw_at_load
        cap = n * load * pue / 1000
    per = periods(
        *period_names,
        hours=rng.choice((500.0, 2190.0)),
        price=rng.uniform(0.05, 0.2),
        pue=pue,
        power_cap_mw=cap,
    )
    class_names = ("a", "b")[: rng.choice((1, 2))]
    classes, measured, demand = [], [], []
    for name in class_names:
        aggregated = rng.random() < 0.5
        modes = {ServingMode.disaggregated} | ({ServingMode.aggregated} if aggregated else set())
        classes.append(
            WorkloadClass(
                name=name,
                llm="llama-3.1-8b",
                input_tokens=rng.choice((500, 2000)),
                output_tokens=500,
                ttft_ms=1000,
                tpot_ms=50,
                max_utilisation=rng.choice((0.5, 0.8)),
                modes=frozenset(modes),
            )
        )
        slow_modes = aggregated and rng.random() < 0.5
        for rack in RACKS:
            power = rng.uniform(8, 40)
            # slow_modes: disaggregated runs slower (≤ 1/3 the rate) at far less power
            slow = rng.uniform(0.1, 0.33) if slow_modes else 1.0
            for mode, rate in (
                ("prefill", rng.uniform(2000, 9000) * slow),
                ("decode", rng.uniform(500, 3000) * slow),
            ):
                measured.append(
                    MeasuredRate(
                        rack=rack,
                        workload_class=name,
                        mode=mode,
                        tokens_per_s_per_rack=rate,
                        ttft_ms=100,
                        tpot_ms=10,
                        power_kw=power * rng.uniform(0.7, 1.0) * (0.3 if slow_modes else 1.0),
                        source="generated",
                    )
                )
            if aggregated:
                measured.append(
                    MeasuredRate(
                        rack=rack,
                        workload_class=name,
                        mode="aggregated",
                        tokens_per_s_per_rack=rng.uniform(300, 1500) * (2 if slow_modes else 1),
                        ttft_ms=500,
                        tpot_ms=20,
                        power_kw=power,
                        source="generated",
                    )
                )
        scale = 4.0 if objective is Objective.max_served else 1.0  # so limits bind
        for p in period_names:
            demand.append(
                Demand(
                    period=p,
                    workload_class=name,
                    output_tokens_per_s=rng.uniform(100, 700) * scale,
                )
            )
    return scenario(
        name=f"bruteforce-{seed}",
        periods=per,
        classes=tuple(classes),
        demand=tuple(demand),
        racks=tuple(options),
        measured_rates=tuple(measured),
        economics=Economics(
            discount_rate_per_year=rng.choice((0.0, 0.1)),
            maintenance_fraction_per_year=rng.choice((0.0, 0.04)),
        ),
        policy=Policy(
            spare_fraction=rng.choice((0.0, 0.1)),
            max_rack_types=rng.choice((None, None, 1)),
            objective=objective,
        ),
    )


def _rack_options(rng: random.Random) -> tuple[RackOption, ...]:
    options = []
    for rack in RACKS:
        lot = rng.choice((1, 2))
        options.append(
            RackOption(
                rack=rack,
                capex_usd=rng.uniform(0.5e6, 3e6),
                power_kw_at_load=rng.uniform(15, 45),
                power_kw_idle=rng.uniform(2, 8),
                lot_size=lot,
                supply_limit_per_period=MAX_LOTS * lot,
                lifetime_periods=rng.choice((None, 1)),
                installed=rng.choice((0, 0, 1)),
            )
        )
    return tuple(options)


def brute_force(sc, catalog) -> float | None:
    """The best objective over every purchase plan (lots 0…MAX_LOTS per rack and period):
    min_tco: discounted TCO (USD); min_power: energy (kWh); max_served: served output tokens.
    Plans that break a power cap or use more than K rack types (existing racks count) are
    skipped; each period's allocation is an LP solved by scipy."""
    data = prepare(sc, catalog)
    options = {o.rack: o for o in sc.racks}
    keys = [(r, t) for r in RACKS for t in range(len(sc.periods))]
    objective = sc.policy.objective
    spec = {r: data.racks[r] for r in RACKS}
    lp = cache(lambda t, installed: _period_lp(sc, data, t, installed))
    best = None
    for lots in itertools.product(range(MAX_LOTS + 1), repeat=len(keys)):
        bought = {k: n * options[k[0]].lot_size for k, n in zip(keys, lots, strict=True)}
        fleet = [_installed(options, bought, t) for t in range(len(sc.periods))]
        if not _within_limits(sc, spec, fleet):
            continue
        total, years = 0.0, 0.0
        for t, period in enumerate(sc.periods):
            variable = lp(t, tuple(fleet[t]))
            if variable is None:
                total = None
                break
            discounted = objective is Objective.min_tco
            factor = (1 + sc.economics.discount_rate_per_year) ** (-years) if discounted else 1.0
            total += factor * (_fixed_part(sc, spec, bought, fleet[t], t) + variable)
            years += period.hours / 8760
        if total is None:
            continue
        if best is None or (total > best if objective is Objective.max_served else total < best):
            best = total
    return best


def _installed(options, bought, t: int) -> list[float]:
    installed = []
    for r in RACKS:
        life = options[r].lifetime_periods
        count = options[r].installed + sum(
            bought[(r, k)] for k in range(t + 1) if life is None or t < k + life
        )
        installed.append(float(count))
    return installed


def _within_limits(sc, spec, fleet: list[list[float]]) -> bool:
    """Nameplate power caps per period (MW at the meter) and at most K rack types ever
    installed. (An expected-draw cap depends on the allocation: ``_period_lp`` checks it.)"""
    for period, installed in zip(sc.periods, fleet, strict=True):
        if sc.policy.power_cap_basis == "expected":
            break
        it_kw = sum(n * spec[r].power_kw_at_load for n, r in zip(installed, RACKS, strict=True))
        if (
            period.power_cap_mw is not None
            and it_kw * period.pue / 1000 > period.power_cap_mw + 1e-9
        ):
            return False
    limit = sc.policy.max_rack_types
    used = {r for installed in fleet for n, r in zip(installed, RACKS, strict=True) if n > 0}
    return limit is None or len(used) <= limit


def _fixed_part(sc, spec, bought, installed, t: int) -> float:
    """What the purchases alone fix in period t: capex + idle energy + maintenance (USD,
    min_tco), idle energy (kWh, min_power), nothing (max_served)."""
    period = sc.periods[t]
    idle_kwh = (
        period.hours
        * period.pue
        * sum(n * spec[r].power_kw_idle for n, r in zip(installed, RACKS, strict=True))
    )
    if sc.policy.objective is Objective.min_power:
        return idle_kwh
    if sc.policy.objective is Objective.max_served:
        return 0.0
    capex = sum(bought[(r, t)] * spec[r].capex_usd for r in RACKS)
    maintenance = (
        sc.economics.maintenance_fraction_per_year
        * period.hours
        / 8760
        * sum(n * spec[r].capex_usd for n, r in zip(installed, RACKS, strict=True))
    )
    return capex + idle_kwh * period.electricity_usd_per_kwh + maintenance


def _period_lp(sc, data, t: int, installed: tuple[float, ...]) -> float | None:
    """The allocation LP of one period on a given fleet: energy above idle (undiscounted USD
    under min_tco, kWh under min_power), or served output tokens (max_served: shares
    s_c ∈ [0, 1] of the forecast, rows scaled by s_c). None when demand cannot be met. With an
    expected-draw power cap: Σ_j (P_j − P_idle)·alloc_j ≤ cap·1000/PUE − Σ_r P_idle,r·installed_r.
    """
    period = sc.periods[t]
    name = period.name
    cols = data.columns
    served = sc.policy.objective is Objective.max_served
    classes = [c.name for c in sc.classes] if served else []
    price = period.electricity_usd_per_kwh if sc.policy.objective is Objective.min_tco else 1.0
    cost = [
        0.0 if served else (c.power_kw - data.racks[c.rack].power_kw_idle) * period.hours
        * period.pue * price
        for c in cols
    ]  # fmt: skip
    cost += [-period.hours * SECONDS_PER_HOUR * data.forecast_output[(c, name)] for c in classes]
    a_ub, b_ub = [], []
    for i, r in enumerate(RACKS):
        a_ub.append([1.0 if c.rack == r else 0.0 for c in cols] + [0.0] * len(classes))
        b_ub.append((1 - sc.policy.spare_fraction) * installed[i])
    for cls in sc.classes:
        for phase, demand in (("decode", data.demand_decode), ("prefill", data.demand_prefill)):
            need = demand[(cls.name, name)]
            if need <= 0:
                continue
            row = [
                -(c.decode_rate if phase == "decode" else c.prefill_rate)
                if c.workload_class == cls.name
                else 0.0
                for c in cols
            ]
            row += [need if c == cls.name else 0.0 for c in classes]
            a_ub.append(row)
            b_ub.append(0.0 if served else -need)
    if sc.policy.power_cap_basis == "expected" and period.power_cap_mw is not None:
        idle = [data.racks[r].power_kw_idle for r in RACKS]
        a_ub.append(
            [c.power_kw - data.racks[c.rack].power_kw_idle for c in cols] + [0.0] * len(classes)
        )
        b_ub.append(
            period.power_cap_mw * 1000 / period.pue
            - sum(n * i for n, i in zip(installed, idle, strict=True))
        )
    bounds = [(0, None)] * len(cols) + [(0, 1)] * len(classes)
    result = linprog(
        np.array(cost), A_ub=np.array(a_ub), b_ub=np.array(b_ub), bounds=bounds, method="highs"
    )
    if result.status != 0:
        return None
    return -float(result.fun) if served else float(result.fun)


CASES = [(objective, seed) for objective, count in INSTANCES.items() for seed in range(count)]


@pytest.mark.parametrize(("objective", "seed"), CASES, ids=[f"{o.value}-{s}" for o, s in CASES])
def test_mip_matches_brute_force(catalog, objective, seed):
    sc = _instance(seed, objective)
    expected = brute_force(sc, catalog)
    result = solve_checked(sc, catalog, with_shadow_prices=False, with_baselines=False)
    if expected is None:
        assert result.status == "infeasible"
        assert result.explanation
        return
    assert result.status == "optimal"
    found = result.plan.tco_usd if objective is Objective.min_tco else result.plan.outcome.objective
    assert found == pytest.approx(expected, rel=1e-6, abs=1e-6)
