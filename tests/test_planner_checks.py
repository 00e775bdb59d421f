"""The plan checker catches corrupted plans; shadow prices agree with finite differences;
infeasible scenarios are explained in user terms; a roofline-driven plan checks out."""

from __future__ import annotations

import pandas as pd
import pyomo.environ as pyo
import pytest

from rackplan.models.scenario import Policy, ServingMode, WorkloadClass
from rackplan.planner.core.data import prepare
from rackplan.planner.core.shadow import fix_integers, restore_integers
from rackplan.planner.core.solve import PlanSolver, SolveOptions
from rackplan.planner.core.verify import verify_plan
from tests.planning import (
    Demand,
    RackOption,
    disaggregated_class,
    measured,
    periods,
    scenario,
    solve_checked,
)


def _base(**changes):
    fields = {
        "periods": periods("P1", "P2"),
        "classes": (disaggregated_class(),),
        "demand": tuple(
            Demand(
                period=p, workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            )
            for p in ("P1", "P2")
        ),
        "racks": (
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4),
        ),
        "measured_rates": measured("hgx-h100", "chat", 4000, 1000, 9),
    }
    return scenario(**(fields | changes))


@pytest.fixture(scope="module")
def solved(catalog):
    sc = _base()
    return sc, solve_checked(sc, catalog).plan


def _corrupt(plan, table: str, change) -> object:
    frame = getattr(plan, table).copy()
    change(frame)
    return plan.with_extras(**{table: frame})


@pytest.mark.parametrize(
    ("table", "change", "check"),
    [
        ("purchases", lambda f: f.__setitem__("racks_bought", f["racks_bought"] - 1), "fleet"),
        ("fleet", lambda f: f.__setitem__("racks_installed", f["racks_installed"] + 1), "fleet"),
        ("allocation", lambda f: f.__setitem__("racks", f["racks"] * 0.5), "demand"),
        ("allocation", lambda f: f.__setitem__("racks", f["racks"] * 3), "capacity"),
        (
            "allocation",
            lambda f: f.__setitem__(
                "output_tokens_per_s_per_rack", f["output_tokens_per_s_per_rack"] * 2
            ),
            "rate",
        ),
    ],
)
def test_checker_catches_a_corrupted_plan(catalog, solved, table, change, check):
    sc, plan = solved
    assert verify_plan(plan, sc, catalog) == []
    problems = verify_plan(_corrupt(plan, table, change), sc, catalog)
    assert check in {p.check for p in problems}, problems


def test_checker_catches_a_wrong_cost(catalog, solved):
    sc, plan = solved
    problems = verify_plan(plan.with_extras(tco_usd=plan.tco_usd * 1.01), sc, catalog)
    assert [p.check for p in problems] == ["cost"]


def test_checker_catches_a_broken_power_cap(catalog, solved):
    sc, plan = solved
    tight = sc.model_copy(update={"periods": periods("P1", "P2", power_cap_mw=0.05)})
    assert "power" in {p.check for p in verify_plan(plan, tight, catalog)}


def test_checker_recomputes_roofline_slas(catalog):
    """A plan from the roofline: the checker recomputes every rate and latency from physics;
    claiming a faster TPOT than the physics gives is caught as a rate/SLA mismatch."""
    cls = WorkloadClass(
        name="chat",
        llm="llama-3.1-70b",
        input_tokens=2000,
        output_tokens=400,
        ttft_ms=2000,
        tpot_ms=40,
    )
    sc = scenario(
        periods=periods("P1", "P2"),
        classes=(cls,),
        demand=(
            Demand(period="P1", workload_class="chat", requests_per_s=500),
            Demand(period="P2", workload_class="chat", requests_per_s=900),
        ),
        racks=(
            RackOption(rack="gb200-nvl72"),
            RackOption(rack="vr-cpx-144", first_period="P2"),
            RackOption(rack="hgx-h200", installed=2),
        ),
    )
    plan = solve_checked(sc, catalog).plan
    assert len(plan.allocation) > 0
    assert set(plan.allocation["source"]) == {"roofline"}
    stricter = sc.model_copy(update={"classes": (cls.model_copy(update={"tpot_ms": 1.0}),)})
    assert "sla" in {p.check for p in verify_plan(plan, stricter, catalog)}


