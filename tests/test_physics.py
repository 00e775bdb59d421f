"""Physics sanity: bounds, crossovers, MoE expert reads, known answers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rackplan.models.base import Phase
from rackplan.models.operating_points import ReplicaSet, operating_points
from rackplan.models.roofline import (
    decode_step,
    experts_touched_fraction,
    kv_bytes_per_sequence,
    prefill_pass,
    replica_hardware,
    weight_bytes_read,
    weight_bytes_total,
)
from rackplan.models.workload import PRECISIONS, Workload
from tests.conftest import PERFECT

CHAT = Workload(input_tokens=1000, output_tokens=200)


@pytest.mark.parametrize(
    ("rack_id", "llm_id", "precision"),
    [
        ("hgx-h100", "llama-3.1-8b", "bf16"),
        ("hgx-h200", "llama-3.1-70b", "fp8"),
        ("gb200-nvl72", "llama-3.1-70b", "fp8"),
        ("vr-nvl72", "deepseek-v3", "fp4"),
        ("gb300-nvl72", "qwen3-235b-a22b", "fp8"),
    ],
)
def test_decode_is_memory_bound_at_small_batch(catalog, rack_id, llm_id, precision):
    """At batch 1 the weight stream dwarfs the math (5× on the pure roofline). With the shipped
    engine factors the small-GEMM tile waste (M½) inflates the math of a 1-token GEMM, yet the
    stream still sets the pace."""
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    pure = ReplicaSet.build(rack, llm, PRECISIONS[precision], CHAT, PERFECT)
    times = pure.decode_times(np.arange(len(pure)), np.ones(len(pure)))
    assert (times.memory_s > 5 * times.compute_s).all()
    shipped = ReplicaSet.build(rack, llm, PRECISIONS[precision], CHAT, catalog.efficiency_for(rack))
    # The smallest replica (the one a single stream uses most efficiently). Very wide expert-
    # parallel replicas at batch 1 are not checked: the Poisson imbalance approximation
    # overstates the busiest chip's load when each chip sees far less than one token.
    points = shipped.decode_points(np.array([0]), np.ones(1))
    assert (points.memory_ms > points.compute_ms).all()


@pytest.mark.parametrize(
    ("rack_id", "llm_id"),
    [
        ("hgx-h100", "llama-3.1-70b"),
        ("gb200-nvl72", "llama-3.1-405b"),
        ("vr-cpx-144", "llama-3.1-8b"),
    ],
)
def test_prefill_is_compute_bound_at_long_prompts(catalog, rack_id, llm_id):
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    long_prompt = Workload(input_tokens=32_000, output_tokens=500)
    pure = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], long_prompt, PERFECT)
    times = pure.prefill_times(np.arange(len(pure)), np.ones(len(pure)))
    assert (times.compute_s > 3 * times.memory_s).all()
    if rack.serving_memory.kind == "GDDR":
        # With the shipped factors GDDR7 Rubin CPX streams 16 activation vectors per token per
        # layer at a quarter of an HBM rack's bandwidth: a small 8B model's prefill is then as
        # much memory- as compute-bound (docs/physics.md, "activation traffic").
        return
    shipped = ReplicaSet.build(
        rack, llm, PRECISIONS["fp8"], long_prompt, catalog.efficiency_for(rack)
    )
    times = shipped.prefill_times(np.arange(len(shipped)), np.ones(len(shipped)))
    assert (times.compute_s > times.memory_s).all()


def _crossover_batch(rack, llm, precision) -> float:
    """Bisect the decode batch where compute time equals memory time (η = 1, tiny context)."""
    tiny = Workload(input_tokens=1, output_tokens=1)
    hw = replica_hardware(rack, 1, precision, PERFECT)
    low, high = 1.0, 1e7
    for _ in range(200):
        mid = (low * high) ** 0.5
        times = decode_step(hw, llm, precision, tiny, np.array([mid]))
        if times.compute_s[0] < times.memory_s[0]:
            low = mid
        else:
            high = mid
    return low


@pytest.mark.parametrize("llm_id", ["llama-3.1-70b", "mixtral-8x7b", "deepseek-v3"])
def test_crossover_batch_matches_hardware_ratio_times_sparsity(catalog, llm_id):
    """b* ≈ (F/B)·(N_tot/N_act) at 16-bit: 2·N_act·b*/F = 2·N_tot·b*_w/B with b_w = 2 bytes.

    DESIGN §2: a dense model crosses at F/B (~300 FLOP/byte on a GB200 at BF16 is 312); a
    sparse MoE at (F/B)·(N_tot/N_act), thousands for DeepSeek.
    """
    rack, llm = catalog.rack("gb200-nvl72"), catalog.llm(llm_id)
    precision = PRECISIONS["bf16"]
    flops = rack.bf16_dense_tflops_per_chip * 1e12
    bandwidth = rack.serving_memory.bandwidth_tb_s_per_chip * 1e12
    expected = flops / bandwidth * llm.params_total_b / llm.params_active_b
    assert _crossover_batch(rack, llm, precision) == pytest.approx(expected, rel=0.10)
    replicas = ReplicaSet.build(
        rack, llm, precision, Workload(input_tokens=1, output_tokens=1), PERFECT
    )
    assert replicas.knee_batch()[0] == pytest.approx(expected, rel=0.10)


def test_moe_weight_reads_grow_with_batch_and_saturate(catalog):
    llm = catalog.llm("deepseek-v3")
    precision = PRECISIONS["fp8"]
    batches = np.array([1, 2, 4, 8, 32, 128, 512, 2048, 8192, 65536], dtype=float)
    reads = weight_bytes_read(llm, precision, batches)
    assert (np.diff(reads) >= 0).all()
    assert (np.diff(reads[:7]) > 0).all(), "reads grow while experts remain untouched"
    assert reads[0] == pytest.approx(llm.params_active_b * 1e9 * precision.weight_bytes, rel=1e-9)
    assert reads[-1] == pytest.approx(weight_bytes_total(llm, precision), rel=1e-6)
    assert experts_touched_fraction(llm, 1.0) == pytest.approx(8 / 256)


def test_dense_model_reads_all_weights_at_any_batch(catalog):
    llm = catalog.llm("llama-3.1-70b")
    reads = weight_bytes_read(llm, PRECISIONS["bf16"], np.array([1.0, 64.0, 4096.0]))
    assert np.allclose(reads, 70.55e9 * 2)


def test_mla_and_gqa_kv_sizes(catalog):
    """Llama-3.1-70B (GQA): 2·8·128·80 = 163,840 elements per token; DeepSeek-V3 (MLA):
    (512 + 64)·61 = 35,136 — matching shared/reference/models.csv."""
    fp8 = PRECISIONS["fp8"]
    assert float(kv_bytes_per_sequence(catalog.llm("llama-3.1-70b"), fp8, 1)) == 163_840
    assert float(kv_bytes_per_sequence(catalog.llm("deepseek-v3"), fp8, 1)) == 35_136


def test_sliding_window_layers_cap_the_kv_cache(catalog):
    """gpt-oss-120b: 18 full layers hold every token, 18 window layers at most 128."""
    llm = catalog.llm("gpt-oss-120b")
    per_layer_token = 2 * 8 * 64  # elements
    kv = float(kv_bytes_per_sequence(llm, PRECISIONS["fp8"], 10_000))
    assert kv == per_layer_token * (18 * 10_000 + 18 * 128)


def test_known_answer_dense_llama_8b_on_h100(catalog):
    """Llama-3.1-8B, BF16, one H100 per replica, η = 1, L = 1000, O = 200, batch 1.

    ctx = 1000 + 200/2 = 1100 tokens; KV per token = 2·32 layers·8 heads·128·2 B = 131,072 B.
    bytes = 8.03e9·2 + 1100·131,072 = 16.06e9 + 0.1441792e9 = 16.2041792e9 B
    t_memory = 16.2041792e9 / 3.35e12 = 4.83707 ms
    FLOPs = 2·8.03e9 + 2·32 heads·(128+128)·32 layers·1100 = 16.06e9 + 0.5767168e9
    t_compute = 16.6367168e9 / 989e12 = 0.016822 ms → TPOT = 4.83707 ms (no comm on 1 chip)
    tokens/s per replica = 1 / 4.83707e-3 = 206.73; 32 one-chip replicas per rack → 6,615.5.
    """
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-8b")
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["bf16"], CHAT, PERFECT)
    assert replicas.chips[0] == 1
    point = replicas.decode_points(np.array([0]), np.array([1.0]))
    tpot_ms = 16.2041792e9 / 3.35e12 * 1e3
    assert point.latency_ms[0] == pytest.approx(tpot_ms, rel=1e-6)
    assert point.compute_ms[0] == pytest.approx(16.6367168e9 / 989e12 * 1e3, rel=1e-6)
    assert point.tokens_per_s_per_rack[0] == pytest.approx(32 * 1e3 / tpot_ms, rel=1e-6)
    assert point.bound[0] == "memory_bandwidth"


def test_known_answer_moe_mixtral_on_h100(catalog):
    """Mixtral-8x7B, BF16, η = 1, batch 1, L = 1000, O = 200 on HGX H100.

    Weights 46.7e9·2 = 93.4 GB > 80·0.9 = 72 GB usable per chip → 2 chips per replica.
    Experts: N_exp = (46.7 − 12.88)/(1 − 2/8) = 45.0933e9; one token touches 2/8 of them, so
    bytes read = 2·(46.7 − 45.0933 + 45.0933/4)e9 = 2·12.88e9 = 25.76e9, plus KV
    1100·131,072 = 0.1441792e9 → t_memory = 25.9041792e9 / (2·3.35e12) = 3.86630 ms.
    Comm (expert parallel, 16-bit activations): per layer one all-reduce after attention,
    8 µs + 2·(1/2)·4096·2 B / 450e9, and a dispatch and a combine all-to-all, each
    8 µs + ι·2 experts·4096·2 B·(1/2)/2 / 450e9 with ι = min(1 + √(2·ln 2 / 1), 2) = 2 (one
    token's two copies over two chips: the busiest chip can hold both):
    32·(24 µs + (8,192 + 2·8,192) B / 450e9) = 0.769748 ms.
    TPOT = 3.86630 + 0.76975 = 4.63605 ms; 16 replicas per rack → 16/4.63605e-3 = 3,451.2 tok/s.
    """
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("mixtral-8x7b")
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["bf16"], CHAT, PERFECT)
    assert replicas.chips[0] == 2
    point = replicas.decode_points(np.array([0]), np.array([1.0]))
    memory_ms = 25.9041792e9 / (2 * 3.35e12) * 1e3
    comm_ms = 32 * (24e-6 + 24_576 / 450e9) * 1e3
    assert point.memory_ms[0] == pytest.approx(memory_ms, rel=1e-6)
    assert point.communication_ms[0] == pytest.approx(comm_ms, rel=1e-6)
    assert point.latency_ms[0] == pytest.approx(memory_ms + comm_ms, rel=1e-6)
    assert point.tokens_per_s_per_rack[0] == pytest.approx(
        16 * 1e3 / (memory_ms + comm_ms), rel=1e-6
    )


def test_known_answer_prefill_attention_term(catalog):
    """Llama-3.1-8B prefill of one 4096-token prompt, no cache, η = 1, one H100.

    FLOPs = 2·8.03e9·4096 + 2·32 layers·32 heads·128·4096² = 65.78176e12 + 4.398046511e12
    = 70.179807e12 → t = 70.179807e12 / 989e12 = 70.9604 ms (compute-bound).
    """
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-8b")
    prompt = Workload(input_tokens=4096, output_tokens=1)
    hw = replica_hardware(rack, 1, PRECISIONS["bf16"], PERFECT)
    times = prefill_pass(hw, llm, PRECISIONS["bf16"], prompt, np.array([1.0]))
    flops = 2 * 8.03e9 * 4096 + 2 * 32 * 32 * 128 * 4096**2
    assert times.compute_s[0] == pytest.approx(flops / 989e12, rel=1e-9)


def test_prefix_hits_cut_prefill_work(catalog):
    """Half the prompt cached halves the linear FLOPs but keeps 3/4 of the attention FLOPs:
    the new tokens sit at positions 4000…8000 and attend to everything before them,
    L² − (L/2)² = 3/4·L². Llama-3.1-70B, FP8, 4 H100s, η = 1:
    linear = 2·70.55e9·4000, attention = 3/4·2·80·64·128·8000², F = 4·1979e12.
    """
    rack, llm = catalog.rack("hgx-h100"), catalog.llm("llama-3.1-70b")
    hw = replica_hardware(rack, 4, PRECISIONS["fp8"], PERFECT)
    warm_prompt = Workload(input_tokens=8000, output_tokens=1, prefix_hit_rate=0.5)
    warm = prefill_pass(hw, llm, PRECISIONS["fp8"], warm_prompt, np.array([1.0]))
    expected = (2 * 70.55e9 * 4000 + 0.75 * 2 * 80 * 64 * 128 * 8000**2) / (4 * 1979e12)
    assert warm.compute_s[0] == pytest.approx(expected, rel=1e-9)


def test_sram_rack_needs_a_multi_chip_replica(catalog):
    """A 70B model at 8-bit on 0.5 GB LPUs needs ⌈70.55 GB / 0.45 GB⌉ = 157 chips: a 256 rack."""
    rack, llm = catalog.rack("groq3-lpx"), catalog.llm("llama-3.1-70b")
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], CHAT, catalog.efficiency_for(rack))
    assert replicas.chips[0] == 256
    v1 = catalog.rack("groqrack-v1")
    replicas_v1 = ReplicaSet.build(v1, llm, PRECISIONS["fp8"], CHAT, catalog.efficiency_for(v1))
    # ⌈70.55 / (0.23·0.9)⌉ = 341 chips → 6 racks of 64
    assert replicas_v1.chips[0] == 6 * 64
    assert replicas_v1.racks_per_replica[0] == 6


def test_operating_points_carry_every_contract_field(catalog):
    rack, llm = catalog.rack("gb200-nvl72"), catalog.llm("llama-3.1-70b")
    points = operating_points(rack, llm, PRECISIONS["fp8"], CHAT, catalog.efficiency_for(rack))
    records = points.records()
    assert {r["phase"] for r in records} == {Phase.prefill.value, Phase.decode.value}
    for r in records:
        assert r["bound"] in {"compute", "memory_bandwidth", "capacity", "communication"}
        assert ("ttft_ms" in r) == (r["phase"] == "prefill")
        assert ("tpot_ms" in r) == (r["phase"] == "decode")
        assert (
            r["memory_used_gb"] <= rack.serving_memory.capacity_gb_per_chip * r["chips_per_replica"]
        )
        assert rack.power_kw_idle <= r["power_kw"] <= rack.power_kw_at_load + 1e-9
    batches = sorted(r["batch_size"] for r in records if r["phase"] == "decode")
    assert any(b & (b - 1) for b in batches), "the knee refinement adds non-powers of two"
