"""The plan workbook round-trips: it holds its inputs, so exporting, re-importing with the
project's importer and re-solving gives the same plan; an edit to an input sheet is honoured."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook

from rackplan.catalogs.errors import InputError
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.solve import SolveOptions
from rackplan.planner.io.export import write_xlsx
from rackplan.planner.io.scenario_io import load_scenario
from rackplan.planner.io.spreadsheets import read_scenario

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json"
EXACT = SolveOptions(time_limit_s=60, rel_gap=1e-9)


def _purchases(result) -> list[tuple]:
    frame = result.plan.purchases
    return sorted(zip(frame["period"], frame["rack"], frame["racks_bought"], strict=True))


def _edit_forecast(path: Path, change) -> None:
    """Replace every numeric demand cell of the workbook's input forecast by ``change(value)``."""
    book = load_workbook(path)
    sheet = book["input forecast"]
    header = [c.value for c in sheet[1]]
    for row in sheet.iter_rows(min_row=2):
        for name in ("requests_per_s", "output_tokens_per_s"):
            cell = row[header.index(name)]
            if isinstance(cell.value, int | float):
                cell.value = change(cell.value)
    book.save(path)


def test_export_reimport_resolve_same_plan(tmp_path, catalog):
    scenario = load_scenario(QUICKSTART)
    first = plan_scenario(scenario, catalog, EXACT, with_baselines=False)
    path = write_xlsx(first, tmp_path / "plan.xlsx")
    book = load_workbook(path)
    assert {"summary", "buy_schedule_racks", "fleet_matrix_racks", "purchases", "fleet"} <= set(
        book.sheetnames
    )
    assert {"input periods", "input classes", "input forecast", "input fleet"} <= set(
        book.sheetnames
    )
    assert all(book[name].freeze_panes == "A2" for name in book.sheetnames)
    again = read_scenario(path, catalog)
    assert again == scenario.model_copy(update={"name": again.name})
    second = plan_scenario(again, catalog, EXACT, with_baselines=False)
    assert second.plan.tco_usd == pytest.approx(first.plan.tco_usd, rel=1e-9)
    assert _purchases(second) == _purchases(first)
    matrix = book["buy_schedule_racks"]
    header = [c.value for c in matrix[1]]
    assert header[0] == "rack" and header[-1] == "total"
    total = sum(row[-1] for row in matrix.iter_rows(min_row=2, values_only=True))
    assert total == pytest.approx(first.plan.purchases["racks_bought"].sum())


def test_an_edited_input_sheet_is_solved(tmp_path, catalog):
    """Doubling every forecast row in the workbook must raise the plan's cost."""
    scenario = load_scenario(QUICKSTART)
    first = plan_scenario(scenario, catalog, EXACT, with_baselines=False)
    path = write_xlsx(first, tmp_path / "plan.xlsx")
    _edit_forecast(path, lambda value: value * 2)
    edited = plan_scenario(read_scenario(path, catalog), catalog, EXACT, with_baselines=False)
    assert edited.plan.tco_usd > first.plan.tco_usd * 1.2


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice (soffice) not installed")
def test_a_workbook_edited_through_libreoffice_is_re_solved(tmp_path, catalog):
    """A planner's edit made in LibreOffice: the forecast cells become formulas (=value*2), which
    our importer refuses until a spreadsheet has computed them; LibreOffice headless opens,
    recalculates and saves the workbook; the importer then reads the computed values and the
    re-solved plan serves twice the demand."""
    scenario = load_scenario(QUICKSTART)
    first = plan_scenario(scenario, catalog, EXACT, with_baselines=False)
    path = write_xlsx(first, tmp_path / "plan.xlsx")
    _edit_forecast(path, lambda value: f"={value!r}*2")
    with pytest.raises(InputError, match="formula"):
        read_scenario(path, catalog)
    out = tmp_path / "libreoffice"
    subprocess.run(
        [
            "soffice",
            "--headless",
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    edited = plan_scenario(
        read_scenario(out / "plan.xlsx", catalog), catalog, EXACT, with_baselines=False
    )
    assert edited.plan.tco_usd > first.plan.tco_usd * 1.2
    assert edited.plan.purchases["racks_bought"].sum() > first.plan.purchases["racks_bought"].sum()
