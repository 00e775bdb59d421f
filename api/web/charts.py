"""Charts of the pages as inline SVG (matplotlib, drawn on the server: no script, no CDN).

Every chart has axis labels with units; text stays text (``svg.fonttype = none``) so it is
readable by screen readers and searchable. Charts of stored plans are cached by key.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from markupsafe import Markup

SIZE = (7.6, 3.4)
CACHE_SIZE = 256
_cache: OrderedDict[tuple, Markup] = OrderedDict()
_lock = threading.Lock()
_draw_lock = threading.Lock()
"""pyplot keeps global state: one figure is drawn at a time."""


def cached(key: tuple, draw: Callable[[], Markup]) -> Markup:
    """The chart stored under ``key``, drawn once."""
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    chart = draw()
    with _lock:
        _cache[key] = chart
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return chart


def _svg(figure, title: str) -> Markup:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": title}):
        figure.savefig(buffer, format="svg")
    plt.close(figure)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r'\swidth="[^"]+"\sheight="[^"]+"', "", text, count=1)
    label = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    text = text.replace("<svg", f'<svg role="img" aria-label="{label}" class="chart"', 1)
    return Markup(text)


def _figure(title: str, xlabel: str, ylabel: str):
    figure, axes = plt.subplots(figsize=SIZE, dpi=100)
    axes.set_title(title, fontsize=11)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    return figure, axes


def _stacked(table: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> Markup:
    with _draw_lock:
        figure, axes = _figure(title, xlabel, ylabel)
        if not table.empty:
            table.plot(kind="bar", stacked=True, ax=axes, width=0.8, rot=0)
            axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
            axes.set_xlabel(xlabel)
        else:
            axes.text(0.5, 0.5, "nothing to show", ha="center", transform=axes.transAxes)
        figure.tight_layout()
        return _svg(figure, title)


def _pivot(rows: list[dict], index: str, columns: str, values: str, order: list[str]):
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    table = frame.pivot_table(index=index, columns=columns, values=values, aggfunc="sum")
    table = table.reindex([p for p in order if p in table.index]).fillna(0)
    return table.loc[:, (table > 0).any()]


def purchases_chart(purchases: list[dict], periods: list[str]) -> Markup:
    """Racks bought per period, stacked by rack type."""
    table = _pivot(purchases, "period", "rack", "racks_bought", periods)
    return _stacked(table, "racks bought per period", "period (quarter)", "racks bought")


def fleet_chart(fleet: list[dict], periods: list[str]) -> Markup:
    table = _pivot(fleet, "period", "rack", "racks_installed", periods)
    return _stacked(table, "installed fleet per period", "period (quarter)", "racks installed")


def costs_chart(costs: list[dict]) -> Markup:
    frame = pd.DataFrame([c for c in costs if c.get("period") != "salvage"])
    if frame.empty:
        return _stacked(frame, "cost breakdown", "period (quarter)", "USD millions (nominal)")
    table = frame.set_index("period")[["capex_usd", "energy_usd", "maintenance_usd"]] / 1e6
    table.columns = ["capex", "energy", "maintenance"]
    return _stacked(table, "cost breakdown", "period (quarter)", "USD millions (nominal)")


def power_chart(power: list[dict]) -> Markup:
    """Site power (provisioned × PUE) per period against the cap."""
    title = "site power against the cap"
    with _draw_lock:
        figure, axes = _figure(title, "period (quarter)", "MW at the meter")
        frame = pd.DataFrame(power)
        if not frame.empty:
            x = list(range(len(frame)))
            axes.bar(x, frame["site_power_mw"], label="site power (provisioned × PUE)")
            caps = frame["power_cap_mw"]
            if caps.notna().any():
                axes.step(x, caps, where="mid", color="#c0392b", linestyle="--", label="cap")
            axes.set_xticks(x, frame["period"])
            axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        figure.tight_layout()
        return _svg(figure, title)


def bars_chart(labels: list[str], values: list[float], title: str, ylabel: str, xlabel: str):
    """One bar per label (classes, variants)."""
    with _draw_lock:
        figure, axes = _figure(title, xlabel, ylabel)
        axes.bar(labels, values, color="#2c6e9b")
        figure.tight_layout()
        return _svg(figure, title)


def racks_by_variant_chart(rows: list[dict]) -> Markup:
    """Racks bought over the horizon per variant, stacked by rack type."""
    records = [
        {"variant": r["variant"], "rack": k.partition(":")[2], "racks": v or 0}
        for r in rows
        for k, v in r.items()
        if k.startswith("racks_bought:")
    ]
    table = _pivot(records, "variant", "rack", "racks", [r["variant"] for r in rows])
    return _stacked(table, "racks bought by variant", "variant", "racks bought (horizon)")


def pareto_chart(rows: list[dict], parameter: str) -> Markup:
    """Discounted TCO against the swept parameter; frontier points joined; infeasible marked."""
    title = f"Pareto: TCO against {parameter}"
    with _draw_lock:
        figure, axes = _figure(title, parameter, "discounted TCO, USD millions")
        frame = pd.DataFrame(rows)
        if not frame.empty:
            solved = frame.dropna(subset=["tco_usd"])
            axes.scatter(solved["value"], solved["tco_usd"] / 1e6, color="grey", label="solved")
            front = solved[solved["on_frontier"].astype(bool)].sort_values("value")
            axes.plot(front["value"], front["tco_usd"] / 1e6, "o-", color="black", label="frontier")
            for value in frame[frame["tco_usd"].isna()]["value"]:
                axes.axvline(value, color="#c0392b", alpha=0.4)
            if frame["tco_usd"].isna().any():
                axes.plot([], [], color="#c0392b", alpha=0.4, label="infeasible")
            axes.legend(fontsize=8)
        figure.tight_layout()
        return _svg(figure, title)
