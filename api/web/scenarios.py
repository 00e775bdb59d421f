"""Scenario pages: the list (upload, example, template), one scenario's tables with inline
edits of what-if fields, solving it, and opening a what-if session on it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import func, select

from rackplan.api.db import ApiKey, PlanRow, ScenarioRow, SessionRow, VariantRow
from rackplan.api.deps import State, StateDep, owned
from rackplan.api.limits import EdgeError
from rackplan.api.routes.plans import _submit_solve
from rackplan.api.routes.scenarios import (
    _edge_checked,
    _store,
    list_scenarios,
    parse_slot,
    upload_scenario,
)
from rackplan.api.routes.sessions import create_session
from rackplan.api.schemas import SessionCreate, SolveRequest
from rackplan.api.security import Caller
from rackplan.api.web import views
from rackplan.api.web.auth import WebUser
from rackplan.api.web.common import FormUser, User, WebRoute, problem_rows, redirect, render, writer
from rackplan.catalogs.errors import InputError
from rackplan.models.scenario import Scenario

router = APIRouter(route_class=WebRoute, include_in_schema=False)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The repository's example scenarios (present in a source checkout; an installed wheel
offers the template only)."""
LISTED = 50
SOLVE_TIME_LIMIT_S = 60.0


def examples() -> list[str]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(
        p.name
        for p in EXAMPLES.iterdir()
        if (p / "periods.csv").exists() or (p / "scenario.json").exists()
    )


def _owners(session, caller: Caller, key_ids: set[str]) -> dict[str, str]:
    rows = session.execute(
        select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(key_ids), ApiKey.tenant == caller.tenant)
    ).all()
    return {r.id: r.name for r in rows}


def _last_plans(session, caller: Caller, scenario_ids: list[str]) -> dict[str, PlanRow]:
    latest = (
        select(PlanRow.scenario_id, func.max(PlanRow.created_at).label("at"))
        .where(PlanRow.scenario_id.in_(scenario_ids), PlanRow.tenant == caller.tenant)
        .group_by(PlanRow.scenario_id)
        .subquery()
    )
    rows = session.scalars(
        select(PlanRow).join(
            latest,
            (PlanRow.scenario_id == latest.c.scenario_id) & (PlanRow.created_at == latest.c.at),
        )
    ).all()
    return {r.scenario_id: r for r in rows}


def _listing(app: State, caller: Caller) -> dict:
    """The tenant's scenarios (the API's own list) with owner and last plan, and sessions."""
    page = list_scenarios(app, caller, limit=LISTED, offset=0)
    ids = [s.id for s in page.items]
    with app.db.read() as session:
        creators = dict(
            session.execute(
                select(ScenarioRow.id, ScenarioRow.created_by).where(ScenarioRow.id.in_(ids))
            ).all()
        )
        owners = _owners(session, caller, {k for k in creators.values() if k})
        plans = _last_plans(session, caller, ids)
        sessions = session.execute(
            select(SessionRow.id, SessionRow.name, SessionRow.scenario_id, SessionRow.created_at)
            .where(SessionRow.tenant == caller.tenant)
            .order_by(SessionRow.created_at.desc())
            .limit(LISTED)
        ).all()
    rows = [
        {
            "id": s.id,
            "name": s.name,
            "created_at": s.created_at,
            "owner": owners.get(creators.get(s.id) or "", "—"),
            "plan": plans.get(s.id),
        }
        for s in page.items
    ]
    names = {s.id: s.name for s in page.items}
    return {
        "scenarios": rows,
        "total": page.total,
        "sessions": [dict(s._mapping, scenario=names.get(s.scenario_id, "…")) for s in sessions],
    }


def _list_page(request: Request, app: State, user: WebUser, **extra) -> Response:
    status = extra.pop("status", 200)
    context = {"title": "Scenarios", "examples": examples(), **_listing(app, user.caller)}
    context.update(extra)
    return render(request, "scenarios.html", context, user, status)


@router.get("/scenarios")
def scenario_list(request: Request, app: StateDep, user: User) -> Response:
    return _list_page(request, app, user)


@router.post("/scenarios/upload")
def upload(
    request: Request,
    app: StateDep,
    user: FormUser,
    file: UploadFile,
) -> Response:
    """The API's upload (same checks, same limits); problems are listed with file, row and
    column on the list page."""
    writer(user)
    try:
        stored = upload_scenario(file, app, user.caller)
    except (InputError, EdgeError, HTTPException) as exc:
        problems = problem_rows(exc)
        shown = file.filename or "upload"
        return _list_page(request, app, user, problems=problems, upload_name=shown, status=422)
    return redirect(f"/scenarios/{stored.id}")


