"""The step model's terms: each one only ever lengthens a step, the fixed costs and the SLA
percentile conversions have known answers, and the shipped calibration stays physical."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rackplan.catalogs.loader import load_speed_records
from rackplan.models.base import Phase
from rackplan.models.calibration import FIT_BOUNDS
from rackplan.models.latency import (
    md1_decay_rate,
    md1_wait_quantile_factor,
    queueing_factor,
    tpot_factor,
    ttft_factor,
)
from rackplan.models.operating_points import ReplicaSet
from rackplan.models.roofline import (
    collective_time_s,
    decode_step,
    overlapped,
    replica_hardware,
    speculative_tokens_per_step,
)
from rackplan.models.workload import PRECISIONS, Workload
from tests.conftest import PERFECT

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CHAT = Workload(input_tokens=1000, output_tokens=200)
RACKS = ["hgx-h100", "hgx-b200", "gb200-nvl72", "vr-nvl72", "groq3-lpx"]
LLMS = ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-r1", "gpt-oss-120b"]

engine_terms = st.fixed_dictionaries(
    {
        "attention_bandwidth_ratio": st.floats(0.3, 1.0),
        "step_overhead_us": st.floats(0, 500),
        "layer_overhead_us": st.floats(0, 40),
        "request_overhead_us": st.floats(0, 10),
        "moe_imbalance": st.floats(1.0, 2.0),
        "overlap_exponent": st.floats(1.0, 64.0),
        "gemm_half_efficiency_tokens": st.floats(0, 512),
        "activation_elements_per_layer": st.floats(0, 32),
    }
)


def _decode(catalog, rack_id, llm_id, factors, workload, batch, chips=None):
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    precision = PRECISIONS["fp8"]
    replicas = ReplicaSet.build(rack, llm, precision, workload, PERFECT)
    n = chips if chips is not None else replicas.chips[0]
    hw = replica_hardware(rack, n, precision, factors)
    return decode_step(hw, llm, precision, workload, np.asarray(batch, dtype=float))


@SETTINGS
@given(
    rack_id=st.sampled_from(RACKS),
    llm_id=st.sampled_from(LLMS),
    terms=engine_terms,
    batch=st.integers(1, 4096),
)
def test_engine_terms_never_beat_the_pure_roofline(catalog, rack_id, llm_id, terms, batch):
    """Every added term (attention's own bandwidth, fixed costs, imbalance, imperfect overlap,
    small-GEMM waste, activation traffic) can only lengthen a step: with the same η the step is
    never shorter than the pure max(compute, memory) roofline."""
    pure = _decode(catalog, rack_id, llm_id, PERFECT, CHAT, [batch])
    engine = _decode(catalog, rack_id, llm_id, PERFECT.model_copy(update=terms), CHAT, [batch])
    roofline = np.maximum(pure.compute_s, pure.memory_s) + pure.communication_s
    assert engine.total_s[0] >= roofline[0] * (1 - 1e-12)
    assert engine.total_s[0] >= pure.total_s[0] * (1 - 1e-12)


BATCH_GRID = np.unique(np.round(np.geomspace(1, 4096, 60)))


@SETTINGS
@given(
    rack_id=st.sampled_from(RACKS),
    llm_id=st.sampled_from(LLMS),
    terms=engine_terms,
    speculate=st.booleans(),
)
def test_latency_never_falls_with_batch(catalog, rack_id, llm_id, terms, speculate):
    """``largest_feasible`` needs latency monotone in the batch: decode TPOT, aggregated TPOT,
    and aggregated TTFT once b·E ≥ O, on every replica size, with and without speculation."""
    from rackplan.models.serving import aggregated_rates

    spec = {"speculative_draft_tokens": 3, "speculative_acceptance": 0.6} if speculate else {}
    workload = Workload(input_tokens=1000, output_tokens=200, **spec)
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    factors = PERFECT.model_copy(update=terms)
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], workload, factors)
    accepted = speculative_tokens_per_step(workload)
    for size in range(len(replicas)):
        sizes = np.full(BATCH_GRID.size, size)
        tpot = replicas.latency_ms(Phase.decode, sizes, BATCH_GRID)
        assert (np.diff(tpot) >= -1e-9 * tpot[:-1]).all(), ("decode", size)
        _, agg_tpot, agg_ttft = aggregated_rates(replicas, sizes, BATCH_GRID)
        assert (np.diff(agg_tpot) >= -1e-9 * agg_tpot[:-1]).all(), ("aggregated", size)
        beyond = BATCH_GRID * accepted >= workload.output_tokens
        ttft = agg_ttft[beyond]
        assert (np.diff(ttft) >= -1e-9 * ttft[:-1]).all(), ("aggregated TTFT", size)


@SETTINGS
@given(
    rack_id=st.sampled_from(RACKS),
    llm_id=st.sampled_from(LLMS),
    terms=engine_terms,
    batch=st.integers(1, 2048),
)
def test_step_time_grows_with_context(catalog, rack_id, llm_id, terms, batch):
    factors = PERFECT.model_copy(update=terms)
    longer = Workload(input_tokens=4000, output_tokens=200)
    assert (
        _decode(catalog, rack_id, llm_id, factors, longer, [batch]).total_s[0]
        >= _decode(catalog, rack_id, llm_id, factors, CHAT, [batch]).total_s[0]
    )


def test_aggregated_search_with_speculation_matches_brute_force(catalog):
    """The reviewer's case: H100, Llama-3.1-8B fp8, L 1000, O 300, d 3, α 0.7, p99 TTFT 300 ms,
    TPOT 20 ms. Per replica size the search's batch is the largest one a brute-force scan
    finds meeting both SLAs (TTFT falls with b until b·E = O, not b = O)."""
    from rackplan.models.serving import aggregated_rates, aggregated_sla_points

    workload = Workload(
        input_tokens=1000,
        output_tokens=300,
        ttft_ms=300,
        tpot_ms=20,
        sla_percentile="p99",
        speculative_draft_tokens=3,
        speculative_acceptance=0.7,
    )
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-8b")
    replicas = ReplicaSet.build(
        rack, llm, PRECISIONS["fp8"], workload, catalog.efficiency_for(rack)
    )
    found = {p["chips_per_replica"]: p["batch_size"] for p in aggregated_sla_points(replicas)}
    limits = replicas.aggregated_batch_limits()
    for size in range(len(replicas)):
        batches = np.arange(1, int(limits[size]) + 1, dtype=float)
        if batches.size == 0:
            continue
        _, tpot, ttft = aggregated_rates(replicas, np.full(batches.size, size), batches)
        ok = (tpot <= workload.tpot_ms) & (ttft <= workload.ttft_ms)
        expected = int(batches[ok].max()) if ok.any() else None
        assert found.get(int(replicas.chips[size])) == expected, int(replicas.chips[size])


@pytest.mark.parametrize("term", ["step_overhead_us", "layer_overhead_us", "request_overhead_us"])
def test_each_overhead_lengthens_the_step(catalog, term):
    base = PERFECT.model_copy(update={term: 10.0})
    more = PERFECT.model_copy(update={term: 20.0})
    for batch in (1, 64, 1024):
        t_base = _decode(catalog, "hgx-h100", "llama-3.1-70b", base, CHAT, [batch]).total_s[0]
        t_more = _decode(catalog, "hgx-h100", "llama-3.1-70b", more, CHAT, [batch]).total_s[0]
        assert t_more > t_base


def test_fixed_costs_known_answer(catalog):
    """Llama-3.1-70B (80 layers), batch 32, τ_step 100 µs, τ_layer 10 µs, τ_req 2 µs:
    overhead = 100 + 80·10 + 32·2 = 964 µs, added to the pure step exactly."""
    factors = PERFECT.model_copy(
        update={"step_overhead_us": 100, "layer_overhead_us": 10, "request_overhead_us": 2}
    )
    pure = _decode(catalog, "hgx-h100", "llama-3.1-70b", PERFECT, CHAT, [32])
    costs = _decode(catalog, "hgx-h100", "llama-3.1-70b", factors, CHAT, [32])
    assert costs.overhead_s[0] == pytest.approx(964e-6, rel=1e-12)
    assert costs.total_s[0] - pure.total_s[0] == pytest.approx(964e-6, rel=1e-9)


def test_collectives_reduce_in_16_bits_whatever_the_weights(catalog):
    """An fp8 or fp4 model all-reduces bf16 activations: the same bytes as a bf16 model."""
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-70b")
    times = {}
    for name in ("fp4", "fp8", "bf16"):
        hw = replica_hardware(rack, 8, PRECISIONS[name], PERFECT)
        times[name] = collective_time_s(hw, llm, PRECISIONS[name], np.array([512.0]))[0]
    assert times["fp4"] == times["fp8"] == times["bf16"]
    # known answer: 80 layers · 2 · (8 µs + 2·7/8 · 512·8192·2 B / 450 GB/s)
    expected = 80 * 2 * (8e-6 + 2 * 7 / 8 * 512 * 8192 * 2 / 450e9)
    assert times["fp8"] == pytest.approx(expected, rel=1e-12)


@given(compute=st.floats(0, 1), memory=st.floats(0, 1), p=st.floats(1, 64))
def test_overlap_lies_between_the_max_and_the_sum(compute, memory, p):
    t = overlapped(np.array([compute]), np.array([memory]), p)[0]
    assert max(compute, memory) * (1 - 1e-12) <= t <= (compute + memory) * (1 + 1e-12) + 1e-300


def test_overlap_extremes():
    c, m = np.array([3.0]), np.array([4.0])
    assert overlapped(c, m, 1.0)[0] == pytest.approx(7.0)
    assert overlapped(c, m, 2.0)[0] == pytest.approx(5.0)
    assert overlapped(c, m, 64.0)[0] == 4.0


def test_speculative_decoding_known_answer_and_effect(catalog):
    """d = 3 drafted tokens at α = 0.7: E = (1 − 0.7⁴)/(1 − 0.7) = 2.533 tokens per step. At a
    memory-bound batch the verification step costs little more than a plain step, so TPOT falls
    and tokens/s per replica rise by nearly E."""
    spec = Workload(
        input_tokens=1000, output_tokens=200, speculative_draft_tokens=3, speculative_acceptance=0.7
    )
    assert speculative_tokens_per_step(spec) == pytest.approx((1 - 0.7**4) / 0.3)
    assert speculative_tokens_per_step(CHAT) == 1.0
    rack, llm = catalog.rack("hgx-b200"), catalog.llm("llama-3.1-70b")
    factors = catalog.efficiency_for(rack)
    plain = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], CHAT, factors)
    drafted = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], spec, factors)
    one = np.array([0]), np.array([1.0])
    p_plain, p_spec = plain.decode_points(*one), drafted.decode_points(*one)
    assert p_spec.latency_ms[0] < p_plain.latency_ms[0] / 1.5
    assert p_spec.tokens_per_s_per_rack[0] > 1.5 * p_plain.tokens_per_s_per_rack[0]


def test_speculation_needs_drafted_tokens():
    with pytest.raises(ValueError, match="speculative_draft_tokens"):
        Workload(input_tokens=10, output_tokens=10, speculative_acceptance=0.5)


def test_md1_decay_rate_solves_its_equation():
    for rho in (0.1, 0.5, 0.8, 0.95):
        x = md1_decay_rate(rho)
        assert x > 0
        assert rho * math.expm1(x) == pytest.approx(x, rel=1e-9)


def test_md1_wait_quantile_matches_a_simulated_queue():
    """Independent check: Lindley's recursion W' = max(0, W + S − A) for Poisson arrivals and
    deterministic service S = 1 at ρ = 0.8; the simulated p99 wait agrees with the
    Cramér–Lundberg quantile within 5 %, the p90 within 10 %."""
    rng = np.random.default_rng(7)
    rho, n = 0.8, 400_000
    gaps = rng.exponential(1 / rho, n)
    waits = np.empty(n)
    w = 0.0
    for i, gap in enumerate(gaps):
        waits[i] = w
        w = max(0.0, w + 1.0 - gap)
    simulated = np.quantile(waits[10_000:], [0.9, 0.99])
    assert md1_wait_quantile_factor(rho, 0.99) == pytest.approx(simulated[1], rel=0.05)
    assert md1_wait_quantile_factor(rho, 0.90) == pytest.approx(simulated[0], rel=0.10)
    assert queueing_factor(rho) - 1 == pytest.approx(waits[10_000:].mean(), rel=0.05)


def test_percentile_factors_are_ordered():
    """mean < p90 < p99 for TTFT (ρ = 0.8) and p50 ≤ p90 < p95 < p99 for TPOT; TPOT p99 is
    exp(2.326·0.12 − 0.0072) = 1.3125 × the mean."""
    ttft = {
        p: ttft_factor(Workload(input_tokens=1, output_tokens=1, sla_percentile=p))
        for p in ("mean", "p90", "p99")
    }
    assert ttft["mean"] < ttft["p90"] < ttft["p99"]
    assert tpot_factor("mean") == 1.0
    assert tpot_factor("p50") < tpot_factor("p90") < tpot_factor("p95") < tpot_factor("p99")
    assert tpot_factor("p99") == pytest.approx(1.3125, abs=0.001)


def test_engine_caps_bound_batch_and_tokens_per_step(catalog):
    rack, llm = catalog.rack("hgx-b200"), catalog.llm("llama-3.1-8b")
    factors = catalog.efficiency_for(rack).model_copy(
        update={"max_batch_per_replica": 300, "max_tokens_per_step": 1000}
    )
    spec = Workload(
        input_tokens=500, output_tokens=500, speculative_draft_tokens=3, speculative_acceptance=0.5
    )
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], spec, factors)
    assert replicas.decode_batch_limits().max() == 250  # 1000 tokens / (3 + 1) per sequence
    plain = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], CHAT, factors)
    assert plain.decode_batch_limits().max() == 300
    # aggregated: b decode tokens + b·(1000/200) prefill tokens ≤ 1000 → b ≤ 166
    assert plain.aggregated_batch_limits().max() == 166


def test_decode_replicas_leave_room_for_the_kv_cache(catalog):
    """Llama-3.1-70B fp8 (70.6 GB) on H100 (72 GB usable): prefill may use one chip, decode
    needs the weights within 60 % of memory, so at least two."""
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-70b")
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], CHAT, catalog.efficiency_for(rack))
    assert replicas.chips[0] == 1
    decode = replicas.decode_batch_limits()
    assert decode[0] == 0 and (decode[1:] > 0).all()
    assert replicas.prefill_batch_limits()[0] >= 1


def test_shipped_calibration_stays_within_physical_bounds(catalog):
    for family in ("hopper", "blackwell"):
        factors = catalog.efficiency[family]
        assert factors.confidence == "measured"
        for name, (low, high) in FIT_BOUNDS.items():
            assert low <= getattr(factors, name) <= high, (family, name)
        assert 0.3 <= factors.flops_fraction <= 0.85
        assert 0.5 < factors.bandwidth_fraction < 0.95
        assert factors.rate_error_high_pct > 0


@pytest.mark.parametrize("record", load_speed_records(), ids=lambda r: f"{r.rack}-{r.llm}")
def test_best_per_user_speed_is_within_30_percent_of_public_records(catalog, record):
    """A single stream's best decode speed (batch 1, fastest replica) against public per-user
    records (catalogs/data/speed_records.csv). Groq's Llama-2-70B record set the fabric's
    collective latency; the others are held out."""
    rack, llm = catalog.rack(record.rack), catalog.llm(record.llm)
    workload = Workload(input_tokens=1000, output_tokens=1000)
    replicas = ReplicaSet.build(
        rack, llm, PRECISIONS[record.precision], workload, catalog.efficiency_for(rack)
    )
    usable = replicas.decode_batch_limits() >= 1
    if record.max_chips is not None:
        usable &= replicas.chips <= record.max_chips
    sizes = np.flatnonzero(usable)
    times = replicas.decode_times(sizes, np.ones(sizes.size))
    best = float((times.tokens_per_sequence / times.total_s).max())
    if record.bound == "lower":  # "over N tokens/s": the model must reach at least 70 % of N
        assert best >= 0.7 * record.tokens_per_s_per_user
    else:
        assert best == pytest.approx(record.tokens_per_s_per_user, rel=0.30)


def test_rates_json_and_planner_columns_carry_the_family_rate_band(catalog):
    """low/high = rate·(1 − low%) and rate·(1 + high%) with the family's band from
    efficiency.csv, in ``rates --json`` (points and end-to-end) and on every roofline column."""
    from pathlib import Path

    from rackplan.planner.core.data import prepare
    from rackplan.planner.core.rates import rate_report
    from rackplan.planner.io.scenario_io import load_scenario

    band = catalog.efficiency["blackwell"]
    assert band.rate_error_low_pct > 0 and band.rate_error_high_pct > 0
    report = rate_report(
        catalog, "gb200-nvl72", "llama-3.1-70b", Workload(input_tokens=1000, output_tokens=200)
    ).as_json()
    assert report["rate_band"]["low_pct"] == band.rate_error_low_pct
    for point in report["operating_points"]:
        rate = point["tokens_per_s_per_rack"]
        assert point["low"] == pytest.approx(rate * (1 - band.rate_error_low_pct / 100))
        assert point["high"] == pytest.approx(rate * (1 + band.rate_error_high_pct / 100))
    aggregated = report["end_to_end"]["aggregated"]
    assert aggregated["low"] < aggregated["output_tokens_per_s_per_rack"] < aggregated["high"]
    scenario = load_scenario(Path(__file__).parents[1] / "examples" / "frontier-2027")
    data = prepare(scenario, catalog)
    for column in data.columns:
        family = catalog.rack(column.rack).family
        assert column.rate_band_low_pct == catalog.efficiency[family].rate_error_low_pct
        rate = column.decode_rate or column.prefill_rate
        low, high = column.rate_bounds(rate)
        assert low == pytest.approx(rate * (1 - column.rate_band_low_pct / 100))
        assert high == pytest.approx(rate * (1 + column.rate_band_high_pct / 100))
