"""Spreadsheet I/O: formatted XLSX workbooks (openpyxl) for plans."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

HEADER_FILL = PatternFill("solid", fgColor="DDE7F0")
MAX_WIDTH = 60


def _number_format(column: str) -> str | None:
    if column.endswith("_usd") or column in {"objective_usd", "value"}:
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
        sheet.append(
            [
                None
                if (isinstance(v, float) and pd.isna(v))
                else (v.item() if hasattr(v, "item") else v)
                for v in row
            ]
        )
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
