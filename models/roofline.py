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

- A replica pools its chips: tensor/expert parallelism with perfect balance, so
  FLOP/s, bandwidth and capacity add up across chips. The price of pooling is the
  communication term ``t_comm`` (two all-reduces per layer), added *without*
  overlap — conservative.
- ``MEMORY_RESERVE_FRACTION`` of the serving memory is kept free for activations,
  CUDA graphs / compiled programs and allocator fragmentation.
- A collective that leaves the scale-up domain runs over the scale-out network at
  its bandwidth with ``CROSS_DOMAIN_LATENCY_US`` more latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.llm import LLM
from rackplan.models.workload import Precision, Workload

MEMORY_RESERVE_FRACTION = 0.10
"""Share of a replica's serving memory not usable for weights or KV (activations,
compiled graphs, fragmentation). vLLM's default gpu_memory_utilization is 0.9."""

COLLECTIVES_PER_LAYER = 2
"""Tensor-parallel all-reduces per transformer layer (after attention, after the MLP)."""

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

    def take(self, index: np.ndarray) -> ReplicaHardware:
        """The hardware of replica ``index[i]`` for each i (aligns replicas with points)."""
        return ReplicaHardware(*(getattr(self, name)[index] for name in _HARDWARE_FIELDS))


_HARDWARE_FIELDS = tuple(f.name for f in fields(ReplicaHardware))


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
    return ReplicaHardware(
        chips=chips,
        linear_flops_per_s=chips * linear_tflops * TERA * efficiency.flops_fraction,
        attention_flops_per_s=chips * attention_tflops * TERA * efficiency.flops_fraction,
        bandwidth_bytes_per_s=chips
        * memory.bandwidth_tb_s_per_chip
        * TERA
        * efficiency.bandwidth_fraction,
        capacity_bytes=chips * memory.capacity_gb_per_chip * GB * (1 - MEMORY_RESERVE_FRACTION),
        link_bytes_per_s=link_gb_s * GB,
        collective_latency_s=latency_us * 1e-6,
        scaleout_bytes_per_s=chips * rack.scaleout_bw_gb_s_per_chip * GB,
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
    hw: ReplicaHardware, llm: LLM, precision: Precision, tokens: np.ndarray | float
) -> np.ndarray:
    """Communication time of one forward pass of ``tokens`` tokens on a multi-chip replica.

    t_comm = layers · 2 · (α + 2·(n − 1)/n · tokens·d_model·b_a / link), a ring all-reduce
    of the activations twice per layer; 0 for a single chip.
    """
    tokens = np.asarray(tokens, dtype=float)
    message_bytes = tokens * llm.d_model * precision.activation_bytes
    ring = 2.0 * (hw.chips - 1) / hw.chips * message_bytes / hw.link_bytes_per_s
    per_pass = llm.layers * COLLECTIVES_PER_LAYER * (hw.collective_latency_s + ring)
    return np.where(hw.chips > 1, per_pass, 0.0)


@dataclass(frozen=True)
class PassTimes:
    """Time terms of one forward pass, seconds, one entry per batch size.

    total = max(compute, memory) + communication.
    """

    batch: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    communication_s: np.ndarray
    memory_used_bytes: np.ndarray

    @property
    def total_s(self) -> np.ndarray:
        return np.maximum(self.compute_s, self.memory_s) + self.communication_s

    @property
    def busy_fraction(self) -> np.ndarray:
        """Share of the pass the chips compute or stream memory (not waiting on the fabric)."""
        return np.maximum(self.compute_s, self.memory_s) / self.total_s


