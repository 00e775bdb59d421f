"""Scenarios: create from JSON or from an upload (XLSX workbook or zip of CSV tables)."""

from __future__ import annotations

import json
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from defusedxml import DefusedXmlException
from fastapi import APIRouter, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Text, cast, func, select

from rackplan.api.db import ScenarioRow
from rackplan.api.deps import Reader, StateDep, Writer
from rackplan.api.limits import EdgeError, check_json, duplicate_names
from rackplan.api.schemas import Page, ScenarioCreate, ScenarioOut, ScenarioSummary, _utc
from rackplan.api.security import Caller
from rackplan.api.uploads import check_workbook, checked_archive, extract_csv, shown_name
from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import (
    Demand,
    MeasuredRate,
    Period,
    RackOption,
    Scenario,
    WorkloadClass,
)
from rackplan.planner.io.scenario_io import catalog_extensions
from rackplan.planner.io.spreadsheets import read_scenario

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"])
PARSERS = threading.BoundedSemaphore(2)
"""Parses and validations that may run at once (each in a worker thread, off the event
loop); more wait up to PARSE_WAIT_S, then get a 503."""
PARSE_WAIT_S = 30.0


@contextmanager
def parse_slot() -> Iterator[None]:
    """One of the few parse slots, or 503 when the service is busy parsing."""
    if not PARSERS.acquire(timeout=PARSE_WAIT_S):
        raise HTTPException(503, "the service is busy parsing other uploads; retry later")
    try:
        yield
    finally:
        PARSERS.release()


def _check_references(app, scenario: Scenario, caller: Caller) -> None:
    """Unknown rack or LLM ids are a 422 when the scenario is created, not at solve time.

    Known ids: the shipped catalog's, and those of every user catalog the tenant can name when
    solving (its own and the shared ones). Each unknown id is reported once, with where it is
    used and a "did you mean"."""
    from types import SimpleNamespace

    from rackplan.api.db import SHARED_TENANT, CatalogEntryRow
    from rackplan.api.routes.catalogs import shipped_catalog
    from rackplan.planner.io.references import validate_references

    shipped = shipped_catalog()
    racks, llms = set(shipped.racks), set(shipped.llms)
    with app.db.transaction() as session:
        rows = session.execute(
            select(CatalogEntryRow.kind, CatalogEntryRow.entry_id).where(
                CatalogEntryRow.tenant.in_([caller.tenant, SHARED_TENANT])
            )
        ).all()
    for kind, entry_id in rows:
        (racks if kind == "racks" else llms).add(entry_id)
    known = SimpleNamespace(racks=dict.fromkeys(sorted(racks)), llms=dict.fromkeys(sorted(llms)))
    problems = validate_references(scenario, known)
    if problems:
        raise InputError(problems)


def _store(app, scenario: Scenario, caller: Caller) -> ScenarioOut:
    _check_references(app, scenario, caller)
    with app.db.transaction() as session:
        row = ScenarioRow(
            name=scenario.name,
            body=scenario.model_dump(mode="json"),
            created_by=caller.key_id,
            tenant=caller.tenant,
        )
        session.add(row)
        session.flush()
        return ScenarioOut(id=row.id, name=row.name, created_at=row.created_at, scenario=row.body)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _edge_checked(scenario: object, path: str) -> None:
    """Sizes, text and plausible numbers first (linear), so the domain types only ever
    validate bounded, clean input."""
    problems = check_json(scenario, path)
    if not problems and isinstance(scenario, dict):
        problems = [dict(p, field=f"{path}.{p['field']}") for p in duplicate_names(scenario)]
    if problems:
        raise EdgeError(problems)


TABLE_MODELS = {
    "periods": Period,
    "classes": WorkloadClass,
    "demand": Demand,
    "racks": RackOption,
    "measured_rates": MeasuredRate,
}
CHUNK_ROWS = 500
"""Rows validated per call: pydantic holds the GIL for a whole call, so a 20,000-row table
validated at once would stall the event loop's thread too; chunks let it run between."""


def _validated_tables(scenario: dict) -> list[dict]:
    """Validate the scenario's tables chunk by chunk, replacing rows by model instances
    (which the Scenario then takes as they are); the errors, located in the body."""
    errors: list[dict] = []
    for table, model in TABLE_MODELS.items():
        rows = scenario.get(table)
        if not isinstance(rows, list):
            continue
        adapter = TypeAdapter(list[model])
        validated: list = []
        for offset in range(0, len(rows), CHUNK_ROWS):
            try:
                validated += adapter.validate_python(rows[offset : offset + CHUNK_ROWS])
            except ValidationError as exc:
                for error in exc.errors():
                    index, *rest = error["loc"]
                    location = ("body", "scenario", table, offset + int(index), *rest)
                    errors.append(dict(error, loc=location))
        if not errors:
            scenario[table] = validated
    return errors


