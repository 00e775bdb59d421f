"""Pareto sweeps and what-if variant sets on Dask process workers: the same rows on 1 and on 2
workers, matching the in-process sweep and comparison; tasks carry data, not live models;
the CLI's --workers runs them on a LocalCluster and prints the same table."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rackplan.planner.cli.main import app as cli_app
from rackplan.planner.core.distributed import (
    DaskRunner,
    ParetoStep,
    VariantTask,
    compare_distributed,
    dask_client,
    pareto_distributed,
)
from rackplan.planner.core.session import Variant, run_comparison
from rackplan.planner.core.solve import SolveOptions
from rackplan.planner.core.whatif import pareto
from rackplan.planner.io.scenario_io import load_scenario

QUICKSTART = Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json"
OPTIONS = SolveOptions(time_limit_s=30, rel_gap=1e-6)
TASK_TIMEOUT_S = 180.0
"""A bound on a whole map, so a hung worker fails the test instead of hanging the suite."""
VARIANTS = [
    Variant("cap", (("power_cap_scale", 0.8),)),
    Variant("sla", (("tpot_ms:chat", 60.0),)),
    Variant("demand", (("demand_scale", 1.5),)),
]


@pytest.fixture(scope="module")
def runs(catalog) -> dict[int, dict]:
    """A Pareto sweep (in place and rebuilt) and a what-if set on 1 and on 2 process workers."""
    scenario = load_scenario(QUICKSTART)
    out = {}
    for workers in (1, 2):
        with dask_client(None, workers, processes=True, timeout_s=60) as client:
            runner = DaskRunner(client, timeout_s=TASK_TIMEOUT_S)
            out[workers] = {
                "cap": pareto_distributed(
                    scenario, catalog, "power_cap_scale", 0.6, 1.2, 3, runner, OPTIONS
                ),
                "sla": pareto_distributed(
                    scenario, catalog, "tpot_ms:chat", 30, 60, 2, runner, OPTIONS
                ),
                "whatif": compare_distributed(scenario, catalog, VARIANTS, runner, OPTIONS),
            }
    return out


def test_same_rows_on_one_and_two_workers(runs):
    for name in ("cap", "sla"):
        assert runs[1][name].equals(runs[2][name]), name
    one, two = runs[1]["whatif"].frame, runs[2]["whatif"].frame
    assert list(one["variant"]) == ["base", "cap", "sla", "demand"]
    assert one.drop(columns=["gap"]).equals(two.drop(columns=["gap"]))


def test_pareto_matches_the_in_process_sweep(runs, catalog):
    scenario = load_scenario(QUICKSTART)
    for name, args in (
        ("cap", ("power_cap_scale", 0.6, 1.2, 3)),
        ("sla", ("tpot_ms:chat", 30, 60, 2)),
    ):
        local = pareto(scenario, catalog, *args, OPTIONS)
        distributed = runs[1][name]
        assert list(distributed["value"]) == list(local["value"])
        assert list(distributed["status"]) == list(local["status"])
        assert distributed["tco_usd"].tolist() == pytest.approx(local["tco_usd"].tolist(), rel=1e-5)
        assert list(distributed["on_frontier"]) == list(local["on_frontier"])


def test_whatif_matches_the_in_process_comparison(runs, catalog):
    local = run_comparison(load_scenario(QUICKSTART), catalog, VARIANTS, OPTIONS).frame
    distributed = runs[2]["whatif"].frame
    assert list(distributed["status"]) == list(local["status"])
    assert distributed["tco_usd"].tolist() == pytest.approx(local["tco_usd"].tolist(), rel=1e-5)


def test_tasks_carry_data_not_live_models(catalog):
    """Every task pickles without Pyomo objects in it."""
    scenario = load_scenario(QUICKSTART)
    tasks = [
        ParetoStep("tpot_ms:chat", 40.0, OPTIONS, None, scenario, catalog),
        VariantTask(scenario, catalog, VARIANTS[0], OPTIONS),
    ]
    for task in tasks:
        assert b"pyomo" not in pickle.dumps(task)


def test_unknown_sweep_parameter_is_refused(catalog):
    from rackplan.catalogs.errors import InputError

    with pytest.raises(InputError, match="unknown parameter"):
        pareto_distributed(load_scenario(QUICKSTART), catalog, "nope", 0, 1, 2, None, OPTIONS)


def test_cli_whatif_and_pareto_on_workers_print_the_in_process_table():
    """--workers 1 (a LocalCluster of process workers) gives the default's rows."""
    common = ["--json", "--gap", "0.000001", "--time-limit", "30"]
    whatif = ["whatif", str(QUICKSTART), "--variant", "cap:power_cap_scale=0.8", *common]
    sweep = ["pareto", str(QUICKSTART), "--sweep", "demand_scale", "--from", "1", "--to", "1.5"]
    sweep += ["--steps", "2", *common]
    for args in (whatif, sweep):
        rows = []
        for extra in ([], ["--workers", "1"]):
            result = CliRunner().invoke(cli_app, [*args, *extra])
            assert result.exit_code == 0, result.output
            rows.append(json.loads(result.stdout))
        local, distributed = rows
        assert [r["status"] for r in distributed] == [r["status"] for r in local]
        assert [r["tco_usd"] for r in distributed] == pytest.approx(
            [r["tco_usd"] for r in local], rel=1e-5
        )
