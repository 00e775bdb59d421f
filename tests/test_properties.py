"""Property tests (Hypothesis): the roofline is a bound, and more hardware never hurts."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rackplan.models.base import Phase
from rackplan.models.hardware import EfficiencyFactors, MemoryTier, RackType
from rackplan.models.operating_points import ReplicaSet, operating_points
from rackplan.models.roofline import weight_bytes_read
from rackplan.models.serving import best_point, disaggregated
from rackplan.models.workload import PRECISIONS, Workload

PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

RACK_IDS = ["hgx-h100", "hgx-b200", "gb200-nvl72", "vr-nvl72", "vr-cpx-144", "groq3-lpx"]
LLM_IDS = ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "gpt-oss-120b", "qwen3-235b-a22b"]

workloads = st.builds(
    Workload,
    input_tokens=st.floats(16, 32_000),
    output_tokens=st.floats(1, 4_000),
    prefix_hit_rate=st.floats(0, 0.9),
    ttft_ms=st.none() | st.floats(50, 20_000),
    tpot_ms=st.none() | st.floats(1, 200),
    max_utilisation=st.floats(0.3, 0.9),
)
efficiencies = st.builds(
    EfficiencyFactors, flops_fraction=st.floats(0.1, 1.0), bandwidth_fraction=st.floats(0.1, 1.0)
)


def _scaled(rack: RackType, flops: float = 1.0, bandwidth: float = 1.0) -> RackType:
    """The rack with every FLOP/s figure × ``flops`` and serving bandwidth × ``bandwidth``."""
    memory = rack.serving_memory
    tier = MemoryTier(
        kind=memory.kind,
        capacity_gb_per_chip=memory.capacity_gb_per_chip,
        bandwidth_tb_s_per_chip=memory.bandwidth_tb_s_per_chip * bandwidth,
    )
    update = {"memory_tiers": (tier, *rack.memory_tiers[1:])}
    for precision in ("fp4", "fp8", "bf16"):
        value = rack.dense_tflops_per_chip(precision)
        update[f"{precision}_dense_tflops_per_chip"] = value * flops if value else None
    return rack.model_copy(update=update)


@PROPERTY_SETTINGS
@given(
    rack_id=st.sampled_from(RACK_IDS),
    llm_id=st.sampled_from(LLM_IDS),
    workload=workloads,
    efficiency=efficiencies,
    precision=st.sampled_from(["fp4", "fp8", "bf16"]),
)
def test_no_rate_exceeds_the_pure_roofline(
    catalog, rack_id, llm_id, workload, efficiency, precision
):
    """Per replica: decode tokens/s ≤ min(n·F/(2·N_act), b·n·B/W_read(b)); prefill prompt
    tokens/s ≤ n·F/(2·N_act)·L/((1−h)·L), with F, B the *peak* figures (η = 1)."""
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    chosen = PRECISIONS[precision]
    points = operating_points(rack, llm, chosen, workload, efficiency, prune=False)
    if len(points) == 0:
        return
    peak_flops, _ = rack.effective_tflops_per_chip(chosen.linear_compute)
    n = points.chips_per_replica
    per_replica = points.tokens_per_s_per_rack * points.racks_per_replica
    compute_bound = n * peak_flops * 1e12 / (2 * llm.params_active_b * 1e9)
    decode = points.phase == Phase.decode.value
    bandwidth = n * rack.serving_memory.bandwidth_tb_s_per_chip * 1e12
    memory_bound = points.batch_size * bandwidth / weight_bytes_read(llm, chosen, points.batch_size)
    assert (
        per_replica[decode] <= np.minimum(compute_bound, memory_bound)[decode] * (1 + 1e-9)
    ).all()
    prefill_bound = compute_bound / (1 - workload.prefix_hit_rate)
    assert (per_replica[~decode] <= prefill_bound[~decode] * (1 + 1e-9)).all()


def _best_decode(rack, llm, workload, efficiency) -> float:
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], workload, efficiency)
    choice = best_point(replicas, Phase.decode, workload.tpot_ms)
    return 0.0 if choice.point is None else choice.point["tokens_per_s_per_rack"]


def _best_disaggregated(rack, llm, workload, efficiency) -> float:
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], workload, efficiency)
    return disaggregated(replicas).output_tokens_per_s_per_rack or 0.0


@PROPERTY_SETTINGS
@given(
    rack_id=st.sampled_from(["hgx-h100", "gb200-nvl72", "vr-nvl72", "groqrack-v1"]),
    llm_id=st.sampled_from(LLM_IDS),
    workload=workloads,
    efficiency=efficiencies,
    flops=st.floats(1.0, 4.0),
    bandwidth=st.floats(1.0, 4.0),
)
def test_throughput_never_falls_when_hardware_improves(
    catalog, rack_id, llm_id, workload, efficiency, flops, bandwidth
):
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    better = _scaled(rack, flops=flops, bandwidth=bandwidth)
    tolerance = 1 + 1e-9
    assert _best_decode(better, llm, workload, efficiency) * tolerance >= _best_decode(
        rack, llm, workload, efficiency
    )
    assert _best_disaggregated(
        better, llm, workload, efficiency
    ) * tolerance >= _best_disaggregated(rack, llm, workload, efficiency)


@PROPERTY_SETTINGS
@given(
    rack_id=st.sampled_from(RACK_IDS),
    llm_id=st.sampled_from(LLM_IDS),
    workload=workloads.filter(lambda w: w.tpot_ms is not None),
    efficiency=efficiencies,
    looser=st.floats(1.0, 10.0),
)
def test_throughput_never_falls_when_the_tpot_allowance_grows(
    catalog, rack_id, llm_id, workload, efficiency, looser
):
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    relaxed = workload.model_copy(update={"tpot_ms": workload.tpot_ms * looser})
    assert _best_decode(rack, llm, relaxed, efficiency) * (1 + 1e-9) >= _best_decode(
        rack, llm, workload, efficiency
    )


@PROPERTY_SETTINGS
@given(
    rack_id=st.sampled_from(RACK_IDS),
    llm_id=st.sampled_from(LLM_IDS),
    workload=workloads,
    efficiency=efficiencies,
)
def test_sla_choice_is_feasible_and_no_grid_point_beats_it(
    catalog, rack_id, llm_id, workload, efficiency
):
    """The chosen decode point meets the TPOT target, and no feasible grid point is faster."""
    rack, llm = catalog.rack(rack_id), catalog.llm(llm_id)
    replicas = ReplicaSet.build(rack, llm, PRECISIONS["fp8"], workload, efficiency)
    choice = best_point(replicas, Phase.decode, workload.tpot_ms)
    size, batch = replicas.grid(Phase.decode)
    if size.size == 0:
        assert choice.point is None
        return
    grid = replicas.decode_points(size, batch)
    feasible = grid.latency_ms <= (workload.tpot_ms or np.inf)
    if choice.point is None:
        assert not feasible.any()
        return
    assert workload.tpot_ms is None or choice.point["tpot_ms"] <= workload.tpot_ms
    if feasible.any():
        assert (
            choice.point["tokens_per_s_per_rack"] * (1 + 1e-9)
            >= grid.tokens_per_s_per_rack[feasible].max()
        )
