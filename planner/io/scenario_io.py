"""Reading and writing scenario files.

JSON (the pydantic schema of ``models.scenario.Scenario``) is the exchange format of the
REST API and the simplest file form; spreadsheets (CSV folder or XLSX) are read by
``planner.spreadsheets``. Every problem is reported with its file and field path.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import Scenario
from rackplan.planner.io.files import atomic_write_text
from rackplan.planner.io.scenario_tables import CATALOG_TABLES


def validation_problems(exc: ValidationError, source: str) -> list[Problem]:
    """pydantic errors → Problems naming the field path (e.g. ``periods.2.power_cap_mw``)."""
    problems = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = None if isinstance(value, dict | list) else str(value)
        problems.append(Problem(source, None, path or None, message, shown))
    return problems


def load_scenario_json(path: Path) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError([Problem(str(path), None, None, "file not found")]) from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            [
                Problem(
                    str(path), exc.lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})"
                )
            ]
        ) from exc
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, str(path))) from exc


def load_scenario(path: Path, catalog=None) -> Scenario:
    """A scenario from a JSON file, a folder of CSV tables, or an XLSX workbook; with a
    ``catalog`` its rack and LLM ids are checked too (every problem at once)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in {".xlsx", ".xlsm"}:
        from rackplan.planner.io.spreadsheets import read_scenario

        return read_scenario(path, catalog)
    if path.suffix.lower() == ".json":
        scenario = load_scenario_json(path)
        if catalog is not None:
            from rackplan.planner.io.references import validate_references

            problems = validate_references(scenario, catalog)
            if problems:
                raise InputError(
                    [Problem(str(path), p.row, p.column, p.message, p.value) for p in problems]
                )
        return scenario
    raise InputError(
        [
            Problem(
                str(path),
                None,
                None,
                "expected a .json file, a folder of CSV tables or an .xlsx workbook",
            )
        ]
    )


def save_scenario_json(scenario: Scenario, path: Path) -> None:
    atomic_write_text(Path(path), scenario.model_dump_json(indent=2, exclude_defaults=False) + "\n")


@contextmanager
def catalog_extensions(path: Path) -> Iterator[dict[str, Path]]:
    """Paths of the racks/llms tables shipped with a scenario (CSV files; sheets are written to
    a temporary folder for the catalog loader), for ``load_catalog(user_racks=…)``."""
    path = Path(path)
    if path.is_dir():
        yield {
            name: path / f"{name}.csv" for name in CATALOG_TABLES if (path / f"{name}.csv").exists()
        }
        return
    if path.suffix.lower() not in {".xlsx", ".xlsm"} or not path.exists():
        yield {}
        return
    from openpyxl import load_workbook  # only for workbooks: ~65 ms of a command's start

    folder = Path(tempfile.mkdtemp(prefix="rackplan-catalog-"))
    try:
        found = {}
        workbook = load_workbook(path, read_only=True, data_only=True)
        for name in CATALOG_TABLES:
            if name in workbook.sheetnames:
                rows = list(workbook[name].iter_rows(values_only=True))
                target = folder / f"{name}.csv"
                with target.open("w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle)
                    for row in rows:
                        writer.writerow(["" if v is None else v for v in row])
                found[name] = target
        yield found
    finally:
        shutil.rmtree(folder, ignore_errors=True)
