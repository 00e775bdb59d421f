"""Plans under an uncertain forecast: futures in the scenario, the two-stage stochastic plan
(known answers by hand, VSS ≥ 0 and EVPI ≥ 0), stress tests, and Dask scale-out (same seed,
same result on 1 and 2 workers; a killed worker loses nothing)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rackplan.models.scenario import Demand, Futures, FutureScale, NamedFuture, SampledQuantity
from rackplan.planner.core.data import prepare
from rackplan.planner.core.distributed import DaskRunner, dask_client, scheduler_address
from rackplan.planner.core.futures import (
    BASE,
    FutureDraw,
    named_draws,
    sample_draw,
    sample_seed,
    scenario_draws,
)
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.solve import SolveOptions
from rackplan.planner.core.stochastic import StochasticOptions, cvar, robust_plan, solve_extensive
from rackplan.planner.core.stress import (
    FixedPlan,
    base_result,
    run_task,
    stress_test,
)
from rackplan.planner.io.scenario_io import load_scenario
from rackplan.planner.io.spreadsheets import read_scenario, write_scenario
from tests.planning import RackOption, disaggregated_class, measured, periods, scenario

EXACT = {"rel_gap": 1e-9, "time_limit_s": 30}


def tiny(n_periods: int = 1, output_tokens_per_s: float = 800.0, futures=None):
    """One class on hgx-h100 with measured rates (prefill 4000, decode 1000 tokens/s per rack),
    electricity free, racks $1M, no discounting or maintenance: cost = $1M × racks bought.

    At max utilisation 0.5, ``output_tokens_per_s`` = 800 needs 1600/1000 decode racks and
    (2 × 800)/0.5/4000 = 0.8 prefill racks: 2.4 racks, so 3 racks (demand × g needs 3·g/1.25
    … computed per test)."""
    names = [f"P{t}" for t in range(n_periods)]
    return scenario(
        periods=periods(*names, price=0.0),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(period=p, workload_class="chat", output_tokens_per_s=output_tokens_per_s)
            for p in names
        ),
        racks=(RackOption(rack="hgx-h100", capex_usd=1e6),),
        measured_rates=measured("hgx-h100", "chat", prefill=4000, decode=1000, power_kw=10),
        futures=futures,
    )


def demand_future(name: str, probability: float, scale: float, period: str | None = None):
    return NamedFuture(
        name=name,
        probability=probability,
        scales=(FutureScale(parameter="demand", period=period, scale=scale),),
    )


# ---------------------------------------------------------------------------- futures
def test_futures_table_round_trips_through_csv_and_xlsx(tmp_path):
    futures = Futures(
        named=(
            demand_future("bull", 0.3, 1.5),
            NamedFuture(
                name="bear",
                probability=0.7,
                scales=(
                    FutureScale(parameter="demand", period="P1", scale=0.5),
                    FutureScale(parameter="capex", target="hgx-h100", scale=1.2),
                ),
            ),
        )
    )
    sc = tiny(2, futures=futures)
    for target in (tmp_path / "folder", tmp_path / "book.xlsx"):
        write_scenario(sc, target)
        assert read_scenario(target).futures == futures
    sampled = Futures(
        sampled=(
            SampledQuantity(parameter="demand_growth", distribution="lognormal", sigma=0.1),
            SampledQuantity(parameter="rate", distribution="band"),
        )
    )
    write_scenario(tiny(2, futures=sampled), tmp_path / "sampled")
    assert read_scenario(tmp_path / "sampled").futures == sampled


def test_futures_table_problems_are_reported_with_rows(tmp_path):
    write_scenario(tiny(1), tmp_path / "s")
    (tmp_path / "s" / "futures.csv").write_text(
        "future,probability,parameter,target,scale\n"
        "bull,60%,demand,nosuchclass,1.5\n"
        "bear,30%,demand,,0.5\n",
        encoding="utf-8",
    )
    from rackplan.catalogs.errors import InputError

    with pytest.raises(InputError) as info:
        read_scenario(tmp_path / "s")
    text = " ".join(str(p) for p in info.value.problems)
    assert "add up to 1" in text or "nosuchclass" in text


def test_sample_seeds_are_spawned_children():
    """Sample i's seed is child i of SeedSequence(seed).spawn: independent of batching."""
    import numpy as np

    children = np.random.SeedSequence(7).spawn(5)
    assert sample_seed(7, 3).generate_state(4).tolist() == children[3].generate_state(4).tolist()