def _demand_lp_objective(solver: PlanSolver) -> float:
    fixed = fix_integers(solver)
    try:
        outcome = solver.solve()
        return outcome.objective
    finally:
        restore_integers(fixed)


def test_demand_shadow_price_matches_finite_difference(catalog):
    """d(TCO)/d(demand) from the LP dual (integers fixed) equals the change in the LP optimum
    when the decode demand of one period is raised by 1 token/s."""
    sc = _base(
        racks=(
            RackOption(
                rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4, installed=20
            ),
        )
    )
    result = solve_checked(sc, catalog)
    prices = result.plan.shadow_prices
    row = prices[prices["constraint"] == "demand_cover[chat,decode,P1]"].iloc[0]
    per_token = row["value"] / 1000.0 * 0.5  # back to $ per token/s of the row (ρ = 0.5)
    solver = result.solver
    solver.enable_variable_updates(True)
    base = _demand_lp_objective(solver)
    demand = pyo.value(solver.model.demand["chat", "decode", "P1"])
    solver.set_demand("chat", "decode", "P1", demand + 1.0)
    raised = _demand_lp_objective(solver)
    solver.set_demand("chat", "decode", "P1", demand)
    assert raised - base == pytest.approx(per_token, rel=1e-4)
    assert per_token > 0


def test_power_cap_shadow_price_is_labelled_and_matches_a_resolve(catalog):
    """Under a tight cap the power price comes from a MIP re-solve; re-solving by hand with
    the same step gives the same saving."""
    sc = _base(
        periods=periods("P1", "P2", power_cap_mw=0.08),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4),
            RackOption(rack="hgx-b200", capex_usd=3e6, power_kw_at_load=8, power_kw_idle=3),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 9)
        + measured("hgx-b200", "chat", 6000, 1500, 7),
    )
    result = solve_checked(sc, catalog)
    prices = result.plan.shadow_prices
    power = prices[prices["constraint"].str.startswith("power_cap")]
    assert len(power) and power["method"].str.startswith("finite difference").all()
    row = power.iloc[0]
    step = float(row["method"].split("+")[1].split(" ")[0])
    relaxed = sc.model_copy(
        update={
            "periods": tuple(
                p.model_copy(
                    update={
                        "power_cap_mw": p.power_cap_mw + (step if p.name == row["period"] else 0)
                    }
                )
                for p in sc.periods
            )
        }
    )
    again = solve_checked(relaxed, catalog, with_shadow_prices=False, with_baselines=False)
    assert (result.plan.tco_usd - again.plan.tco_usd) / step == pytest.approx(
        row["value"], rel=1e-6
    )


INFEASIBLE = {
    "power cap": (
        dict(periods=periods("P1", "P2", power_cap_mw=0.05)),
        ["power cap in P1 short by 0.03 MW", "power cap in P2 short by 0.03 MW"],
    ),
    "budget": (
        dict(periods=periods("P1", "P2", capex_budget_usd=5e6)),
        ["capex budget in P1 short by $3.0M"],
    ),
    "floor space": (dict(floor_space_racks=6), ["floor space in P1 short by 2.0 rack positions"]),
    "supply": (
        dict(
            racks=(
                RackOption(
                    rack="hgx-h100",
                    capex_usd=1e6,
                    power_kw_at_load=10,
                    power_kw_idle=4,
                    supply_limit_per_period=3,
                ),
            )
        ),
        ["supply of hgx-h100 in P1 short by 5.0 racks"],
    ),
}


@pytest.mark.parametrize("case", sorted(INFEASIBLE))
def test_infeasible_scenarios_are_explained(catalog, case):
    """8 racks (80 kW) are needed in each period; each case withholds part of that."""
    changes, expected = INFEASIBLE[case]
    result = solve_checked(_base(**changes), catalog)
    assert result.status == "infeasible" and result.plan is None
    text = "\n".join(result.explanation)
    for line in expected:
        assert line in text, text


