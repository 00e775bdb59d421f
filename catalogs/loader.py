"""Load and validate catalog CSV files; user files add or override entries by id.

Each loader reads cells as text, builds the pydantic type of every row, and reports
*all* problems at once through ``InputError`` — file, spreadsheet row, column, the
value found and what was expected.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.calibration import MeasuredPoint
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.llm import LLM
from rackplan.models.workload import PrecisionName

DATA_DIR = Path(__file__).parent / "data"
RACKS_FILE = DATA_DIR / "racks.csv"
LLMS_FILE = DATA_DIR / "llms.csv"
EFFICIENCY_FILE = DATA_DIR / "efficiency.csv"
MEASURED_FILE = DATA_DIR / "measured_mlperf.csv"
SPEED_RECORDS_FILE = DATA_DIR / "speed_records.csv"
FIT_POINTS_FILE = DATA_DIR / "fit_points.csv"

RACK_COLUMNS = [
    "id",
    "name",
    "family",
    "vendor",
    "status",
    "chip_name",
    "chips_per_rack",
    "fp4_dense_tflops_per_chip",
    "fp8_dense_tflops_per_chip",
    "bf16_dense_tflops_per_chip",
    "mem_kind",
    "mem_capacity_gb_per_chip",
    "mem_bw_tb_s_per_chip",
    "mem2_kind",
    "mem2_capacity_gb_per_chip",
    "mem2_bw_tb_s_per_chip",
    "scaleup_domain_chips",
    "scaleup_bw_gb_s_per_chip",
    "scaleup_latency_us",
    "scaleout_bw_gb_s_per_chip",
    "power_kw_at_load",
    "power_kw_idle",
    "capex_usd",
    "roles",
    "first_available",
    "source",
    "confidence",
    "power_confidence",
    "capex_confidence",
    "notes",
]
LLM_COLUMNS = list(LLM.model_fields)
EFFICIENCY_COLUMNS = ["family", *EfficiencyFactors.model_fields]
MEASURED_COLUMNS = list(MeasuredPoint.model_fields)
OPTIONAL_COLUMNS = {
    "notes",
    "mem2_kind",
    "mem2_capacity_gb_per_chip",
    "mem2_bw_tb_s_per_chip",
    # measured points: MLPerf-style files without these columns state p99 limits and no
    # speculative decoding (docs/calibration.md)
    "serving",
    "sla_percentile",
    "speculative_draft_tokens",
    "speculative_acceptance",
    # measured points: provenance columns added later; older user files may lack them
    "round",
    "chips",
    "confidence",
}

_TIER_COLUMNS = {
    "kind": "{p}_kind",
    "capacity_gb_per_chip": "{p}_capacity_gb_per_chip",
    "bandwidth_tb_s_per_chip": "{p}_bw_tb_s_per_chip",
}

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RawRow:
    """One data row as text, with its spreadsheet row number (header = 1)."""

    number: int
    cells: dict[str, str]


def read_rows(path: Path, columns: Iterable[str]) -> list[RawRow]:
    """Read a CSV as text rows; check the header against ``columns``.

    Accepts a UTF-8 BOM and skips fully blank rows. Raises InputError naming missing or
    unknown columns.
    """
    expected = list(columns)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except FileNotFoundError as exc:
        raise InputError([Problem(str(path), None, None, "file not found")]) from exc
    except UnicodeDecodeError as exc:
        raise InputError(
            [Problem(str(path), None, None, "not UTF-8 text: save the file as CSV UTF-8")]
        ) from exc
    if not table:
        raise InputError([Problem(str(path), None, None, "the file is empty: it needs a header")])
    header = [name.strip() for name in table[0]]
    problems = [
        Problem(
            str(path), 1, name, f"required column missing; expected columns: {', '.join(expected)}"
        )
        for name in expected
        if name not in header and name not in OPTIONAL_COLUMNS
    ]
    problems += [
        Problem(str(path), 1, name, f"unknown column; expected one of: {', '.join(expected)}")
        for name in header
        if name and name not in expected
    ]
    if problems:
        raise InputError(problems)
    rows = []
    for number, values in enumerate(table[1:], start=2):
        if not any(v.strip() for v in values):
            continue
        cells = {
            name: (values[i].strip() if i < len(values) else "") for i, name in enumerate(header)
        }
        rows.append(RawRow(number, cells))
    return rows


def _blank_to_none(cells: dict[str, str]) -> dict[str, Any]:
    return {key: value for key, value in cells.items() if value != "" and key}


def _rack_fields(cells: dict[str, str]) -> dict[str, Any]:
    """CSV cells → RackType fields: memory tiers nested, roles split on ';'."""
    data = _blank_to_none(cells)
    tiers = []
    for prefix in ("mem", "mem2"):
        tier = {
            field: data.pop(template.format(p=prefix))
            for field, template in _TIER_COLUMNS.items()
            if template.format(p=prefix) in data
        }
        if tier:
            tiers.append(tier)
    data["memory_tiers"] = tiers
    if "roles" in data:
        data["roles"] = [role.strip() for role in data["roles"].split(";") if role.strip()]
    return data


def _column_for(loc: tuple[Any, ...], model: type[BaseModel]) -> str | None:
    """Map a pydantic error location back to the CSV column it came from."""
    if not loc:
        return None
    if loc[0] == "memory_tiers" and len(loc) >= 3 and loc[2] in _TIER_COLUMNS:
        prefix = "mem" if loc[1] == 0 else "mem2"
        return _TIER_COLUMNS[str(loc[2])].format(p=prefix)
    if loc[0] == "memory_tiers":
        return "mem_kind"
    return str(loc[0]) if loc[0] in model.model_fields else None


def _message(error: dict[str, Any]) -> str:
    text = str(error["msg"])
    return text.removeprefix("Value error, ")


def build_rows(
    path: Path,
    rows: list[RawRow],
    model: type[Model],
    to_fields: Callable[[dict[str, str]], dict[str, Any]] = _blank_to_none,
    key: str = "id",
) -> dict[str, Model]:
    """Validate every row into ``model``; collect all problems; reject duplicate keys."""
    problems: list[Problem] = []
    built: dict[str, Model] = {}
    first_row: dict[str, int] = {}
    for row in rows:
        try:
            item = model.model_validate(to_fields(row.cells))
        except ValidationError as exc:
            for error in exc.errors():
                column = _column_for(tuple(error["loc"]), model)
                value = row.cells.get(column or "", None)
                problems.append(Problem(str(path), row.number, column, _message(error), value))
            continue
        ident = row.cells.get(key, "")
        if ident in first_row:
            problems.append(
                Problem(
                    str(path),
                    row.number,
                    key,
                    f"duplicate id, first defined on row {first_row[ident]}",
                    ident,
                )
            )
            continue
        first_row[ident] = row.number
        built[ident] = item
    if problems:
        raise InputError(problems)
    return built


def load_racks(path: Path = RACKS_FILE) -> dict[str, RackType]:
    """Rack types by id from a racks CSV (columns: ``RACK_COLUMNS``)."""
    return build_rows(path, read_rows(path, RACK_COLUMNS), RackType, _rack_fields)


def load_llms(path: Path = LLMS_FILE) -> dict[str, LLM]:
    """LLMs by id from an LLM CSV (columns: the fields of ``models.llm.LLM``)."""
    return build_rows(path, read_rows(path, LLM_COLUMNS), LLM)


def load_efficiency(path: Path = EFFICIENCY_FILE) -> dict[str, EfficiencyFactors]:
    """Efficiency factors by rack family."""

    def fields(cells: dict[str, str]) -> dict[str, Any]:
        data = _blank_to_none(cells)
        data.pop("family", None)
        return data

    return build_rows(
        path, read_rows(path, EFFICIENCY_COLUMNS), EfficiencyFactors, fields, key="family"
    )


def load_measured(path: Path = MEASURED_FILE) -> list[MeasuredPoint]:
    """Measured throughput points (for calibration and validation), in file order."""
    rows = read_rows(path, MEASURED_COLUMNS)
    problems: list[Problem] = []
    points: list[MeasuredPoint] = []
    for row in rows:
        try:
            points.append(MeasuredPoint.model_validate(_blank_to_none(row.cells)))
        except ValidationError as exc:
            for error in exc.errors():
                column = _column_for(tuple(error["loc"]), MeasuredPoint)
                problems.append(
                    Problem(
                        str(path), row.number, column, _message(error), row.cells.get(column or "")
                    )
                )
    if problems:
        raise InputError(problems)
    return points


def load_fit_points(path: Path = FIT_POINTS_FILE) -> set[tuple[str, str, str]]:
    """The calibration split: (rack, LLM, scenario) of the measured points the shipped factors
    are fitted to (at most four per rack family; docs/calibration.md). Every other measured
    point is held out."""
    rows = read_rows(path, ["rack", "llm", "scenario", "reason"])
    keys = [(r.cells["rack"], r.cells["llm"], r.cells["scenario"]) for r in rows]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise InputError(
            [
                Problem(
                    str(path), None, None, f"point listed twice: {', '.join(map(str, duplicates))}"
                )
            ]
        )
    return set(keys)


class SpeedRecord(BaseModel):
    """A public per-user decode speed record: output tokens/s for one stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rack: str
    llm: str
    precision: PrecisionName
    tokens_per_s_per_user: float = Field(gt=0)
    bound: Literal["value", "lower"] = "value"
    """``lower``: the source says "over" this figure (a lower bound, not a value)."""
    max_chips: int | None = Field(default=None, ge=1)
    """Chips of the system the record ran on, when the source says (replicas no wider)."""
    source: str = Field(min_length=1)
    date: str = ""
    confidence: str = ""
    notes: str = ""