def parse_scenario_body(raw: bytes) -> Scenario:
    """The JSON body ``{"scenario": {...}}`` decoded, edge-checked and validated (in a
    worker thread: never on the event loop)."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise EdgeError([{"field": "body", "message": f"not valid JSON: {exc}"[:300]}]) from exc
    if isinstance(body, dict) and isinstance(body.get("scenario"), dict):
        _edge_checked(body["scenario"], "body.scenario")
        errors = _validated_tables(body["scenario"])
        if errors:
            raise RequestValidationError(errors)
    try:
        return ScenarioCreate.model_validate(body).scenario
    except ValidationError as exc:
        errors = [dict(e, loc=("body", *e["loc"])) for e in exc.errors()]
        raise RequestValidationError(errors) from None


@router.post(
    "",
    status_code=201,
    operation_id="create_scenario",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ScenarioCreate"}}
            },
        }
    },
)
async def create_scenario(request: Request, app: StateDep, caller: Writer) -> ScenarioOut:
    """Store a scenario given as JSON (``{"scenario": {...}}``)."""
    raw = await request.body()

    def work() -> ScenarioOut:
        with parse_slot():
            scenario = parse_scenario_body(raw)
        return _store(app, scenario, caller)

    return await run_in_threadpool(work)


def _read_upload(data: bytes, name: str, suffix: str, limit: int) -> Scenario:
    """A scenario from an .xlsx or a .zip of CSV tables, checked before and after reading."""
    archive = checked_archive(data, limit, name)
    with tempfile.TemporaryDirectory() as folder:
        if suffix == ".xlsx":
            check_workbook(archive, name)
            path = Path(folder) / "upload.xlsx"  # never the client's name: no path tricks
            path.write_bytes(data)
        else:
            path = Path(folder) / "scenario"
            path.mkdir()
            extract_csv(archive, path, name)
        with catalog_extensions(path) as extra:
            if extra:
                raise InputError(
                    [
                        Problem(
                            name,
                            None,
                            None,
                            "racks/llms tables are not read from uploads: put them in a user "
                            "catalog (/v1/user-catalogs) and name it when solving",
                        )
                    ]
                )
        try:
            scenario = read_scenario(path)
        except (DefusedXmlException, SyntaxError, KeyError, zipfile.BadZipFile) as exc:
            raise InputError(
                [Problem(name, None, None, f"not a readable workbook ({type(exc).__name__})")]
            ) from exc
    _edge_checked(scenario.model_dump(mode="json"), "scenario")
    return scenario


@router.post("/upload", status_code=201, operation_id="upload_scenario")
def upload_scenario(file: UploadFile, app: StateDep, caller: Writer) -> ScenarioOut:
    """Store a scenario uploaded as an .xlsx workbook or a .zip of the CSV tables."""
    limit = app.settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload exceeds {limit} bytes")
    name = shown_name(file.filename)
    suffix = Path((file.filename or "").replace("\\", "/")).suffix.lower()
    if suffix not in {".xlsx", ".zip"}:
        raise InputError(
            [Problem(name, None, None, "upload an .xlsx workbook or a .zip of CSV tables")]
        )
    with parse_slot():
        scenario = _read_upload(data, name, suffix, limit)
    return _store(app, scenario, caller)


@router.get("/{scenario_id}", operation_id="get_scenario", response_model=ScenarioOut)
def get_scenario(scenario_id: str, app: StateDep, caller: Reader) -> Response:
    """One scenario of your tenant. Its stored JSON is sent as stored (no decode and
    re-encode of a body that may be 100 KB), wrapped with its id, name and time."""
    with app.db.read() as session:
        row = session.execute(
            select(
                ScenarioRow.id,
                ScenarioRow.name,
                ScenarioRow.created_at,
                ScenarioRow.tenant,
                cast(ScenarioRow.body, Text),
            ).where(ScenarioRow.id == scenario_id)
        ).first()
    if row is None or row.tenant != caller.tenant:
        raise HTTPException(404, f"no scenario '{scenario_id}'")
    created = _utc(row.created_at).isoformat().replace("+00:00", "Z")
    head = json.dumps({"id": row.id, "name": row.name, "created_at": created})
    return Response(head[:-1] + ', "scenario": ' + row[4] + "}", media_type="application/json")


@router.get("", operation_id="list_scenarios")
def list_scenarios(
    app: StateDep,
    caller: Reader,
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000_000),
) -> Page:
    """The caller's tenant's scenarios, newest first, ``limit`` at a time from ``offset``.
    Reads the summary columns only, never the scenario bodies."""
    mine = ScenarioRow.tenant == caller.tenant
    with app.db.read() as session:
        total = session.scalar(select(func.count()).select_from(ScenarioRow).where(mine)) or 0
        rows = session.execute(
            select(ScenarioRow.id, ScenarioRow.name, ScenarioRow.created_at)
            .where(mine)
            .order_by(ScenarioRow.created_at.desc(), ScenarioRow.id)
            .limit(limit)
            .offset(offset)
        ).all()
        items = [ScenarioSummary(id=r.id, name=r.name, created_at=r.created_at) for r in rows]
    following = offset + limit
    return Page(
        items=items,
        total=total,
        limit=limit,
        offset=offset,
        next_offset=following if following < total else None,
    )
