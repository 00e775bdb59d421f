"""Roofline physics: time of one prefill batch and one decode step on one replica.

Every function is vectorised over the batch size ``b`` (a numpy array) and states
its formula. Symbols (DESIGN §2):

- ``N_tot``, ``N_act``: total and active parameters; ``N_exp``: routed-expert
  parameters; ``N_dense = N_tot − N_exp``; ``k/E``: routed share of experts.
- ``b_w``, ``b_kv``, ``b_a``: bytes per weight, KV element, activation.
- ``F``: dense FLOP/s of the replica (chips × per-chip peak × η_F);
  ``B``: memory bandwidth of the replica (chips × per-chip peak × η_B).
- ``L``: prompt tokens, ``h``: prefix-cache hit rate, ``O``: output tokens,
  ``ctx``: mean decode context ``L + O/2``.

Modelling choices (each stated once here, and in the docstrings that use it):

- A step is a *sum of operator groups*, each with its own roofline, because GEMMs,
  attention, elementwise kernels and collectives run one after another:

      t = max(GEMM FLOPs·s(M) / F, W_read / B)       GEMMs, s(M) = (M + M½)/M (MoE: experts apart)
        + max(attn FLOPs / F, KV bytes / (κ·B))      attention
        + T·layers·c_act·d_model·2 / B                activation traffic (norms, residuals, quant)
        + t_comm                                      TP all-reduce / EP all-to-all, 16-bit
        + τ_step + layers·τ_layer + b·τ_req           fixed costs

  so it is never shorter than the single max(compute, memory) roofline.
- A replica pools its chips: tensor parallelism (expert parallelism for MoE experts), so
  FLOP/s, bandwidth and capacity add up across chips. The price of pooling is ``t_comm``,
  added *without* overlap, with activations reduced in 16 bits whatever the weight
  precision (engines reduce in bf16).
- ``MEMORY_RESERVE_FRACTION`` of the serving memory is kept free for activations,
  CUDA graphs / compiled programs and allocator fragmentation.
- A collective that leaves the scale-up domain runs over the scale-out network at
  its bandwidth with ``CROSS_DOMAIN_LATENCY_US`` more latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np

from rackplan.models.hardware import OVERLAP_EXACT_MAX, EfficiencyFactors, RackType
from rackplan.models.llm import LLM
from rackplan.models.workload import Precision, Workload

MEMORY_RESERVE_FRACTION = 0.10
"""Share of a replica's serving memory not usable for weights or KV (activations,
compiled graphs, fragmentation). vLLM's default gpu_memory_utilization is 0.9."""

COLLECTIVES_PER_LAYER = 2
"""Tensor-parallel all-reduces per transformer layer (after attention, after the MLP)."""

COLLECTIVE_BYTES_PER_ELEMENT = 2.0
"""Bytes per activation element in collectives: 16-bit (bf16) even with fp8/fp4 weights
(TensorRT-LLM and vLLM all-reduce in the activation dtype, bf16)."""

CROSS_DOMAIN_LATENCY_US = 10.0
"""Extra latency of a collective that crosses the scale-out network, µs (assumption:
one RDMA round trip plus switch hops)."""

GB = 1e9
TERA = 1e12


@dataclass(frozen=True)
class ReplicaHardware:
    """Pooled, efficiency-scaled hardware of replicas; every field is an array (one entry per
    replica, or per operating point after ``take``) so the roofline runs vectorised.

    ``linear_flops_per_s = n·F_lin·η_F``, ``bandwidth_bytes_per_s = n·B·η_B``,
    ``capacity_bytes = n·M·(1 − reserve)`` for a replica of n chips.
    """

    chips: np.ndarray
    linear_flops_per_s: np.ndarray
    attention_flops_per_s: np.ndarray
    bandwidth_bytes_per_s: np.ndarray
    capacity_bytes: np.ndarray
    link_bytes_per_s: np.ndarray
    """Per-chip one-way bandwidth of the fabric the replica's collectives use."""
    collective_latency_s: np.ndarray
    scaleout_bytes_per_s: np.ndarray
    """Whole-replica scale-out bandwidth (chips × per-chip NIC), for the KV hand-off."""
    attention_bandwidth_bytes_per_s: np.ndarray
    """κ·B: bandwidth attention kernels reach streaming the KV cache."""
    step_overhead_s: np.ndarray
    layer_overhead_s: np.ndarray
    request_overhead_s: np.ndarray
    moe_imbalance: np.ndarray
    activation_elements_per_layer: np.ndarray
    gemm_half_efficiency_tokens: np.ndarray
    overlap_exponent: float
    """p of ``EfficiencyFactors.overlap_exponent`` (one value for the whole family)."""

    def take(self, index: np.ndarray) -> ReplicaHardware:
        """The hardware of replica ``index[i]`` for each i (aligns replicas with points)."""
        return ReplicaHardware(
            *(getattr(self, name)[index] for name in _ARRAY_FIELDS),
            overlap_exponent=self.overlap_exponent,
        )


