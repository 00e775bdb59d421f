"""Numeric precision and workload shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rackplan.models.base import Frozen
from rackplan.models.hardware import ComputePrecision

PrecisionName = Literal["fp4", "fp8", "bf16"]
SlaPercentile = Literal["mean", "p50", "p90", "p95", "p99"]


class Precision(Frozen):
    """Bytes per weight, per KV element and per activation, and the math paths used.

    Linear layers run at ``linear_compute``; attention (QKᵀ, AV) runs at
    ``attention_compute`` because it reads the KV cache at KV precision.
    """

    name: PrecisionName
    weight_bytes: float = Field(gt=0)
    kv_bytes: float = Field(gt=0)
    activation_bytes: float = Field(gt=0)
    linear_compute: ComputePrecision
    attention_compute: ComputePrecision


PRECISIONS: dict[str, Precision] = {
    # NVFP4: 4-bit values plus one FP8 scale per 16 values -> 4.5 bits = 0.5625 bytes/weight.
    # KV cache kept in FP8 (common practice with FP4 weights; TensorRT-LLM, vLLM).
    "fp4": Precision(
        name="fp4",
        weight_bytes=0.5625,
        kv_bytes=1.0,
        activation_bytes=1.0,
        linear_compute="fp4",
        attention_compute="fp8",
    ),
    "fp8": Precision(
        name="fp8",
        weight_bytes=1.0,
        kv_bytes=1.0,
        activation_bytes=1.0,
        linear_compute="fp8",
        attention_compute="fp8",
    ),
    "bf16": Precision(
        name="bf16",
        weight_bytes=2.0,
        kv_bytes=2.0,
        activation_bytes=2.0,
        linear_compute="bf16",
        attention_compute="bf16",
    ),
}


class Workload(Frozen):
    """The shape of one request stream and its service-level targets."""

    input_tokens: float = Field(gt=0)
    """Mean prompt length L, tokens."""
    output_tokens: float = Field(ge=1)
    """Mean generated length O, tokens."""
    prefix_hit_rate: float = Field(default=0.0, ge=0, lt=1)
    """h: share of prompt tokens found in the prefix cache (not recomputed)."""
    ttft_ms: float | None = Field(default=None, gt=0)
    """Time-to-first-token target at ``sla_percentile``, ms (None: no target)."""
    tpot_ms: float | None = Field(default=None, gt=0)
    """Time-per-output-token target at ``sla_percentile``, ms (None: no target)."""
    sla_percentile: SlaPercentile = "mean"
    """Which statistic the TTFT/TPOT targets bound: the mean, or a percentile (p50 … p99).
    The model computes means and converts (``models.latency``)."""
    max_utilisation: float = Field(default=0.8, gt=0, lt=1)
    """ρ: the busiest a server may run; sets the queueing delay in TTFT."""
    speculative_draft_tokens: int = Field(default=0, ge=0, le=16)
    """d: tokens drafted per step by speculative decoding / MTP (0: off)."""
    speculative_acceptance: float = Field(default=0.0, ge=0, lt=1)
    """α: probability each drafted token is accepted (needs d > 0)."""

    @model_validator(mode="after")
    def _check_speculation(self) -> Workload:
        if self.speculative_acceptance > 0 and self.speculative_draft_tokens == 0:
            raise ValueError("speculative_acceptance needs speculative_draft_tokens > 0")
        return self

    @property
    def computed_input_tokens(self) -> float:
        """(1 − h)·L: prompt tokens actually computed (the rest hit the prefix cache)."""
        return (1.0 - self.prefix_hit_rate) * self.input_tokens

    @property
    def mean_decode_context(self) -> float:
        """Mean context length during decode, L + O/2 tokens (uniform over the output)."""
        return self.input_tokens + self.output_tokens / 2.0
