"""Hardware types: memory tiers, rack types, efficiency factors.

Units are in field names. FLOP/s are *dense* (no structured sparsity); bandwidths
are unidirectional per chip unless the name says otherwise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, cast

from pydantic import Field, model_validator

from rackplan.models.base import Confidence, Frozen, Phase

ComputePrecision = Literal["fp4", "fp8", "bf16"]
Lifecycle = Literal["shipping", "announced", "withdrawn", "unannounced"]
COMPUTE_PRECISIONS: tuple[ComputePrecision, ...] = ("fp4", "fp8", "bf16")


class MemoryKind(StrEnum):
    """Memory technology of a tier."""

    HBM = "HBM"
    GDDR = "GDDR"
    SRAM = "SRAM"
    LPDDR = "LPDDR"


class MemoryTier(Frozen):
    """One memory tier of a chip."""

    kind: MemoryKind
    capacity_gb_per_chip: float = Field(gt=0)
    """Capacity per chip, GB (1e9 bytes)."""
    bandwidth_tb_s_per_chip: float = Field(gt=0)
    """Peak bandwidth per chip, TB/s (1e12 bytes/s)."""


OVERLAP_EXACT_MAX = 64.0
"""An ``overlap_exponent`` at or above this is the exact max (the pure roofline)."""


class EfficiencyFactors(Frozen):
    """What a serving engine achieves on a rack family, beyond the datasheet (calibratable).

    Fractions of peak (dimensionless, in (0, 1]):

    - ``flops_fraction`` η_F scales dense FLOP/s (GEMMs and attention);
    - ``bandwidth_fraction`` η_B scales memory bandwidth for weight streaming;
    - ``attention_bandwidth_ratio`` κ: attention kernels stream the KV cache at κ·η_B of
      peak (scattered paged blocks; BLIS fits a ~1.9× KV correction against ~1.4× for weights).

    Fixed costs of a step (launches, synchronisation, sampling, scheduling), in µs:
    ``step_overhead_us`` τ_step per step, ``layer_overhead_us`` τ_layer per layer per step,
    ``request_overhead_us`` τ_req per sequence in the step. Zero by default: the pure
    roofline. The shipped catalog carries calibrated values (docs/calibration.md).

    Engine limits: ``max_batch_per_replica`` caps concurrent sequences per replica (a
    serving engine's max_num_seqs / max_batch_size); ``max_tokens_per_step`` caps the tokens
    one step processes (chunked-prefill budget); ``max_weight_share`` is the largest share of
    a replica's usable memory the weights may take (deployments leave room for KV);
    ``moe_imbalance`` ≥ 1 multiplies the statistical load imbalance of routed experts (router
    skew beyond uniform routing; ``roofline.expert_load_imbalance``);
    ``activation_elements_per_layer`` sets the non-GEMM activation traffic;
    ``gemm_half_efficiency_tokens`` the GEMM efficiency ramp with problem size.

    ``rate_error_low_pct`` / ``rate_error_high_pct``: the band of validation error, in %, on
    points the factors were not fitted to (rates get ``low = rate·(1 − low%)``,
    ``high = rate·(1 + high%)``).
    """

    flops_fraction: float = Field(gt=0, le=1)
    bandwidth_fraction: float = Field(gt=0, le=1)
    attention_bandwidth_ratio: float = Field(default=1.0, gt=0, le=1)
    step_overhead_us: float = Field(default=0.0, ge=0, le=100_000)
    layer_overhead_us: float = Field(default=0.0, ge=0, le=10_000)
    request_overhead_us: float = Field(default=0.0, ge=0, le=10_000)
    max_batch_per_replica: int = Field(default=16_384, ge=1, le=1_000_000)
    max_tokens_per_step: int = Field(default=1_000_000, ge=1, le=100_000_000)
    max_weight_share: float = Field(default=1.0, gt=0, le=1)
    moe_imbalance: float = Field(default=1.0, ge=1, le=4)
    overlap_exponent: float = Field(default=OVERLAP_EXACT_MAX, ge=1, le=OVERLAP_EXACT_MAX)
    """p: how well a kernel overlaps its math with its memory stream. A kernel needing
    t_c of math and t_m of streaming takes (t_c^p + t_m^p)^(1/p): p = 1 no overlap (the sum),
    p → ∞ perfect overlap (the roofline's max; ``OVERLAP_EXACT_MAX`` and above is taken as
    the exact max). Near the ridge point real kernels lose up to 2^(1 − 1/p)."""
    gemm_half_efficiency_tokens: float = Field(default=0.0, ge=0, le=16_384)
    """M½: tokens per GEMM at which it reaches half of η_F. A GEMM of M tokens runs at
    η_F·M/(M + M½): small-M GEMMs cannot fill the tensor-core tiles and pipelines. Routed
    experts see M = the tokens each touched expert receives, so sparse MoE layers pay it
    most. 0 = pure roofline."""
    activation_elements_per_layer: float = Field(default=0.0, ge=0, le=64)
    """c_act: d_model-sized 16-bit vectors the non-GEMM kernels move per token per layer
    (norms, residuals, gated activation, RoPE, input quantisation); 0 = pure roofline,
    16–20 in practice (fewer with kernel fusion)."""
    rate_error_low_pct: float = Field(default=0.0, ge=0, lt=100)
    rate_error_high_pct: float = Field(default=0.0, ge=0, le=1_000)
    source: str = ""
    confidence: Confidence = Confidence.assumption
    notes: str = ""


class RackType(Frozen):
    """A purchasable rack: chips, memory tiers, interconnect, power and price.

    The first memory tier is the *serving tier*: weights and KV cache live there and
    every roofline byte is read from it. Further tiers (e.g. LPDDR on Grace/Vera)
    are recorded but not used by the roofline.
    """

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str
    family: str
    """Efficiency family (hopper, blackwell, rubin, rubin-cpx, groq-lpu …)."""
    vendor: str
    status: str = Field(pattern=r"^(shipping|announced|withdrawn|unannounced)\b")
    """Lifecycle first (shipping, announced, withdrawn or unannounced), then any detail."""
    chip_name: str
    chips_per_rack: int = Field(gt=0)
    fp4_dense_tflops_per_chip: float | None = Field(default=None, gt=0)
    fp8_dense_tflops_per_chip: float | None = Field(default=None, gt=0)
    bf16_dense_tflops_per_chip: float | None = Field(default=None, gt=0)
    memory_tiers: tuple[MemoryTier, ...] = Field(min_length=1)
    scaleup_domain_chips: int = Field(gt=0)
    """Chips reachable over the scale-up fabric (NVLink, LPU C2C) without the network."""
    scaleup_bw_gb_s_per_chip: float = Field(gt=0)
    """Scale-up bandwidth per chip, GB/s, one direction."""
    scaleup_latency_us: float = Field(ge=0)
    """Latency of one collective (all-reduce) on the scale-up fabric, µs."""
    scaleout_bw_gb_s_per_chip: float = Field(gt=0)
    """Scale-out (network) bandwidth per chip, GB/s, one direction."""
    power_kw_at_load: float = Field(gt=0)
    """IT power of the whole rack at full load, kW (before PUE)."""
    power_kw_idle: float = Field(ge=0)
    """IT power of the whole rack when idle, kW."""
    capex_usd: float = Field(gt=0)
    """Purchase price of the whole rack, USD."""
    roles: frozenset[Phase] = Field(min_length=1)
    first_available: str
    source: str = Field(min_length=1)
    confidence: Confidence
    power_confidence: Confidence
    capex_confidence: Confidence
    notes: str = ""

    @model_validator(mode="after")
    def _check_consistency(self) -> RackType:
        if self.power_kw_idle > self.power_kw_at_load:
            raise ValueError("power_kw_idle must not exceed power_kw_at_load")
        if not any(self.dense_tflops_per_chip(p) for p in COMPUTE_PRECISIONS):
            raise ValueError("at least one of fp4/fp8/bf16 dense TFLOP/s must be given")
        return self

    @property
    def lifecycle(self) -> Lifecycle:
        """shipping, announced, withdrawn or unannounced: the first word of ``status``."""
        return cast(Lifecycle, self.status.split(maxsplit=1)[0].rstrip(":;,"))

    @property
    def availability_is_assumed(self) -> bool:
        """True when a plan buying this rack rests on an assumption that it will exist."""
        return self.lifecycle in ("withdrawn", "unannounced")

    @property
    def serving_memory(self) -> MemoryTier:
        """The tier holding weights and KV cache (the first one)."""
        return self.memory_tiers[0]

    def dense_tflops_per_chip(self, precision: ComputePrecision) -> float | None:
        """Peak dense TFLOP/s per chip at ``precision``, or None if not listed."""
        return getattr(self, f"{precision}_dense_tflops_per_chip")

    def effective_tflops_per_chip(self, precision: ComputePrecision) -> tuple[float, str]:
        """Dense TFLOP/s per chip used for math at ``precision``, and the precision run.

        A chip without a native path for ``precision`` runs it at the next wider
        precision it has (fp4 → fp8 → bf16): narrow data is up-cast, never faster.
        If only narrower paths exist (an fp8-only LPU asked for bf16), the narrowest
        wider-or-equal path is missing, so the widest available path is used.
        """
        order = list(COMPUTE_PRECISIONS)
        for candidate in order[order.index(precision) :]:
            value = self.dense_tflops_per_chip(candidate)
            if value:
                return value, candidate
        for candidate in reversed(order):
            value = self.dense_tflops_per_chip(candidate)
            if value:
                return value, candidate
        raise ValueError(f"rack {self.id} lists no dense FLOP/s")  # unreachable: validated

    def can_serve(self, phase: Phase) -> bool:
        """Whether the catalog lets this rack type serve ``phase``."""
        return phase in self.roles
