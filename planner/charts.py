"""Plan charts as PNG and SVG (matplotlib, Agg): fleet by period, power against the cap,
cost breakdown, $ per million tokens by class, and the Pareto frontier."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from rackplan.planner.files import atomic_path


def _save(figure, target: Path) -> list[Path]:
    written = []
    for suffix in (".png", ".svg"):
        path = target.with_suffix(suffix)
        with atomic_path(path) as temporary:
            figure.savefig(temporary)
        written.append(path)
    plt.close(figure)
    return written


def plot_fleet(fleet: pd.DataFrame, target: Path) -> list[Path]:
    """Installed racks by period, stacked by rack type."""
    table = fleet.pivot_table(
        index="period", columns="rack", values="racks_installed", sort=False
    ).fillna(0)
    table = table.loc[:, (table > 0).any()]
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    if not table.empty:
        table.plot(kind="bar", stacked=True, ax=axes, width=0.8)
    axes.set_ylabel("racks installed")
    axes.set_title("fleet by period")
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return _save(figure, target)


def plot_power(power: pd.DataFrame, target: Path) -> list[Path]:
    """Site power (provisioned × PUE) against the cap, MW."""
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    x = range(len(power))
    axes.bar(x, power["site_power_mw"], label="site power (provisioned × PUE)")
    operating = power["it_power_kw_operating"] * power["pue"] / 1000.0
    axes.plot(x, operating, color="black", marker="o", label="operating (at the chosen points)")
    if power["power_cap_mw"].notna().any():
        starts = [i - 0.45 for i in x]
        ends = [i + 0.45 for i in x]
        axes.hlines(power["power_cap_mw"], starts, ends, color="red", linestyle="--", label="cap")
    axes.set_xticks(list(x), power["period"], rotation=45)
    axes.set_ylabel("MW at the meter")
    axes.set_title("power against the cap")
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, target)


def plot_costs(costs: pd.DataFrame, target: Path) -> list[Path]:
    """Capex, energy, maintenance per period (nominal USD, millions)."""
    frame = (
        costs[costs["period"] != "salvage"].set_index("period")[
            ["capex_usd", "energy_usd", "maintenance_usd"]
        ]
        / 1e6
    )
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=110)
    frame.plot(kind="bar", stacked=True, ax=axes, width=0.8)
    axes.set_ylabel("USD millions (nominal)")
    axes.set_title("cost breakdown")
    figure.tight_layout()
    return _save(figure, target)


def plot_cost_per_token(table: pd.DataFrame, target: Path) -> list[Path]:
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    axes.bar(table["class"], table["usd_per_million_output_tokens"].fillna(0))
    axes.set_ylabel("USD per million output tokens")
    axes.set_title("levelised cost per token by class")
    figure.tight_layout()
    return _save(figure, target)


def plot_pareto(frame: pd.DataFrame, target: Path) -> list[Path]:
    """TCO against the swept parameter; frontier points joined."""
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=110)
    solved = frame.dropna(subset=["tco_usd"])
    axes.scatter(solved["value"], solved["tco_usd"] / 1e6, color="grey", label="solved")
    front = solved[solved["on_frontier"]].sort_values("value")
    axes.plot(front["value"], front["tco_usd"] / 1e6, color="black", marker="o", label="frontier")
    infeasible = frame[frame["tco_usd"].isna()]
    for value in infeasible["value"]:
        axes.axvline(value, color="red", alpha=0.3)
    axes.set_xlabel(str(frame["parameter"].iloc[0]) if len(frame) else "parameter")
    axes.set_ylabel("discounted TCO, USD millions")
    axes.set_title("Pareto: TCO against " + (str(frame["parameter"].iloc[0]) if len(frame) else ""))
    axes.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, target)


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
