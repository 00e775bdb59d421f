"""Robust plans and stress tests, as jobs: ``POST /v1/scenarios/{id}/robust-plans`` and
``POST /v1/plans/{id}/stress-tests`` start them (wait for the result, or get a job to poll);
``GET /v1/robust-plans/{id}`` and ``GET /v1/stress-tests/{id}`` return them, with the keys of
the CLI's ``robust.json`` / ``stress.json`` under ``result``; ``…/export`` gives JSON, a zip
of CSV tables or an XLSX workbook. A result's id is the id of the job that made it.

The same job machinery, tenant ownership, Idempotency-Key, problem details and checks as
``POST /v1/scenarios/{id}/plans`` (api/routes/plans.py).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rackplan.api.db import AnalysisRow, PlanRow, ScenarioRow
from rackplan.api.deps import IdempotencyKey, Reader, State, StateDep, Writer, owned
from rackplan.api.routes.catalogs import user_entries
from rackplan.api.routes.jobs import start_job, wait_for
from rackplan.api.routes.plans import check_catalog_ids, neutralised
from rackplan.api.schemas import JOB_RESPONSES, JobOut, UtcDatetime
from rackplan.api.security import Caller
from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import Objective, Scenario
from rackplan.planner.io.spreadsheets import write_workbook

router = APIRouter(tags=["uncertainty"])

MAX_FUTURES = 50
"""Sampled futures of a robust plan (the extensive form is solved for tens of futures)."""
MAX_STRESS_SAMPLES = 10_000
"""Sampled futures of a stress test through the API (the CLI on Dask takes more)."""
MAX_SEED = 2**32 - 1
KIND_LABELS = {"robust": "robust plan", "stress": "stress test"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class RobustRequest(BaseModel):
    """``rackplan robust``'s options, as a request body."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    wait_s: float = Field(default=0.0, ge=0, le=600, description="Seconds to wait (else 202).")
    futures: int = Field(
        default=20, ge=1, le=MAX_FUTURES, description="Futures to sample (named ones: ignored)."
    )
    commit_periods: int = Field(default=1, ge=0, description="Order lead time K, in periods.")
    cvar_weight: float = Field(default=0.0, ge=0, le=100)
    cvar_alpha: float = Field(default=0.9, ge=0, lt=1)
    service_share: float = Field(default=1.0, ge=0, le=1)
    penalty_usd_per_million_tokens: float | None = Field(default=None, gt=0, le=1e9)
    time_limit_s: float = Field(default=60.0, gt=0, le=3600, description="Per solve.")
    gap: float = Field(default=0.005, gt=0, lt=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    catalog: str | None = Field(default=None, description="A user catalog extending the shipped.")


class StressRequest(BaseModel):
    """``rackplan stress``'s options, as a request body."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    wait_s: float = Field(default=0.0, ge=0, le=600, description="Seconds to wait (else 202).")
    samples: int = Field(default=1000, ge=1, le=MAX_STRESS_SAMPLES)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    scenario_id: str | None = Field(
        default=None, max_length=64, description="Default: the scenario the plan was made for."
    )
    time_limit_s: float = Field(default=60.0, gt=0, le=3600, description="The job's budget basis.")


class AnalysisOut(BaseModel):
    id: str
    kind: str
    scenario_id: str
    plan_id: str | None
    status: str
    created_at: UtcDatetime
    result: dict[str, Any]
    audit: dict[str, Any]


def analysis_out(row: AnalysisRow) -> AnalysisOut:
    """A stored robust plan or stress test; its audit names the tenant that asked."""
    return AnalysisOut(
        id=row.id,
        kind=row.kind,
        scenario_id=row.scenario_id,
        plan_id=row.plan_id,
        status=row.status,
        created_at=row.created_at,
        result=row.result,
        audit={**row.audit, "requested_by": row.tenant},
    )


def owned_analysis(app: State, kind: str, analysis_id: str, caller: Caller) -> AnalysisRow:
    """The caller's robust plan or stress test; 404 as for a missing one otherwise."""
    label = KIND_LABELS[kind]
    with app.db.read() as session:
        row = owned(session, AnalysisRow, analysis_id, caller, label)
        if row.kind != kind:
            raise HTTPException(404, f"no {label} '{analysis_id}'")
        session.expunge(row)
        return row


async def answer(app: State, job: JobOut, wait_s: float, caller: Caller) -> Any:
    """201 with the result if the job ends within ``wait_s``, else 202 with the job."""
    job = await wait_for(app, job.id, wait_s, caller)
    if job.status == "succeeded":
        row = await run_in_threadpool(owned_analysis, app, job.kind, job.id, caller)
        return analysis_out(row)
    if job.status in {"failed", "cancelled"}:
        raise HTTPException(
            500 if job.status == "failed" else 409, f"the job {job.status}: {job.error}"
        )
    return JSONResponse(
        status_code=202,
        content=job.model_dump(mode="json"),
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


# ---------------------------------------------------------------------------- robust plans
def check_robust(scenario: dict, body: RobustRequest) -> None:
    """What the planner would refuse, as a 422 naming the field, before a job is started."""
    parsed = Scenario.model_validate(scenario)
    problems = []
    if parsed.policy.objective is not Objective.min_tco:
        problems.append(("policy.objective", "robust plans minimise TCO: use min_tco"))
    if body.commit_periods > len(parsed.periods):
        problems.append(("commit_periods", f"at most the scenario's {len(parsed.periods)} periods"))
    if body.service_share < 1 and body.penalty_usd_per_million_tokens is None:
        problems.append(("penalty_usd_per_million_tokens", "needed when service_share < 1"))
    if problems:
        raise InputError([Problem("robust request", None, f, m) for f, m in problems])


def _submit_robust(
    app: State, scenario_id: str, body: RobustRequest, caller: Caller, key: str | None
) -> JobOut:
    """Check the scenario, catalog and options, then store and submit the job."""
    with app.db.read() as session:
        scenario = owned(session, ScenarioRow, scenario_id, caller, "scenario").body
    entries = user_entries(app, body.catalog, caller)
    check_catalog_ids(scenario, entries)
    check_robust(scenario, body)
    per_solve = min(body.time_limit_s, app.settings.solve_time_limit_s)
    request = {
        "scenario_id": scenario_id,
        "scenario": scenario,
        "catalog_entries": entries,
        "futures": body.futures,
        "seed": body.seed,
        "options": {
            "commit_periods": body.commit_periods,
            "cvar_weight": body.cvar_weight,
            "cvar_alpha": body.cvar_alpha,
            "service_share": body.service_share,
            "penalty_usd_per_million_tokens": body.penalty_usd_per_million_tokens,
            "time_limit_s": per_solve,
            "rel_gap": body.gap,
        },
        # the job's budget basis: RP, EV, EEV and one hindsight solve per future
        "time_limit_s": per_solve * (3 + body.futures),
        "tenant": caller.tenant,
    }
    return start_job(app, "robust", request, caller, key)


@router.post(
    "/v1/scenarios/{scenario_id}/robust-plans",
    operation_id="create_robust_plan",
    status_code=201,
    responses=JOB_RESPONSES,
)
async def create_robust_plan(
    scenario_id: str,
    body: RobustRequest,
    app: StateDep,
    caller: Writer,
    idempotency_key: IdempotencyKey = None,
) -> AnalysisOut:
    """A two-stage stochastic plan: orders inside the commit horizon the same in every future;
    VSS, EVPI and per-future TCO, shortfall and regret (``rackplan robust``)."""
    job = await run_in_threadpool(_submit_robust, app, scenario_id, body, caller, idempotency_key)
    return await answer(app, job, body.wait_s, caller)


# ---------------------------------------------------------------------------- stress tests
def _submit_stress(
    app: State, plan_id: str, body: StressRequest, caller: Caller, key: str | None
) -> JobOut:
    """Check the plan (it must have a fleet) and the scenario, then store and submit the job."""
    with app.db.read() as session:
        plan = owned(session, PlanRow, plan_id, caller, "plan")
        result, audit = plan.result, plan.audit
        scenario_id = body.scenario_id or plan.scenario_id
        scenario = owned(session, ScenarioRow, scenario_id, caller, "scenario").body
    if not result.get("fleet"):
        raise InputError(
            [Problem("plan", None, "fleet", "the plan bought no fleet (was it solved?)")]
        )
    entries = {k: audit.get("catalog_entries", {}).get(k, []) for k in ("racks", "llms")}
    check_catalog_ids(scenario, entries)
    request = {
        "scenario_id": scenario_id,
        "plan_id": plan_id,
        "scenario": scenario,
        "catalog_entries": entries,
        "plan": {"fleet": result["fleet"]},
        "samples": body.samples,
        "seed": body.seed,
        "time_limit_s": min(body.time_limit_s, app.settings.solve_time_limit_s),
        "tenant": caller.tenant,
    }
    return start_job(app, "stress", request, caller, key)


@router.post(
    "/v1/plans/{plan_id}/stress-tests",
    operation_id="create_stress_test",
    status_code=201,
    responses=JOB_RESPONSES,
)
async def create_stress_test(
    plan_id: str,
    body: StressRequest,
    app: StateDep,
    caller: Writer,
    idempotency_key: IdempotencyKey = None,
) -> AnalysisOut:
    """Fix the plan's purchases and evaluate them against ``samples`` sampled futures
    (at most MAX_STRESS_SAMPLES): probability of shortfall, expected and p95 unserved tokens
    per class, the TCO distribution (``rackplan stress``)."""
    job = await run_in_threadpool(_submit_stress, app, plan_id, body, caller, idempotency_key)
    return await answer(app, job, body.wait_s, caller)


# ---------------------------------------------------------------------------- results
def export_response(row: AnalysisRow, export_format: Literal["json", "csv", "xlsx"]) -> Response:
    """The result as JSON (the CLI's file), a zip of CSV tables, or an XLSX workbook."""
    if export_format == "json":
        return JSONResponse(row.result)
    frames = {name: pd.DataFrame(records) for name, records in row.tables.items()}
    stem = f"{row.kind}-{row.id}"
    if export_format == "csv":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, frame in frames.items():
                archive.writestr(f"{name}.csv", neutralised(frame).to_csv(index=False))
        disposition = f'attachment; filename="{stem}.zip"'
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": disposition},
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tables.xlsx"
        write_workbook({n: neutralised(f) for n, f in frames.items()}, path)
        content = path.read_bytes()
    disposition = f'attachment; filename="{stem}.xlsx"'
    return Response(content, media_type=XLSX, headers={"Content-Disposition": disposition})


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}, XLSX: {}}}
}