def test_named_and_sampled_draws(catalog):
    futures = Futures(named=(demand_future("bull", 0.5, 1.5, "P1"), demand_future("b", 0.5, 1)))
    data = prepare(tiny(2, futures=futures), catalog)
    bull, _ = named_draws(data, futures)
    assert bull.demand_factor("chat", "P1") == 1.5
    assert bull.demand_factor("chat", "P0") == 1.0
    growth = SampledQuantity(parameter="demand_growth", distribution="uniform", low=2, high=2)
    draw = sample_draw(data, (growth,), seed=1, index=0, probability=1.0)
    assert draw.demand_factor("chat", "P0") == 2.0
    assert draw.demand_factor("chat", "P1") == 4.0  # compounding
    band = SampledQuantity(parameter="rate", distribution="band")
    assert sample_draw(data, (band,), 1, 0, 1.0).rate_factor(0) == 1.0  # measured: no band


# ---------------------------------------------------------------------------- stochastic plan
def test_single_future_stochastic_plan_equals_the_deterministic_plan(catalog):
    sc = load_scenario(Path(__file__).parents[1] / "examples" / "sram-decode-pays")
    data = prepare(sc, catalog)
    deterministic = plan_scenario(
        sc, catalog, SolveOptions(**EXACT), with_baselines=False, with_shadow_prices=False
    )
    stochastic = solve_extensive(data, [BASE], StochasticOptions(commit_periods=2, **EXACT))
    assert stochastic.objective_usd == pytest.approx(deterministic.plan.outcome.objective, rel=1e-7)
    bought = {(r.rack, r.period): r.racks_bought for r in deterministic.plan.purchases.itertuples()}
    assert stochastic.purchases[0] == pytest.approx(bought)


def test_two_futures_one_period_by_hand(catalog):
    """Bull (p = ½, demand × 1.5) and bear (p = ½, × 0.5), one period, all ordered now (K = 1).

    Bull needs 1.5 × 2.4 = 3.6 → 4 racks, bear 0.5 × 2.4 = 1.2 → 2 racks; serving every future
    means buying 4: RP = $4M. The mean future (× 1.0) buys 3, which cannot serve bull: EEV
    infeasible, VSS unbounded (None). Hindsight: 4 and 2, WS = $3M, EVPI = $1M; regret bull 0,
    bear $2M. Both futures cost $4M, so CVaR = $4M and with w = 1 the objective is $8M.
    """
    data = prepare(tiny(1), catalog)
    draws = [
        FutureDraw("bull", 0.5, {("chat", "P0"): 1.5}),
        FutureDraw("bear", 0.5, {("chat", "P0"): 0.5}),
    ]
    plan = robust_plan(data, draws, StochasticOptions(commit_periods=1, **EXACT))
    assert plan.rp.objective_usd == pytest.approx(4e6)
    assert plan.rp.commit == {("hgx-h100", "P0"): 4}
    assert plan.ev.commit == {("hgx-h100", "P0"): 3}
    assert plan.eev.objective_usd is None and plan.vss_usd is None
    assert plan.ws_usd == pytest.approx(3e6)
    assert plan.evpi_usd == pytest.approx(1e6)
    regret = plan.future_table().set_index("future")["regret_usd"]
    assert regret["bull"] == pytest.approx(0, abs=1e-3)
    assert regret["bear"] == pytest.approx(2e6)
    risky = robust_plan(data, draws, StochasticOptions(commit_periods=1, cvar_weight=1, **EXACT))
    assert risky.rp.objective_usd == pytest.approx(8e6)