SPEED_RECORD_COLUMNS = list(SpeedRecord.model_fields)


def load_speed_records(path: Path = SPEED_RECORDS_FILE) -> list[SpeedRecord]:
    """Per-user speed records (tokens/s for a single stream), in file order."""
    rows = read_rows(path, SPEED_RECORD_COLUMNS)
    problems: list[Problem] = []
    records: list[SpeedRecord] = []
    for row in rows:
        try:
            records.append(SpeedRecord.model_validate(_blank_to_none(row.cells)))
        except ValidationError as exc:
            for error in exc.errors():
                column = _column_for(tuple(error["loc"]), SpeedRecord)
                problems.append(
                    Problem(
                        str(path), row.number, column, _message(error), row.cells.get(column or "")
                    )
                )
    if problems:
        raise InputError(problems)
    return records


@dataclass(frozen=True)
class Catalog:
    """Rack types, LLMs and efficiency factors in play, shipped ones overridden by user files."""

    racks: dict[str, RackType]
    llms: dict[str, LLM]
    efficiency: dict[str, EfficiencyFactors]

    def rack(self, rack_id: str) -> RackType:
        return _lookup(self.racks, rack_id, "rack type", "rackplan catalog list racks")

    def llm(self, llm_id: str) -> LLM:
        return _lookup(self.llms, llm_id, "LLM", "rackplan catalog list llms")

    def efficiency_for(self, rack: RackType) -> EfficiencyFactors:
        """η_F, η_B of the rack's family; an unknown family is an error, not a silent default."""
        return _lookup(self.efficiency, rack.family, "efficiency family", "efficiency.csv")


