"""What-if sessions: a base scenario, named variants, solve all, compare, export."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from rackplan.api.db import ScenarioRow, SessionRow, VariantRow
from rackplan.api.deps import Reader, StateDep, Writer, owned
from rackplan.api.routes.jobs import start_job
from rackplan.api.schemas import JobOut, SessionCreate, SessionOut, VariantIn
from rackplan.api.security import Caller
from rackplan.planner.core.session import parse_variant_options
from rackplan.planner.io.spreadsheets import write_workbook

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _session_out(app, session_id: str, caller: Caller) -> SessionOut:
    with app.db.read() as session:
        row = owned(session, SessionRow, session_id, caller, "session")
        variants = session.scalars(
            select(VariantRow)
            .where(VariantRow.session_id == session_id)
            .order_by(VariantRow.created_at)
        ).all()
        return SessionOut(
            id=row.id,
            name=row.name,
            scenario_id=row.scenario_id,
            variants=[VariantIn(name=v.name, changes=v.changes) for v in variants],
            comparison=row.comparison,
        )


@router.post("", status_code=201, operation_id="create_session")
def create_session(body: SessionCreate, app: StateDep, caller: Writer) -> SessionOut:
    with app.db.transaction() as session:
        owned(session, ScenarioRow, body.scenario_id, caller, "scenario")
        row = SessionRow(
            name=body.name,
            scenario_id=body.scenario_id,
            created_by=caller.key_id,
            tenant=caller.tenant,
        )
        session.add(row)
        session.flush()
        session_id = row.id
    return _session_out(app, session_id, caller)


@router.get("/{session_id}", operation_id="get_session")
def get_session(session_id: str, app: StateDep, caller: Reader) -> SessionOut:
    return _session_out(app, session_id, caller)


@router.post("/{session_id}/variants", status_code=201, operation_id="add_variant")
def add_variant(session_id: str, body: VariantIn, app: StateDep, caller: Writer) -> SessionOut:
    """Add a variant: overrides as (parameter, value) — scale factors or absolute values."""
    with app.db.read() as session:
        owned(session, SessionRow, session_id, caller, "session")  # 404 before any detail
    spec = f"{body.name}:" + ",".join(f"{c.key}={c.value}" for c in body.changes)
    parse_variant_options([spec])  # same validation as the command line
    with app.db.transaction() as session:
        row = owned(session, SessionRow, session_id, caller, "session")
        taken = session.scalars(
            select(VariantRow).where(
                VariantRow.session_id == session_id, VariantRow.name == body.name
            )
        ).first()
        if taken is not None:
            raise HTTPException(409, f"the session already has a variant '{body.name}'")
        session.add(
            VariantRow(
                session_id=session_id,
                name=body.name,
                changes=[c.model_dump() for c in body.changes],
                tenant=caller.tenant,
            )
        )
        row.comparison = None
    return _session_out(app, session_id, caller)


@router.post("/{session_id}/solve", status_code=202, operation_id="solve_session")
def solve_session(session_id: str, app: StateDep, caller: Writer) -> JobOut:
    """Solve the base and every variant (a job); the comparison appears on the session."""
    current = _session_out(app, session_id, caller)
    if not current.variants:
        raise HTTPException(422, "add at least one variant first")
    with app.db.read() as session:
        scenario = session.get(ScenarioRow, current.scenario_id).body
    request = {
        "session_id": session_id,
        "scenario": scenario,
        "variants": [v.model_dump() for v in current.variants],
        "time_limit_s": app.settings.solve_time_limit_s,
        "tenant": caller.tenant,
    }
    job = start_job(app, "session", request, caller, None)
    return JSONResponse(
        status_code=202,
        content=job.model_dump(mode="json"),
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


def _comparison(app, session_id: str, caller: Caller) -> list[dict]:
    current = _session_out(app, session_id, caller)
    if current.comparison is None:
        raise HTTPException(
            409, "the session has not been solved since its last change: POST …/solve"
        )
    return current.comparison


@router.get("/{session_id}/comparison", operation_id="compare_session")
def compare(session_id: str, app: StateDep, caller: Reader) -> list[dict]:
    """Side by side: KPIs of the base and each variant, with deltas against the base."""
    return _comparison(app, session_id, caller)


@router.get(
    "/{session_id}/comparison.xlsx",
    operation_id="export_session_comparison",
    responses={
        200: {"content": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}
    },
)
def export_comparison(session_id: str, app: StateDep, caller: Reader) -> Response:
    rows = _comparison(app, session_id, caller)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "comparison.xlsx"
        write_workbook({"comparison": pd.DataFrame(rows)}, path)
        content = path.read_bytes()
    media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": 'attachment; filename="comparison.xlsx"'},
    )
