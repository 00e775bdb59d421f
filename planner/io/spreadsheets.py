"""Spreadsheet I/O: formatted XLSX workbooks (openpyxl) for plans; scenarios read from and
written to CSV folders or XLSX workbooks with the tolerance real spreadsheets need and
strict checks of meaning (every problem reported with its file/sheet, row and column)."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from pydantic import ValidationError

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import (
    Demand,
    Economics,
    MeasuredRate,
    Period,
    Policy,
    RackOption,
    Scenario,
    WorkloadClass,
)
from rackplan.planner.core.futures import futures_frame, futures_from_records
from rackplan.planner.io.files import atomic_path
from rackplan.planner.io.references import (
    Reference,
    duplicate_problems,
    known_ids,
    reference_problems,
)
from rackplan.planner.io.scenario_tables import CATALOG_TABLES, TABLES, Column, Table

INPUT_PREFIX = "input "
"""Sheets of a plan workbook holding its scenario (see ``planner.export.workbook_frames``)."""

HEADER_FILL = PatternFill("solid", fgColor="DDE7F0")
MAX_WIDTH = 60


def _cell_value(value: object) -> object:
    if isinstance(value, float) and pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _number_format(column: str) -> str | None:
    if column.endswith("_per_kwh") or column in {"value", "prefill_decode_ratio", "pue"}:
        return "General"
    if column.endswith("_usd") or column == "objective_usd":
        return "#,##0"
    if column.endswith(("_share", "utilisation")) or column in {"gap", "max_utilisation"}:
        return "0.0%"
    if column.endswith(("_per_s", "_per_rack", "_kwh", "_kw")) or "tokens" in column:
        return "#,##0"
    if column.endswith(("_mw", "_ms", "_pct", "racks", "replicas")):
        return "#,##0.00"
    return None


def write_sheet(workbook: Workbook, name: str, frame: pd.DataFrame) -> None:
    """One sheet: bold shaded header, frozen header row, widths fitted, number formats by unit."""
    sheet = workbook.create_sheet(title=name[:31])
    columns = list(frame.columns)
    sheet.append(columns)
    for row in frame.itertuples(index=False):
        sheet.append([_cell_value(v) for v in row])
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # text that looks like a formula stays text
    for index, column in enumerate(columns, start=1):
        cell = sheet.cell(row=1, column=index)
        cell.font = Font(bold=True)
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        values = [str(column)] + [str(v) for v in frame[column].head(200).tolist()]
        sheet.column_dimensions[get_column_letter(index)].width = min(
            MAX_WIDTH, max(10, max(len(v) for v in values) + 2)
        )
        fmt = _number_format(str(column))
        if fmt:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                if isinstance(cell.value, int | float):
                    cell.number_format = fmt
    sheet.freeze_panes = "A2"


def write_workbook(frames: dict[str, pd.DataFrame], path: Path) -> None:
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, frame in frames.items():
        write_sheet(workbook, name, frame)
    workbook.save(path)


# ============================================================================ scenario import
@dataclass(frozen=True)
class RawTable:
    """A table as read: its source label, header, and rows (spreadsheet row number, cells)."""

    source: str
    header: list[str]
    rows: list[tuple[int, dict[str, object]]]


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _clean(source: str, header: list[object], rows: Iterator[tuple[int, list[object]]]) -> RawTable:
    """Drop trailing blank header cells (their columns must be empty) and blank rows."""
    names = [("" if _blank(h) else str(h).strip()) for h in header]
    while names and not names[-1]:
        names.pop()
    kept = []
    problems = [
        Problem(source, 1, name, "this column appears more than once")
        for name in sorted({n for n in names if n and names.count(n) > 1})
    ]
    for number, values in rows:
        if all(_blank(v) for v in values):
            continue
        cells = {}
        for index, value in enumerate(values):
            if index < len(names) and names[index]:
                cells[names[index]] = value.strip() if isinstance(value, str) else value
            elif not _blank(value):
                problems.append(
                    Problem(
                        source,
                        number,
                        f"#{index + 1}",
                        "a value under a column with no header name",
                        str(value),
                    )
                )
        kept.append((number, cells))
    if problems:
        raise InputError(problems)
    return RawTable(source, names, kept)


MAX_ROWS = 100_000
"""Rows read from one table at most (a larger sheet is refused, not parsed)."""


def read_csv_table(path: Path) -> RawTable:
    """A CSV as written by spreadsheets: UTF-8 with or without BOM, ',' or ';' delimited."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            [Problem(path.name, None, None, "not UTF-8 text: save as 'CSV UTF-8'")]
        ) from exc
    first = text.split("\n", 1)[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows = list(enumerate(reader, start=1))  # record numbers = spreadsheet rows
    if not rows:
        raise InputError(
            [Problem(path.name, None, None, "the file is empty: it needs a header row")]
        )
    return _clean(path.name, rows[0][1], iter(rows[1:]))


def read_sheet(workbook_name: str, sheet, formulas=None) -> RawTable:
    """A sheet's cached values; with ``formulas`` (the same sheet read without cached values),
    a formula cell that has no cached value is an error instead of a silent blank."""
    if hasattr(sheet, "reset_dimensions"):
        sheet.reset_dimensions()  # some writers store a wrong <dimension>: never trust it
    if formulas is not None and hasattr(formulas, "reset_dimensions"):
        formulas.reset_dimensions()
    formula_rows = formulas.iter_rows(values_only=True) if formulas is not None else None
    rows = []
    uncomputed = []
    for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
        raw = next(formula_rows, ()) if formula_rows is not None else ()
        for column, (value, source) in enumerate(zip(row, raw, strict=False), start=1):
            if value is None and isinstance(source, str) and source.startswith("="):
                uncomputed.append((number, column, source))
        rows.append(row)
        if len(rows) > MAX_ROWS:
            raise InputError(
                [
                    Problem(
                        f"{workbook_name}, sheet {sheet.title}",
                        None,
                        None,
                        f"more than {MAX_ROWS} rows",
                    )
                ]
            )
    source = f"{workbook_name}, sheet {sheet.title}"
    if not rows:
        raise InputError([Problem(source, None, None, "the sheet is empty: it needs a header row")])
    if uncomputed:
        raise InputError([_uncomputed(source, rows[0], *cell) for cell in uncomputed])
    return _clean(
        source, list(rows[0]), ((number, list(row)) for number, row in enumerate(rows[1:], start=2))
    )


def _uncomputed(source: str, header: tuple, row: int, column: int, formula: str) -> Problem:
    """A formula cell without a cached value, named by its column header (or its letter)."""
    name = header[column - 1] if column - 1 < len(header) else None
    label = str(name).strip() if not _blank(name) and row > 1 else get_column_letter(column)
    return Problem(
        source,
        row,
        label,
        "a formula without a computed value: open the file in a spreadsheet program and save "
        "it, or type the value",
        formula,
    )


_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}([, _\u00a0\u202f]\d{3})+(\.\d+)?$")
_EUROPEAN = re.compile(r"^[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?$")
_PLAIN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_number(value: object) -> float:
    """Numbers as spreadsheets write them: 1234.5, 1,234,567, 1 234, 1.234.567,5, 0,08, $1,200."""
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return float(value)
    text = str(value).strip().replace("$", "").replace("€", "").strip()
    if _THOUSANDS.match(text):
        text = re.sub(r"[, _\u00a0\u202f]", "", text)
    elif _EUROPEAN.match(text):
        text = text.replace(".", "").replace(",", ".")
    elif re.match(r"^[+-]?\d+,\d+$", text):
        text = text.replace(",", ".")  # decimal comma
    if not _PLAIN.match(text):
        raise ValueError("expected a number")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def parse_fraction(value: object) -> float:
    """A share: 20% or 0.2 (a plain number above 1 is refused: write 20% for twenty percent)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return parse_number(value.strip()[:-1]) / 100.0
    number = parse_number(value)
    if number > 1:
        raise ValueError("expected a fraction such as 0.2 or a percentage such as 20%")
    return number


_QUARTER = [
    re.compile(r"^(?P<year>\d{4})\s*-?\s*Q(?P<q>[1-4])$", re.IGNORECASE),
    re.compile(r"^Q(?P<q>[1-4])\s*[-/ ]?\s*(?P<year>\d{4})$", re.IGNORECASE),
]


_LOOSE_QUARTER = re.compile(
    r"(?P<year>(?:19|20)\d{2})\D{0,4}Q(?P<q>[1-4])\b|\bQ(?P<q2>[1-4])\D{0,4}(?P<year2>(?:19|20)\d{2})",
    re.IGNORECASE,
)
"""A year and a quarter in some other form (2027/Q3, 2027.Q3, Q3'2027): refused, not kept."""


def normalise_period(value: object) -> str:
    """2027Q1, 2027-Q1, 2027 Q1, Q1 2027, q1-2027 → 2027Q1; other labels are kept as text.

    A date (Excel turns some labels into dates) is refused: its label would silently differ.
    """
    if isinstance(value, date):
        raise ValueError(
            "the spreadsheet turned this label into a date: enter it as text, e.g. 2027Q1"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    for pattern in _QUARTER:
        match = pattern.match(text)
        if match:
            return f"{match['year']}Q{match['q']}"
    loose = _LOOSE_QUARTER.search(text)
    if loose:
        year = loose["year"] or loose["year2"]
        quarter = loose["q"] or loose["q2"]
        raise ValueError(
            f"ambiguous period label: it looks like a quarter but is not in a known form; "
            f"write {year}Q{quarter} (or rename it so it does not look like a quarter)"
        )
    if not text:
        raise ValueError("expected a period label")
    return text


def _parse_cell(column: Column, value: object) -> object:
    kind = column.kind
    if kind == "text":
        return str(int(value) if isinstance(value, float) and value.is_integer() else value).strip()
    if kind == "number":
        return parse_number(value)
    if kind == "integer":
        number = parse_number(value)
        if not number.is_integer():
            raise ValueError("expected a whole number")
        return int(number)
    if kind == "fraction":
        return parse_fraction(value)
    if kind == "period":
        return normalise_period(value)
    if kind == "modes":
        modes = {m.strip().lower() for m in re.split(r"[;,|]", str(value)) if m.strip()}
        unknown = modes - {"disaggregated", "aggregated"}
        if unknown or not modes:
            raise ValueError("expected disaggregated, aggregated, or both separated by ';'")
        return sorted(modes)
    if kind == "choice":
        text = str(value).strip().lower()
        if text not in column.choices:
            raise ValueError(f"expected one of {', '.join(column.choices)}")
        return text
    if kind == "bool":
        text = str(value).strip().lower()
        if text in {"true", "yes", "1", "y"}:
            return True
        if text in {"false", "no", "0", "n"}:
            return False
        raise ValueError("expected true or false")
    raise AssertionError(kind)


def parse_records(
    raw: RawTable, table: Table
) -> tuple[list[tuple[int, dict[str, object]]], list[Problem]]:
    """Typed records of a table, and every problem found (unknown/missing columns, bad cells)."""
    problems = []
    known = {c.name for c in table.columns}
    for name in raw.header:
        if name and name not in known:
            problems.append(
                Problem(raw.source, 1, name, f"unknown column; expected: {', '.join(known)}")
            )
    for column in table.columns:
        if column.required and column.name not in raw.header:
            problems.append(Problem(raw.source, 1, column.name, "required column missing"))
    records = []
    for number, cells in raw.rows:
        record: dict[str, object] = {}
        row_ok = True
        for column in table.columns:
            value = cells.get(column.name)
            if _blank(value):
                if column.required and column.name in raw.header:
                    problems.append(
                        Problem(
                            raw.source, number, column.name, f"a value is required: {column.help}"
                        )
                    )
                    row_ok = False
                continue
            try:
                record[column.name] = _parse_cell(column, value)
            except ValueError as exc:
                problems.append(Problem(raw.source, number, column.name, str(exc), str(value)))
                row_ok = False
        if row_ok:
            records.append((number, record))
    return records, problems


def parse_settings(raw: RawTable, table: Table) -> tuple[dict[str, object], list[Problem]]:
    problems = []
    if raw.header[:2] != ["key", "value"]:
        problems.append(
            Problem(
                raw.source, 1, None, "expected the two columns key, value", ", ".join(raw.header)
            )
        )
        return {}, problems
    values = {}
    if len(raw.header) > 2:
        problems.append(
            Problem(raw.source, 1, raw.header[2], "settings take two columns: key, value")
        )
    for number, cells in raw.rows:
        key = str(cells.get("key") or "").strip()
        if key in values:
            problems.append(Problem(raw.source, number, "key", "this setting is given twice", key))
            continue
        column = table.column(key)
        if column is None:
            problems.append(
                Problem(
                    raw.source,
                    number,
                    "key",
                    f"unknown setting; expected one of {', '.join(c.name for c in table.columns)}",
                    key,
                )
            )
            continue
        value = cells.get("value")
        if _blank(value):
            continue
        try:
            values[key] = _parse_cell(column, value)
        except ValueError as exc:
            problems.append(Problem(raw.source, number, "value", f"{key}: {exc}", str(value)))
    return values, problems


_FIELD_TO_COLUMN = {"workload_class": "class", "name": None}


def _build_rows(
    raw: RawTable, records, build, name_column: str | None, missing: frozenset[str] = frozenset()
) -> tuple[list, list[Problem]]:
    """Domain objects from typed records; errors about ``missing`` columns (already reported
    once for the table) are not repeated per row."""
    built, problems = [], []
    for number, record in records:
        try:
            built.append(build(record))
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else None
                column = _FIELD_TO_COLUMN.get(field, field) if field != "name" else name_column
                if column in missing:
                    continue
                message = str(error["msg"]).removeprefix("Value error, ")
                value = record.get(column) if column else None
                problems.append(
                    Problem(
                        raw.source, number, column, message, None if value is None else str(value)
                    )
                )
    return built, problems


def _period(record: dict) -> Period:
    fields = {("name" if k == "period" else k): v for k, v in record.items()}
    return Period(**fields)


def _class(record: dict) -> WorkloadClass:
    fields = {("name" if k == "class" else k): v for k, v in record.items()}
    if "modes" in fields:
        fields["modes"] = frozenset(fields["modes"])
    return WorkloadClass(**fields)


def _demand(record: dict) -> Demand:
    return Demand(**{("workload_class" if k == "class" else k): v for k, v in record.items()})


def _rack_option(record: dict) -> RackOption:
    return RackOption(**record)


def _measured(record: dict) -> MeasuredRate:
    return MeasuredRate(**{("workload_class" if k == "class" else k): v for k, v in record.items()})


_BUILDERS = {
    "periods": (_period, "period"),
    "classes": (_class, "class"),
    "forecast": (_demand, None),
    "fleet": (_rack_option, None),
    "rates": (_measured, None),
}


def _raw_names(raw: RawTable | None, column: str, period: bool = False) -> list[str]:
    """The names in one column of a table as typed (rows that failed to parse included), so a
    bad row elsewhere does not turn every reference to it into a second problem."""
    names = []
    for _number, cells in raw.rows if raw is not None else ():
        value = cells.get(column)
        if _blank(value):
            continue
        try:
            names.append(normalise_period(value) if period else str(value).strip())
        except ValueError:
            continue
    return names


_REFERENCES = {
    "forecast": (("period", "period"), ("class", "class")),
    "fleet": (("rack", "rack"), ("first_period", "period"), ("existing_retire_period", "period")),
    "classes": (("llm", "llm"),),
    "rates": (("class", "class"), ("rack", "rack")),
}
"""Per table: (column, kind of id it names)."""


def _reference_problems(
    raw_tables: dict[str, RawTable], records: dict[str, list], catalog: Catalog | None
) -> list[Problem]:
    """Unknown and duplicate ids across the tables, each at its file, row and column."""
    periods = _raw_names(raw_tables.get("periods"), "period", period=True)
    classes = _raw_names(raw_tables.get("classes"), "class")
    known = known_ids(periods, classes, catalog)
    if "periods" not in raw_tables:
        known.pop("period")
    if "classes" not in raw_tables:
        known.pop("class")
    refs = []
    for table, columns in _REFERENCES.items():
        raw = raw_tables.get(table)
        for number, record in records.get(table, ()):
            for column, kind in columns:
                if record.get(column) is not None:
                    refs.append(Reference(raw.source, number, column, kind, str(record[column])))
    problems = reference_problems(refs, known)
    for table, column, what in (
        ("periods", "period", "this period"),
        ("classes", "class", "this class"),
        ("fleet", "rack", "this rack type"),
    ):
        if table in raw_tables:
            rows = [(n, str(r[column])) for n, r in records.get(table, ()) if column in r]
            problems += duplicate_problems(raw_tables[table].source, column, rows, what)
    if "forecast" in raw_tables:
        rows = [
            (n, f"{r['class']} in {r['period']}")
            for n, r in records.get("forecast", ())
            if "class" in r and "period" in r
        ]
        problems += duplicate_problems(
            raw_tables["forecast"].source, "period", rows, "the forecast of this class and period"
        )
    return problems


def _scenario(
    raw_tables: dict[str, RawTable], label: str, catalog: Catalog | None = None
) -> Scenario:
    problems: list[Problem] = []
    parts: dict[str, list] = {}
    all_records: dict[str, list] = {}
    settings: dict[str, object] = {}
    for table in TABLES:
        raw = raw_tables.get(table.name)
        if raw is None:
            if table.required:
                problems.append(
                    Problem(label, None, None, f"table '{table.name}' is missing: {table.help}")
                )
            continue
        if table.key_value:
            settings, found = parse_settings(raw, table)
            problems += found
            continue
        records, found = parse_records(raw, table)
        problems += found
        all_records[table.name] = records
        if table.name == "futures":
            parts["futures"], found = futures_from_records(raw.source, records)
            problems += found
            continue
        missing = frozenset(
            c.name for c in table.columns if c.required and c.name not in raw.header
        )
        build, name_column = _BUILDERS[table.name]
        parts[table.name], found = _build_rows(raw, records, build, name_column, missing)
        problems += found
    problems += _reference_problems(raw_tables, all_records, catalog)
    if problems:
        raise InputError(list(dict.fromkeys(problems)))
    economics = {
        k: settings[k]
        for k in ("discount_rate_per_year", "maintenance_fraction_per_year", "salvage")
        if k in settings
    }
    policy = {
        k: settings[k]
        for k in (
            "spare_fraction",
            "max_rack_types",
            "objective",
            "integer_replicas",
            "power_cap_basis",
        )
        if k in settings
    }
    try:
        return Scenario(
            name=str(settings.get("name", Path(label).stem)),
            periods=tuple(parts.get("periods", ())),
            classes=tuple(parts.get("classes", ())),
            demand=tuple(parts.get("forecast", ())),
            racks=tuple(parts.get("fleet", ())),
            measured_rates=tuple(parts.get("rates", ())),
            economics=Economics(**economics),
            policy=Policy(**policy),
            total_budget_usd=settings.get("total_budget_usd"),
            floor_space_racks=settings.get("floor_space_racks"),
            futures=parts.get("futures"),
        )
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            for part in message.split("; "):
                found.append(
                    Problem(label, None, ".".join(str(x) for x in error["loc"]) or None, part)
                )
        raise InputError(found) from exc


def _raw_tables(path: Path) -> dict[str, RawTable]:
    """Every known table in a CSV folder or an XLSX workbook (unknown files/sheets refused)."""
    names = {t.name for t in TABLES} | set(CATALOG_TABLES)
    tables: dict[str, RawTable] = {}
    problems: list[Problem] = []
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.suffix.lower() != ".csv" or file.name.startswith("."):
                continue
            if file.stem not in names:
                problems.append(
                    Problem(
                        file.name,
                        None,
                        None,
                        f"unknown table; expected one of {', '.join(sorted(names))}",
                    )
                )
                continue
            try:
                tables[file.stem] = read_csv_table(file)
            except InputError as exc:
                problems += exc.problems
    else:
        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
            formulas = load_workbook(path, read_only=True, data_only=False)
        except FileNotFoundError as exc:
            raise InputError([Problem(str(path), None, None, "file not found")]) from exc
        except Exception as exc:  # openpyxl raises several types for a damaged file
            raise InputError(
                [Problem(path.name, None, None, f"not a readable .xlsx workbook ({exc})")]
            ) from exc
        plan_workbook = any(s.title.startswith(INPUT_PREFIX) for s in workbook.worksheets)
        for sheet in workbook.worksheets:
            if sheet.title.lower() == "readme":
                continue
            if plan_workbook and not sheet.title.startswith(INPUT_PREFIX):
                continue  # a plan workbook's outputs: only its input sheets are the scenario
            table_name = sheet.title.removeprefix(INPUT_PREFIX) if plan_workbook else sheet.title
            if table_name not in names:
                problems.append(
                    Problem(
                        f"{path.name}, sheet {sheet.title}",
                        None,
                        None,
                        f"unknown sheet; expected one of {', '.join(sorted(names))}",
                    )
                )
                continue
            try:
                tables[table_name] = read_sheet(path.name, sheet, formulas[sheet.title])
            except InputError as exc:
                problems += exc.problems
    if problems:
        raise InputError(problems)
    return tables


def read_scenario(path: Path, catalog: Catalog | None = None) -> Scenario:
    """A scenario from a folder of CSV tables or an XLSX workbook (see docs/scenario-files.md).

    Every problem is reported at once with its file or sheet, row and column; with a
    ``catalog``, rack and LLM ids are checked against it too (with a "did you mean")."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem(str(path), None, None, "file or folder not found")])
    return _scenario(_raw_tables(path), path.name, catalog)


# ============================================================================ scenario export
def _format(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, frozenset | set | list | tuple):
        return ";".join(sorted(str(v) for v in value))
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def scenario_frames(scenario: Scenario) -> dict[str, pd.DataFrame]:
    """The scenario as tables with the spreadsheet column names (writer side of read_scenario)."""
    e, p = scenario.economics, scenario.policy
    settings = {
        "name": scenario.name,
        "discount_rate_per_year": e.discount_rate_per_year,
        "maintenance_fraction_per_year": e.maintenance_fraction_per_year,
        "salvage": e.salvage,
        "spare_fraction": p.spare_fraction,
        "max_rack_types": p.max_rack_types,
        "objective": p.objective,
        "integer_replicas": p.integer_replicas,
        "power_cap_basis": p.power_cap_basis,
        "total_budget_usd": scenario.total_budget_usd,
        "floor_space_racks": scenario.floor_space_racks,
    }
    frames = {
        "settings": pd.DataFrame([{"key": k, "value": _format(v)} for k, v in settings.items()])
    }

    def rows(items, rename: dict[str, str], table: Table) -> pd.DataFrame:
        out = []
        for item in items:
            data = item.model_dump()
            out.append(
                {c.name: _format(data.get(rename.get(c.name, c.name))) for c in table.columns}
            )
        return pd.DataFrame(out, columns=[c.name for c in table.columns])

    frames["periods"] = rows(scenario.periods, {"period": "name"}, TABLES[1])
    frames["classes"] = rows(scenario.classes, {"class": "name"}, TABLES[2])
    frames["forecast"] = rows(scenario.demand, {"class": "workload_class"}, TABLES[3])
    frames["fleet"] = rows(scenario.racks, {}, TABLES[4])
    if scenario.measured_rates:
        frames["rates"] = rows(scenario.measured_rates, {"class": "workload_class"}, TABLES[5])
    if scenario.futures is not None:
        frames["futures"] = futures_frame(scenario.futures)
    return frames


def _write_csv(frame: pd.DataFrame, target: Path) -> None:
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(frame.columns))
        for row in frame.itertuples(index=False):
            writer.writerow([repr(v) if isinstance(v, float) else v for v in row])


def write_scenario(scenario: Scenario, path: Path) -> Path:
    """A scenario as a CSV folder (path without suffix) or an .xlsx workbook, written atomically."""
    path = Path(path)
    frames = scenario_frames(scenario)
    if path.suffix.lower() == ".xlsx":
        with atomic_path(path) as temporary:
            write_workbook(frames, temporary)
        return path
    from rackplan.planner.io.files import replace_folder

    def fill(folder: Path) -> None:
        for name, frame in frames.items():
            _write_csv(frame, folder / f"{name}.csv")

    return replace_folder(path, fill)


def template_frames() -> dict[str, pd.DataFrame]:
    """Each table with its headers and one example row (settings: every key)."""
    frames = {}
    for table in TABLES:
        if table.key_value:
            frames[table.name] = pd.DataFrame(
                [{"key": c.name, "value": c.example} for c in table.columns]
            )
        else:
            frames[table.name] = pd.DataFrame([{c.name: c.example for c in table.columns}])
    return frames


def readme_frame() -> pd.DataFrame:
    rows = []
    for table in TABLES:
        for column in table.columns:
            rows.append(
                {
                    "table": table.name,
                    "column": column.name,
                    "required": "yes" if column.required else "no",
                    "example": column.example,
                    "meaning": column.help,
                }
            )
    return pd.DataFrame(rows)


def write_template(path: Path, force: bool = False) -> Path:
    """The template: a CSV folder, or a workbook with a README sheet explaining every column.

    An existing file or non-empty folder is never overwritten unless ``force``."""
    path = Path(path)
    occupied = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if occupied and not force:
        raise InputError(
            [
                Problem(
                    str(path),
                    None,
                    None,
                    "already exists: the template would overwrite it; choose a new name, or "
                    "pass --force to replace it",
                )
            ]
        )
    frames = template_frames()
    if path.suffix.lower() == ".xlsx":
        with atomic_path(path) as temporary:
            write_workbook({"README": readme_frame(), **frames}, temporary)
        return path
    from rackplan.planner.io.files import replace_folder

    def fill(folder: Path) -> None:
        for name, frame in frames.items():
            frame.to_csv(folder / f"{name}.csv", index=False)

    return replace_folder(path, fill)