def decode_step(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """One decode step for ``b`` sequences at mean context ctx = L + O/2.

    t_compute = b·(2·N_act/F_lin + attn(ctx)/F_attn)   (attn: decode_attention_flops_per_token)
    bytes     = W_read(b) + b·kv(ctx)
    t_memory  = bytes / B
    t_step    = max(t_compute, t_memory) + t_comm(b);   TPOT = t_step;  tokens/s = b / t_step
    memory    = W + b·kv(ctx)   (must fit the replica's usable capacity)
    """
    batch = np.asarray(batch, dtype=float)
    ctx = workload.mean_decode_context
    kv_seq = kv_bytes_per_sequence(llm, precision, ctx)
    linear = batch * 2.0 * llm.params_active_b * 1e9 / hw.linear_flops_per_s
    attention = batch * decode_attention_flops_per_token(llm, ctx) / hw.attention_flops_per_s
    bytes_read = weight_bytes_read(llm, precision, batch) + batch * kv_seq
    return PassTimes(
        batch=batch,
        compute_s=linear + attention,
        memory_s=bytes_read / hw.bandwidth_bytes_per_s,
        communication_s=collective_time_s(hw, llm, precision, batch),
        memory_used_bytes=weight_bytes_total(llm, precision) + batch * kv_seq,
    )


def prefill_pass(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """Prefill of ``b`` prompts together; only the (1 − h)·L uncached tokens are computed.

    T         = b·(1 − h)·L new tokens
    t_compute = T·2·N_act/F_lin + b·attn_prefill(L, h·L)/F_attn
    bytes     = W_read(T) + b·kv(L)        (weights read once; the prompt's KV written once)
    t_pass    = max(t_compute, bytes/B) + t_comm(T)
    memory    = W + b·kv(L)
    """
    batch = np.asarray(batch, dtype=float)
    new_tokens = workload.computed_input_tokens
    cached = workload.input_tokens - new_tokens
    tokens = batch * new_tokens
    attention = prefill_attention_flops_per_prompt(llm, workload.input_tokens, cached)
    kv_prompt = kv_bytes_per_sequence(llm, precision, workload.input_tokens)
    compute = (
        tokens * 2.0 * llm.params_active_b * 1e9 / hw.linear_flops_per_s
        + batch * attention / hw.attention_flops_per_s
    )
    bytes_moved = weight_bytes_read(llm, precision, tokens) + batch * kv_prompt
    return PassTimes(
        batch=batch,
        compute_s=compute,
        memory_s=bytes_moved / hw.bandwidth_bytes_per_s,
        communication_s=collective_time_s(hw, llm, precision, tokens),
        memory_used_bytes=weight_bytes_total(llm, precision) + batch * kv_prompt,
    )


def aggregated_step(
    hw: ReplicaHardware, llm: LLM, precision: Precision, workload: Workload, batch: np.ndarray
) -> PassTimes:
    """One step of aggregated serving: ``b`` decode tokens plus piggy-backed (chunked) prefill.

    In steady state b running sequences finish b/O requests per step, so each step must also
    prefill p = b·(1 − h)·L/O prompt tokens of the requests replacing them (Sarathi-style
    chunked prefill). This *prefill interference* lengthens every step and so the TPOT:

    t_compute = (b + p)·2·N_act/F_lin + (b·attn(ctx) + (b/O)·attn_prefill(L, h·L))/F_attn
    bytes     = W_read(b + p) + b·kv(ctx) + (b/O)·kv(L)
    t_step    = max(t_compute, bytes/B) + t_comm(b + p);   TPOT = t_step
    """
    batch = np.asarray(batch, dtype=float)
    ctx = workload.mean_decode_context
    new_prompts = batch / workload.output_tokens
    prefill_tokens = new_prompts * workload.computed_input_tokens
    tokens = batch + prefill_tokens
    cached = workload.input_tokens - workload.computed_input_tokens
    attention = batch * decode_attention_flops_per_token(
        llm, ctx
    ) + new_prompts * prefill_attention_flops_per_prompt(llm, workload.input_tokens, cached)
    kv_seq = kv_bytes_per_sequence(llm, precision, ctx)
    bytes_moved = (
        weight_bytes_read(llm, precision, tokens)
        + batch * kv_seq
        + new_prompts * kv_bytes_per_sequence(llm, precision, workload.input_tokens)
    )
    return PassTimes(
        batch=batch,
        compute_s=tokens * 2.0 * llm.params_active_b * 1e9 / hw.linear_flops_per_s
        + attention / hw.attention_flops_per_s,
        memory_s=bytes_moved / hw.bandwidth_bytes_per_s,
        communication_s=collective_time_s(hw, llm, precision, tokens),
        memory_used_bytes=weight_bytes_total(llm, precision) + batch * kv_seq,
    )


def queueing_factor(utilisation: float) -> float:
    """Mean sojourn time / service time of an M/D/1 queue at utilisation ρ.

    Poisson arrivals, deterministic service S: mean wait W_q = ρ·S / (2·(1 − ρ)), so
    TTFT = S·(1 + ρ / (2·(1 − ρ))). At ρ = 0.8 this is 3·S; at ρ = 0.5, 1.5·S.
    """
    if not 0 <= utilisation < 1:
        raise ValueError("utilisation must be in [0, 1)")
    return 1.0 + utilisation / (2.0 * (1.0 - utilisation))


def kv_handoff_bytes_per_request(llm: LLM, precision: Precision, workload: Workload) -> float:
    """Bytes a disaggregated request moves from prefill to decode: kv((1 − h)·L).

    Only the newly computed prompt KV travels; cached prefixes are assumed present on the
    decode side too (DESIGN §2).
    """
    return float(kv_bytes_per_sequence(llm, precision, workload.computed_input_tokens))


def min_chips_for_weights(rack: RackType, llm: LLM, precision: Precision) -> int:
    """Smallest chip count whose usable memory holds all weights: ⌈W / (M·(1 − reserve))⌉."""
    per_chip = rack.serving_memory.capacity_gb_per_chip * GB * (1 - MEMORY_RESERVE_FRACTION)
    return max(1, math.ceil(weight_bytes_total(llm, precision) / per_chip))