@router.get("/v1/robust-plans/{robust_plan_id}", operation_id="get_robust_plan")
def get_robust_plan(robust_plan_id: str, app: StateDep, caller: Reader) -> AnalysisOut:
    return analysis_out(owned_analysis(app, "robust", robust_plan_id, caller))


@router.get(
    "/v1/robust-plans/{robust_plan_id}/export",
    operation_id="export_robust_plan",
    responses=EXPORT_RESPONSES,
)
def export_robust_plan(
    robust_plan_id: str,
    app: StateDep,
    caller: Reader,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response:
    """``robust.json``, or the tables (summary, commit_purchases, futures, purchases,
    unserved) as a zip of CSV files or an XLSX workbook."""
    return export_response(owned_analysis(app, "robust", robust_plan_id, caller), format)


@router.get("/v1/stress-tests/{stress_test_id}", operation_id="get_stress_test")
def get_stress_test(stress_test_id: str, app: StateDep, caller: Reader) -> AnalysisOut:
    return analysis_out(owned_analysis(app, "stress", stress_test_id, caller))


@router.get(
    "/v1/stress-tests/{stress_test_id}/export",
    operation_id="export_stress_test",
    responses=EXPORT_RESPONSES,
)
def export_stress_test(
    stress_test_id: str,
    app: StateDep,
    caller: Reader,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response:
    """``stress.json``, or the tables (summary, classes, periods, samples) as a zip of CSV
    files or an XLSX workbook."""
    return export_response(owned_analysis(app, "stress", stress_test_id, caller), format)