_HARDWARE_FIELDS = tuple(f.name for f in fields(ReplicaHardware))
_ARRAY_FIELDS = _HARDWARE_FIELDS[:-1]
assert _HARDWARE_FIELDS[-1] == "overlap_exponent", "the array fields come first"


def overlapped(compute_s: np.ndarray, memory_s: np.ndarray, exponent: float) -> np.ndarray:
    """Time of a kernel with ``compute_s`` of math and ``memory_s`` of streaming:
    (t_c^p + t_m^p)^(1/p), the exact max(t_c, t_m) for p ≥ ``OVERLAP_EXACT_MAX``.

    Never below the max (the roofline) and never above the sum (no overlap)."""
    if exponent >= OVERLAP_EXACT_MAX:
        return np.maximum(compute_s, memory_s)
    if exponent == 1.0:
        return compute_s + memory_s
    high = np.maximum(np.maximum(compute_s, memory_s), 1e-300)
    low = np.minimum(compute_s, memory_s)
    return high * (1.0 + (low / high) ** exponent) ** (1.0 / exponent)


def replica_hardware(
    rack: RackType,
    chips: np.ndarray | int,
    precision: Precision,
    efficiency: EfficiencyFactors,
) -> ReplicaHardware:
    """Pool ``chips`` chips of ``rack`` into one replica (per entry of ``chips``).

    Beyond ``scaleup_domain_chips`` the collectives use the scale-out network:
    link = min(scale-up, scale-out) GB/s, latency = scale-up latency + CROSS_DOMAIN_LATENCY_US.
    """
    chips = np.atleast_1d(np.asarray(chips, dtype=float))
    linear_tflops, _ = rack.effective_tflops_per_chip(precision.linear_compute)
    attention_tflops, _ = rack.effective_tflops_per_chip(precision.attention_compute)
    memory = rack.serving_memory
    within_domain = chips <= rack.scaleup_domain_chips
    link_gb_s = np.where(
        within_domain,
        rack.scaleup_bw_gb_s_per_chip,
        min(rack.scaleup_bw_gb_s_per_chip, rack.scaleout_bw_gb_s_per_chip),
    )
    latency_us = rack.scaleup_latency_us + np.where(within_domain, 0.0, CROSS_DOMAIN_LATENCY_US)
    bandwidth = chips * memory.bandwidth_tb_s_per_chip * TERA * efficiency.bandwidth_fraction
    ones = np.ones_like(chips)
    return ReplicaHardware(
        chips=chips,
        linear_flops_per_s=chips * linear_tflops * TERA * efficiency.flops_fraction,
        attention_flops_per_s=chips * attention_tflops * TERA * efficiency.flops_fraction,
        bandwidth_bytes_per_s=bandwidth,
        capacity_bytes=chips * memory.capacity_gb_per_chip * GB * (1 - MEMORY_RESERVE_FRACTION),
        link_bytes_per_s=link_gb_s * GB,
        collective_latency_s=latency_us * 1e-6,
        scaleout_bytes_per_s=chips * rack.scaleout_bw_gb_s_per_chip * GB,
        attention_bandwidth_bytes_per_s=bandwidth * efficiency.attention_bandwidth_ratio,
        step_overhead_s=ones * efficiency.step_overhead_us * 1e-6,
        layer_overhead_s=ones * efficiency.layer_overhead_us * 1e-6,
        request_overhead_s=ones * efficiency.request_overhead_us * 1e-6,
        moe_imbalance=ones * efficiency.moe_imbalance,
        activation_elements_per_layer=ones * efficiency.activation_elements_per_layer,
        gemm_half_efficiency_tokens=ones * efficiency.gemm_half_efficiency_tokens,
        overlap_exponent=efficiency.overlap_exponent,
    )


def _attended_positions(llm: LLM, ctx: np.ndarray | float) -> np.ndarray:
    """Σ over layers of the key positions one token attends to at context ``ctx``.

    = L_full·ctx + L_swa·min(ctx, w): sliding-window layers see at most w tokens.
    """
    ctx = np.asarray(ctx, dtype=float)
    window = llm.sliding_window_tokens or 0
    return llm.full_attention_layers * ctx + llm.sliding_window_layers * np.minimum(ctx, window)