def test_two_futures_recourse_by_hand(catalog):
    """Two periods; only P1's demand is uncertain: bull (p = ¼) × 2 needs 4.8 → 5 racks, bear
    (p = ¾) × 1 needs 3. P0 needs 3 racks and is ordered now (K = 1); P1 adapts.

    RP buys 3 in P0; bull buys 2 more in P1: E[cost] = ¼·5 + ¾·3 = $3.5M. Hindsight is the
    same (nothing is gained by knowing P1 early), so EVPI = 0; the mean future (× 1.25: 3 → 3
    racks in P0) orders the same 3 racks, so EEV = RP and VSS = 0.
    """
    data = prepare(tiny(2), catalog)
    draws = [
        FutureDraw("bull", 0.25, {("chat", "P1"): 2.0}),
        FutureDraw("bear", 0.75, {}),
    ]
    plan = robust_plan(data, draws, StochasticOptions(commit_periods=1, **EXACT))
    assert plan.rp.objective_usd == pytest.approx(3.5e6)
    assert plan.rp.purchases[0] == {("hgx-h100", "P0"): 3, ("hgx-h100", "P1"): 2}
    assert plan.rp.purchases[1] == {("hgx-h100", "P0"): 3}
    assert plan.vss_usd == pytest.approx(0, abs=1e-3)
    assert plan.evpi_usd == pytest.approx(0, abs=1e-3)


def test_service_share_lets_the_rare_future_fall_short_at_the_penalty(catalog):
    """One period, bull (p = 0.1) × 1.5, base (p = 0.9) × 1. With 90 % of futures served and a
    small penalty, the plan buys base's 3 racks and bull reports unserved tokens; at 100 % it
    buys 4."""
    data = prepare(tiny(1), catalog)
    draws = [FutureDraw("bull", 0.1, {("chat", "P0"): 1.5}), FutureDraw("base", 0.9, {})]
    share = StochasticOptions(service_share=0.9, penalty_usd_per_million_tokens=1e-3, **EXACT)
    plan = robust_plan(data, draws, share)
    assert plan.rp.commit == {("hgx-h100", "P0"): 3}
    table = plan.future_table().set_index("future")
    assert table.loc["bull", "shortfall"] and not table.loc["base", "shortfall"]
    assert table.loc["bull", "unserved_tokens"] > 0
    full = robust_plan(data, draws, StochasticOptions(**EXACT))
    assert full.rp.commit == {("hgx-h100", "P0"): 4}


def test_cvar_of_a_discrete_distribution():
    """Costs 1, 2, 10 with p = 0.5, 0.3, 0.2: CVaR_0.8 is the worst 20 % = 10; CVaR_0.5 averages
    the worst half: (0.3·2 + 0.2·10)/0.5 = 5.2."""
    assert cvar([1, 2, 10], [0.5, 0.3, 0.2], 0.8) == pytest.approx(10)
    assert cvar([1, 2, 10], [0.5, 0.3, 0.2], 0.5) == pytest.approx(5.2)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bull=st.floats(1.0, 2.5),
    bear=st.floats(0.2, 1.0),
    p=st.floats(0.1, 0.9),
    shortfall=st.booleans(),
    cvar_weight=st.sampled_from([0.0, 0.5]),
)
def test_vss_and_evpi_are_never_negative(catalog, bull, bear, p, shortfall, cvar_weight):
    """Tiny two-period instances, K = 1, bull and bear scaling both periods."""
    data = prepare(tiny(2), catalog)
    draws = [
        FutureDraw("bull", p, {("chat", t): bull for t in ("P0", "P1")}),
        FutureDraw("bear", 1 - p, {("chat", t): bear for t in ("P0", "P1")}),
    ]
    options = StochasticOptions(
        cvar_weight=cvar_weight,
        service_share=0.0 if shortfall else 1.0,
        penalty_usd_per_million_tokens=0.05 if shortfall else None,
        **EXACT,
    )
    plan = robust_plan(data, draws, options)
    assert plan.rp.feasible
    tolerance = 1e-6 * plan.rp.objective_usd
    assert plan.evpi_usd is not None and plan.evpi_usd >= -tolerance
    assert plan.vss_usd is None or plan.vss_usd >= -tolerance  # None: EEV infeasible, VSS = ∞


# ---------------------------------------------------------------------------- stress tests
def _tiny_plan(catalog, sc):
    result = plan_scenario(
        sc, catalog, SolveOptions(**EXACT), with_baselines=False, with_shadow_prices=False
    )
    return prepare(sc, catalog), FixedPlan.from_json(result.plan.as_json()), result.plan


