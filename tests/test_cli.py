"""The command line, through typer's runner: content checked, not just exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rackplan.catalogs.loader import MEASURED_FILE
from rackplan.planner.cli.main import EXIT_INVALID, app, main

runner = CliRunner()

RATES = [
    "rates",
    "--rack",
    "gb200-nvl72",
    "--llm",
    "llama-3.1-70b",
    "--input-tokens",
    "2000",
    "--output-tokens",
    "400",
    "--ttft-ms",
    "2000",
    "--tpot-ms",
    "30",
    "--json",
]


def _json(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rates_json_contract():
    data = _json(RATES)
    assert data["operating_points"], "some operating points"
    keys = {
        "phase",
        "batch_size",
        "chips_per_replica",
        "racks_per_replica",
        "tokens_per_s_per_rack",
        "tokens_per_s_per_chip",
        "memory_used_gb",
        "power_kw",
        "bound",
    }
    for point in data["operating_points"]:
        assert keys <= point.keys()
        assert ("ttft_ms" in point) != ("tpot_ms" in point)
    for mode in ("aggregated", "disaggregated"):
        result = data["end_to_end"][mode]
        assert result["output_tokens_per_s_per_rack"] > 0
        assert result["output_tokens_per_s_per_chip"] == pytest.approx(
            result["output_tokens_per_s_per_rack"] / 72
        )
        assert result["reason"] is None
    decode = data["end_to_end"]["disaggregated"]["decode"]
    assert decode["tpot_ms"] <= 30
    assert data["end_to_end"]["aggregated"]["aggregated"]["tpot_ms"] <= 30


def test_rates_unreachable_sla_is_null_with_a_reason():
    args = [a if a != "30" else "0.01" for a in RATES]
    data = _json(args)
    for mode in ("aggregated", "disaggregated"):
        result = data["end_to_end"][mode]
        assert result["output_tokens_per_s_per_rack"] is None
        assert result["output_tokens_per_s_per_chip"] is None
    assert "TPOT target 0.01 ms unreachable" in data["end_to_end"]["disaggregated"]["reason"]
    assert "best" in data["end_to_end"]["disaggregated"]["reason"]


def test_prefill_only_rack_cannot_serve_end_to_end():
    args = [
        "rates",
        "--rack",
        "vr-cpx-144",
        "--llm",
        "llama-3.1-8b",
        "--input-tokens",
        "50000",
        "--output-tokens",
        "500",
        "--json",
    ]
    data = _json(args)
    assert {p["phase"] for p in data["operating_points"]} == {"prefill", "decode"}
    assert "does not serve decode" in data["end_to_end"]["disaggregated"]["reason"]


def test_rates_table_and_plot(tmp_path):
    chart = tmp_path / "frontier.png"
    result = runner.invoke(app, [*RATES[:-1], "--plot", str(chart)])
    assert result.exit_code == 0, result.output
    assert "operating points" in result.stdout
    assert "disaggregated:" in result.stdout and "prefill:decode racks" in result.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_catalog_list_json_has_specs_and_provenance():
    racks = _json(["catalog", "list", "racks", "--json"])
    by_id = {r["id"]: r for r in racks}
    assert by_id["groq3-lpx"]["chips_per_rack"] == 256
    assert by_id["vr-nvl72"]["mem_bw_tb_s_per_chip"] == 22
    assert all(r["source"] and r["confidence"] for r in racks)
    llms = _json(["catalog", "list", "llms", "--json"])
    assert {m["id"]: m["attention"] for m in llms}["deepseek-v3"] == "MLA"


def test_catalog_list_table_is_readable():
    result = runner.invoke(app, ["catalog", "list", "llms"])
    assert result.exit_code == 0
    assert "qwen3-235b-a22b" in result.stdout


def test_validate_json_reports_every_point_and_a_median():
    data = _json(["validate", str(MEASURED_FILE), "--json"])
    assert len(data["points"]) >= 10
    assert data["median_abs_error_pct"] is not None
    for p in data["points"]:
        if p["predicted_output_tokens_per_s_per_chip"] is not None:
            expected = (
                p["predicted_output_tokens_per_s_per_chip"]
                / p["measured_output_tokens_per_s_per_chip"]
                - 1
            ) * 100
            assert p["error_pct"] == pytest.approx(expected)


def test_calibrate_writes_factors_usable_by_rates(tmp_path):
    factors = tmp_path / "efficiency.csv"
    data = _json(
        [
            "calibrate",
            str(MEASURED_FILE),
            "--fit-on",
            "hgx-h100",
            "--json",
            "--write-efficiency",
            str(factors),
        ]
    )
    assert set(data["factors"]) == {"hopper"}
    fitted = [p for p in data["points"] if p["fitted"]]
    held_out = [p for p in data["points"] if not p["fitted"]]
    assert {p["rack"] for p in fitted} == {"hgx-h100"} and held_out
    assert data["median_abs_error_pct_held_out"] is not None
    hopper = data["factors"]["hopper"]
    rates = _json(
        [
            "rates",
            "--rack",
            "hgx-h100",
            "--llm",
            "llama-2-70b",
            "--input-tokens",
            "600",
            "--output-tokens",
            "300",
            "--json",
            "--efficiency",
            str(factors),
        ]
    )
    assert rates["efficiency"]["flops_fraction"] == hopper["flops_fraction"]


def test_bad_input_exits_2_with_a_named_problem(capsys):
    code = main(
        [
            "rates",
            "--rack",
            "no-such-rack",
            "--llm",
            "llama-3.1-8b",
            "--input-tokens",
            "10",
            "--output-tokens",
            "10",
        ]
    )
    assert code == EXIT_INVALID
    err = capsys.readouterr().err
    assert "unknown rack type 'no-such-rack'" in err and "hgx-h100" in err
    assert "Traceback" not in err


def test_invalid_workload_value_is_named(capsys):
    code = main(
        [
            "rates",
            "--rack",
            "hgx-h100",
            "--llm",
            "llama-3.1-8b",
            "--input-tokens",
            "10",
            "--output-tokens",
            "10",
            "--prefix-hit",
            "1.5",
        ]
    )
    assert code == EXIT_INVALID
    err = capsys.readouterr().err
    assert "prefix_hit_rate" in err and "1.5" in err


def test_bad_measured_file_names_row_and_column(tmp_path, capsys):
    bad = tmp_path / "measured.csv"
    text = MEASURED_FILE.read_text(encoding="utf-8").splitlines()
    header = text[0].split(",")
    row = text[1].split(",")
    row[header.index("output_tokens")] = "zero"
    bad.write_text("\n".join([text[0], ",".join(row)]) + "\n", encoding="utf-8")
    assert main(["validate", str(bad)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert "row 2" in err and "output_tokens" in err and "zero" in err


def test_version_and_shell_completion():
    from rackplan import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"rackplan {__version__}"
    completion = runner.invoke(app, ["--show-completion", "bash"])
    assert completion.exit_code == 0 and "complete" in completion.output


def test_validate_reports_family_model_and_scenario_breakdowns():
    data = _json(["validate", "--json"])
    assert set(data["all_by_family"]) >= {"hopper", "blackwell"}
    assert "llama-2-70b" in data["all_by_model"]
    assert set(data["all_by_scenario"]) >= {"Offline", "Server", "Interactive"}
    assert data["all_ratio_error_median_pct"] is not None
    for summary in data["all_by_family"].values():
        assert summary["bias"] > 0 and summary["count"] > 0


def test_one_console_script_with_the_service_commands_plugged_in():
    """pyproject's script is planner/cli/main.py's ``run``; ``serve`` and ``keys`` come from
    the API's ``rackplan.commands`` entry point and appear in the help."""
    import subprocess
    import sys
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"rackplan": "rackplan.planner.cli.main:run"}
    assert project["entry-points"]["rackplan.commands"] == {
        "service": "rackplan.api.commands:register"
    }
    script = Path(sys.executable).with_name("rackplan")
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    for command in ("solve", "whatif", "robust", "serve", "keys"):
        assert f" {command} " in shown.stdout, command
    serve = subprocess.run([script, "serve", "--help"], capture_output=True, text=True)
    assert serve.returncode == 0 and "uvicorn" in serve.stdout


