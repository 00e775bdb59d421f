"""Request and response schemas of the REST API (separate from the domain types)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rackplan.api.limits import text_problem
from rackplan.models.scenario import Scenario


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite returns them without a zone, so the zone is put back."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


def _clean_text(value: str) -> str:
    """Refuse control characters and lone surrogates (api/limits.py)."""
    found = text_problem(value)
    if found:
        raise ValueError(f"the text {found}")
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_clean_text)]
"""A name a database, a spreadsheet and a terminal can all hold."""


class ErrorBody(BaseModel):
    code: str = Field(examples=["invalid_input"])
    message: str = Field(examples=["1 problem in the input"])
    field: str | None = Field(default=None, examples=["periods.1.hours"])
    problems: list[dict[str, Any]] = Field(default_factory=list)


class ScenarioCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scenario: Scenario


class ScenarioOut(BaseModel):
    id: str
    name: str
    created_at: UtcDatetime
    scenario: dict[str, Any]


class ScenarioSummary(BaseModel):
    id: str
    name: str
    created_at: UtcDatetime


class Page(BaseModel):
    items: list[ScenarioSummary]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class SolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    wait_s: float = Field(
        default=0.0,
        ge=0,
        le=600,
        description="Seconds to wait for the plan before answering 202 with a job.",
    )
    time_limit_s: float = Field(default=60.0, gt=0, le=3600)
    gap: float = Field(default=0.005, gt=0, lt=1)
    baselines: bool = True
    catalog: str | None = Field(
        default=None, description="Name of a user catalog whose entries extend the shipped one."
    )


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    error: str | None
    plan_id: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PlanOut(BaseModel):
    id: str
    scenario_id: str
    status: str
    created_at: UtcDatetime
    plan: dict[str, Any]
    audit: dict[str, Any]


class CatalogEntryOut(BaseModel):
    catalog: str
    kind: str
    id: str
    entry: dict[str, Any]


class VariantChange(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    key: SafeName = Field(examples=["power_cap_scale"])
    value: float = Field(examples=[0.8])


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeName = Field(pattern=r"^[^:,=]+$")
    changes: list[VariantChange] = Field(min_length=1)


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeName
    scenario_id: str = Field(max_length=64)


class SessionOut(BaseModel):
    id: str
    name: str
    scenario_id: str
    variants: list[VariantIn]
    comparison: list[dict[str, Any]] | None


JOB_RESPONSES: dict[int | str, dict] = {
    202: {"model": JobOut, "description": "still running: poll the job"},
    429: {"description": "queue full"},
}
"""The extra responses of every route that starts a solver job (OpenAPI)."""