def test_stress_against_the_plans_own_base_future_shows_no_shortfall(catalog):
    sc = load_scenario(Path(__file__).parents[1] / "examples" / "sram-decode-pays")
    only_base = Futures(named=(NamedFuture(name="base", probability=1.0),))
    sc = sc.model_copy(update={"futures": only_base})
    data, fixed, plan = _tiny_plan(catalog, sc)
    report = stress_test(data, fixed, samples=20, seed=3)
    summary = report.summary()
    assert summary["probability_of_shortfall"] == 0.0
    assert summary["expected_unserved_tokens"] == pytest.approx(0.0, abs=1.0)
    assert summary["tco_mean_usd"] == pytest.approx(plan.tco_usd, rel=1e-6)
    assert base_result(data, fixed).tco_usd == pytest.approx(plan.tco_usd, rel=1e-6)


def test_stress_finds_the_shortfall_of_a_bull_future(catalog):
    """The plan buys 3 racks for 2.4 racks of need; × 1.5 needs 3.6: every sample falls short,
    by (3.6 − 3)/3.6 of … at least some tokens, in the one class."""
    bull = Futures(named=(demand_future("bull", 1.0, 1.5),))
    data, fixed, _ = _tiny_plan(catalog, tiny(1, futures=bull))
    report = stress_test(data, fixed, samples=5, seed=0)
    assert report.summary()["probability_of_shortfall"] == 1.0
    assert report.class_table().loc[0, "p95_unserved_tokens"] > 0


# ---------------------------------------------------------------------------- Dask
def _sampled_tiny(catalog):
    growth = SampledQuantity(parameter="demand_growth", distribution="lognormal", sigma=0.15)
    futures = Futures(sampled=(growth,))
    return _tiny_plan(catalog, tiny(2, futures=futures))


def test_scheduler_address_from_the_environment(monkeypatch):
    monkeypatch.setenv("RACKPLAN_DASK_SCHEDULER", "tcp://example:8786")
    assert scheduler_address(None) == "tcp://example:8786"
    assert scheduler_address("tcp://other:1") == "tcp://other:1"


def test_same_seed_same_result_on_one_and_two_dask_workers(catalog):
    data, fixed, _ = _sampled_tiny(catalog)
    tables = []
    for workers in (1, 2):
        with dask_client(None, workers, processes=False) as client:
            report = stress_test(data, fixed, 60, seed=11, runner=DaskRunner(client), batch=7)
        tables.append(report.sample_table())
    sequential = stress_test(data, fixed, 60, seed=11, batch=60).sample_table()
    assert tables[0].equals(tables[1])
    assert tables[0].equals(sequential)
    other = stress_test(data, fixed, 60, seed=12).sample_table()
    assert not other["tco_usd"].equals(sequential["tco_usd"]) or not other[
        "unserved_tokens"
    ].equals(sequential["unserved_tokens"])


def slow_task(task):
    """A stress task that takes long enough to be caught by a worker's death."""
    time.sleep(0.3)
    return run_task(task)


def test_a_worker_killed_mid_sweep_is_retried_and_nothing_is_lost(catalog):
    data, fixed, _ = _sampled_tiny(catalog)
    from rackplan.planner.core.stress import StressTask, sample_batches

    tasks = [StressTask(data, fixed, 5, b) for b in sample_batches(24, 2)]
    expected = [r for t in tasks for r in run_task(t)]
    with dask_client(None, 2, processes=True, timeout_s=60) as client:
        pids = client.run(os.getpid)
        done = []
        killed = threading.Event()

        def progress():
            done.append(1)
            if len(done) == 3 and not killed.is_set():
                os.kill(next(iter(pids.values())), signal.SIGKILL)
                killed.set()

        results = DaskRunner(client, progress)(slow_task, tasks)
    assert killed.is_set()
    flat = [r for batch in results for r in batch]
    assert [r.index for r in flat] == list(range(24))
    assert [r.tco_usd for r in flat] == [r.tco_usd for r in expected]


def test_robust_draws_use_named_futures_or_samples(catalog):
    named = Futures(named=(demand_future("a", 0.5, 1.2), demand_future("b", 0.5, 0.8)))
    data = prepare(tiny(1, futures=named), catalog)
    assert [d.name for d in scenario_draws(data, 99, 0)] == ["a", "b"]
    data = prepare(tiny(1), catalog)
    draws = scenario_draws(data, 4, 0)
    assert len(draws) == 4 and sum(d.probability for d in draws) == pytest.approx(1.0)