def test_unreachable_sla_is_named_with_the_best_achievable(catalog):
    cls = WorkloadClass(
        name="voice",
        llm="llama-3.1-70b",
        input_tokens=500,
        output_tokens=200,
        ttft_ms=300,
        tpot_ms=0.05,
    )
    sc = scenario(
        periods=periods("P1"),
        classes=(cls,),
        demand=(Demand(period="P1", workload_class="voice", requests_per_s=10),),
        racks=(RackOption(rack="gb200-nvl72"), RackOption(rack="groq3-lpx")),
    )
    result = solve_checked(sc, catalog)
    assert result.status == "infeasible"
    text = "\n".join(result.explanation)
    assert "class 'voice': TPOT 0.05 ms unreachable" in text
    assert "groq3-lpx: best" in text and "gb200-nvl72: best" in text


def test_llm_that_fits_no_rack(catalog):
    """DeepSeek-V3 at BF16 is 1,342 GB: ⌈1342 / (0.23·0.9)⌉ = 6,483 LPU v1 chips = 102 racks,
    beyond the 16-rack replica limit."""
    cls = WorkloadClass(
        name="big", llm="deepseek-v3", input_tokens=500, output_tokens=200, precision="bf16"
    )
    sc = scenario(
        periods=periods("P1"),
        classes=(cls,),
        demand=(Demand(period="P1", workload_class="big", requests_per_s=1),),
        racks=(RackOption(rack="groqrack-v1"),),
    )
    result = solve_checked(sc, catalog)
    assert result.status == "infeasible"
    assert result.explanation == (
        "class 'big': deepseek-v3 fits no rack type in the scenario (weights 1342 GB at bf16)",
    )


def test_demand_before_any_rack_is_available(catalog):
    sc = _base(
        racks=(
            RackOption(
                rack="hgx-h100",
                capex_usd=1e6,
                power_kw_at_load=10,
                power_kw_idle=4,
                first_period="P2",
            ),
        )
    )
    result = solve_checked(sc, catalog)
    assert result.status == "infeasible"
    assert (
        "class 'chat' has demand in P1 but no rack type that serves it is available yet "
        "(hgx-h100 from P2)" in result.explanation
    )


def test_time_limit_returns_incumbent_marked(catalog):
    """A 0-second limit on a real scenario: either no solution (said so) or an incumbent whose
    status says time_limit — never a silent 'optimal'."""
    cls = WorkloadClass(
        name="chat",
        llm="llama-3.1-70b",
        input_tokens=2000,
        output_tokens=400,
        ttft_ms=2000,
        tpot_ms=40,
    )
    sc = scenario(
        periods=periods("P1", "P2", "P3"),
        classes=(cls,),
        demand=tuple(
            Demand(period=p, workload_class="chat", requests_per_s=300 * (i + 1))
            for i, p in enumerate(("P1", "P2", "P3"))
        ),
        racks=(
            RackOption(rack="gb200-nvl72"),
            RackOption(rack="hgx-h200"),
            RackOption(rack="vr-nvl72"),
        ),
        policy=Policy(max_rack_types=1, integer_replicas=True),
    )
    data = prepare(sc, catalog)
    outcome = PlanSolver(data, SolveOptions(time_limit_s=0.0)).solve()
    assert outcome.status in {"time_limit", "no_solution", "optimal"}
    if outcome.status == "time_limit":
        assert outcome.gap is not None


def test_k_rack_types_limit(catalog):
    """Two types would be cheapest (b200 for prefill, h100 for decode); K = 1 forces one."""
    sc = _base(
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4),
            RackOption(rack="hgx-b200", capex_usd=1.5e6, power_kw_at_load=10, power_kw_idle=4),
        ),
        measured_rates=measured("hgx-h100", "chat", 1000, 1000, 9)
        + measured("hgx-b200", "chat", 8000, 1000, 9),
    )
    free = solve_checked(sc, catalog).plan
    assert set(free.purchases["rack"]) == {"hgx-h100", "hgx-b200"}
    limited = solve_checked(
        sc.model_copy(update={"policy": Policy(max_rack_types=1)}), catalog
    ).plan
    assert limited.purchases["rack"].nunique() == 1
    assert limited.tco_usd >= free.tco_usd


