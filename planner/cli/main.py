"""The ``rackplan`` command line (typer + rich).

Exit codes: 0 success, 1 internal error, 2 invalid input, 3 infeasible, 141 when the reader
of stdout goes away early (exports are written before anything is printed).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from rackplan.catalogs.errors import InputError, Problem
from rackplan.planner.cli.uncertainty import register as register_uncertainty_commands
from rackplan.planner.io.files import atomic_write_text

if TYPE_CHECKING:
    from rackplan.catalogs.loader import Catalog
    from rackplan.models.calibration import ErrorSummary, PointError
    from rackplan.planner.core.rates import RateReport
    from rackplan.planner.core.solve import SolveOptions


class _LazyModule:
    """A module imported on first attribute access (``--help`` and light commands never pay for
    pandas, pyomo, scipy or the catalog)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name`` (a function or class), imported on first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = name
    return call


pd = _LazyModule("pandas")
load_catalog = _lazy("rackplan.catalogs.loader", "load_catalog")
load_fit_points = _lazy("rackplan.catalogs.loader", "load_fit_points")
load_measured = _lazy("rackplan.catalogs.loader", "load_measured")
median_abs_error_pct = _lazy("rackplan.models.calibration", "median_abs_error_pct")
ratio_errors_pct = _lazy("rackplan.models.calibration", "ratio_errors_pct")
summarise = _lazy("rackplan.models.calibration", "summarise")
summarise_by = _lazy("rackplan.models.calibration", "summarise_by")
Workload = _lazy("rackplan.models.workload", "Workload")
breakdown_json = _lazy("rackplan.planner.core.calibrate", "breakdown_json")
calibrate = _lazy("rackplan.planner.core.calibrate", "calibrate")
calibration_markdown = _lazy("rackplan.planner.core.calibrate", "calibration_markdown")
cross_validation = _lazy("rackplan.planner.core.calibrate", "cross_validation")
efficiency_csv = _lazy("rackplan.planner.core.calibrate", "efficiency_csv")
validate = _lazy("rackplan.planner.core.calibrate", "validate")
with_rate_bands = _lazy("rackplan.planner.core.calibrate", "with_rate_bands")
rate_report = _lazy("rackplan.planner.core.rates", "rate_report")
plan_scenario = _lazy("rackplan.planner.core.run", "plan_scenario")
load_scenario = _lazy("rackplan.planner.io.scenario_io", "load_scenario")
SolveOptions = _lazy("rackplan.planner.core.solve", "SolveOptions")

EXIT_OK, EXIT_INTERNAL, EXIT_INVALID, EXIT_INFEASIBLE = 0, 1, 2, 3
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a shell reports when the reader of stdout (``| head``) stops early."""

app = typer.Typer(
    help="rackplan: capacity planning for LLM inference fleets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        from rackplan import __version__

        typer.echo(f"rackplan {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """rackplan: capacity planning for LLM inference fleets.

    Shell completion: `rackplan --install-completion` (bash, zsh, fish, PowerShell).
    """


catalog_app = typer.Typer(help="Browse the rack and LLM catalogs.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or 200)
"""Terminals size tables themselves; pipes and CI logs get 200 columns (or ``COLUMNS``)."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so nothing more (not even the flush at exit) fails."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    # stdout may already be closed or not a real file: then there is nothing left to silence
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class BrokenPipe(Exception):
    """The reader of stdout went away; ``main`` exits with ``EXIT_BROKEN_PIPE``."""


class _Console(Console):
    """A rich console that turns a closed pipe into ``BrokenPipe`` (rich exits with 1)."""

    def on_broken_pipe(self) -> None:
        """Called by rich on ``BrokenPipeError``: silence stdout and let ``main`` exit."""
        self.quiet = True
        _silence_stdout()
        raise BrokenPipe


out = _Console(soft_wrap=True, width=_WIDTH)
err = _Console(stderr=True, soft_wrap=True, width=_WIDTH)

