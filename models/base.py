"""Shared pydantic base and small vocabularies (confidence, phases, bounds)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, strict-schema base: unknown fields are errors, infinities and NaN are refused,
    instances are hashable."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )


class Confidence(StrEnum):
    """How much a catalog number can be trusted, best first."""

    measured = "measured"
    vendor = "vendor"
    analyst_estimate = "analyst estimate"
    assumption = "assumption"


class Phase(StrEnum):
    """Inference phase: prefill reads the prompt, decode writes tokens one at a time."""

    prefill = "prefill"
    decode = "decode"


class Bound(StrEnum):
    """Which physical limit sets an operating point's speed."""

    compute = "compute"
    memory_bandwidth = "memory_bandwidth"
    capacity = "capacity"
    communication = "communication"
