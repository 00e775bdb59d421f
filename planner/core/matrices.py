"""Pivoted views of a plan for people: rack × period buy schedule and fleet matrix."""

from __future__ import annotations

import pandas as pd

from rackplan.planner.core.plan import Plan


def _pivot(frame: pd.DataFrame, value: str, periods: list[str], racks: list[str]) -> pd.DataFrame:
    """``frame`` (period, rack, value) → racks as rows, periods as columns, zeros filled, and a
    ``total`` column."""
    if frame.empty:
        matrix = pd.DataFrame(0.0, index=racks, columns=periods)
    else:
        matrix = frame.pivot_table(index="rack", columns="period", values=value, aggfunc="sum")
        matrix = matrix.reindex(index=racks, columns=periods).fillna(0.0)
    matrix.index.name = "rack"
    matrix.columns.name = None
    return matrix


def buy_matrix(plan: Plan, periods: list[str] | None = None) -> pd.DataFrame:
    """Racks bought: one row per rack type, one column per period, plus ``total`` (racks)."""
    periods = periods or list(dict.fromkeys(plan.fleet["period"]))
    racks = list(dict.fromkeys(plan.fleet["rack"]))
    matrix = _pivot(plan.purchases, "racks_bought", periods, racks)
    matrix["total"] = matrix.sum(axis=1)
    return matrix.reset_index()


def fleet_matrix(plan: Plan, periods: list[str] | None = None) -> pd.DataFrame:
    """Racks installed at the end of each period: rack × period (racks)."""
    periods = periods or list(dict.fromkeys(plan.fleet["period"]))
    racks = list(dict.fromkeys(plan.fleet["rack"]))
    return _pivot(plan.fleet, "racks_installed", periods, racks).reset_index()


def buys_text(plan: Plan) -> str:
    """``62 × rubin-cpx, 52 × gb200-nvl72`` over the horizon (or ``none``)."""
    totals = plan.purchases.groupby("rack", sort=False)["racks_bought"].sum()
    parts = [f"{round(n)} × {rack}" for rack, n in totals.items() if n > 0]
    return ", ".join(parts) or "none"
