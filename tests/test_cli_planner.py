"""The planning commands through typer's runner: solve, explain, pareto, whatif."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rackplan.planner.cli.main import EXIT_INFEASIBLE, app

runner = CliRunner()
QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json"


def _run(args: list[str], code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_solve_json_contract():
    data = json.loads(_run(["solve", QUICKSTART, "--format", "json", "--no-baselines"]).stdout)
    for key in (
        "status",
        "objective_usd",
        "best_bound_usd",
        "gap",
        "purchases",
        "fleet",
        "allocation",
        "power",
        "costs",
        "shadow_prices",
        "baselines",
        "explanation",
    ):
        assert key in data
    assert data["status"] == "optimal"
    assert data["objective_usd"] == pytest.approx(data["tco_usd"])
    assert data["gap"] <= 0.005  # the CLI default --gap
    assert data["verification"] == []
    bought = sum(p["racks_bought"] for p in data["purchases"])
    assert bought >= 1
    assert any(line.startswith("buy in") for line in data["explanation"])


def test_solve_writes_exports(tmp_path):
    result = _run(["solve", QUICKSTART, "--out", tmp_path / "plan"])
    assert "quickstart: optimal" in result.stdout and "buy in" in result.stdout
    csv_folder = tmp_path / "plan" / "csv"
    purchases = pd.read_csv(csv_folder / "purchases.csv")
    assert {"period", "rack", "racks_bought", "capex_usd"} <= set(purchases.columns)
    baselines = pd.read_csv(csv_folder / "baselines.csv")
    assert len(baselines) == 3
    assert (tmp_path / "plan" / "charts" / "fleet.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plan" / "charts" / "power.svg").read_text().lstrip().startswith("<?xml")


def test_solve_xlsx_export(tmp_path):
    _run(["solve", QUICKSTART, "--out", tmp_path, "--format", "xlsx", "--no-baselines"])
    sheets = pd.read_excel(tmp_path / "plan.xlsx", sheet_name=None)
    assert {"summary", "purchases", "fleet", "allocation", "power", "costs"} <= set(sheets)
    assert sheets["summary"].set_index("key").loc["status", "value"] == "optimal"


def test_infeasible_scenario_exits_3_and_explains(tmp_path):
    scenario = json.loads(QUICKSTART.read_text())
    for period in scenario["periods"]:
        period["power_cap_mw"] = 0.1
    path = tmp_path / "tight.json"
    path.write_text(json.dumps(scenario))
    result = _run(["solve", path], code=EXIT_INFEASIBLE)
    assert "power cap in 2027Q1 short by" in result.stdout
    explained = _run(["explain", path], code=EXIT_INFEASIBLE)
    assert "power cap in 2027Q2 short by" in explained.stdout


def test_explain_feasible_lists_what_binds():
    result = _run(["explain", QUICKSTART])
    assert "feasible" in result.stdout and "demand_cover[chat" in result.stdout


def test_pareto_over_power_cap(tmp_path):
    result = _run(
        [
            "pareto",
            QUICKSTART,
            "--sweep",
            "power_cap_mw",
            "--from",
            "0.2",
            "--to",
            "1.0",
            "--steps",
            "3",
            "--json",
            "--out",
            tmp_path,
        ]
    )
    rows = json.loads(result.stdout)
    assert [r["value"] for r in rows] == [0.2, 0.6, 1.0]
    solved = [r for r in rows if r["tco_usd"] is not None]
    assert solved, rows
    costs = [r["tco_usd"] for r in sorted(solved, key=lambda r: r["value"])]
    assert costs == sorted(costs, reverse=True), "a looser cap never costs more"
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "pareto.csv").exists()


def test_whatif_variants_side_by_side(tmp_path):
    variants = tmp_path / "variants.csv"
    variants.write_text(
        "variant,key,value\ncheap-gb200,capex_scale:gb200-nvl72,0.5\n", encoding="utf-8"
    )
    result = _run(
        [
            "whatif",
            QUICKSTART,
            "--variant",
            "double:demand_scale=2",
            "--variants",
            variants,
            "--json",
            "--out",
            tmp_path,
        ]
    )
    rows = {r["variant"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"base", "double", "cheap-gb200"}
    assert rows["base"]["delta_tco_usd"] == 0
    assert rows["double"]["tco_usd"] > rows["base"]["tco_usd"]
    assert rows["cheap-gb200"]["tco_usd"] <= rows["base"]["tco_usd"]
    assert (tmp_path / "comparison.xlsx").exists()


def test_whatif_bad_key_is_named(capsys):
    from rackplan.planner.cli.main import main

    assert main(["whatif", str(QUICKSTART), "--variant", "x:power=2"]) == 2
    assert "unknown what-if key" in capsys.readouterr().err


def test_solve_missing_file_is_invalid_input(capsys, tmp_path):
    from rackplan.planner.cli.main import main

    assert main(["solve", str(tmp_path / "nope.json")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_scenario_field_errors_name_the_path(capsys, tmp_path):
    from rackplan.planner.cli.main import main

    scenario = json.loads(QUICKSTART.read_text())
    scenario["periods"][1]["hours"] = -5
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(scenario))
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err
    assert "periods.1.hours" in err and "-5" in err
    shutil.rmtree(tmp_path, ignore_errors=True)
