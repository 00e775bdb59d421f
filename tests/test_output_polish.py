"""Output polish: power sweeps priced per MW, $/token with its scope and per total token,
SLA values without exponents, charts labelled in words, exports that survive a closed pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rackplan.planner.cli.main import EXIT_BROKEN_PIPE, _ms, app
from rackplan.planner.io.charts import parameter_label, plot_costs, plot_pareto, spans_decades
from rackplan.planner.io.export import price_sweep

runner = CliRunner()
ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
QUICKSTART = EXAMPLES / "quickstart" / "scenario.json"
RACKPLAN = Path(sys.executable).parent / "rackplan"
RATES_ARGS = "rates --rack gb200-nvl72 --llm llama-3.1-70b --input-tokens 2000 --output-tokens 400"
RATES_ARGS = [*RATES_ARGS.split(), "--tpot-ms", "40"]


def _sweep(**values: list) -> pd.DataFrame:
    """A hand-made power-cap sweep frame in ``whatif.pareto``'s columns."""
    frame = pd.DataFrame(values)
    frame.insert(0, "parameter", "power_cap_mw")
    frame["on_frontier"] = False
    return frame


def test_price_sweep_is_tco_difference_over_mw_difference():
    frame = price_sweep(
        _sweep(
            value=[3.0, 2.0, 2.5, 4.0],
            status=["optimal", "infeasible", "optimal", "optimal"],
            tco_usd=[48e6, None, 53e6, 48e6],
            gap=[1e-4, None, 1e-4, 1e-4],
        )
    ).set_index("value")
    assert frame.loc[3.0, "usd_per_mw"] == pytest.approx((53e6 - 48e6) / (3.0 - 2.5))
    assert frame.loc[3.0, "interval_from"] == 2.5
    assert not frame.loc[3.0, "difference_within_gap"]
    assert "the cap binds" in frame.loc[3.0, "note"] and "$10.00M" in frame.loc[3.0, "note"]
    assert frame.loc[4.0, "usd_per_mw"] == 0 and frame.loc[4.0, "difference_within_gap"]
    assert "does not bind" in frame.loc[4.0, "note"]
    assert pd.isna(frame.loc[2.5, "usd_per_mw"]), "no feasible point below the first feasible one"
    assert frame.loc[2.0, "infeasible"] and frame.loc[2.0, "note"].startswith("infeasible")


def test_price_sweep_flags_differences_within_the_gap():
    frame = price_sweep(
        _sweep(value=[3.0, 4.0], status=["feasible"] * 2, tco_usd=[100e6, 99.5e6], gap=[0.005] * 2)
    )
    assert frame["difference_within_gap"].tolist() == [False, True]


def test_power_sweep_prices_each_mw_in_json_csv_and_chart(tmp_path):
    """On the power-capped colo, the $/MW between two feasible sweep points equals their TCO
    difference over their MW difference; infeasible points are labelled everywhere."""
    args = ["pareto", EXAMPLES / "power-capped-colo", "--sweep", "power_cap_mw"]
    args += ["--from", "2.6", "--to", "2.9", "--steps", "7", "--gap", "1e-4"]
    result = runner.invoke(app, [str(a) for a in [*args, "--json", "--out", tmp_path]])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    feasible = [r for r in rows if r["tco_usd"] is not None]
    priced = [r for r in feasible if r["usd_per_mw"] is not None]
    assert priced and any(r["usd_per_mw"] > 1e6 for r in priced), "the cap binds somewhere"
    for row in priced:
        before = next(r for r in feasible if r["value"] == row["interval_from"])
        expected = (before["tco_usd"] - row["tco_usd"]) / (row["value"] - before["value"])
        assert row["usd_per_mw"] == pytest.approx(expected)
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    assert infeasible and all(r["infeasible"] and "infeasible" in r["note"] for r in infeasible)
    table = pd.read_csv(tmp_path / "pareto.csv")
    assert {"usd_per_mw", "infeasible", "note"} <= set(table.columns)
    assert table.loc[table["status"] == "infeasible", "infeasible"].all()
    svg = (tmp_path / "pareto.svg").read_text()
    assert "infeasible: no plan at this value" in svg
    assert "saving per extra MW" in svg
    text = runner.invoke(app, [str(a) for a in args]).stdout
    assert "saves $M per MW" in text and "infeasible (no plan) at 2.6" in text


def test_pareto_chart_names_the_parameter_in_words(tmp_path):
    frame = price_sweep(
        _sweep(value=[1.0, 2.0], status=["optimal"] * 2, tco_usd=[2e6, 1e6], gap=[0.0, 0.0])
    )
    frame["parameter"] = "tpot_ms:chat"
    plot_pareto(frame, tmp_path / "sweep")
    svg = (tmp_path / "sweep.svg").read_text()
    assert "TPOT target of chat, ms" in svg and "tpot_ms" not in svg
    assert parameter_label("capex_scale:gb200-nvl72") == "price of gb200-nvl72, × the catalog's"


