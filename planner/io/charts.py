"""Plan charts as PNG and SVG (matplotlib, Agg): fleet by period (racks and MW), power
against the cap, cost breakdown, $ per million tokens by class, and the Pareto sweep.

Every axis is labelled in words with its unit; legends sit outside the plotting area so they
never cover a bar or the cap line; values that span decades use a log scale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from rackplan.planner.io.files import atomic_path

COST_LABELS = {
    "capex_usd": "capex (rack purchases)",
    "energy_usd": "energy (× PUE)",
    "maintenance_usd": "maintenance",
}
"""Cost columns as the cost chart names them."""

PARAMETER_LABELS = {
    "power_cap_mw": "site power cap, MW at the meter",
    "power_cap_scale": "power cap, × the scenario's",
    "budget_scale": "capex budget, × the scenario's",
    "demand_scale": "demand, × the forecast",
    "electricity_scale": "electricity price, × the scenario's",
    "capex_scale": "price of {}, × the catalog's",
    "tpot_ms": "TPOT target of {}, ms",
    "ttft_ms": "TTFT target of {}, ms",
    "supply_limit_scale": "supply limit, × the scenario's",
    "supply_limit": "supply limit of {}, racks per period",
}
"""Sweep parameters in words with their units (``{}`` takes the rack or class)."""

DECADES_FOR_LOG = 1.0
"""Use a log axis when the largest positive value is more than 10× the smallest."""


def _save(figure: Figure, target: Path) -> list[Path]:
    """Write ``target`` as PNG and SVG (atomically) and close the figure."""
    written = []
    for suffix in (".png", ".svg"):
        path = target.with_suffix(suffix)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, bbox_inches="tight")
        written.append(path)
    plt.close(figure)
    return written


def _legend_outside(axes: Axes, **options: object) -> None:
    """The legend to the right of the plotting area, where it covers no data."""
    axes.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0, **options
    )


def parameter_label(parameter: str) -> str:
    """A sweep parameter in words with its unit: ``tpot_ms:chat`` → ``TPOT target of chat,
    ms``; unknown parameters are shown as given."""
    name, _, detail = parameter.partition(":")
    label = PARAMETER_LABELS.get(name)
    if label is None:
        return parameter
    if "{}" in label:
        return label.format(detail or "every type")
    return label if not detail else f"{label} ({detail})"


def spans_decades(values: pd.Series) -> bool:
    """Whether the positive values span more than a decade (then a log axis shows them all)."""
    positive = pd.to_numeric(values, errors="coerce").dropna()
    positive = positive[positive > 0]
    if len(positive) < 2:
        return False
    return bool(np.log10(positive.max() / positive.min()) > DECADES_FOR_LOG)


def plot_fleet(fleet: pd.DataFrame, target: Path) -> list[Path]:
    """Installed racks by period, stacked by rack type, with the fleet's IT power at load
    (MW) on a second axis and written above each bar: a 40 kW and a 190 kW rack count alike
    as racks but not as power."""
    table = fleet.pivot_table(
        index="period", columns="rack", values="racks_installed", sort=False
    ).fillna(0)
    table = table.loc[:, (table > 0).any()]
    megawatts = fleet.groupby("period", sort=False)["it_power_kw_at_load"].sum() / 1000.0
    figure, axes = plt.subplots(figsize=(10, 4.8), dpi=110)
    if not table.empty:
        table.plot(kind="bar", stacked=True, ax=axes, width=0.75)
        totals = table.sum(axis=1)
        for i, period in enumerate(table.index):
            axes.annotate(
                f"{totals[period]:,.0f} racks\n{megawatts.get(period, 0.0):,.1f} MW",
                (i, totals[period]),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        axes.set_ylim(0, totals.max() * 1.18)
        power = axes.twinx()
        power.plot(
            range(len(table.index)),
            [megawatts.get(p, 0.0) for p in table.index],
            color="black",
            marker="D",
            linewidth=1.2,
            label="IT power at load (right axis)",
        )
        power.set_ylim(0, max(megawatts.max(), 1e-9) * 1.18)
        power.set_ylabel("IT power at load, MW")
        handles, labels = axes.get_legend_handles_labels()
        extra_handles, extra_labels = power.get_legend_handles_labels()
        axes.legend(
            handles + extra_handles,
            [f"{label} (racks)" for label in labels] + extra_labels,
            loc="upper left",
            bbox_to_anchor=(1.08, 1.0),
            fontsize=8,
            borderaxespad=0.0,
            title="rack type",
            title_fontsize=8,
        )
    axes.set_xlabel("period")
    axes.set_ylabel("racks installed (count)")
    axes.set_title("fleet by period: racks installed and their IT power")
    axes.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    return _save(figure, target)


def plot_power(power: pd.DataFrame, target: Path) -> list[Path]:
    """Site power (provisioned × PUE) against the cap, MW; the legend outside the plot and
    head room above the tallest bar and the cap line."""
    figure, axes = plt.subplots(figsize=(10, 4.8), dpi=110)
    x = np.arange(len(power))
    axes.bar(x, power["site_power_mw"], label="site power provisioned (racks at load × PUE)")
    operating = power["it_power_kw_operating"] * power["pue"] / 1000.0
    axes.plot(x, operating, color="black", marker="o", label="site power operating (× PUE)")
    caps = pd.to_numeric(power["power_cap_mw"], errors="coerce")
    if caps.notna().any():
        axes.hlines(caps, x - 0.45, x + 0.45, color="red", linestyle="--", label="power cap")
    tallest = np.nanmax([power["site_power_mw"].max(), operating.max(), caps.max()])
    if np.isfinite(tallest) and tallest > 0:
        axes.set_ylim(0, tallest * 1.1)
    axes.set_xticks(list(x), power["period"], rotation=45)
    axes.set_xlabel("period")
    axes.set_ylabel("site power, MW at the meter")
    axes.set_title("power against the cap")
    _legend_outside(axes)
    figure.tight_layout()
    return _save(figure, target)


def plot_costs(costs: pd.DataFrame, target: Path) -> list[Path]:
    """Capex, energy, maintenance per period (nominal USD, millions), named in words."""
    frame = (
        costs[costs["period"] != "salvage"].set_index("period")[list(COST_LABELS)] / 1e6
    ).rename(columns=COST_LABELS)
    figure, axes = plt.subplots(figsize=(10, 4.8), dpi=110)
    frame.plot(kind="bar", stacked=True, ax=axes, width=0.75)
    axes.set_xlabel("period")
    axes.set_ylabel("cost, USD millions (nominal)")
    axes.set_title("cost breakdown by period")
    axes.tick_params(axis="x", rotation=45)
    _legend_outside(axes, title="cost", title_fontsize=8)
    figure.tight_layout()
    return _save(figure, target)


def plot_cost_per_token(table: pd.DataFrame, target: Path) -> list[Path]:
    """USD per million output tokens and per million total (prompt + output) tokens by class,
    on a log axis when the classes span decades; the scope of the cost in the caption."""
    figure, axes = plt.subplots(figsize=(9, 4.8), dpi=110)
    series = {"per million output tokens": "usd_per_million_output_tokens"}
    if "usd_per_million_total_tokens" in table:
        series["per million total tokens (prompt + output)"] = "usd_per_million_total_tokens"
    x = np.arange(len(table))
    width = 0.8 / len(series)
    values = []
    for k, (label, column) in enumerate(series.items()):
        heights = pd.to_numeric(table[column], errors="coerce")
        values.append(heights)
        bars = axes.bar(
            x + (k - (len(series) - 1) / 2) * width, heights.fillna(0), width, label=label
        )
        axes.bar_label(bars, labels=[_usd(v) for v in heights], fontsize=7, padding=2)
    if spans_decades(pd.concat(values)):
        axes.set_yscale("log")
        axes.set_ylabel("USD per million tokens (log scale)")
    else:
        axes.set_ylabel("USD per million tokens")
    axes.set_xticks(list(x), table["class"])
    axes.set_xlabel("workload class")
    axes.set_title("levelised cost per token by class")
    axes.margins(y=0.15)
    scope = table["cost_scope"].iloc[0] if "cost_scope" in table and len(table) else None
    if scope:
        figure.text(0.01, 0.01, f"Cost covers {scope}.", fontsize=7, style="italic")
    _legend_outside(axes)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(figure, target)


def _usd(value: float) -> str:
    """A bar label: ``$0.087``, ``$3.95``, ``$12.3``; empty when missing."""
    if value is None or pd.isna(value):
        return ""
    return f"${value:.3g}" if value < 100 else f"${value:,.0f}"


def plot_pareto(frame: pd.DataFrame, target: Path) -> list[Path]:
    """TCO against the swept parameter (frontier joined, infeasible values marked and in the
    legend); for a power-cap sweep in MW, a second panel with what each extra MW saves over
    each interval between feasible points (from ``export.price_sweep``)."""
    parameter = str(frame["parameter"].iloc[0]) if len(frame) else "parameter"
    per_mw = "usd_per_mw" in frame and frame["usd_per_mw"].notna().any()
    rows = 2 if per_mw else 1
    figure, panels = plt.subplots(
        rows, 1, figsize=(10, 4.5 * rows), dpi=110, sharex=True, squeeze=False
    )
    axes = panels[0][0]
    solved = frame[pd.to_numeric(frame["tco_usd"], errors="coerce").notna()]
    axes.scatter(solved["value"], solved["tco_usd"] / 1e6, color="grey", zorder=3, label="solved")
    front = solved[solved["on_frontier"].astype(bool)].sort_values("value")
    axes.plot(front["value"], front["tco_usd"] / 1e6, color="black", marker="o", label="frontier")
    infeasible = frame[frame["status"].astype(str) == "infeasible"]
    if len(infeasible):
        low = solved["tco_usd"].min() / 1e6 if len(solved) else 0.0
        axes.scatter(
            infeasible["value"],
            [low] * len(infeasible),
            marker="x",
            color="red",
            s=60,
            zorder=4,
            label="infeasible: no plan at this value",
        )
        for value in infeasible["value"]:
            axes.axvline(value, color="red", alpha=0.15)
    axes.set_ylabel("discounted TCO, USD millions")
    axes.set_title(f"TCO against the {parameter_label(parameter).partition(',')[0]}")
    _legend_outside(axes)
    if per_mw:
        _plot_value_per_mw(panels[1][0], frame)
    panels[-1][0].set_xlabel(parameter_label(parameter))
    figure.tight_layout()
    return _save(figure, target)


def _plot_value_per_mw(axes: Axes, frame: pd.DataFrame) -> None:
    """Bars over each interval between feasible sweep points: USD millions saved per extra MW
    (a grey dash where the difference is within the solver's gap, i.e. not proven)."""
    priced = frame[frame["usd_per_mw"].notna()]
    for row in priced.to_dict("records"):
        start, end = float(row["interval_from"]), float(row["value"])
        proven = not bool(row["difference_within_gap"])
        axes.bar(
            (start + end) / 2,
            row["usd_per_mw"] / 1e6,
            width=(end - start) * 0.9,
            color="tab:green" if proven else "lightgrey",
            edgecolor="black",
            linewidth=0.5,
        )
    unproven = priced[priced["difference_within_gap"].astype(bool)]
    axes.scatter(
        unproven["value"] - (unproven["value"] - unproven["interval_from"].astype(float)) / 2,
        unproven["usd_per_mw"] / 1e6,
        marker="_",
        s=200,
        color="grey",
    )
    axes.legend(
        handles=[
            Patch(color="tab:green", label="the cap binds: saving per extra MW"),
            Line2D(
                [],
                [],
                color="grey",
                marker="_",
                linestyle="",
                markersize=12,
                label="within the solver's gap: the cap does not bind",
            ),
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        borderaxespad=0.0,
    )
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_ylabel("USD millions saved per extra MW")
    axes.set_title("value of each extra MW between neighbouring sweep points")


def write_plan_charts(result, folder: Path) -> list[Path]:
    """Every plan chart into ``folder`` (nothing for an infeasible result)."""
    if result.plan is None:
        return []
    folder = Path(folder)
    plan = result.plan
    written = plot_fleet(plan.fleet, folder / "fleet")
    written += plot_power(plan.power, folder / "power")
    written += plot_costs(plan.costs, folder / "costs")
    written += plot_cost_per_token(plan.cost_per_million_tokens, folder / "cost_per_million_tokens")
    return written