def _starter(source: str) -> Scenario:
    """An example scenario, or the template (one example row per table)."""
    from rackplan.planner.io.spreadsheets import read_scenario, write_template
    from rackplan.planner.library import load_scenario

    if source == "template":
        with tempfile.TemporaryDirectory() as folder:
            path = write_template(Path(folder) / "template")
            return read_scenario(path)
    if source not in examples():
        raise HTTPException(404, f"no example '{source}'")
    folder = EXAMPLES / source
    as_json = folder / "scenario.json"
    return load_scenario(as_json if as_json.exists() else folder)


@router.post("/scenarios/start")
def start(
    app: StateDep,
    user: FormUser,
    source: Annotated[str, Form(max_length=100)],
) -> Response:
    writer(user)
    scenario = _starter(source)
    _edge_checked(scenario.model_dump(mode="json"), "scenario")
    stored = _store(app, scenario, user.caller)
    return redirect(f"/scenarios/{stored.id}")


def _scenario_context(app: State, scenario_id: str, caller: Caller) -> dict:
    """One scenario of the caller's tenant (404 otherwise), its tables, plans and sessions."""
    with app.db.read() as session:
        row = owned(session, ScenarioRow, scenario_id, caller, "scenario")
        plans = session.scalars(
            select(PlanRow)
            .where(PlanRow.scenario_id == scenario_id, PlanRow.tenant == caller.tenant)
            .order_by(PlanRow.created_at.desc())
            .limit(10)
        ).all()
        sessions = session.execute(
            select(SessionRow.id, SessionRow.name, func.count(VariantRow.id).label("variants"))
            .outerjoin(VariantRow, VariantRow.session_id == SessionRow.id)
            .where(SessionRow.scenario_id == scenario_id, SessionRow.tenant == caller.tenant)
            .group_by(SessionRow.id, SessionRow.name)
        ).all()
        body, name = row.body, row.name
    model = Scenario.model_validate(body)
    tables = views.scenario_tables(body)
    return {
        "title": name,
        "scenario_id": scenario_id,
        "name": name,
        "tables": tables,
        "columns": {
            t: views.table_columns(rows, views.EDITABLE.get(t, ())) for t, rows in tables.items()
        },
        "titles": views.TABLE_TITLES,
        "editable": views.EDITABLE,
        "settings": views.settings_rows(model),
        "plans": plans,
        "sessions": sessions,
    }


@router.get("/scenarios/{scenario_id}")
def scenario_page(scenario_id: str, request: Request, app: StateDep, user: User) -> Response:
    context = _scenario_context(app, scenario_id, user.caller)
    return render(request, "scenario.html", context, user)


def _edited_scenario(body: dict, form: dict[str, str]) -> Scenario:
    changed = views.edited(body, form)
    if not changed["name"].endswith("(edited)"):
        changed["name"] = f"{changed['name']} (edited)"[:200]
    _edge_checked(changed, "scenario")
    return Scenario.model_validate(changed)


@router.post("/scenarios/{scenario_id}/edit")
async def edit(scenario_id: str, request: Request, app: StateDep, user: FormUser) -> Response:
    """Inline edits saved as a new scenario (plans keep the scenario they solved)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    writer(user)

    def work() -> Response:
        with app.db.read() as session:
            body = owned(session, ScenarioRow, scenario_id, user.caller, "scenario").body
        try:
            with parse_slot():
                scenario = _edited_scenario(body, form)
        except (InputError, EdgeError, ValidationError) as exc:
            context = _scenario_context(app, scenario_id, user.caller)
            context.update(problems=problem_rows(exc), form=form)
            return render(request, "scenario.html", context, user, 422)
        return redirect(f"/scenarios/{_store(app, scenario, user.caller).id}?edited=1")

    return await run_in_threadpool(work)


@router.post("/scenarios/{scenario_id}/solve")
def solve(
    scenario_id: str,
    app: StateDep,
    user: FormUser,
) -> Response:
    """Start a solve job (the API's), then watch it on the job page."""
    writer(user)
    limit = min(SOLVE_TIME_LIMIT_S, app.settings.solve_time_limit_s)
    job = _submit_solve(app, scenario_id, SolveRequest(time_limit_s=limit), user.caller, None)
    return redirect(f"/jobs/{job.id}")


@router.post("/scenarios/{scenario_id}/sessions")
def new_session(
    scenario_id: str,
    app: StateDep,
    user: FormUser,
    name: Annotated[str, Form(min_length=1, max_length=200)],
) -> Response:
    writer(user)
    created = create_session(SessionCreate(name=name, scenario_id=scenario_id), app, user.caller)
    return redirect(f"/sessions/{created.id}")