def test_cost_chart_labels_in_words(tmp_path):
    costs = pd.DataFrame(
        {
            "period": ["2027Q1", "salvage"],
            "capex_usd": [5e6, 0.0],
            "energy_usd": [1e5, 0.0],
            "maintenance_usd": [2e5, 0.0],
        }
    )
    plot_costs(costs, tmp_path / "costs")
    svg = (tmp_path / "costs.svg").read_text()
    assert "capex (rack purchases)" in svg and "cost, USD millions (nominal)" in svg
    assert not re.search(r"<!-- \w+_usd -->", svg), "raw column names as labels"


def test_log_scale_only_when_values_span_decades():
    assert spans_decades(pd.Series([0.017, 0.5, 3.9]))
    assert not spans_decades(pd.Series([0.5, 0.9, 3.9]))


@pytest.mark.parametrize(
    ("value", "text"), [(18700.4, "18,700"), (1650.2, "1,650"), (287.0, "287"), (7.98, "7.98")]
)
def test_sla_milliseconds_never_in_exponent_form(value, text):
    assert _ms(value) == text


def test_cost_per_token_states_scope_and_total_tokens(tmp_path):
    result = runner.invoke(app, ["solve", str(QUICKSTART), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "per million tokens in and out" in result.stdout
    assert "excludes facility, network and staff" in result.stdout
    assert not re.search(r"\d\.\d+e[+-]\d", result.stdout), "no exponent form"
    table = pd.read_csv(tmp_path / "csv" / "cost_per_million_tokens.csv")
    row = table.iloc[0]
    total = row["prompt_tokens_million_discounted"] + row["output_tokens_million_discounted"]
    assert row["total_tokens_million_discounted"] == pytest.approx(total)
    assert row["usd_per_million_total_tokens"] == pytest.approx(row["cost_usd_discounted"] / total)
    assert row["usd_per_million_total_tokens"] < row["usd_per_million_output_tokens"]
    assert "excludes facility" in row["cost_scope"]
    summary = pd.read_csv(tmp_path / "csv" / "summary.csv").set_index("key")["value"]
    assert "rack capex, energy and maintenance" in summary["cost_per_token_scope"]
    data = json.loads(runner.invoke(app, ["solve", str(QUICKSTART), "--format", "json"]).stdout)
    record = data["cost_per_million_tokens"][0]
    assert {"usd_per_million_output_tokens", "usd_per_million_total_tokens", "cost_scope"} <= set(
        record
    )


def test_exports_written_when_stdout_is_closed(tmp_path):
    """``rackplan solve … | head -0``: the reader is gone before anything is printed; the
    exports still appear and the exit is the conventional 141 without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run(
            [str(RACKPLAN), "solve", str(QUICKSTART), "--out", str(tmp_path / "x")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    finally:
        os.close(write_end)
    assert process.returncode == EXIT_BROKEN_PIPE, process.stderr
    assert "Traceback" not in process.stderr and "Exception ignored" not in process.stderr
    assert (tmp_path / "x" / "plan.json").exists()
    assert (tmp_path / "x" / "csv" / "purchases.csv").exists()
    assert (tmp_path / "x" / "charts" / "fleet.png").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["solve", str(QUICKSTART), "--out", "plan"],
        ["explain", str(QUICKSTART)],
        ["pareto", str(QUICKSTART), "--sweep", "power_cap_mw", "--from", "0.2", "--to", "1"],
        RATES_ARGS,
        ["validate"],
        ["catalog", "list", "racks"],
        ["catalog", "list", "llms"],
    ],
    ids=["solve", "explain", "pareto", "rates", "validate", "catalog-racks", "catalog-llms"],
)
def test_planning_output_fits_80_columns(args, tmp_path):
    process = subprocess.run(
        [str(RACKPLAN), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert process.returncode == 0, process.stderr
    wide = [line for line in process.stdout.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "…" not in process.stdout, "a cell cut short"


def test_power_capped_colo_readme_quotes_the_sweep():
    """The example's $/MW figures are the sweep's (re-run the sweep and update the README when
    the catalog changes)."""
    args = ["pareto", EXAMPLES / "power-capped-colo", "--sweep", "power_cap_mw"]
    args += ["--from", "2.7", "--to", "2.85", "--steps", "4", "--gap", "1e-4", "--json"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    readme = (EXAMPLES / "power-capped-colo" / "README.md").read_text(encoding="utf-8")
    quoted_tco = [float(x.replace(",", "")) for x in re.findall(r"\$([\d,.]+)M\b(?! per)", readme)]
    quoted_mw = [float(x) for x in re.findall(r"\$([\d.]+)M per MW", readme)]
    # Each sweep figure is quoted to within the solver's proven gap (1e-4 of ~$50M, i.e. a
    # few $k on TCO; a few tenths of a % on a $/MW difference over 0.05 MW).
    for row in json.loads(result.stdout):
        tco = row["tco_usd"] / 1e6
        assert any(abs(q - tco) <= 0.02 for q in quoted_tco), tco
        if row["usd_per_mw"] is not None:
            per_mw = row["usd_per_mw"] / 1e6
            assert any(abs(q - per_mw) <= 0.01 * per_mw + 0.05 for q in quoted_mw), per_mw
