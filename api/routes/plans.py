"""Plans: solve a stored scenario (wait for it, or get a job), fetch and export plans."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

import pandas as pd
from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from rackplan.api.db import PlanRow, ScenarioRow
from rackplan.api.deps import IdempotencyKey, Reader, StateDep, Writer, owned
from rackplan.api.routes.catalogs import shipped_catalog, user_entries
from rackplan.api.routes.jobs import start_job, wait_for
from rackplan.api.schemas import JOB_RESPONSES, JobOut, PlanOut, SolveRequest
from rackplan.api.security import Caller
from rackplan.catalogs.errors import InputError, Problem
from rackplan.planner.io.export import TABLES
from rackplan.planner.io.spreadsheets import write_workbook

router = APIRouter(tags=["plans"])


def plan_out(row: PlanRow) -> PlanOut:
    """A stored plan; its audit names the tenant that asked (never a key id)."""
    return PlanOut(
        id=row.id,
        scenario_id=row.scenario_id,
        status=row.status,
        created_at=row.created_at,
        plan=row.result,
        audit={**row.audit, "requested_by": row.tenant},
    )


@router.post(
    "/v1/scenarios/{scenario_id}/plans",
    operation_id="solve_scenario",
    status_code=201,
    responses=JOB_RESPONSES,
)
async def solve(
    scenario_id: str,
    body: SolveRequest,
    app: StateDep,
    caller: Writer,
    idempotency_key: IdempotencyKey = None,
) -> PlanOut:
    """Solve a scenario. Waits up to ``wait_s`` seconds for the plan (201), else 202 + job."""
    job = await run_in_threadpool(_submit_solve, app, scenario_id, body, caller, idempotency_key)
    job = await wait_for(app, job.id, body.wait_s, caller)
    if job.status == "succeeded" and job.plan_id:
        return await run_in_threadpool(get_plan_row, app, job.plan_id, caller)
    if job.status in {"failed", "cancelled"}:
        raise HTTPException(
            500 if job.status == "failed" else 409, f"the job {job.status}: {job.error}"
        )
    return JSONResponse(
        status_code=202,
        content=job.model_dump(mode="json"),
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


def _submit_solve(
    app, scenario_id: str, body: SolveRequest, caller: Caller, idempotency_key: str | None
) -> JobOut:
    """Check the scenario and catalog, then store and submit the job (in a worker thread)."""
    with app.db.read() as session:
        body_json = owned(session, ScenarioRow, scenario_id, caller, "scenario").body
    entries = user_entries(app, body.catalog, caller)
    check_catalog_ids(body_json, entries)
    request = {
        "scenario_id": scenario_id,
        "scenario": body_json,
        "catalog_entries": entries,
        "time_limit_s": min(body.time_limit_s, app.settings.solve_time_limit_s),
        "gap": body.gap,
        "baselines": body.baselines,
        "tenant": caller.tenant,
    }
    return start_job(app, "solve", request, caller, idempotency_key)


def check_catalog_ids(scenario: dict, entries: dict[str, list[dict]]) -> None:
    """Unknown rack or LLM ids are the caller's mistake: 422 now, not a failed job later."""
    catalog = shipped_catalog()
    racks = set(catalog.racks) | {r["id"] for r in entries.get("racks", [])}
    llms = set(catalog.llms) | {m["id"] for m in entries.get("llms", [])}
    problems = [
        Problem(
            "scenario",
            None,
            f"racks.{i}.rack",
            "unknown rack id (see /v1/catalogs/racks or a user catalog)",
            o["rack"],
        )
        for i, o in enumerate(scenario.get("racks", []))
        if o["rack"] not in racks
    ]
    problems += [
        Problem(
            "scenario",
            None,
            f"classes.{i}.llm",
            "unknown LLM id (see /v1/catalogs/llms or a user catalog)",
            c["llm"],
        )
        for i, c in enumerate(scenario.get("classes", []))
        if c["llm"] not in llms
    ]
    if problems:
        raise InputError(problems)


def get_plan_row(app, plan_id: str, caller: Caller) -> PlanOut:
    with app.db.read() as session:
        return plan_out(owned(session, PlanRow, plan_id, caller, "plan"))


@router.get("/v1/plans/{plan_id}", operation_id="get_plan")
def get_plan(plan_id: str, app: StateDep, caller: Reader) -> PlanOut:
    return get_plan_row(app, plan_id, caller)


FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting with one of these as a formula (OWASP CSV injection)."""


def neutral_cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula, made inert with a leading quote;
    numbers (negative ones too) and other text unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a formula."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series):
            out[column] = series.map(neutral_cell).astype(object)
    out.columns = [neutral_cell(str(c)) for c in out.columns]
    return out


def plan_frames(plan: dict) -> dict[str, pd.DataFrame]:
    summary = [
        ("status", plan.get("status")),
        ("objective_usd", plan.get("objective_usd")),
        ("best_bound_usd", plan.get("best_bound_usd")),
        ("gap", plan.get("gap")),
    ] + [(f"explanation_{i + 1}", line) for i, line in enumerate(plan.get("explanation", []))]
    frames = {"summary": pd.DataFrame(summary, columns=["key", "value"])}
    for name in TABLES:
        frames[name] = pd.DataFrame(plan.get(name) or [])
    return frames


@router.get(
    "/v1/plans/{plan_id}/export",
    operation_id="export_plan",
    responses={
        200: {
            "content": {
                "application/zip": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            }
        }
    },
)
def export_plan(
    plan_id: str, app: StateDep, caller: Reader, format: Literal["json", "csv", "xlsx"] = "json"
) -> Response:
    """The plan as JSON, a zip of CSV tables, or an XLSX workbook."""
    plan = get_plan_row(app, plan_id, caller)
    if format == "json":
        return JSONResponse(plan.plan)
    frames = plan_frames(plan.plan)
    if format == "csv":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, frame in frames.items():
                archive.writestr(f"{name}.csv", neutralised(frame).to_csv(index=False))
        return Response(
            buffer.getvalue(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.zip"'},
        )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.xlsx"
        write_workbook(frames, path)
        content = path.read_bytes()
    media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="plan-{plan_id}.xlsx"'},
    )