def kv_bytes_per_sequence(llm: LLM, precision: Precision, ctx: np.ndarray | float) -> np.ndarray:
    """KV-cache bytes one sequence holds at context ``ctx``.

    kv = b_kv · e · (L_full·ctx + L_swa·min(ctx, w)), with e the KV elements per token
    per layer: 2·n_kv_heads·head_dim (GQA) or kv_lora_rank + rope_dim (MLA).
    """
    return precision.kv_bytes * llm.kv_elements_per_token_per_layer * _attended_positions(llm, ctx)


def decode_attention_flops_per_token(llm: LLM, ctx: np.ndarray | float) -> np.ndarray:
    """Attention FLOPs for one new token over ``ctx`` cached tokens.

    2·H·(d_qk + d_v)·(L_full·ctx + L_swa·min(ctx, w)); for GQA d_qk = d_v = head_dim, so this
    is the 4·layers·n_heads·head_dim·ctx of DESIGN §2.
    """
    d_qk, d_v = llm.attention_dims
    return 2.0 * llm.n_heads * (d_qk + d_v) * _attended_positions(llm, ctx)


def _integral_of_min(start: float, end: float, window: float) -> float:
    """∫_start^end min(x, window) dx, for 0 ≤ start ≤ end."""
    if end <= window:
        return (end**2 - start**2) / 2.0
    if start >= window:
        return window * (end - start)
    return (window**2 - start**2) / 2.0 + window * (end - window)


def prefill_attention_flops_per_prompt(
    llm: LLM, prompt_tokens: float, cached_tokens: float
) -> float:
    """Causal attention FLOPs to prefill one prompt whose first ``cached_tokens`` hit the cache.

    A new token at position i attends to i keys: 2·H·(d_qk + d_v)·i FLOPs per layer. Summed over
    new positions c..L: full layers H·(d_qk + d_v)·(L² − c²); sliding-window layers
    2·H·(d_qk + d_v)·∫_c^L min(i, w) di. With c = 0 and GQA this is 2·layers·H·head_dim·L².
    """
    d_qk, d_v = llm.attention_dims
    per_position = 2.0 * llm.n_heads * (d_qk + d_v)
    full = llm.full_attention_layers * (prompt_tokens**2 - cached_tokens**2) / 2.0
    window = llm.sliding_window_tokens or 0
    swa = llm.sliding_window_layers * _integral_of_min(cached_tokens, prompt_tokens, window)
    return per_position * (full + swa)


def experts_touched_fraction(llm: LLM, tokens: np.ndarray | float) -> np.ndarray:
    """Expected share of routed experts that ``tokens`` tokens touch in one MoE layer.

    1 − (1 − k/E)^tokens: each token picks k of E experts, assumed uniform and independent.
    Grows with the batch and saturates at 1 (the whole expert set). 0 for dense models.
    """
    tokens = np.asarray(tokens, dtype=float)
    if not llm.is_moe:
        return np.zeros_like(tokens)
    return -np.expm1(tokens * math.log1p(-llm.routed_fraction))


def weight_bytes_total(llm: LLM, precision: Precision) -> float:
    """W = N_tot · b_w: bytes of all weights held in memory."""
    return llm.params_total_b * 1e9 * precision.weight_bytes


def weight_bytes_read(llm: LLM, precision: Precision, tokens: np.ndarray | float) -> np.ndarray:
    """Weight bytes one forward pass over ``tokens`` tokens must read.

    W_read = b_w · (N_dense + N_exp · (1 − (1 − k/E)^tokens)). Dense models read all weights.
    """
    if not llm.is_moe:
        return np.full(np.shape(tokens), precision.weight_bytes * 1e9 * llm.params_total_b)
    touched = experts_touched_fraction(llm, tokens)
    return precision.weight_bytes * 1e9 * (llm.dense_params_b + llm.expert_params_b * touched)


def collective_time_s(
    hw: ReplicaHardware,
    llm: LLM,
    precision: Precision,
    tokens: np.ndarray | float,
    imbalance: np.ndarray | None = None,
) -> np.ndarray:
    """Communication time of one forward pass of ``tokens`` tokens (T) on an n-chip replica.

    Dense: two ring all-reduces per layer (after attention, after the MLP):
        layers · 2 · (α + 2·(n − 1)/n · T·d_model·2 / link)
    MoE (expert parallel): one all-reduce after attention plus a dispatch and a combine
    all-to-all per layer, each chip sending its k routed copies of its T/n tokens to the
    other chips, slowed by the load imbalance ι:
        layers · [(α + 2·(n − 1)/n · T·d·2 / link) + 2·(α + ι·k·T·d·2·(n − 1)/n² / link)]
    Activations travel in 16 bits (``COLLECTIVE_BYTES_PER_ELEMENT``); 0 for a single chip.
    ``precision`` is accepted for symmetry with the other terms: engines reduce in bf16
    whatever the weights. ``imbalance``: ι if already known (``expert_load_imbalance``).
    """
    del precision
    tokens = np.asarray(tokens, dtype=float)
    n = hw.chips
    message_bytes = tokens * llm.d_model * COLLECTIVE_BYTES_PER_ELEMENT
    all_reduce = hw.collective_latency_s + 2.0 * (n - 1) / n * message_bytes / hw.link_bytes_per_s
    if llm.is_moe:
        if imbalance is None:
            imbalance = expert_load_imbalance(llm, hw, tokens)
        a2a_bytes = imbalance * llm.experts_routed * message_bytes * (n - 1) / n**2
        all_to_all = hw.collective_latency_s + a2a_bytes / hw.link_bytes_per_s
        per_layer = all_reduce + 2.0 * all_to_all
    else:
        per_layer = COLLECTIVES_PER_LAYER * all_reduce
    return np.where(n > 1, llm.layers * per_layer, 0.0)


