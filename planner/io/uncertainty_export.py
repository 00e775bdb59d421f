"""Exports of robust plans and stress tests: CSV folders, XLSX workbooks, JSON, and charts
(a fan chart of demand and unserved tokens per period, a histogram of TCO)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from rackplan.planner.core.stochastic import RobustPlan
from rackplan.planner.core.stress import StressReport
from rackplan.planner.io.files import atomic_path, atomic_write_text, replace_folder
from rackplan.planner.io.spreadsheets import write_workbook


def write_tables(frames: dict[str, pd.DataFrame], target: Path, export_format: str) -> Path:
    """``target/csv/<name>.csv`` per frame, or ``target/<stem>.xlsx`` with one sheet each."""
    target = Path(target)
    if export_format == "xlsx":
        path = target / f"{target.name or 'tables'}.xlsx"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            write_workbook(frames, temporary)
        return path

    def fill(folder: Path) -> None:
        for name, frame in frames.items():
            frame.to_csv(folder / f"{name}.csv", index=False)

    target.mkdir(parents=True, exist_ok=True)
    return replace_folder(target / "csv", fill)


def write_robust(plan: RobustPlan, target: Path, export_format: str = "csv") -> list[Path]:
    """Tables, ``robust.json`` and the cost-per-future chart."""
    target = Path(target)
    written = [write_tables(plan.frames(), target, export_format)]
    atomic_write_text(target / "robust.json", json.dumps(plan.as_json(), indent=2, default=str))
    written.append(target / "robust.json")
    written += plot_future_costs(plan.future_table(), target / "charts" / "futures")
    return written


def write_stress(report: StressReport, target: Path, export_format: str = "csv") -> list[Path]:
    """Tables, ``stress.json``, the fan chart and the TCO histogram."""
    target = Path(target)
    written = [write_tables(report.frames(), target, export_format)]
    atomic_write_text(target / "stress.json", json.dumps(report.as_json(), indent=2, default=str))
    written.append(target / "stress.json")
    written += plot_fan(report.period_table(), target / "charts" / "fan")
    written += plot_tco_histogram(report.sample_table(), target / "charts" / "tco_histogram")
    return written


def _save(figure, target: Path) -> list[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".svg"):
        path = target.with_suffix(suffix)
        with atomic_path(path) as temporary:
            figure.savefig(temporary)
        written.append(path)
    plt.close(figure)
    return written


def plot_fan(periods: pd.DataFrame, target: Path) -> list[Path]:
    """Fan chart: demanded output tokens per period (median, 25–75 % and 5–95 % bands across
    samples) and, below, the unserved tokens' median and 95th percentile."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), dpi=110, sharex=True)
    x = range(len(periods))
    top.fill_between(x, periods["demand_tokens_p5"], periods["demand_tokens_p95"], alpha=0.2,
                     color="tab:blue", label="5–95 %")  # fmt: skip
    top.fill_between(x, periods["demand_tokens_p25"], periods["demand_tokens_p75"], alpha=0.4,
                     color="tab:blue", label="25–75 %")  # fmt: skip
    top.plot(x, periods["demand_tokens_p50"], color="tab:blue", label="median")
    top.set_ylabel("output tokens demanded")
    top.set_title("sampled demand and what the plan leaves unserved")
    top.legend(fontsize=8, loc="upper left")
    bottom.fill_between(x, 0, periods["unserved_tokens_p95"], alpha=0.3, color="tab:red",
                        label="95th percentile")  # fmt: skip
    bottom.plot(x, periods["unserved_tokens_p50"], color="tab:red", label="median")
    bottom.set_ylabel("output tokens unserved")
    bottom.set_xticks(list(x), list(periods["period"]), rotation=45)
    bottom.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return _save(figure, target)


def plot_tco_histogram(samples: pd.DataFrame, target: Path) -> list[Path]:
    """Histogram of the sampled TCO (USD millions) with its 5th, 50th and 95th percentiles."""
    figure, axes = plt.subplots(figsize=(8, 4), dpi=110)
    values = samples["tco_usd"] / 1e6
    axes.hist(values, bins=min(50, max(5, len(values) // 20)), color="tab:gray")
    for q, style in ((0.05, ":"), (0.5, "-"), (0.95, ":")):
        axes.axvline(values.quantile(q), color="black", linestyle=style, linewidth=1)
    axes.set_xlabel("discounted TCO, $M")
    axes.set_ylabel("samples")
    axes.set_title("TCO across sampled futures (lines: 5th, 50th, 95th percentile)")
    figure.tight_layout()
    return _save(figure, target)


def plot_future_costs(futures: pd.DataFrame, target: Path) -> list[Path]:
    """Cost per future: the robust plan against the mean-forecast plan and hindsight."""
    figure, axes = plt.subplots(figsize=(9, 4), dpi=110)
    x = range(len(futures))
    width = 0.27
    for offset, column, label in (
        (-width, "cost_usd", "robust plan"),
        (0.0, "ev_plan_cost_usd", "mean-forecast plan"),
        (width, "hindsight_cost_usd", "hindsight"),
    ):
        values = pd.to_numeric(futures[column], errors="coerce") / 1e6
        axes.bar([i + offset for i in x], values, width=width, label=label)
    axes.set_xticks(list(x), list(futures["future"]), rotation=45)
    axes.set_ylabel("cost incl. unserved penalty, $M")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, target)
