"""Scenarios: create from JSON or from an upload (XLSX workbook or zip of CSV tables)."""

from __future__ import annotations

import io
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from fastapi import APIRouter, HTTPException, Query, UploadFile
from sqlalchemy import func, select

from rackplan.api.db import ScenarioRow
from rackplan.api.deps import Reader, StateDep, Writer, owned
from rackplan.api.schemas import Page, ScenarioCreate, ScenarioOut, ScenarioSummary
from rackplan.api.security import Caller
from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import Scenario
from rackplan.planner.spreadsheets import catalog_extensions, read_scenario

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"])
MAX_ZIP_ENTRIES = 50
MAX_ZIP_RATIO = 100


def _store(app, scenario: Scenario, caller: Caller) -> ScenarioOut:
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


@router.post("", status_code=201, operation_id="create_scenario")
def create_scenario(body: ScenarioCreate, app: StateDep, caller: Writer) -> ScenarioOut:
    """Store a scenario given as JSON."""
    return _store(app, body.scenario, caller)


def _checked_archive(data: bytes, limit: int, label: str) -> zipfile.ZipFile:
    """Open a zip (a .zip upload, or an .xlsx, which is one) after checking it is safe:
    few entries, no absolute or parent paths, bounded expanded size and compression ratio."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise InputError([Problem(label, None, None, "not a valid zip archive")]) from exc
    entries = [e for e in archive.infolist() if not e.is_dir()]
    if len(entries) > MAX_ZIP_ENTRIES:
        raise InputError(
            [Problem(label, None, None, f"more than {MAX_ZIP_ENTRIES} files in the archive")]
        )
    total = 0
    for entry in entries:
        path = PurePosixPath(entry.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in entry.filename:
            raise InputError(
                [Problem(label, None, None, "unsafe path in the archive", entry.filename)]
            )
        total += entry.file_size
        ratio = entry.file_size / entry.compress_size if entry.compress_size else 0
        if total > limit or ratio > MAX_ZIP_RATIO:
            raise HTTPException(413, f"{label} expands beyond the upload limit")
    return archive


def _extract_csv(archive: zipfile.ZipFile, folder: Path, label: str) -> None:
    """Write the archive's CSV files into ``folder``; a damaged entry or two files with the same
    name are refused (names are flattened)."""
    seen: dict[str, str] = {}
    for entry in archive.infolist():
        name = PurePosixPath(entry.filename).name
        if entry.is_dir() or not name.lower().endswith(".csv"):
            continue
        if name in seen:
            raise InputError(
                [
                    Problem(
                        label,
                        None,
                        None,
                        f"two files named {name} ({seen[name]}, {entry.filename})",
                    )
                ]
            )
        seen[name] = entry.filename
        try:
            (folder / name).write_bytes(archive.read(entry))
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, zlib.error, EOFError) as exc:
            raise InputError(
                [Problem(label, None, None, f"cannot read {entry.filename}: {exc}")]
            ) from exc


@router.post("/upload", status_code=201, operation_id="upload_scenario")
def upload_scenario(file: UploadFile, app: StateDep, caller: Writer) -> ScenarioOut:
    """Store a scenario uploaded as an .xlsx workbook or a .zip of the CSV tables."""
    limit = app.settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload exceeds {limit} bytes")
    name = Path(file.filename or "upload").name
    if not name.lower().endswith((".xlsx", ".zip")):
        raise InputError(
            [Problem(name, None, None, "upload an .xlsx workbook or a .zip of CSV tables")]
        )
    archive = _checked_archive(data, limit, name)
    with tempfile.TemporaryDirectory() as folder:
        if name.lower().endswith(".xlsx"):
            path = Path(folder) / name
            path.write_bytes(data)
        else:
            path = Path(folder) / "scenario"
            path.mkdir()
            _extract_csv(archive, path, name)
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
        scenario = read_scenario(path)
    return _store(app, scenario, caller)


@router.get("/{scenario_id}", operation_id="get_scenario")
def get_scenario(scenario_id: str, app: StateDep, caller: Reader) -> ScenarioOut:
    with app.db.read() as session:
        row = owned(session, ScenarioRow, scenario_id, caller, "scenario")
        return ScenarioOut(id=row.id, name=row.name, created_at=row.created_at, scenario=row.body)


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