def activation_traffic_s(hw: ReplicaHardware, llm: LLM, tokens: np.ndarray | float) -> np.ndarray:
    """Non-GEMM activation traffic of ``tokens`` tokens: T·layers·c_act·d_model·2 / B
    (c_act: ``EfficiencyFactors.activation_elements_per_layer``).

    Elementwise kernels (norms, residuals, activation function, RoPE, quantisation) are
    memory-bound; at FP4 the GEMMs are fast enough that this traffic shows.
    """
    tokens = np.asarray(tokens, dtype=float)
    elements = tokens * llm.layers * hw.activation_elements_per_layer * llm.d_model
    return elements * COLLECTIVE_BYTES_PER_ELEMENT / hw.bandwidth_bytes_per_s


def fixed_overhead_s(hw: ReplicaHardware, llm: LLM, sequences: np.ndarray | float) -> np.ndarray:
    """Fixed costs of one step: τ_step + layers·τ_layer + b·τ_req (b sequences in the step)."""
    sequences = np.asarray(sequences, dtype=float)
    return hw.step_overhead_s + llm.layers * hw.layer_overhead_s + sequences * hw.request_overhead_s


def dense_gemm_flops(llm: LLM, tokens: np.ndarray) -> np.ndarray:
    """FLOPs of the linear layers every token runs (attention projections, dense MLPs, shared
    experts, embeddings): 2·T·(N_act − N_exp·k/E); dense models: 2·T·N_act."""
    dense_active_b = llm.params_active_b - llm.expert_params_b * llm.routed_fraction
    return 2.0 * tokens * dense_active_b * 1e9


def expert_load_imbalance(llm: LLM, hw: ReplicaHardware, tokens: np.ndarray | float) -> np.ndarray:
    """ι: the busiest chip's expert load / the mean, in a pass of T tokens on n chips.

    Experts are spread over the replica's n chips (expert parallelism). Uniform routing gives
    each chip a Poisson load of mean m = T·k/n routed tokens; the largest of n such loads is
    about m + √(2·ln n·m), so ι_stat = 1 + √(2·ln n / m). Real routers are skewed beyond that:
    ``moe_imbalance`` (≥ 1) multiplies it. The product is capped at its physical ceiling
    min(n, E/k): a chip holding E/n experts receives at most min(k, E/n) copies of each token.
    1 for dense models and for a single chip (its experts run one after another).
    """
    tokens = np.asarray(tokens, dtype=float)
    if not llm.is_moe:
        return np.ones(np.broadcast_shapes(tokens.shape, hw.chips.shape))
    chips = np.maximum(hw.chips, 1.0)
    per_chip = np.maximum(tokens * llm.experts_routed / chips, 1e-9)
    spread = np.sqrt(2.0 * np.log(chips) / per_chip)
    ceiling = np.minimum(chips, llm.experts_total / llm.experts_routed)
    return np.minimum(hw.moe_imbalance * (1.0 + spread), np.maximum(ceiling, 1.0))