def _lookup(table: dict[str, Any], key: str, what: str, where: str) -> Any:
    if key not in table:
        known = ", ".join(sorted(table))
        raise InputError(
            [
                Problem(
                    "catalog", None, None, f"unknown {what} '{key}'; known: {known} (see {where})"
                )
            ]
        )
    return table[key]


UserFiles = Path | Sequence[Path] | None


def _as_list(files: UserFiles) -> list[Path]:
    if files is None:
        return []
    if isinstance(files, Path | str):
        return [Path(files)]
    return [Path(f) for f in files if f is not None]


def load_catalog(
    user_racks: UserFiles = None,
    user_llms: UserFiles = None,
    user_efficiency: UserFiles = None,
) -> Catalog:
    """The shipped catalog, with user files adding or overriding entries by id (later files
    override earlier ones). Problems in several files are reported together."""
    problems: list[Problem] = []

    def merged(
        loader: Callable[[Path], dict[str, Any]], shipped: Path, user: UserFiles
    ) -> dict[str, Any]:
        table: dict[str, Any] = {}
        for path in (shipped, *_as_list(user)):
            if path is None:
                continue
            try:
                table.update(loader(path))
            except InputError as exc:
                problems.extend(exc.problems)
        return table

    catalog = Catalog(
        racks=merged(load_racks, RACKS_FILE, user_racks),
        llms=merged(load_llms, LLMS_FILE, user_llms),
        efficiency=merged(load_efficiency, EFFICIENCY_FILE, user_efficiency),
    )
    if problems:
        raise InputError(problems)
    return catalog