@pytest.mark.parametrize(
    ("argv", "needed"),
    [
        (["solve", "scenario.json"], False),
        (["catalog", "list"], False),
        (["rates", "--help"], False),
        (["serve"], True),
        (["keys", "list"], True),
        (["--help"], True),
        ([], True),
        (["--version"], True),
        (["no-such-command"], True),
    ],
)
def test_planning_commands_skip_the_plugin_scan(argv, needed):
    from rackplan.planner.cli.main import needs_plugins

    assert needs_plugins(argv) is needed


HEAVY_MODULES = ("rackplan.api", "pyomo.environ", "openpyxl", "matplotlib", "scipy")
"""What a JSON plan does not need: the service, Pyomo's plugins, workbooks, charts, fitting
(issue 9: every one of them costs 20–100 ms of each command's start)."""


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "list", "racks", "--json"],
        ["solve", "examples/quickstart/scenario.json", "--format", "json"],
    ],
)
def test_a_planning_command_imports_only_what_it_needs(argv):
    """The planner's own commands run without loading the API (one-way dependencies) or any
    module the command does not use."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, io, contextlib; from rackplan.planner.cli.main import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()): code = main({argv!r})\n"
        f"print(code, sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "0 []"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["solve", "--nope", "x.json"], "No such option: --nope"),
        (["solve"], "Missing argument"),
        (["rates", "--rack", "hgx-h100", "--tpot-ms", "fast"], "Invalid value"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_the_problem_not_an_internal_error(argv, message, capsys):
    """typer raises its own copy of click's usage errors: each is a usage message and exit 2."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == EXIT_INVALID
    assert message in captured.err
    assert "internal error" not in captured.err + captured.out


def test_a_broken_plugin_is_a_warning_not_a_failure(capsys):
    from rackplan.planner.cli.main import plug_in

    class Broken:
        value = "someone.else:register"

        def load(self):
            raise ImportError("no module named someone")

    plug_in(Broken())
    assert "the commands of someone.else:register were not loaded" in capsys.readouterr().err


def test_a_context_too_long_for_any_replica_is_a_reason_not_a_crash():
    """GroqRack v1 at 16 bit holds Llama-3.1-70B's weights but not one 40k-token request's KV
    cache beside them: every batch limit is 0. No points, and each mode says why."""
    args = [
        "rates",
        "--rack",
        "groqrack-v1",
        "--llm",
        "llama-3.1-70b",
        "--input-tokens",
        "40000",
        "--output-tokens",
        "1000",
        "--precision",
        "bf16",
        "--ttft-ms",
        "20000",
        "--tpot-ms",
        "50",
        "--json",
    ]
    data = _json(args)
    assert data["operating_points"] == []
    aggregated = data["end_to_end"]["aggregated"]["reason"]
    disaggregated = data["end_to_end"]["disaggregated"]["reason"]
    assert "not one request's KV cache beside it (41,000 tokens of context)" in aggregated
    assert "prefill replica" in disaggregated and "(40,000 tokens of context)" in disaggregated