def expert_compute_s(
    llm: LLM,
    hw: ReplicaHardware,
    tokens: np.ndarray | float,
    imbalance: np.ndarray | None = None,
    touched_fraction: np.ndarray | None = None,
) -> np.ndarray:
    """Routed-expert GEMM time of a pass of T tokens: the busiest of n chips sets the pace.

    t = 2·(N_exp/E)·(L_max + M½·X_max) / (F/n), with
    L_max = min(ι·T·k/n, T·min(k, E/n)) routed token copies the busiest chip receives
    (``expert_load_imbalance``) and X_max = (E/n)·(1 − (1 − k/E)^T) experts it touches, each
    expert GEMM paying M½ tokens of tile waste (``gemm_half_efficiency_tokens``). Both grow
    with T, so the time does. On one chip this is 2·(N_exp/E)·(T·k + M½·E·touched)/F. 0 for
    dense models. ``imbalance`` and ``touched_fraction``: ι and 1 − (1 − k/E)^T if known.
    """
    tokens = np.asarray(tokens, dtype=float)
    if not llm.is_moe:
        return np.zeros(np.broadcast_shapes(tokens.shape, hw.chips.shape))
    n = np.maximum(hw.chips, 1.0)
    experts, routed = llm.experts_total, llm.experts_routed
    per_expert_flops_per_token = 2.0 * llm.expert_params_b / experts * 1e9
    if imbalance is None:
        imbalance = expert_load_imbalance(llm, hw, tokens)
    if touched_fraction is None:
        touched_fraction = experts_touched_fraction(llm, tokens)
    busiest_tokens = np.minimum(
        imbalance * tokens * routed / n, tokens * np.minimum(routed, experts / n)
    )
    busiest_experts = experts / n * touched_fraction
    waste = hw.gemm_half_efficiency_tokens * busiest_experts
    return per_expert_flops_per_token * (busiest_tokens + waste) / (hw.linear_flops_per_s / n)


def expert_gemm_flops(
    llm: LLM, hw: ReplicaHardware, tokens: np.ndarray, imbalance: np.ndarray | None = None
) -> np.ndarray:
    """FLOPs of the routed experts, slowed by the load imbalance ι (the busiest expert sets the
    pace, ``expert_load_imbalance``; pass it if known): ι·2·T·N_exp·k/E; 0 for dense models."""
    if imbalance is None:
        imbalance = expert_load_imbalance(llm, hw, tokens)
    return imbalance * 2.0 * tokens * llm.expert_params_b * llm.routed_fraction * 1e9


def gemm_size_slowdown(hw: ReplicaHardware, gemm_tokens: np.ndarray) -> np.ndarray:
    """(M + M½) / M: how much longer a GEMM of M tokens takes than at full efficiency η_F
    (``EfficiencyFactors.gemm_half_efficiency_tokens``; 1 when M½ = 0)."""
    gemm_tokens = np.maximum(np.asarray(gemm_tokens, dtype=float), 1e-9)
    return 1.0 + hw.gemm_half_efficiency_tokens / gemm_tokens


def dense_weight_bytes(llm: LLM, precision: Precision) -> float:
    """Bytes of the weights every pass reads: b_w·N_dense (all weights for a dense model)."""
    return precision.weight_bytes * 1e9 * llm.dense_params_b


def expert_weight_bytes_read(
    llm: LLM,
    precision: Precision,
    tokens: np.ndarray | float,
    touched_fraction: np.ndarray | None = None,
) -> np.ndarray:
    """Routed-expert bytes a pass of T tokens reads: b_w·N_exp·(1 − (1 − k/E)^T)
    (``touched_fraction``: the last factor, if already known)."""
    touched = (
        experts_touched_fraction(llm, tokens) if touched_fraction is None else touched_fraction
    )
    return precision.weight_bytes * 1e9 * llm.expert_params_b * touched


