"""Charts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from rackplan.planner.core.rates import RateReport
from rackplan.planner.io.files import atomic_path


def plot_fast_mode_frontier(report: RateReport, target: Path) -> None:
    """Decode tokens/s per rack against TPOT, one series per replica size, with the frontier.

    Left of the knee, a smaller batch buys a lower TPOT at a higher cost per token
    ("fast mode"); the frontier is the best throughput reachable at each TPOT.
    """
    points = report.points
    decode = points.phase == "decode"
    figure, axes = plt.subplots(figsize=(9.5, 5), dpi=120)
    for chips in np.unique(points.chips_per_replica[decode]):
        rows = decode & (points.chips_per_replica == chips)
        order = np.argsort(points.latency_ms[rows])
        axes.plot(
            points.latency_ms[rows][order],
            points.tokens_per_s_per_rack[rows][order],
            marker="o",
            markersize=3,
            linewidth=1,
            label=f"{int(chips)} chips / replica",
        )
    if decode.any():
        order = np.argsort(points.latency_ms[decode])
        frontier = np.maximum.accumulate(points.tokens_per_s_per_rack[decode][order])
        axes.step(
            points.latency_ms[decode][order],
            frontier,
            where="post",
            color="black",
            linewidth=2,
            label="frontier",
        )
    if report.workload.tpot_ms:
        axes.axvline(
            report.workload.tpot_ms,
            color="red",
            linestyle="--",
            label=f"TPOT target ({report.workload.tpot_ms:g} ms)",
        )
    axes.set_xscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.set_xlabel("TPOT, ms per output token (log scale)")
    axes.set_ylabel("decode output tokens/s per rack")
    axes.set_title(f"{report.llm_id} on {report.rack_id} ({report.precision}): fast-mode frontier")
    axes.grid(True, which="both", alpha=0.3)
    # Outside the axes: the legend never hides a series or the TPOT target line.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    with atomic_path(target) as temporary:
        figure.savefig(temporary, bbox_inches="tight")
    plt.close(figure)
