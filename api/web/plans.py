"""Job progress (polled by the page) and the plan page with its downloads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rackplan.api.db import JobRow
from rackplan.api.deps import State, StateDep, owned
from rackplan.api.routes.jobs import get_job_row
from rackplan.api.routes.plans import export_plan, get_plan_row, neutralised, plan_frames
from rackplan.api.schemas import PlanOut
from rackplan.api.security import Caller
from rackplan.api.web import charts, views
from rackplan.api.web.common import SECURITY_HEADERS, User, WebRoute, render
from rackplan.models.scenario import Scenario
from rackplan.planner.io.spreadsheets import INPUT_PREFIX, scenario_frames, write_workbook

router = APIRouter(route_class=WebRoute, include_in_schema=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


SESSION_KINDS = frozenset({"session", "pareto"})
"""Job kinds that belong to a what-if session (the rest belong to a scenario)."""


def _next_page(job: JobRow) -> str | None:
    """Where a finished job's result is shown (robust plans and stress tests: in the API only,
    so none)."""
    if job.status != "succeeded":
        return None
    if job.kind == "solve":
        return f"/plans/{job.plan_id}"
    if job.kind in SESSION_KINDS and job.request.get("session_id"):
        return f"/sessions/{job.request['session_id']}"
    return None


def _job_state(app: State, job_id: str, caller: Caller) -> dict:
    out = get_job_row(app, job_id, caller)  # the API's ownership check (404 otherwise)
    with app.db.read() as session:
        row = owned(session, JobRow, job_id, caller, "job")
        follow = _next_page(row)
        in_session = row.kind in SESSION_KINDS and bool(row.request.get("session_id"))
        back = row.request.get("session_id") if in_session else row.request.get("scenario_id")
        kind = row.kind
    return {
        "id": out.id,
        "kind": kind,
        "status": out.status,
        "progress": out.progress,
        "error": out.error,
        "next": follow,
        "back": f"/sessions/{back}" if in_session else f"/scenarios/{back}",
        "in_session": in_session,
        "elapsed_s": (out.updated_at - out.created_at).total_seconds(),
    }


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, app: StateDep, user: User) -> Response:
    state = _job_state(app, job_id, user.caller)
    return render(request, "job.html", {"title": "Solving", "job": state}, user)


@router.get("/jobs/{job_id}/status")
def job_status(job_id: str, app: StateDep, user: User) -> JSONResponse:
    """What the job page polls: status, progress, error and the page of its result."""
    state = _job_state(app, job_id, user.caller)
    return JSONResponse(state, headers=SECURITY_HEADERS)


def _periods(plan: PlanOut) -> list[str]:
    scenario = plan.audit.get("scenario") or {}
    return [p["name"] for p in scenario.get("periods", [])]


def _plan_charts(plan: PlanOut, periods: list[str]) -> dict:
    body = plan.plan
    cpt = body.get("cost_per_million_tokens") or []
    return {
        "purchases": charts.cached(
            (plan.id, "purchases"), lambda: charts.purchases_chart(body["purchases"], periods)
        ),
        "fleet": charts.cached(
            (plan.id, "fleet"), lambda: charts.fleet_chart(body["fleet"], periods)
        ),
        "power": charts.cached((plan.id, "power"), lambda: charts.power_chart(body["power"])),
        "costs": charts.cached((plan.id, "costs"), lambda: charts.costs_chart(body["costs"])),
        "cpt": charts.cached(
            (plan.id, "cpt"),
            lambda: charts.bars_chart(
                [r["class"] for r in cpt],
                [r.get("usd_per_million_output_tokens") or 0 for r in cpt],
                "cost per million output tokens by class",
                "USD per million output tokens",
                "workload class",
            ),
        ),
    }


def plan_context(plan: PlanOut) -> dict:
    body = plan.plan
    periods = _periods(plan)
    feasible = bool(body.get("purchases") or body.get("fleet"))
    context = {
        "title": f"Plan of {body.get('scenario', 'scenario')}",
        "plan": plan,
        "body": body,
        "feasible": feasible,
        "warnings": views.plan_warnings(body),
        "relaxations": body.get("relaxations") or [],
    }
    if not feasible:
        return context
    racks, purchases = views.purchase_matrix(body["purchases"], periods)
    fleet_racks, fleet = views.fleet_matrix(body["fleet"], periods)
    context.update(
        racks=racks,
        purchases=purchases,
        fleet_racks=fleet_racks,
        fleet=fleet,
        power=body.get("power") or [],
        costs=[c for c in body.get("costs") or []],
        cost_total=views.cost_total(body.get("costs") or []),
        cpt=body.get("cost_per_million_tokens") or [],
        sla=views.sla_rows(body.get("service") or []),
        binding=views.binding_limits(body.get("shadow_prices") or []),
        shadow_count=len(body.get("shadow_prices") or []),
        baselines=body.get("baselines") or [],
        charts=_plan_charts(plan, periods),
    )
    return context


@router.get("/plans/{plan_id}")
def plan_page(plan_id: str, request: Request, app: StateDep, user: User) -> Response:
    plan = get_plan_row(app, plan_id, user.caller)
    return render(request, "plan.html", plan_context(plan), user)


def workbook_bytes(frames: dict[str, pd.DataFrame], scenario: dict | None) -> bytes:
    """A workbook of ``frames`` plus the scenario's tables as ``input …`` sheets, so
    ``rackplan.load_scenario`` (and ``rackplan solve``) read it back."""
    sheets = {name: neutralised(frame) for name, frame in frames.items()}
    if scenario:
        for name, frame in scenario_frames(Scenario.model_validate(scenario)).items():
            sheets[f"{INPUT_PREFIX}{name}"] = frame
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "book.xlsx"
        write_workbook(sheets, path)
        return path.read_bytes()


def attachment(content: bytes, media: str, filename: str) -> Response:
    disposition = f'attachment; filename="{filename}"'
    headers = {**SECURITY_HEADERS, "Content-Disposition": disposition}
    return Response(content, media_type=media, headers=headers)


@router.get("/plans/{plan_id}/plan.xlsx")
def plan_workbook(plan_id: str, app: StateDep, user: User) -> Response:
    plan = get_plan_row(app, plan_id, user.caller)
    content = workbook_bytes(plan_frames(plan.plan), plan.audit.get("scenario"))
    return attachment(content, XLSX, f"plan-{plan_id}.xlsx")


@router.get("/plans/{plan_id}/plan.zip")
def plan_csv(plan_id: str, app: StateDep, user: User) -> Response:
    """The API's CSV export (a zip of the plan's tables)."""
    return export_plan(plan_id, app, user.caller, "csv")