@dataclass(frozen=True)
class PassTimes:
    """Time terms of one forward pass, seconds, one entry per batch size.

    total = ov(gemm_compute, gemm_memory) + ov(expert_compute, expert_memory)
            + ov(attention_compute, attention_memory) + activation + communication + overhead

    with ov the roofline's max, or its imperfect-overlap form (``overlapped``).

    ``gemm_*`` is the dense linear-layer group, ``expert_*`` the routed experts (MoE only):
    separate kernels, so separate rooflines.
    """

    batch: np.ndarray
    gemm_compute_s: np.ndarray
    gemm_memory_s: np.ndarray
    expert_compute_s: np.ndarray
    expert_memory_s: np.ndarray
    attention_compute_s: np.ndarray
    attention_memory_s: np.ndarray
    activation_s: np.ndarray
    communication_s: np.ndarray
    overhead_s: np.ndarray
    memory_used_bytes: np.ndarray
    tokens_per_sequence: np.ndarray | float = 1.0
    """Output tokens each sequence gains per step (speculative decoding: > 1)."""
    overlap_exponent: float = OVERLAP_EXACT_MAX
    """p of each operator group's (t_c^p + t_m^p)^(1/p) (``overlapped``)."""

    def take(self, index: np.ndarray) -> PassTimes:
        """The terms of points ``index[i]`` for each i (scalar fields kept)."""
        return PassTimes(
            *(
                value[index] if np.ndim(value) else value
                for value in (getattr(self, name) for name in _PASS_FIELDS)
            )
        )

    @classmethod
    def concat(cls, passes: list[PassTimes]) -> PassTimes:
        """The points of ``passes`` one after another (``overlap_exponent`` must agree)."""
        per_sequence = [p.tokens_per_sequence for p in passes]
        if any(np.ndim(e) or e != per_sequence[0] for e in per_sequence):
            per_sequence = [
                np.broadcast_to(e, p.batch.shape) for e, p in zip(per_sequence, passes, strict=True)
            ]
            tokens_per_sequence = np.concatenate(per_sequence)
        else:
            tokens_per_sequence = per_sequence[0]
        return cls(
            *(np.concatenate([getattr(p, name) for p in passes]) for name in _TERM_FIELDS),
            tokens_per_sequence=tokens_per_sequence,
            overlap_exponent=passes[0].overlap_exponent,
        )

    @cached_property
    def compute_s(self) -> np.ndarray:
        """FLOP time of the pass: GEMMs, experts and attention."""
        return self.gemm_compute_s + self.expert_compute_s + self.attention_compute_s

    @cached_property
    def memory_s(self) -> np.ndarray:
        """Memory-streaming time: weights, KV cache and activation traffic."""
        return (
            self.gemm_memory_s + self.expert_memory_s + self.attention_memory_s + self.activation_s
        )

    @cached_property
    def busy_s(self) -> np.ndarray:
        """Time the chips compute or stream memory: the operator rooflines and activations."""
        p = self.overlap_exponent
        return (
            overlapped(self.gemm_compute_s, self.gemm_memory_s, p)
            + overlapped(self.expert_compute_s, self.expert_memory_s, p)
            + overlapped(self.attention_compute_s, self.attention_memory_s, p)
            + self.activation_s
        )

    @cached_property
    def total_s(self) -> np.ndarray:
        return self.busy_s + self.communication_s + self.overhead_s

    @cached_property
    def busy_fraction(self) -> np.ndarray:
        """Share of the pass the chips compute or stream memory (not waiting on the fabric or
        on fixed costs)."""
        return self.busy_s / self.total_s


_PASS_FIELDS = tuple(f.name for f in fields(PassTimes))
_TERM_FIELDS = _PASS_FIELDS[:-2]
"""The per-point arrays, batch … memory_used_bytes (before the two scalar-or-array fields)."""


def _pass(
    hw: ReplicaHardware,
    llm: LLM,
    precision: Precision,
    *,
    batch: np.ndarray,
    tokens: np.ndarray,
    sequences: np.ndarray,
    attention_flops: np.ndarray,
    kv_bytes_moved: np.ndarray,
    memory_used_bytes: np.ndarray,
    tokens_per_sequence: np.ndarray | float = 1.0,
) -> PassTimes:
    """Assemble the operator groups of one pass of ``tokens`` tokens over ``sequences``.

    The expert terms (MoE) share one load imbalance ι and one touched-expert share; dense
    models have none (both terms 0).
    """
    gemm_memory_s = np.full(np.shape(tokens), dense_weight_bytes(llm, precision))
    if llm.is_moe:
        touched = experts_touched_fraction(llm, tokens)
        imbalance = expert_load_imbalance(llm, hw, tokens)
        expert_time_s = expert_compute_s(llm, hw, tokens, imbalance, touched)
        expert_memory_s = (
            expert_weight_bytes_read(llm, precision, tokens, touched) / hw.bandwidth_bytes_per_s
        )
    else:
        imbalance = None
        expert_time_s = expert_memory_s = np.zeros_like(gemm_memory_s)
    return PassTimes(
        batch=batch,
        gemm_compute_s=dense_gemm_flops(llm, tokens)
        * gemm_size_slowdown(hw, tokens)
        / hw.linear_flops_per_s,
        gemm_memory_s=gemm_memory_s / hw.bandwidth_bytes_per_s,
        expert_compute_s=expert_time_s,
        expert_memory_s=expert_memory_s,
        attention_compute_s=attention_flops / hw.attention_flops_per_s,
        attention_memory_s=kv_bytes_moved / hw.attention_bandwidth_bytes_per_s,
        activation_s=activation_traffic_s(hw, llm, tokens),
        communication_s=collective_time_s(hw, llm, precision, tokens, imbalance),
        overhead_s=fixed_overhead_s(hw, llm, sequences),
        memory_used_bytes=memory_used_bytes,
        tokens_per_sequence=tokens_per_sequence,
        overlap_exponent=hw.overlap_exponent,
    )


def speculative_tokens_per_step(workload: Workload) -> float:
    """E[tokens accepted per verification step] with d drafted tokens of acceptance α each:

    E = (1 − α^(d+1)) / (1 − α)   (Leviathan et al. 2023; 1 without speculation).
    """
    draft, alpha = workload.speculative_draft_tokens, workload.speculative_acceptance
    if draft == 0:
        return 1.0
    return (1.0 - alpha ** (draft + 1)) / (1.0 - alpha)