def test_aggregated_only_class_uses_aggregated_columns(catalog):
    cls = WorkloadClass(
        name="chat",
        llm="llama-3.1-8b",
        input_tokens=1000,
        output_tokens=500,
        ttft_ms=1000,
        tpot_ms=30,
        modes=frozenset({ServingMode.aggregated}),
    )
    sc = scenario(
        periods=periods("P1"),
        classes=(cls,),
        demand=(Demand(period="P1", workload_class="chat", requests_per_s=100),),
        racks=(RackOption(rack="hgx-h100"),),
    )
    plan = solve_checked(sc, catalog).plan
    assert set(plan.allocation["mode"]) == {"aggregated"}
    assert isinstance(plan.allocation, pd.DataFrame)


def test_checker_derives_the_second_rate_itself(catalog, solved):
    """A plan claiming prompt capacity from its decode rows (and no prefill rows) is caught."""
    sc, plan = solved
    frame = plan.allocation[plan.allocation["mode"] == "decode"].copy()
    frame["prompt_tokens_per_s_per_rack"] = 1e9
    problems = verify_plan(plan.with_extras(allocation=frame), sc, catalog)
    assert "demand" in {p.check for p in problems}


def test_checker_catches_partial_replicas_negative_buys_and_wrong_modes(catalog, solved):
    sc, plan = solved
    whole = sc.model_copy(
        update={"policy": sc.policy.model_copy(update={"integer_replicas": True})}
    )
    halves = plan.allocation.copy()
    halves["racks"] = halves["racks"] + 0.5
    assert "replicas" in {
        p.check for p in verify_plan(plan.with_extras(allocation=halves), whole, catalog)
    }
    negative = plan.purchases.copy()
    negative["racks_bought"] = -negative["racks_bought"]
    assert "lots" in {
        p.check for p in verify_plan(plan.with_extras(purchases=negative), sc, catalog)
    }
    aggregated_only = sc.model_copy(
        update={
            "classes": (
                sc.classes[0].model_copy(update={"modes": frozenset({ServingMode.aggregated})}),
            )
        }
    )
    assert "mode" in {p.check for p in verify_plan(plan, aggregated_only, catalog)}


def test_checker_refuses_batches_beyond_the_engine_and_memory_limits(catalog):
    """A roofline plan whose allocation row claims a batch beyond the mode's limit (engine cap
    of 2048 sequences, memory, weights within max_weight_share on decode replicas) is caught."""
    from pathlib import Path

    from rackplan.planner.core.run import plan_scenario
    from rackplan.planner.io.scenario_io import load_scenario

    scenario = load_scenario(
        Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json"
    )
    result = plan_scenario(scenario, catalog, with_shadow_prices=False, with_baselines=False)
    assert verify_plan(result.plan, scenario, catalog) == []
    allocation = result.plan.allocation.copy()
    row = allocation.index[allocation["mode"] != "prefill"][0]
    allocation.loc[row, "batch_size"] = 100_000
    corrupted = result.plan.with_extras(allocation=allocation)
    problems = [str(v) for v in verify_plan(corrupted, scenario, catalog)]
    assert any("exceeds the engine and memory limit" in p for p in problems)


def test_a_context_no_replica_holds_is_explained_not_a_crash(catalog):
    """GroqRack v1 holds Llama-3.1-70B's 16-bit weights but not one 40k-token request's KV
    cache beside them: the plan is infeasible and says why (it used to raise IndexError)."""
    cls = WorkloadClass(
        name="research",
        llm="llama-3.1-70b",
        input_tokens=40_000,
        output_tokens=1_000,
        ttft_ms=20_000,
        tpot_ms=50,
        precision="bf16",
    )
    sc = scenario(
        periods=periods("P1"),
        classes=(cls,),
        demand=(Demand(period="P1", workload_class="research", requests_per_s=1),),
        racks=(RackOption(rack="groqrack-v1"),),
    )
    result = solve_checked(sc, catalog)
    assert result.status == "infeasible"
    text = "\n".join(result.explanation)
    assert "not one request's KV cache beside it" in text, text
