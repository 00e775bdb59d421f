"""Rates: the roofline operating points for a rack × LLM × workload."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from rackplan.api.deps import Reader
from rackplan.api.routes.catalogs import shipped_catalog
from rackplan.models.workload import Workload
from rackplan.planner.core.rates import rate_report

router = APIRouter(prefix="/v1/rates", tags=["rates"])


@router.get("", operation_id="get_rates")
def rates(
    _caller: Reader,
    rack: str = Query(examples=["gb200-nvl72"]),
    llm: str = Query(examples=["llama-3.1-70b"]),
    input_tokens: float = Query(gt=0, le=10_000_000, examples=[2000]),
    output_tokens: float = Query(ge=1, le=10_000_000, examples=[400]),
    ttft_ms: float | None = Query(default=None, gt=0),
    tpot_ms: float | None = Query(default=None, gt=0),
    prefix_hit: float = Query(default=0.0, ge=0, lt=1),
    max_utilisation: float = Query(default=0.8, gt=0, lt=1),
    precision: Literal["fp4", "fp8", "bf16"] = "fp8",
) -> dict:
    workload = Workload(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prefix_hit_rate=prefix_hit,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        max_utilisation=max_utilisation,
    )
    return rate_report(shipped_catalog(), rack, llm, workload, precision).as_json()
