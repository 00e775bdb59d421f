"""Brute force: enumerate every integer purchase plan of tiny scenarios, price each with an
independent LP (scipy) per period, and check the MIP finds the same optimum every time."""

from __future__ import annotations

import itertools
import random
from functools import cache

import numpy as np
import pytest
from scipy.optimize import linprog

from rackplan.models.scenario import Economics, MeasuredRate, Policy, ServingMode, WorkloadClass
from rackplan.planner.data import prepare
from tests.planning import Demand, RackOption, periods, scenario, solve_checked

RACKS = ("hgx-h100", "hgx-b200")
MAX_LOTS = 3
INSTANCES = 60


def _instance(seed: int):
    rng = random.Random(seed)
    period_names = ("P1", "P2")[: rng.choice((1, 2))]
    cap = rng.choice((None, None, 0.05, 0.08))
    per = periods(
        *period_names,
        hours=rng.choice((500.0, 2190.0)),
        price=rng.uniform(0.05, 0.2),
        pue=rng.choice((1.0, 1.3)),
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
        for rack in RACKS:
            power = rng.uniform(8, 40)
            for mode, rate in (
                ("prefill", rng.uniform(2000, 9000)),
                ("decode", rng.uniform(500, 3000)),
            ):
                measured.append(
                    MeasuredRate(
                        rack=rack,
                        workload_class=name,
                        mode=mode,
                        tokens_per_s_per_rack=rate,
                        ttft_ms=100,
                        tpot_ms=10,
                        power_kw=power * rng.uniform(0.7, 1.0),
                        source="generated",
                    )
                )
            if aggregated:
                measured.append(
                    MeasuredRate(
                        rack=rack,
                        workload_class=name,
                        mode="aggregated",
                        tokens_per_s_per_rack=rng.uniform(300, 1500),
                        ttft_ms=500,
                        tpot_ms=20,
                        power_kw=power,
                        source="generated",
                    )
                )
        for p in period_names:
            demand.append(
                Demand(period=p, workload_class=name, output_tokens_per_s=rng.uniform(100, 700))
            )
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
        policy=Policy(spare_fraction=rng.choice((0.0, 0.1))),
    )


def brute_force(sc, catalog) -> float | None:
    """Cheapest TCO over every purchase plan (lots 0…MAX_LOTS per rack and period)."""
    data = prepare(sc, catalog)
    names = [p.name for p in sc.periods]
    options = {o.rack: o for o in sc.racks}
    keys = [(r, t) for r in RACKS for t in range(len(names))]
    spare = sc.policy.spare_fraction

    @cache
    def allocation_cost(t: int, installed: tuple[float, ...]) -> float | None:
        period = sc.periods[t]
        cols = data.columns
        cost = np.array(
            [
                (c.power_kw - data.racks[c.rack].power_kw_idle)
                * period.hours
                * period.pue
                * period.electricity_usd_per_kwh
                for c in cols
            ]
        )
        a_ub, b_ub = [], []
        for i, r in enumerate(RACKS):
            a_ub.append([1.0 if c.rack == r else 0.0 for c in cols])
            b_ub.append((1 - spare) * installed[i])
        for cls in sc.classes:
            for phase, demand in (("decode", data.demand_decode), ("prefill", data.demand_prefill)):
                need = demand[(cls.name, names[t])]
                if need > 0:
                    a_ub.append(
                        [
                            -(c.decode_rate if phase == "decode" else c.prefill_rate)
                            if c.workload_class == cls.name
                            else 0.0
                            for c in cols
                        ]
                    )
                    b_ub.append(-need)
        result = linprog(
            cost, A_ub=np.array(a_ub), b_ub=np.array(b_ub), bounds=(0, None), method="highs"
        )
        return float(result.fun) if result.status == 0 else None

    best = None
    for lots in itertools.product(range(MAX_LOTS + 1), repeat=len(keys)):
        bought = {k: n * options[k[0]].lot_size for k, n in zip(keys, lots, strict=True)}
        total, years, feasible = 0.0, 0.0, True
        for t, period in enumerate(sc.periods):
            installed = []
            for r in RACKS:
                life = options[r].lifetime_periods
                count = options[r].installed + sum(
                    bought[(r, k)] for k in range(t + 1) if life is None or t < k + life
                )
                installed.append(float(count))
            spec = {r: data.racks[r] for r in RACKS}
            it_kw = sum(n * spec[r].power_kw_at_load for n, r in zip(installed, RACKS, strict=True))
            if (
                period.power_cap_mw is not None
                and it_kw * period.pue / 1000 > period.power_cap_mw + 1e-9
            ):
                feasible = False
                break
            lp = allocation_cost(t, tuple(installed))
            if lp is None:
                feasible = False
                break
            factor = (1 + sc.economics.discount_rate_per_year) ** (-years)
            capex = sum(bought[(r, t)] * spec[r].capex_usd for r in RACKS)
            idle = (
                period.hours
                * period.pue
                * period.electricity_usd_per_kwh
                * sum(n * spec[r].power_kw_idle for n, r in zip(installed, RACKS, strict=True))
            )
            maintenance = (
                sc.economics.maintenance_fraction_per_year
                * period.hours
                / 8760
                * sum(n * spec[r].capex_usd for n, r in zip(installed, RACKS, strict=True))
            )
            total += factor * (capex + idle + maintenance + lp)
            years += period.hours / 8760
        if feasible and (best is None or total < best):
            best = total
    return best


@pytest.mark.parametrize("seed", range(INSTANCES))
def test_mip_matches_brute_force(catalog, seed):
    sc = _instance(seed)
    expected = brute_force(sc, catalog)
    result = solve_checked(sc, catalog, with_shadow_prices=False, with_baselines=False)
    if expected is None:
        assert result.status == "infeasible"
        assert result.explanation
        return
    assert result.status == "optimal"
    assert result.plan.tco_usd == pytest.approx(expected, rel=1e-6)