RacksOption = Annotated[
    Path | None, typer.Option("--racks", help="User racks CSV: adds or overrides rack types by id.")
]
LlmsOption = Annotated[
    Path | None, typer.Option("--llms", help="User LLMs CSV: adds or overrides LLMs by id.")
]
EfficiencyOption = Annotated[
    Path | None,
    typer.Option("--efficiency", help="Efficiency factors CSV (e.g. from `rackplan calibrate`)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class CatalogKind(StrEnum):
    racks = "racks"
    llms = "llms"


class PrecisionChoice(StrEnum):
    fp4 = "fp4"
    fp8 = "fp8"
    bf16 = "bf16"


def _print_lines(lines, indent: str = "  ") -> None:
    """Explanation lines indented and wrapped to the console's width (continuations indented
    further), so they fit an 80-column terminal as well as a wide one."""
    import textwrap

    width = max(40, out.size.width - 1)
    for line in lines:
        leading = len(line) - len(line.lstrip(" "))
        first = indent + line[:leading]
        wrapped = textwrap.fill(
            line.lstrip(" "),
            width=width,
            initial_indent=first,
            subsequent_indent=first + "  ",
            break_on_hyphens=False,
            break_long_words=False,
        )
        out.print(wrapped, markup=False, highlight=False)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _catalog(racks: Path | None, llms: Path | None, efficiency: Path | None) -> Catalog:
    return load_catalog(user_racks=racks, user_llms=llms, user_efficiency=efficiency)


def _scenario_and_catalog(
    path: Path, racks: Path | None, llms: Path | None, efficiency: Path | None
):
    """The scenario, and the catalog extended by its own racks/llms tables, then by the
    command line's files (which win)."""
    from rackplan.planner.io.references import scenario_warnings
    from rackplan.planner.io.scenario_io import catalog_extensions

    if not Path(path).exists():
        missing = "file not found" if Path(path).suffix else "folder not found"
        raise InputError([Problem(str(path), None, None, missing)])
    with catalog_extensions(path) as extra:
        catalog = load_catalog(
            user_racks=[extra.get("racks"), racks],
            user_llms=[extra.get("llms"), llms],
            user_efficiency=efficiency,
        )
    scenario = load_scenario(path, catalog)
    for warning in scenario_warnings(scenario, _forecast_label(path)):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return scenario, catalog


def _forecast_label(path: Path) -> str:
    """Where the forecast lives: forecast.csv, a workbook's sheet, or the JSON's demand."""
    path = Path(path)
    if path.is_dir():
        return "forecast.csv"
    if path.suffix.lower() == ".json":
        return f"{path.name}, demand"
    return f"{path.name}, sheet forecast"


@catalog_app.command("list")
def catalog_list(
    kind: Annotated[CatalogKind, typer.Argument(help="racks or llms")],
    as_json: JsonOption = False,
    racks: RacksOption = None,
    llms: LlmsOption = None,
) -> None:
    """List rack types or LLMs with their key specs, sources and confidence."""
    catalog = _catalog(racks, llms, None)
    if kind is CatalogKind.racks:
        rows = [_rack_row(r) for r in catalog.racks.values()]
    else:
        rows = [_llm_row(m) for m in catalog.llms.values()]
    if as_json:
        _print_json(rows)
        return
    columns = _catalog_columns(list(rows[0]), out.size.width)
    table = Table(
        title=f"rackplan catalog: {kind.value}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    for column in columns:
        table.add_column(
            CATALOG_HEADERS.get(column, column), overflow="fold", no_wrap=column == "id"
        )
    for row in rows:
        table.add_row(*(_catalog_cell(column, row[column]) for column in columns))
    out.print(table)
    hidden = [c for c in rows[0] if c not in columns and c not in ("source", "notes")]
    if hidden:
        _print_lines(
            [f"not shown at this width: {', '.join(hidden)} (use --json, or COLUMNS=200)"], ""
        )


CATALOG_HEADERS = {
    "chips_per_rack": "chips",
    "fp4_dense_tflops_per_chip": "FP4 TFLOPS /chip",
    "fp8_dense_tflops_per_chip": "FP8 TFLOPS /chip",
    "bf16_dense_tflops_per_chip": "BF16 TFLOPS /chip",
    "mem_capacity_gb_per_chip": "GB /chip",
    "mem_bw_tb_s_per_chip": "TB/s /chip",
    "power_kw_at_load": "kW",
    "confidence": "conf.",
    "capex_usd": "capex $M",
    "power_confidence": "power conf.",
    "capex_confidence": "capex conf.",
    "params_total_b": "params B",
    "params_active_b": "active B",
    "kv_elements_per_token_per_layer": "KV elements /token /layer",
}
"""Catalog columns under short headers with units (``--json`` keeps the full names)."""

CATALOG_NARROW = (
    "id",
    "chips_per_rack",
    "fp8_dense_tflops_per_chip",
    "mem_capacity_gb_per_chip",
    "mem_bw_tb_s_per_chip",
    "power_kw_at_load",
    "capex_usd",
    "status",
    "confidence",
    "layers",
    "params_total_b",
    "params_active_b",
    "experts",
    "attention",
)
"""The catalog columns an 80-column terminal shows."""


def _catalog_cell(column: str, value: object) -> str:
    """A catalog table cell (capex in $M, so it stays narrow)."""
    if column == "capex_usd" and isinstance(value, int | float) and not pd.isna(value):
        return f"{value / 1e6:,.2f}"
    return _cell(value)


def _catalog_columns(available: list[str], width: int) -> list[str]:
    """The catalog columns that fit ``width``: the narrow set below 160 columns, every
    column but source and notes from there."""
    shown = [c for c in available if c not in ("source", "notes")]
    if width >= 160:
        return shown
    return [c for c in shown if c in CATALOG_NARROW]


def _rack_row(rack) -> dict:
    return {
        "id": rack.id,
        "name": rack.name,
        "family": rack.family,
        "chips_per_rack": rack.chips_per_rack,
        "fp4_dense_tflops_per_chip": rack.fp4_dense_tflops_per_chip,
        "fp8_dense_tflops_per_chip": rack.fp8_dense_tflops_per_chip,
        "bf16_dense_tflops_per_chip": rack.bf16_dense_tflops_per_chip,
        "memory": rack.serving_memory.kind.value,
        "mem_capacity_gb_per_chip": rack.serving_memory.capacity_gb_per_chip,
        "mem_bw_tb_s_per_chip": rack.serving_memory.bandwidth_tb_s_per_chip,
        "power_kw_at_load": rack.power_kw_at_load,
        "capex_usd": rack.capex_usd,
        "roles": sorted(r.value for r in rack.roles),
        "status": rack.status,
        "confidence": rack.confidence.value,
        "power_confidence": rack.power_confidence.value,
        "capex_confidence": rack.capex_confidence.value,
        "source": rack.source,
        "notes": rack.notes,
    }


def _llm_row(llm) -> dict:
    return {
        "id": llm.id,
        "name": llm.name,
        "layers": llm.layers,
        "params_total_b": llm.params_total_b,
        "params_active_b": llm.params_active_b,
        "experts": f"{llm.experts_routed}/{llm.experts_total}" if llm.is_moe else "dense",
        "attention": "MLA" if llm.is_mla else f"GQA {llm.n_heads}/{llm.n_kv_heads}",
        "kv_elements_per_token_per_layer": llm.kv_elements_per_token_per_layer,
        "confidence": llm.confidence.value,
        "source": llm.source,
        "notes": llm.notes,
    }


def _cell(value: object) -> str:
    if isinstance(value, float) and pd.isna(value):
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


@app.command()
def rates(
    rack: Annotated[
        str, typer.Option("--rack", help="Rack type id (rackplan catalog list racks).")
    ],
    llm: Annotated[str, typer.Option("--llm", help="LLM id (rackplan catalog list llms).")],
    input_tokens: Annotated[
        float, typer.Option("--input-tokens", help="Mean prompt length, tokens.")
    ],
    output_tokens: Annotated[
        float, typer.Option("--output-tokens", help="Mean output length, tokens.")
    ],
    ttft_ms: Annotated[
        float | None, typer.Option("--ttft-ms", help="Mean TTFT target, ms.")
    ] = None,
    tpot_ms: Annotated[
        float | None, typer.Option("--tpot-ms", help="Mean TPOT target, ms.")
    ] = None,
    prefix_hit: Annotated[
        float, typer.Option("--prefix-hit", help="Prefix-cache hit rate, 0-1.")
    ] = 0.0,
    precision: Annotated[PrecisionChoice, typer.Option("--precision")] = PrecisionChoice.fp8,
    max_utilisation: Annotated[
        float,
        typer.Option("--max-utilisation", help="Busiest a server may run (sets queueing in TTFT)."),
    ] = 0.8,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the fast-mode frontier chart (PNG/SVG).")
    ] = None,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Roofline operating points and end-to-end serving rates for one rack × LLM × workload."""
    workload = Workload(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prefix_hit_rate=prefix_hit,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        max_utilisation=max_utilisation,
    )
    report = rate_report(_catalog(racks, llms, efficiency), rack, llm, workload, precision.value)
    if plot is not None:
        from rackplan.planner.io.plots import plot_fast_mode_frontier

        plot_fast_mode_frontier(report, plot)
    if as_json:
        _print_json(report.as_json())
        return
    _print_rates(report)
    if plot is not None:
        out.print(f"chart written to {plot}")


def _rates_row(p: dict) -> list[str]:
    """One operating point as table cells (latencies never in exponent form)."""
    return [
        p["phase"],
        str(p["batch_size"]),
        str(p["chips_per_replica"]),
        f"{p['racks_per_replica']:.3g}",
        f"{p['tokens_per_s_per_rack']:,.0f}",
        f"{p['tokens_per_s_per_chip']:,.1f}",
        _ms(p.get("ttft_ms", p.get("tpot_ms"))),
        f"{p['memory_used_gb']:,.0f}",
        f"{p['power_kw']:.0f}",
        BOUND_SHORT.get(p["bound"], p["bound"]),
        "yes" if p["meets_sla"] else "no",
    ]


def _compact_table(
    title: str, headers: tuple[str, ...], rows: list[list[str]], left: int = 1
) -> Table:
    """A table without side borders whose cells are never cut (no wrapping, every column as
    wide as its widest cell or short header): the first ``left`` columns (names) aligned left,
    the numbers right."""
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, pad_edge=False, show_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


BOUND_SHORT = {"memory_bandwidth": "mem. BW", "communication": "comm."}
"""What bounds an operating point, short enough for an 80-column table."""


def _print_rates(report: RateReport) -> None:
    data = report.as_json()
    w = report.workload
    _print_lines(
        [
            f"{report.llm_id} on {report.rack_id} at {report.precision}: "
            f"L={w.input_tokens:g} in, O={w.output_tokens:g} out, "
            f"prefix hit {w.prefix_hit_rate:.0%}, TTFT ≤ {w.ttft_ms or '—'} ms, "
            f"TPOT ≤ {w.tpot_ms or '—'} ms, ρ={w.max_utilisation:g}; "
            f"η_F={report.efficiency['flops_fraction']}, "
            f"η_B={report.efficiency['bandwidth_fraction']} ({report.efficiency['family']})"
        ],
        "",
    )
    headers = (
        "phase",
        "batch",
        "chips",
        "racks",
        "tok/s/rack",
        "tok/s/chip",
        "ms",
        "GB",
        "kW",
        "bound",
        "SLA",
    )
    rows = [_rates_row(p) for p in data["operating_points"]]
    table = _compact_table("operating points (dominated ones pruned)", headers, rows)
    out.print(table)
    _print_lines(
        [
            "chips, racks: per replica; ms: TTFT (prefill) or TPOT (decode); GB: memory used "
            "per replica; kW: power per rack; SLA: whether the point meets the targets"
        ],
        "",
    )
    for mode, result in data["end_to_end"].items():
        if result["output_tokens_per_s_per_rack"] is None:
            _print_lines([f"{mode}: no configuration meets the SLAs — {result['reason']}"], "")
            continue
        line = (
            f"{mode}: {result['output_tokens_per_s_per_rack']:,.0f} output tok/s per rack,"
            " "
            f"{result['output_tokens_per_s_per_chip']:,.1f} per chip"
        )
        if "prefill_racks_per_decode_rack" in result:
            line += f"; prefill:decode racks = {result['prefill_racks_per_decode_rack']:.3g}:1"
        if "aggregated" in result:
            a = result["aggregated"]
            line += (
                f"; batch {a['batch_size']}, TPOT {a['tpot_ms']:.2f} ms, "
                f"TTFT {_ms(a['ttft_ms'])} ms"
            )
        _print_lines([line], "")


def _errors_table(title: str, errors: list[PointError]) -> Table:
    """Predicted against measured per point (fits 80 columns; no cell is cut)."""
    rows = []
    for e in errors:
        p = e.point
        rows.append(
            [
                p.rack,
                p.llm,
                p.scenario,
                f"{p.measured_output_tokens_per_s_per_chip:,.1f}",
                "infeasible" if e.predicted is None else f"{e.predicted:,.1f}",
                "—" if e.error_pct is None else f"{e.error_pct:+.1f}",
                "yes" if e.fitted else "no",
            ]
        )
    headers = ("rack", "llm", "scenario", "measured", "predicted", "error %", "fit")
    return _compact_table(f"{title} (output tokens/s per chip)", headers, rows, left=3)


MeasuredArgument = Annotated[
    Path | None,
    typer.Argument(help="CSV of measured points (default: the shipped MLPerf points)."),
]


def _summary_table(title: str, summaries: dict[str, ErrorSummary]) -> Table:
    """Error summaries per group; bias is the geometric mean of predicted / measured."""
    rows = [
        [
            name,
            str(summary.count),
            "—" if summary.median_abs_error_pct is None else f"{summary.median_abs_error_pct:.1f}",
            "—" if summary.bias is None else f"{summary.bias:.3f}",
            str(summary.infeasible),
        ]
        for name, summary in summaries.items()
    ]
    headers = ("group", "points", "median |error| %", "bias (pred/meas)", "infeasible")
    return _compact_table(title, headers, rows)


def _print_breakdown(errors: list[PointError], label: str) -> None:
    """Error per family, per model and per scenario type, and the ratio error across systems."""
    out.print(_summary_table(f"{label}: overall", {"all": summarise(errors)}))
    for title, group in (
        ("per family", lambda e: e.family),
        ("per model", lambda e: e.point.llm),
        ("per scenario type", lambda e: e.point.scenario),
    ):
        out.print(_summary_table(f"{label}: {title}", summarise_by(errors, group)))
    ratios = ratio_errors_pct(errors)
    if ratios:
        median = float(pd.Series(ratios).median())
        _print_lines(
            [
                f"{label}: median error of the ratio between systems on the same benchmark: "
                f"{median:.1f} % over {len(ratios)} pairs"
            ],
            "",
        )


@app.command("calibrate")
def calibrate_command(
    measured: MeasuredArgument = None,
    fit_on: Annotated[
        list[str] | None,
        typer.Option("--fit-on", help="Fit on every point of these rack ids instead of --split."),
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option(
            "--split",
            help="CSV of (rack, llm, scenario, reason) points to fit on (default with the "
            "shipped points: the shipped split, at most four per family; with your own "
            "file: all its points); every other point is held out.",
        ),
    ] = None,
    cross_validate: Annotated[
        bool,
        typer.Option(
            "--cross-validate", help="Also leave-one-model-out and leave-one-family-out (slow)."
        ),
    ] = False,
    write_efficiency: Annotated[
        Path | None,
        typer.Option(
            "--write-efficiency",
            help="Write the catalog's factors with the fitted families replaced, and rate error "
            "bands from the held-out points, as an efficiency CSV.",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the fit report as Markdown.")
    ] = None,
    as_json: JsonOption = False,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Fit each rack family's engine factors within physical bounds; report held-out errors.

    Fits η_F, η_B, τ_layer and the overlap exponent per family on the split's points and
    reports the error on every other point, per family, model and scenario type.
    """
    from rackplan.catalogs.loader import FIT_POINTS_FILE, MEASURED_FILE

    catalog = _catalog(racks, llms, efficiency)
    shipped = measured is None
    measured = measured or MEASURED_FILE
    points = load_measured(measured)
    # The shipped split names the shipped points; a user's own file is fitted whole (or on
    # --fit-on racks) unless it brings its own --split.
    if fit_on:
        keys = None
    elif split is not None:
        keys = load_fit_points(split)
    else:
        keys = load_fit_points(FIT_POINTS_FILE) if shipped else None
    result = calibrate(catalog, points, str(measured), fit_on or (), keys)
    factors = with_rate_bands(result)
    folds = cross_validation(catalog, points, result.fit_keys) if cross_validate else {}
    if write_efficiency is not None:
        atomic_write_text(write_efficiency, efficiency_csv({**catalog.efficiency, **factors}))
    if report is not None:
        atomic_write_text(report, calibration_markdown(result, factors, folds))
    if as_json:
        data = result.as_json()
        data["factors"] = {family: f.model_dump(mode="json") for family, f in factors.items()}
        for name, errors in folds.items():
            data.update(breakdown_json(errors, name))
        _print_json(data)
        return
    table = Table(title="fitted efficiency factors (bounds: docs/calibration.md)")
    for column in ("family", "η_F", "η_B", "τ_layer µs", "overlap p", "M½ tokens", "rate band %"):
        table.add_column(column, justify="right")
    for family, f in factors.items():
        table.add_row(
            family,
            f"{f.flops_fraction:.3f}",
            f"{f.bandwidth_fraction:.3f}",
            f"{f.layer_overhead_us:.1f}",
            f"{f.overlap_exponent:.2f}",
            f"{f.gemm_half_efficiency_tokens:.0f}",
            f"−{f.rate_error_low_pct:.0f} / +{f.rate_error_high_pct:.0f}",
        )
    out.print(table)
    out.print(_errors_table("predicted vs measured", result.errors))
    _print_breakdown([e for e in result.errors if not e.fitted], "held-out points")
    for name, errors in folds.items():
        _print_breakdown(errors, name)
    if write_efficiency is not None:
        out.print(f"factors written to {write_efficiency} (use with --efficiency)")


@app.command("validate")
def validate_command(
    measured: MeasuredArgument = None,
    as_json: JsonOption = False,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Predicted vs measured throughput with the catalog's efficiency factors.

    Per point, per family, per model and per scenario type, with the geometric-mean bias and
    the error of ratios between systems.
    """
    from rackplan.catalogs.loader import MEASURED_FILE

    catalog = _catalog(racks, llms, efficiency)
    measured = measured or MEASURED_FILE
    errors = validate(catalog, load_measured(measured), str(measured))
    median = median_abs_error_pct(errors)
    if as_json:
        _print_json(
            {
                "points": [
                    {
                        "rack": e.point.rack,
                        "llm": e.point.llm,
                        "scenario": e.point.scenario,
                        "family": e.family,
                        "measured_output_tokens_per_s_per_chip": (
                            e.point.measured_output_tokens_per_s_per_chip
                        ),
                        "predicted_output_tokens_per_s_per_chip": e.predicted,
                        "error_pct": e.error_pct,
                    }
                    for e in errors
                ],
                "median_abs_error_pct": median,
                **breakdown_json(errors, "all"),
            }
        )
        return
    out.print(_errors_table("predicted vs measured", errors))
    _print_breakdown(errors, "all points")


class ExportFormat(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    json = "json"


TimeLimitOption = Annotated[
    float,
    typer.Option(
        "--time-limit", help="Time budget for the whole plan (every solve in it), seconds."
    ),
]
GapOption = Annotated[float, typer.Option("--gap", help="Relative MIP gap to prove, e.g. 0.005.")]


def _options(time_limit: float, gap: float) -> SolveOptions:
    return SolveOptions(time_limit_s=time_limit, rel_gap=gap)


@app.command()
def solve(
    path: Annotated[
        Path, typer.Argument(help="Scenario: .json file, CSV folder or .xlsx workbook.")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Export folder (default out/<scenario>).")
    ] = None,
    export_format: Annotated[
        ExportFormat, typer.Option("--format", help="csv, xlsx or json (JSON to stdout).")
    ] = ExportFormat.csv,
    time_limit: TimeLimitOption = 60.0,
    gap: GapOption = 0.005,
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Solve the baselines too.")
    ] = True,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Plan purchases for a scenario; print a summary and write the exports."""
    scenario, catalog = _scenario_and_catalog(path, racks, llms, efficiency)
    result = plan_scenario(scenario, catalog, _options(time_limit, gap), with_baselines=baselines)
    if export_format is ExportFormat.json:
        _print_json(result.as_json())
        raise typer.Exit(EXIT_OK if result.feasible else EXIT_INFEASIBLE)
    # Exports first: a reader that stops early (``| head``) must not cost the files.
    written = None
    if result.feasible:
        written = _export(result, out_dir or Path("out") / _slug(scenario.name), export_format)
    _print_summary(result)
    if written is not None:
        out.print(f"exports written to {written}")
    raise typer.Exit(EXIT_OK if result.feasible else EXIT_INFEASIBLE)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-") or "plan"


def _export(result, target: Path, export_format: ExportFormat) -> Path:
    from rackplan.planner.io.charts import write_plan_charts
    from rackplan.planner.io.export import write_csv_folder, write_json, write_xlsx

    if export_format is ExportFormat.xlsx:
        written = write_xlsx(result, target / "plan.xlsx")
    else:
        written = write_csv_folder(result, target / "csv")
    write_json(result, target / "plan.json")
    write_plan_charts(result, target / "charts")
    return written.parent if export_format is ExportFormat.xlsx else target


def _print_summary(result) -> None:
    colour = {"optimal": "green", "feasible": "yellow", "time_limit": "yellow"}.get(
        result.status, "red"
    )
    out.print(f"[bold]{result.data.scenario.name}[/]: [{colour}]{result.status_text}[/]")
    if result.cut_short:
        out.print("[yellow]cut short by the time limit:[/]")
        for step in result.cut_short:
            out.print(f"  - {step}", markup=False, highlight=False)
    _print_lines(result.explanation)
    if result.plan is None:
        return
    plan = result.plan
    service = plan.service[plan.service["forecast_tokens_per_s"] > 0]
    if len(service):
        table = Table(title="SLA and utilisation per class (worst period)")
        for column in ("class", "phase", "target ms", "worst ms", "max utilisation used"):
            table.add_column(column, justify="right")
        for (cls, phase), rows in service.groupby(["class", "phase"], sort=False):
            worst = rows["worst_latency_ms"].max()
            target = rows["target_ms"].iloc[0]
            table.add_row(
                str(cls),
                str(phase),
                "—" if _missing(target) else f"{target:,.3f}".rstrip("0").rstrip("."),
                _ms(worst),
                f"{rows['utilisation'].max():.0%}",
            )
        out.print(table)
    for problem in result.violations:
        err.print(f"[bold red]plan check failed:[/] {problem}", highlight=False)


@app.command()
def explain(
    path: Annotated[Path, typer.Argument(help="Scenario file or folder.")],
    time_limit: TimeLimitOption = 60.0,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Why a scenario is infeasible, or what makes it tight (binding limits, shadow prices)."""
    scenario, catalog = _scenario_and_catalog(path, racks, llms, efficiency)
    result = plan_scenario(scenario, catalog, _options(time_limit, 0.005), with_baselines=False)
    if not result.feasible:
        out.print(f"[bold red]{result.status}[/]")
        _print_lines(result.explanation)
        raise typer.Exit(EXIT_INFEASIBLE)
    out.print("[bold green]feasible[/]; what binds:")
    prices = result.plan.shadow_prices
    if prices.empty:
        out.print("  nothing binds: no limit or demand row has a shadow price")
    for _unit, group in prices.groupby("unit", sort=False):
        for row in group.sort_values("value", key=abs, ascending=False).head(4).itertuples():
            _print_lines([f"{row.constraint}: {row.value:,.2f} {row.unit} ({row.method})"])
    _print_lines(result.explanation)


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run the solves as tasks on this Dask scheduler (tcp://host:8786; default "
        "without --workers: in this process).",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        help="Run the solves on a local Dask cluster of N process workers (0: in this process).",
    ),
]


def _dask_runner(scheduler: str | None, workers: int, progress: Callable[[], None]):
    """A context giving a Dask task runner when --scheduler or --workers asks for one,
    else None (solve in this process)."""
    from contextlib import contextmanager

    @contextmanager
    def runner():
        if not scheduler and not workers:
            yield None
            return
        from rackplan.planner.core.distributed import DaskRunner, dask_client

        with dask_client(scheduler, workers or None) as client:
            yield DaskRunner(client, progress)

    return runner()


@app.command("pareto")
def pareto_command(
    path: Annotated[Path, typer.Argument(help="Scenario file or folder.")],
    sweep: Annotated[
        str,
        typer.Option(
            "--sweep",
            help="power_cap_mw, power_cap_scale, "
            "budget_scale, demand_scale, capex_scale:<rack>, tpot_ms:<class>, ttft_ms:<class>",
        ),
    ],
    start: Annotated[float, typer.Option("--from")],
    stop: Annotated[float, typer.Option("--to")],
    steps: Annotated[int, typer.Option("--steps")] = 5,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for pareto.csv and the chart.")
    ] = None,
    as_json: JsonOption = False,
    time_limit: TimeLimitOption = 60.0,
    gap: GapOption = 0.005,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 0,
) -> None:
    """TCO against one parameter: the frontier table and chart. With --scheduler or --workers
    every step is a Dask task on its own model, with the whole time limit each."""
    from rich.progress import Progress

    from rackplan.planner.core.whatif import pareto

    scenario, catalog = _scenario_and_catalog(path, racks, llms, efficiency)
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"sweeping {sweep}", total=steps)
        advance = lambda: progress.advance(task)  # noqa: E731
        with _dask_runner(scheduler, workers, advance) as runner:
            if runner is None:
                frame = pareto(
                    scenario, catalog, sweep, start, stop, steps, _options(time_limit, gap), advance
                )
            else:
                from rackplan.planner.core.distributed import pareto_distributed

                frame = pareto_distributed(
                    scenario, catalog, sweep, start, stop, steps, runner, _options(time_limit, gap)
                )
    from rackplan.planner.io.export import price_sweep

    frame = price_sweep(frame)
    if out_dir is not None:
        from rackplan.planner.io.charts import plot_pareto

        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "pareto.csv", frame.to_csv(index=False))
        plot_pareto(frame, out_dir / "pareto.png")
    if as_json:
        from rackplan.planner.core.plan import json_records

        _print_json(json_records(frame))
        return
    _print_pareto(frame, sweep)


def _print_pareto(frame: pd.DataFrame, sweep: str) -> None:
    """The sweep as a table (fits 80 columns) and one note per point: infeasible points, and
    what each unit (each MW of a power cap) is worth between neighbouring feasible points."""
    per_mw = "usd_per_mw" in frame
    table = Table(title=f"TCO against {sweep}", box=box.SIMPLE_HEAD)
    slope_header = "saves $M per MW" if per_mw else "Δ TCO $M per unit"
    for column in ("value", "status", "TCO $M", slope_header, "gap", "frontier"):
        table.add_column(column, justify="right")
    for row in frame.to_dict("records"):
        slope = row["tco_change_per_unit_usd"]
        if _missing(slope):
            slope_text = "—"
        else:
            shown = (-slope if per_mw else slope) / 1e6
            slope_text = f"{0.0 if abs(shown) < 0.005 else shown:,.2f}"
            slope_text += "*" if row["difference_within_gap"] else ""
        table.add_row(
            f"{row['value']:g}",
            str(row["status"]),
            _money_m(row["tco_usd"]),
            slope_text,
            "—" if _missing(row["gap"]) else f"{row['gap']:.2%}",
            "yes" if row["on_frontier"] else "",
        )
    out.print(table)
    if frame["difference_within_gap"].any():
        out.print(
            "* within the solver's proven gap, so not proven (try --gap 1e-4)",
            highlight=False,
        )
    infeasible = [f"{v:g}" for v in frame.loc[frame["infeasible"], "value"]]
    if infeasible:
        out.print(f"  infeasible (no plan) at {', '.join(infeasible)}", highlight=False)
    for row in frame[~frame["infeasible"]].to_dict("records"):
        out.print(f"  {row['value']:g}: {row['note']}", markup=False, highlight=False)
    for step in frame.attrs.get("cut_short", []):
        out.print(f"cut short by the time limit: {step}", markup=False, highlight=False)


@app.command()
def whatif(
    path: Annotated[Path, typer.Argument(help="Scenario file or folder.")],
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help="NAME:key=value[,key=value]; keys: power_cap_scale, power_cap_mw, budget_scale, "
            "demand_scale[:class][@period], capex_scale:<rack>, electricity_scale, "
            "tpot_ms:<class>, ttft_ms:<class>, sla_percentile:<class>=p99, "
            "first_period:<rack>=PERIOD, supply_limit_scale[:<rack>], supply_limit:<rack>=N, "
            "exclude=<rack>, include=<rack>, retire:<rack>=PERIOD, power_down:<rack>=N",
        ),
    ] = None,
    variants: Annotated[
        Path | None, typer.Option("--variants", help="CSV with columns variant,key,value.")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for comparison.csv / .xlsx (with every variant's buy schedule)."
        ),
    ] = None,
    schedules: Annotated[
        bool, typer.Option("--schedules", help="Print each variant's buy schedule (rack × period).")
    ] = False,
    as_json: JsonOption = False,
    time_limit: TimeLimitOption = 60.0,
    gap: GapOption = 0.005,
    refine_gap: Annotated[
        float,
        typer.Option(
            "--refine-gap",
            help="Variants whose difference from the base is within the gap are re-solved, with "
            "the base, to this gap (0: never).",
        ),
    ] = 1e-5,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 0,
) -> None:
    """Solve the base and each variant on one persistent model; compare side by side. With
    --scheduler or --workers the base and every variant are Dask tasks, each on its own model."""
    from rich.progress import Progress

    from rackplan.planner.core.session import (
        parse_variant_options,
        read_variants_csv,
        run_comparison,
    )

    scenario, catalog = _scenario_and_catalog(path, racks, llms, efficiency)
    specs = parse_variant_options(variant or [])
    if variants is not None:
        specs += read_variants_csv(variants)
    if not specs:
        raise InputError(
            [
                Problem(
                    "command line",
                    None,
                    "--variant",
                    "give at least one --variant NAME:key=value or --variants FILE",
                )
            ]
        )
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task("solving variants", total=len(specs) + 1)
        advance = lambda: progress.advance(task)  # noqa: E731
        with _dask_runner(scheduler, workers, advance) as runner:
            if runner is None:
                comparison = run_comparison(
                    scenario,
                    catalog,
                    specs,
                    _options(time_limit, gap),
                    advance,
                    refine_gap=refine_gap or None,
                )
            else:
                from rackplan.planner.core.distributed import compare_distributed

                comparison = compare_distributed(
                    scenario, catalog, specs, runner, _options(time_limit, gap), refine_gap or None
                )
    frame = comparison.frame
    if out_dir is not None:
        from rackplan.planner.io.export import write_frames

        frames = {"comparison": frame, "buy_schedules": comparison.buy_schedules()}
        write_frames(frames, out_dir, "comparison")
    if as_json:
        from rackplan.planner.core.plan import json_records

        _print_json(json_records(frame))
        return
    _print_comparison(comparison, schedules)


def _print_comparison(comparison, schedules: bool) -> None:
    """A narrow comparison table (fits 80 columns), notes, explanations, buy schedules."""
    frame = comparison.frame
    table = Table(title="what-if comparison (TCO discounted; deltas against the base)")
    table.add_column("variant", overflow="fold")
    table.add_column("status")
    table.add_column("TCO $M", justify="right")
    table.add_column("Δ $M", justify="right")
    table.add_column("Δ %", justify="right")
    table.add_column("buys (racks over the horizon)", overflow="fold")
    for row in frame.to_dict("records"):
        tco = row.get("tco_usd")
        delta, pct = row.get("delta_tco_usd"), row.get("delta_tco_pct")
        noise = bool(row.get("delta_within_gap")) and bool(delta)
        table.add_row(
            str(row["variant"]),
            str(row["status"]),
            _money_m(tco),
            "" if row["variant"] == "base" else _money_m(delta, sign=True) + ("*" if noise else ""),
            "" if row["variant"] == "base" or _missing(pct) else f"{pct:+.2f}",
            "—" if _missing(row.get("buys")) else str(row["buys"]),
        )
    out.print(table)
    if frame.get("delta_within_gap") is not None and frame["delta_within_gap"].fillna(False).any():
        out.print(
            "* within the solver's proven gap: the difference is not proven (use a smaller "
            "--gap or --refine-gap)",
            highlight=False,
        )
    if "refined" in frame and frame["refined"].fillna(False).any():
        out.print("base and close variants were re-solved to the refine gap", highlight=False)
    for name, result in comparison.results.items():
        if result.plan is None:
            out.print(f"[bold]{name}[/]: {result.status}")
            _print_lines(result.explanation)
        elif schedules:
            matrix = result.buy_matrix
            sched = Table(
                title=f"{name}: racks bought per period",
                box=box.SIMPLE_HEAD,
                padding=(0, 0, 0, 1) if len(matrix.columns) < 8 else 0,
                show_edge=False,
            )
            for column in matrix.columns:
                sched.add_column(
                    str(column),
                    justify="left" if column == "rack" else "right",
                    no_wrap=True,
                    min_width=len(str(column)),
                )
            for values in matrix.itertuples(index=False):
                sched.add_row(*(v if isinstance(v, str) else f"{v:,.0f}" for v in values))
            out.print(sched)


def _ms(value: object) -> str:
    """Milliseconds to three significant figures, never in exponent form: ``16,300``,
    ``287``, ``7.98``, ``0.012`` (``—`` when missing)."""
    if _missing(value):
        return "—"
    number = float(value)
    if abs(number) >= 100:
        return f"{float(f'{number:.3g}'):,.0f}"
    if abs(number) >= 0.01 or number == 0:
        return f"{number:.3g}"
    return f"{number:.4f}"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _money_m(value: object, sign: bool = False) -> str:
    """USD as $M with two decimals (``—`` when missing)."""
    if _missing(value):
        return "—"
    return f"{value / 1e6:+,.2f}" if sign else f"{value / 1e6:,.2f}"


@app.command("alternatives")
def alternatives_command(
    path: Annotated[Path, typer.Argument(help="Scenario file or folder.")],
    within: Annotated[
        str, typer.Option("--within", help="TCO slack above the optimum, e.g. 1% (or 0.01).")
    ] = "1%",
    rack: Annotated[
        list[str] | None,
        typer.Option("--rack", help="Rack type(s) to minimise/maximise (default: every type)."),
    ] = None,
    minimise: Annotated[
        bool, typer.Option("--min", help="Only the plans with the fewest racks of the type.")
    ] = False,
    maximise: Annotated[
        bool, typer.Option("--max", help="Only the plans with the most racks of the type.")
    ] = False,
    differ: Annotated[
        bool, typer.Option("--differ", help="Also the plan that avoids the optimum's racks most.")
    ] = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for alternatives.csv / .xlsx.")
    ] = None,
    as_json: JsonOption = False,
    time_limit: TimeLimitOption = 60.0,
    gap: GapOption = 0.001,
    racks: RacksOption = None,
    llms: LlmsOption = None,
    efficiency: EfficiencyOption = None,
) -> None:
    """Near-optimal plans: within X % of the optimal TCO, the fewest and most racks of a type
    (how much freedom procurement has), or the plan most unlike the optimum."""
    from rackplan.planner.core.alternatives import near_optimal
    from rackplan.planner.core.matrices import buys_text

    within_pct = _percent(within, "--within")
    goals = tuple(g for g, on in (("min", minimise), ("max", maximise)) if on) or ("min", "max")
    scenario, catalog = _scenario_and_catalog(path, racks, llms, efficiency)
    result = near_optimal(
        scenario, catalog, within_pct, rack, goals, differ, _options(time_limit, gap)
    )
    frame = result.frame()
    if out_dir is not None:
        from rackplan.planner.io.export import write_frames

        write_frames({"alternatives": frame}, out_dir, "alternatives")
    if as_json:
        from rackplan.planner.core.plan import json_records

        _print_json({"alternatives": json_records(frame), "statements": result.statements()})
        return
    table = Table(title=f"plans within {within_pct:g} % of the optimal TCO")
    for column in ("goal", "rack", "status", "TCO $M", "above optimum %", "buys"):
        table.add_column(column, justify="right" if "%" in column or "$" in column else "left")
    for alternative, row in zip(
        (None, *result.alternatives), frame.to_dict("records"), strict=True
    ):
        plan = result.optimum if alternative is None else alternative.plan
        table.add_row(
            str(row["goal"]),
            "" if _missing(row.get("rack")) else str(row["rack"]),
            str(row["status"]),
            _money_m(row.get("tco_usd")),
            ""
            if _missing(row.get("tco_above_optimum_pct"))
            else f"{row['tco_above_optimum_pct']:.2f}",
            "—" if plan is None else buys_text(plan),
        )
    out.print(table)
    for line in result.statements():
        out.print(line, highlight=False)


def _percent(text: str, option: str) -> float:
    """``1%`` or ``1 %`` → 1.0; ``0.01`` → 1.0 (a fraction below 1 without a % sign)."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            return float(raw[:-1].strip())
        value = float(raw)
    except ValueError as exc:
        raise InputError(
            [Problem("command line", None, option, "expected a percentage such as 1%", text)]
        ) from exc
    return value * 100 if value < 1 else value


@app.command()
def template(
    path: Annotated[Path, typer.Argument(help="A folder for CSV tables, or a .xlsx workbook.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing file or folder.")
    ] = False,
) -> None:
    """Write the scenario tables with headers, units and one example row each."""
    from rackplan.planner.io.spreadsheets import write_template

    written = write_template(path, force=force)
    out.print(f"template written to {written}; fill it in, then: rackplan solve {written}")


register_uncertainty_commands(app)  # rackplan robust, rackplan stress

MAX_PROBLEMS_SHOWN = 200


def _report_input_error(problems: list[Problem]) -> None:
    err.print(f"[bold red]error:[/] {len(problems)} problem(s) in the input", highlight=False)
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        err.print(f"  - {problem}", highlight=False, markup=False)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        err.print(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more", highlight=False)


def _validation_problems(exc: ValidationError) -> list[Problem]:
    return [
        Problem(
            "command line",
            None,
            ".".join(str(x) for x in e["loc"]) or None,
            e["msg"],
            str(e.get("input", "")),
        )
        for e in exc.errors()
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning every failure into a message and an exit code; a
    reader that closes stdout early gives ``EXIT_BROKEN_PIPE`` without a traceback."""
    code = _main(argv)
    try:
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe is noisy
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return code


COMMAND_PLUGINS = "rackplan.commands"
"""Entry-point group through which packages above the planner add commands: the REST service
adds ``serve`` and ``keys`` (``api/commands.py``, declared in pyproject.toml)."""


def _command_names() -> frozenset[str]:
    """The names of the commands and groups registered on ``app`` so far."""
    names = {group.name for group in app.registered_groups}
    for command in app.registered_commands:
        names.add(command.name or command.callback.__name__.replace("_", "-"))
    return frozenset(names)


def needs_plugins(argv: list[str]) -> bool:
    """Whether ``argv`` may name a plugged-in command: anything but one of our own commands
    (help, completion and ``--version`` list or reach every command). Planning commands skip
    the entry-point scan (~20 ms of every start)."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return True
    words = [arg for arg in argv if not arg.startswith("-")]
    return not words or words[0] not in OWN_COMMANDS


@functools.cache
def plug_in_commands() -> None:
    """Let each ``rackplan.commands`` entry point register its commands on ``app`` (once per
    process: cached)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=COMMAND_PLUGINS):
        plug_in(entry)


def plug_in(entry: Any) -> None:
    """Register one entry point's commands; a plug-in that fails to load is a warning, so it
    cannot take the planner's own commands, help or completion down with it."""
    try:
        entry.load()(app)
    except Exception as exc:  # any failure inside someone else's package
        err.print(
            f"[yellow]warning:[/] the commands of {entry.value} were not loaded: "
            f"{type(exc).__name__}: {exc}",
            highlight=False,
        )


def _is_usage_error(exc: Exception) -> bool:
    """A command-line usage error (unknown option, missing argument, bad value…): typer ≥ 0.2x
    raises its own copy of click's exceptions (``typer.TyperException``), older typer click's."""
    import click

    return isinstance(exc, typer.TyperException | click.ClickException) and hasattr(exc, "show")


def _main(argv: list[str] | None) -> int:
    """Run the app; every failure becomes a message and an exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if needs_plugins(argv):
            plug_in_commands()
        result = app(args=argv, standalone_mode=False)
    except InputError as exc:
        _report_input_error(exc.problems)
        return EXIT_INVALID
    except ValidationError as exc:
        _report_input_error(_validation_problems(exc))
        return EXIT_INVALID
    except (BrokenPipe, BrokenPipeError):
        # Exports are written before anything is printed, so only the printout is lost.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return EXIT_INTERNAL
    except Exception as exc:  # usage errors come through here too
        if _is_usage_error(exc):
            exc.show()  # the problem and the command's usage line (or its help: no arguments)
            return EXIT_INVALID
        if os.environ.get("RACKPLAN_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}", highlight=False)
        err.print(
            "Please report it with the command you ran; set RACKPLAN_DEBUG=1 to see the trace."
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else EXIT_OK


OWN_COMMANDS = _command_names()
"""The planner's own commands (every decorator above has run; no plug-in has yet)."""


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