def draft_overhead_s(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> np.ndarray:
    """Time to draft d tokens per sequence with a one-layer head (MTP / EAGLE style).

    Each draft token is one sequential pass of one transformer layer over the batch:
    d·(τ_step + τ_layer + ov(2·b·N_act·s(b)/layers / F, W/layers / B) + t_comm(b)/layers),
    with one layer's share of the collectives. 0 without speculation.
    """
    draft = workload.speculative_draft_tokens
    if draft == 0:
        return np.zeros_like(np.asarray(batch, dtype=float))
    flops = dense_gemm_flops(llm, batch) * gemm_size_slowdown(hw, batch) + expert_gemm_flops(
        llm, hw, batch
    )
    per_layer_compute = flops / llm.layers / hw.linear_flops_per_s
    per_layer_memory = (
        weight_bytes_read(llm, precision, batch) / llm.layers / hw.bandwidth_bytes_per_s
    )
    one_pass = (
        hw.step_overhead_s
        + hw.layer_overhead_s
        + overlapped(per_layer_compute, per_layer_memory, hw.overlap_exponent)
        + collective_time_s(hw, llm, precision, batch) / llm.layers
    )
    return draft * one_pass


def decode_step(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """One decode step for ``b`` sequences at mean context ctx = L + O/2.

    With speculation (d drafted tokens, E accepted on average) each sequence verifies d + 1
    tokens: T = b·(d + 1); the KV cache is read once per sequence.

    GEMMs      ov(2·T·N_dense_act·s(T) / F, W_dense / B) + ov(t_experts(T), W_exp(T) / B)
               with s(M) = (M + M½)/M the small-GEMM slowdown and t_experts the busiest
               chip's expert time (``expert_compute_s``)
    attention  max(T·attn(ctx) / F, b·kv(ctx) / (κ·B))
    plus activation traffic, t_comm(T), τ_step + layers·τ_layer + b·τ_req and the draft passes.
    TPOT = t_step / E;  tokens/s = b·E / t_step;  memory = W + b·kv(ctx) ≤ usable capacity.
    """
    return phase_pass(hw, llm, precision, workload, batch, decode=True)


def per_sequence(
    llm: LLM, precision: Precision, workload: Workload, decode: bool
) -> tuple[float, float, float, float]:
    """What one sequence brings to a pass: (tokens computed, attention FLOPs, KV bytes read and
    held, output tokens gained).

    decode:  (d + 1, (d + 1)·attn(ctx), kv(ctx), E)    (``decode_step``)
    prefill: ((1 − h)·L, attn_prefill(L, h·L), kv(L), 1)  (``prefill_pass``)
    """
    if decode:
        ctx = workload.mean_decode_context
        verified = workload.speculative_draft_tokens + 1
        return (
            verified,
            verified * float(decode_attention_flops_per_token(llm, ctx)),
            float(kv_bytes_per_sequence(llm, precision, ctx)),
            speculative_tokens_per_step(workload),
        )
    new_tokens = workload.computed_input_tokens
    cached = workload.input_tokens - new_tokens
    return (
        new_tokens,
        prefill_attention_flops_per_prompt(llm, workload.input_tokens, cached),
        float(kv_bytes_per_sequence(llm, precision, workload.input_tokens)),
        1.0,
    )


def phase_coefficients(llm: LLM, precision: Precision, workload: Workload) -> np.ndarray:
    """``per_sequence`` of prefill (row 0) and decode (row 1)."""
    return np.array([per_sequence(llm, precision, workload, decode) for decode in (False, True)])


def phase_pass(
    hw: ReplicaHardware,
    llm: LLM,
    precision: Precision,
    workload: Workload,
    batch: np.ndarray,
    decode: np.ndarray | bool,
    coefficients: np.ndarray | None = None,
) -> PassTimes:
    """Decode steps (where ``decode``) and prefill passes (elsewhere) of ``b`` sequences, in one
    vectorised pass.

    Both phases are a pass whose tokens, attention FLOPs and KV bytes are b times a
    per-sequence coefficient (``per_sequence``): T = b·t, attention = b·a, KV read = b·kv,
    memory = W + b·kv, E tokens gained per sequence; decode rows add the draft passes of
    speculative decoding. ``coefficients``: ``phase_coefficients``, if already computed.
    """
    batch = np.asarray(batch, dtype=float)
    if coefficients is None:
        coefficients = phase_coefficients(llm, precision, workload)
    tokens, attention, kv, gained = coefficients[np.asarray(decode, dtype=int)].T
    kv_bytes = batch * kv
    times = _pass(
        hw,
        llm,
        precision,
        batch=batch,
        tokens=batch * tokens,
        sequences=batch,
        attention_flops=batch * attention,
        kv_bytes_moved=kv_bytes,
        memory_used_bytes=weight_bytes_total(llm, precision) + kv_bytes,
        tokens_per_sequence=gained,
    )
    if workload.speculative_draft_tokens == 0 or not np.any(decode):
        return times
    extra = np.where(decode, draft_overhead_s(hw, llm, precision, workload, batch), 0.0)
    return replace(times, overhead_s=times.overhead_s + extra)


def _with_draft(
    times: PassTimes,
    hw: ReplicaHardware,
    llm: LLM,
    precision: Precision,
    workload: Workload,
    batch: np.ndarray,
) -> PassTimes:
    """Add the draft passes of speculative decoding to a step's fixed costs."""
    if workload.speculative_draft_tokens == 0:
        return times
    extra = draft_overhead_s(hw, llm, precision, workload, batch)
    return replace(times, overhead_s=times.overhead_s + extra)


def prefill_pass(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """Prefill of ``b`` prompts together; only the (1 − h)·L uncached tokens are computed.

    T          = b·(1 − h)·L new tokens
    GEMMs      max(2·T·N_act / F, W_read(T) / B)
    attention  max(b·attn_prefill(L, h·L) / F, b·kv(L) / (κ·B))   (the prompt's KV written once)
    plus activation traffic, t_comm(T) and τ_step + layers·τ_layer + b·τ_req.
    memory     W + b·kv(L)
    """
    return phase_pass(hw, llm, precision, workload, batch, decode=False)


def aggregated_step(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """One step of aggregated serving: ``b`` decode sequences plus piggy-backed (chunked) prefill.

    In steady state b running sequences finish b·E/O requests per step (E tokens per sequence
    per step, 1 without speculation), so each step also prefills p = (b·E/O)·(1 − h)·L prompt
    tokens of the requests replacing them (Sarathi-style chunked prefill). This *prefill
    interference* lengthens every step and so the TPOT:

    T          = b·(d + 1) + p
    GEMMs      max(2·T·N_act / F, W_read(T) / B)
    attention  max((b·(d+1)·attn(ctx) + (b·E/O)·attn_prefill(L, h·L)) / F,
                   (b·kv(ctx) + (b·E/O)·kv(L)) / (κ·B))
    plus activation traffic, t_comm(T), τ_step + layers·τ_layer + (b + b·E/O)·τ_req and the
    draft passes.  TPOT = t_step / E.
    """
    batch = np.asarray(batch, dtype=float)
    ctx = workload.mean_decode_context
    accepted = speculative_tokens_per_step(workload)
    new_prompts = batch * accepted / workload.output_tokens
    decode_tokens = batch * (workload.speculative_draft_tokens + 1)
    tokens = decode_tokens + new_prompts * workload.computed_input_tokens
    cached = workload.input_tokens - workload.computed_input_tokens
    attention = decode_tokens * decode_attention_flops_per_token(
        llm, ctx
    ) + new_prompts * prefill_attention_flops_per_prompt(llm, workload.input_tokens, cached)
    kv_seq = kv_bytes_per_sequence(llm, precision, ctx)
    kv_moved = batch * kv_seq + new_prompts * kv_bytes_per_sequence(
        llm, precision, workload.input_tokens
    )
    times = _pass(
        hw,
        llm,
        precision,
        batch=batch,
        tokens=tokens,
        sequences=batch + new_prompts,
        attention_flops=attention,
        kv_bytes_moved=kv_moved,
        memory_used_bytes=weight_bytes_total(llm, precision) + batch * kv_seq,
        tokens_per_sequence=accepted,
    )
    return _with_draft(times, hw, llm, precision, workload, batch)


def kv_handoff_bytes_per_request(llm: LLM, precision: Precision, workload: Workload) -> float:
    """Bytes a disaggregated request moves from prefill to decode: kv((1 − h)·L).

    Only the newly computed prompt KV travels; cached prefixes are assumed present on the
    decode side too (DESIGN §2).
    """
    return float(kv_bytes_per_sequence(llm, precision, workload.computed_input_tokens))


def min_chips_for_weights(
    rack: RackType, llm: LLM, precision: Precision, max_weight_share: float = 1.0
) -> int:
    """Smallest chip count whose usable memory holds the weights within a share s of it:
    ⌈W / (s·M·(1 − reserve))⌉ (s = 1: all weights fit; a relative tolerance of 1e-9 keeps an
    exact fit from rounding up)."""
    per_chip = rack.serving_memory.capacity_gb_per_chip * GB * (1 - MEMORY_RESERVE_FRACTION)
    ratio = weight_bytes_total(llm, precision) / (per_chip * max_weight_share)
    return max(1, math.ceil(ratio * (1 - 1e-9)))
