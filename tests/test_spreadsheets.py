"""Scenario spreadsheets: import tolerances, strict errors (a corpus of bad files), round
trips through CSV and XLSX, the template, and every example solved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rackplan.catalogs.errors import InputError
from rackplan.planner.cli.main import app
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.verify import verify_plan
from rackplan.planner.io.scenario_io import load_scenario, load_scenario_json
from rackplan.planner.io.spreadsheets import (
    normalise_period,
    parse_fraction,
    parse_number,
    read_scenario,
    write_scenario,
    write_template,
)

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parents[1] / "examples"
runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1234.5", 1234.5),
        ("1,234,567", 1234567),
        ("1 234", 1234),
        ("1.234.567,5", 1234567.5),
        ("0,08", 0.08),
        ("$1,200", 1200),
        ("-3", -3),
        (42, 42.0),
        ("1\u202f000", 1000),
    ],
)
def test_numbers_as_spreadsheets_write_them(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["lots", "1,2,3", "", "12abc"])
def test_non_numbers_are_refused(text):
    with pytest.raises(ValueError, match="expected a number"):
        parse_number(text)


def test_percentages_and_fractions():
    assert parse_fraction("20%") == pytest.approx(0.2)
    assert parse_fraction("0.2") == pytest.approx(0.2)
    assert parse_fraction(" 7,5 % ") == pytest.approx(0.075)
    with pytest.raises(ValueError, match="20%"):
        parse_fraction("20")


@pytest.mark.parametrize("text", ["2027Q1", "2027-Q1", "2027 q1", "Q1 2027", "q1-2027", "Q1/2027"])
def test_quarter_spellings(text):
    assert normalise_period(text) == "2027Q1"


def test_semicolon_bom_blank_rows_and_columns(tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(DATA / "good_scenario", folder)
    periods = folder / "periods.csv"
    lines = periods.read_text().splitlines()
    rewritten = ["\ufeff" + lines[0].replace(",", ";") + ";;"]
    for line in lines[1:]:
        cells = line.split(",")
        cells[0] = cells[0].replace("2027Q", "Q") + " 2027"  # Q1 2027
        cells[1] = "2 190"
        rewritten.append(";".join(cells) + ";;")
    periods.write_text("\n".join([*rewritten, ";;;;;;;", ""]), encoding="utf-8")
    classes = folder / "classes.csv"
    classes.write_text(classes.read_text().replace(",0.7,", ",70%,"))
    scenario = read_scenario(folder)
    original = read_scenario(DATA / "good_scenario")
    assert scenario.model_copy(update={"name": original.name}) == original


BAD = {
    "bad_number": ("periods.csv", 2, "hours", "expected a number"),
    "unknown_column": ("classes.csv", 1, "model", "unknown column"),
    "missing_required_value": (
        "forecast.csv",
        None,
        None,
        "exactly one of requests_per_s or output_tokens_per_s",
    ),
    "unknown_period": ("forecast.csv", 3, "period", "unknown period (not in the periods table)"),
    "fraction_over_one": ("classes.csv", 2, "max_utilisation", "percentage such as 20%"),
    "unknown_choice": ("classes.csv", 2, "precision", "expected one of fp4, fp8, bf16"),
    "missing_table": (None, None, None, "table 'fleet' is missing"),
    "unknown_setting": ("settings.csv", 5, "key", "unknown setting"),
    "two_forms_of_demand": (
        "forecast.csv",
        2,
        None,
        "exactly one of requests_per_s or output_tokens_per_s",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_file_row_column(case):
    """Every file of the corpus fails with a problem that says where and what."""
    file, row, column, message = BAD[case]
    with pytest.raises(InputError) as caught:
        read_scenario(DATA / "bad_scenarios" / case)
    problems = caught.value.problems
    matching = [p for p in problems if message in p.message]
    assert matching, [str(p) for p in problems]
    problem = matching[0]
    if file not in (None, "good"):
        assert problem.file == file
    if row is not None:
        assert problem.row == row
    if column is not None:
        assert problem.column == column


def test_every_problem_is_reported_at_once(tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(DATA / "good_scenario", folder)
    (folder / "periods.csv").write_text((folder / "periods.csv").read_text().replace("2190.0", "x"))
    (folder / "classes.csv").write_text(
        (folder / "classes.csv").read_text().replace(",fp8", ",fp6")
    )
    with pytest.raises(InputError) as caught:
        read_scenario(folder)
    where = {(p.file, p.column) for p in caught.value.problems}
    assert ("periods.csv", "hours") in where and ("classes.csv", "precision") in where
    assert len([p for p in caught.value.problems if p.column == "hours"]) == 2


def test_cli_reports_bad_files_without_traceback(capsys):
    from rackplan.planner.cli.main import main

    assert main(["solve", str(DATA / "bad_scenarios" / "bad_number")]) == 2
    err = capsys.readouterr().err
    assert "periods.csv, row 2, column 'hours': expected a number (found 'lots')" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "example", ["quickstart/scenario.json", "frontier-2027", "agentic-shift", "power-capped-colo"]
)
@pytest.mark.parametrize("form", ["csv", "xlsx"])
def test_round_trip(tmp_path, example, form):
    scenario = load_scenario(EXAMPLES / example)
    target = tmp_path / ("scenario.xlsx" if form == "xlsx" else "scenario")
    write_scenario(scenario, target)
    assert read_scenario(target) == scenario


def test_template_is_documented_and_solvable(tmp_path, catalog):
    workbook = write_template(tmp_path / "template.xlsx")
    sheets = pd.read_excel(workbook, sheet_name=None)
    assert {"README", "settings", "periods", "classes", "forecast", "fleet", "rates"} <= set(sheets)
    readme = sheets["README"]
    assert {"table", "column", "required", "meaning"} <= set(readme.columns)
    assert "MW" in " ".join(readme["meaning"])
    folder = write_template(tmp_path / "template")
    scenario = read_scenario(folder)
    assert read_scenario(workbook) == scenario
    result = plan_scenario(scenario, catalog, with_baselines=False, with_shadow_prices=False)
    assert result.status == "optimal"


def test_template_command(tmp_path):
    result = runner.invoke(app, ["template", str(tmp_path / "t")])
    assert result.exit_code == 0
    assert "rackplan solve" in result.stdout
    assert (tmp_path / "t" / "forecast.csv").read_text().startswith("period,class,requests_per_s")


EXPECTED = {
    "frontier-2027": "plan",
    "agentic-shift": "plan",
    "power-capped-colo": "infeasible",
    "sram-decode-pays": "plan",
    "sram-decode-does-not-pay": "plan",
}
"""A plan (optimal, or feasible within the default 0.5 % gap) or infeasible."""


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_every_example_solves_as_documented(example, catalog):
    scenario = read_scenario(EXAMPLES / example)
    result = plan_scenario(scenario, catalog, with_baselines=False, with_shadow_prices=False)
    assert ("plan" if result.feasible else result.status) == EXPECTED[example]
    if result.plan is not None:
        assert verify_plan(result.plan, scenario, catalog) == []
        gap = result.plan.outcome.gap
        assert gap <= 0.005
        assert result.status == ("optimal" if gap <= 1e-4 else "feasible")
    else:
        assert any("power cap in" in line for line in result.explanation)


def test_sram_decode_pays_only_when_the_tpot_needs_it(catalog):
    """The two SRAM examples differ only in the voice agent's p99 TPOT (3 ms vs 25 ms): the
    tight one buys Groq 3 LPX racks for its decode and beats the best single GPU type; the
    relaxed one buys none."""
    bought = {}
    for example in ("sram-decode-pays", "sram-decode-does-not-pay"):
        result = plan_scenario(read_scenario(EXAMPLES / example), catalog, with_shadow_prices=False)
        bought[example] = set(result.plan.purchases["rack"])
        if example == "sram-decode-pays":
            allocation = result.plan.allocation
            lpx = allocation.query("rack == 'groq3-lpx'")
            assert set(lpx["mode"]) == {"decode"}  # prefill stays on GPUs
            voice = allocation.query("`class` == 'voice-agent' and mode == 'decode'")
            assert set(voice["rack"]) == {"groq3-lpx"}  # all of the voice agent's decode
            single = result.plan.baselines.query("baseline.str.startswith('single')")
            assert result.plan.tco_usd < 0.8 * single["objective_usd"].min()
    assert "groq3-lpx" in bought["sram-decode-pays"]
    assert "groq3-lpx" not in bought["sram-decode-does-not-pay"]


def test_quickstart_json_solves(catalog):
    result = plan_scenario(load_scenario_json(EXAMPLES / "quickstart" / "scenario.json"), catalog)
    assert result.status == "optimal" and result.violations == ()


def test_power_capped_colo_pareto(tmp_path):
    result = runner.invoke(
        app,
        [
            "pareto",
            str(EXAMPLES / "power-capped-colo"),
            "--sweep",
            "power_cap_mw",
            "--from",
            "2",
            "--to",
            "6",
            "--steps",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.stdout)
    assert rows[0]["status"] == "infeasible" and rows[-1]["status"] in {"optimal", "feasible"}
    assert rows[-1]["tco_usd"] > 0


def test_scenario_file_docs_are_current():
    """docs/scenario-files.md is rendered from the table specs; regenerate it with
    python -c "from rackplan.planner.io.scenario_tables import markdown as m; print(m(), end='')" \
        > docs/scenario-files.md"""
    from rackplan.planner.io.scenario_tables import markdown

    docs = Path(__file__).parents[1] / "docs" / "scenario-files.md"
    assert docs.read_text(encoding="utf-8") == markdown()


def test_scenario_folder_can_extend_the_catalog(tmp_path):
    """A racks.csv beside the scenario tables adds rack types the fleet can name."""
    import csv

    from rackplan.catalogs.loader import RACKS_FILE

    folder = tmp_path / "s"
    shutil.copytree(DATA / "good_scenario", folder)
    with RACKS_FILE.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    mine = dict(next(r for r in rows if r["id"] == "hgx-h200"), id="my-h200", capex_usd="400000")
    with (folder / "racks.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(mine))
        writer.writeheader()
        writer.writerow(mine)
    (folder / "fleet.csv").write_text("rack,installed\nmy-h200,0\n", encoding="utf-8")
    result = runner.invoke(app, ["solve", str(folder), "--format", "json", "--no-baselines"])
    assert result.exit_code == 0, result.output
    import json

    plan = json.loads(result.stdout)
    assert {p["rack"] for p in plan["purchases"]} == {"my-h200"}
    assert all(p["capex_usd"] == 400_000 * p["racks_bought"] for p in plan["purchases"])


@pytest.mark.parametrize("text", ["0.080", "0,080", "0.125"])
def test_leading_zero_decimals_are_not_thousands(text):
    assert parse_number(text) == pytest.approx(float(text.replace(",", ".")))


@pytest.mark.parametrize("text", ["nan", "inf", "1e400", "1_0"])
def test_non_finite_and_odd_numbers_are_refused(text):
    with pytest.raises(ValueError):
        parse_number(text)


def test_dates_in_period_columns_are_refused():
    import datetime

    with pytest.raises(ValueError, match="turned this label into a date"):
        normalise_period(datetime.datetime(2027, 1, 1))


def test_duplicate_columns_and_settings_are_refused(tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(DATA / "good_scenario", folder)
    periods = folder / "periods.csv"
    lines = periods.read_text().splitlines()
    periods.write_text(
        "\n".join([lines[0] + ",hours"] + [line + ",10" for line in lines[1:]]) + "\n"
    )
    with pytest.raises(InputError) as caught:
        read_scenario(folder)
    messages = {(p.file, p.column, p.message) for p in caught.value.problems}
    assert ("periods.csv", "hours", "this column appears more than once") in messages
    periods.write_text("\n".join(lines) + "\n")
    settings = folder / "settings.csv"
    settings.write_text(settings.read_text() + "salvage,linear\n")
    with pytest.raises(InputError) as caught:
        read_scenario(folder)
    assert any(
        p.message == "this setting is given twice" and p.value == "salvage"
        for p in caught.value.problems
    )


def test_multiline_quoted_cells_keep_row_numbers(tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(DATA / "good_scenario", folder)
    fleet = folder / "fleet.csv"
    fleet.write_text(fleet.read_text() + 'bad-rack-"x",,,,,,,"1\n2",,\n')
    with pytest.raises(InputError) as caught:
        read_scenario(folder)
    capex = [p for p in caught.value.problems if p.column == "capex_usd"]
    assert capex and capex[0].row == 5 and capex[0].value == "1\n2"


def test_formula_like_text_round_trips_as_text(tmp_path):
    scenario = load_scenario(EXAMPLES / "quickstart" / "scenario.json")
    from rackplan.models.scenario import MeasuredRate

    rate = MeasuredRate(
        rack="hgx-h200",
        workload_class="chat",
        mode="decode",
        tokens_per_s_per_rack=1000,
        tpot_ms=10,
        power_kw=30,
        source="=bench run 2",
    )
    scenario = scenario.model_copy(update={"measured_rates": (rate,)})
    target = write_scenario(scenario, tmp_path / "s.xlsx")
    assert read_scenario(target).measured_rates[0].source == "=bench run 2"


def test_formula_without_cached_value_is_an_error_not_a_blank(tmp_path):
    """openpyxl and scripts write formulas without results; a blank power cap would mean no cap."""
    from openpyxl import load_workbook

    workbook_path = write_scenario(
        load_scenario(EXAMPLES / "quickstart" / "scenario.json"), tmp_path / "s.xlsx"
    )
    workbook = load_workbook(workbook_path)
    workbook["periods"]["C2"] = "=2*2"
    workbook.save(workbook_path)
    with pytest.raises(InputError) as caught:
        read_scenario(workbook_path)
    problem = caught.value.problems[0]
    assert (
        problem.row == 2
        and problem.value == "=2*2"
        and "formula without a computed value" in problem.message
    )
