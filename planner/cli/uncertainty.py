"""``rackplan robust`` and ``rackplan stress``: plans under an uncertain forecast.

Registered on the main app by ``register(app)`` (called from ``planner.cli``); this module
does not import ``planner.cli``, so the two stay free of import cycles.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class TableFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    json = "json"


def _scenario_and_catalog(path: Path):
    """The scenario and the catalog extended by the scenario's own racks/llms tables."""
    from rackplan.catalogs.loader import load_catalog
    from rackplan.planner.io.scenario_io import catalog_extensions, load_scenario

    scenario = load_scenario(path)
    with catalog_extensions(path) as extra:
        catalog = load_catalog(user_racks=[extra.get("racks")], user_llms=[extra.get("llms")])
    return scenario, catalog


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value / 1e6:,.2f}M"


def robust(
    path: Annotated[Path, typer.Argument(help="Scenario (with a futures table, or not).")],
    futures: Annotated[
        int, typer.Option("--futures", help="Futures to sample (ignored with named futures).")
    ] = 20,
    commit_periods: Annotated[
        int, typer.Option("--commit-periods", help="Order lead time K: periods decided now.")
    ] = 1,
    cvar: Annotated[
        float, typer.Option("--cvar", help="Weight w of CVaR of the cost in the objective.")
    ] = 0.0,
    cvar_alpha: Annotated[float, typer.Option("--cvar-alpha", help="CVaR level α.")] = 0.9,
    service_share: Annotated[
        float,
        typer.Option("--service-share", help="Share of futures that must serve all demand."),
    ] = 1.0,
    penalty: Annotated[
        float | None,
        typer.Option("--penalty", help="USD per million unserved tokens (service share < 1)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled futures.")] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler (default: RACKPLAN_DASK_SCHEDULER)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Local workers when no scheduler (0: none).")
    ] = 0,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Export folder.")] = None,
    export_format: Annotated[TableFormat, typer.Option("--format")] = TableFormat.csv,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Per solve, s.")] = 120.0,
    gap: Annotated[float, typer.Option("--gap")] = 0.005,
) -> None:
    """A two-stage stochastic plan: orders inside the commit horizon the same in every future;
    VSS, EVPI and per-future TCO, shortfall and regret."""
    from rackplan.planner.core.data import prepare
    from rackplan.planner.core.futures import scenario_draws
    from rackplan.planner.core.stochastic import StochasticOptions, robust_plan, sequential

    scenario, catalog = _scenario_and_catalog(path)
    data = prepare(scenario, catalog)
    if data.fatal():
        for d in data.fatal():
            err.print(f"  {d.message}", markup=False)
        raise typer.Exit(3)
    options = StochasticOptions(
        commit_periods=commit_periods,
        cvar_weight=cvar,
        cvar_alpha=cvar_alpha,
        service_share=service_share,
        penalty_usd_per_million_tokens=penalty,
        time_limit_s=time_limit,
        rel_gap=gap,
    )
    draws = scenario_draws(data, futures, seed)
    quiet = export_format is TableFormat.json
    with Progress(console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task("robust plan", total=4)

        def step(_name: str) -> None:
            progress.advance(task)

        if scheduler or workers:
            from rackplan.planner.core.distributed import DaskRunner, dask_client

            with dask_client(scheduler, workers or None) as client:
                plan = robust_plan(data, draws, options, DaskRunner(client), step)
        else:
            plan = robust_plan(data, draws, options, sequential, step)
    if quiet:
        sys.stdout.write(json.dumps(plan.as_json(), indent=2, default=str) + "\n")
    else:
        _print_robust(plan)
    if out_dir is not None and not quiet:
        from rackplan.planner.io.uncertainty_export import write_robust

        write_robust(plan, out_dir, export_format.value)
        out.print(f"exports written to {out_dir}")
    raise typer.Exit(0 if plan.rp.feasible else 3)


def _print_robust(plan) -> None:
    s = plan.summary()
    out.print(f"[bold]{s['scenario']}[/]: robust plan over {s['futures']} futures, {s['status']}")
    if not plan.rp.feasible:
        out.print("  no plan serves the futures as asked; relax --service-share or the scenario")
        return
    commit = plan.commit_table()
    for row in commit.itertuples():
        out.print(
            f"  order for {row.period}: {int(row.racks_bought)} × {row.rack} "
            f"(mean-forecast plan: {int(row.mean_forecast_plan_racks)})",
            markup=False,
        )
    out.print(f"  expected cost {_usd(s['expected_cost_usd'])}, CVaR {_usd(s['cvar_usd'])}")
    vss = s["vss_usd"]
    if vss is None:
        out.print("  VSS: unbounded — the mean-forecast plan's orders cannot serve every future")
    else:
        out.print(f"  VSS (against planning on the mean) {_usd(vss)}")
    out.print(f"  EVPI {_usd(s['evpi_usd'])}")
    table = Table(title="per future")
    for column in ("future", "p", "TCO", "unserved tokens", "regret"):
        table.add_column(column, justify="right")
    for row in plan.future_table().itertuples():
        table.add_row(
            row.future,
            f"{row.probability:.3g}",
            _usd(row.tco_usd),
            f"{row.unserved_tokens:,.3g}",
            _usd(row.regret_usd),
        )
    out.print(table)


def stress(
    plan_path: Annotated[Path, typer.Argument(help="A plan's JSON (rackplan solve).")],
    path: Annotated[Path, typer.Argument(help="The scenario the plan was made for.")],
    samples: Annotated[int, typer.Option("--samples", help="Futures to sample.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed, same result.")] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler (default: RACKPLAN_DASK_SCHEDULER)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Local workers without a scheduler (0: CPUs).")
    ] = 0,
    local: Annotated[
        bool, typer.Option("--local", help="Run in this process, without Dask.")
    ] = False,
    batch: Annotated[int, typer.Option("--batch", help="Samples per task.")] = 100,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Export folder.")] = None,
    export_format: Annotated[TableFormat, typer.Option("--format")] = TableFormat.csv,
) -> None:
    """Fix a plan's purchases and evaluate them against sampled futures: probability of
    shortfall, expected and p95 unserved tokens per class, TCO distribution."""
    from rackplan.planner.core.data import prepare
    from rackplan.planner.core.stress import FixedPlan, stress_test

    scenario, catalog = _scenario_and_catalog(path)
    data = prepare(scenario, catalog)
    plan = FixedPlan.read(plan_path)
    quiet = export_format is TableFormat.json
    tasks = -(-samples // batch)
    with Progress(console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task(f"stress test, {samples} futures", total=tasks)
        if local:
            report = stress_test(data, plan, samples, seed, None, batch)
        else:
            from rackplan.planner.core.distributed import DaskRunner, dask_client

            with dask_client(scheduler, workers or None) as client:
                runner = DaskRunner(client, lambda: progress.advance(task))
                report = stress_test(data, plan, samples, seed, runner, batch)
    if quiet:
        sys.stdout.write(json.dumps(report.as_json(), indent=2, default=str) + "\n")
        return
    s = report.summary()
    out.print(f"[bold]{s['scenario']}[/]: {s['samples']} futures, seed {s['seed']}")
    out.print(f"  probability of shortfall {s['probability_of_shortfall']:.1%}")
    out.print(
        f"  unserved output tokens: expected {s['expected_unserved_tokens']:,.4g}, "
        f"p95 {s['p95_unserved_tokens']:,.4g}"
    )
    out.print(
        f"  TCO: mean {_usd(s['tco_mean_usd'])}, p5 {_usd(s['tco_p5_usd'])}, "
        f"p50 {_usd(s['tco_p50_usd'])}, p95 {_usd(s['tco_p95_usd'])}"
    )
    table = Table(title="per class")
    for column in ("class", "P(shortfall)", "expected unserved", "p95 unserved"):
        table.add_column(column, justify="right")
    for row in report.class_table().itertuples():
        table.add_row(
            row._1,
            f"{row.probability_of_shortfall:.1%}",
            f"{row.expected_unserved_tokens:,.4g}",
            f"{row.p95_unserved_tokens:,.4g}",
        )
    out.print(table)
    if out_dir is not None:
        from rackplan.planner.io.uncertainty_export import write_stress

        write_stress(report, out_dir, export_format.value)
        out.print(f"exports written to {out_dir}")


def register(app: typer.Typer) -> None:
    """Add ``robust`` and ``stress`` to the ``rackplan`` app."""
    app.command("robust")(robust)
    app.command("stress")(stress)
