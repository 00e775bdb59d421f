"""What the pages show, shaped from stored plans, scenarios and comparisons (pure functions)."""

from __future__ import annotations

import math
from typing import Any

from rackplan.planner.io.spreadsheets import scenario_frames

EDITABLE = {
    "periods": ("power_cap_mw", "capex_budget_usd", "electricity_usd_per_kwh"),
    "classes": ("ttft_ms", "tpot_ms"),
    "demand": ("requests_per_s", "output_tokens_per_s"),
    "racks": ("capex_usd", "supply_limit_per_period"),
}
"""Scenario fields a what-if changes, editable in place on the scenario page."""
TABLE_TITLES = {
    "periods": "periods",
    "classes": "classes",
    "demand": "forecast",
    "racks": "fleet (rack options)",
}
TABLE_KEYS = {"periods": "name", "classes": "name", "racks": "rack"}


def money(value: Any) -> str:
    """$1.2M, $35k, $12.34 — a number a planning meeting reads at a glance."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "–"
    size = abs(value)
    if size >= 1e9:
        return f"${value / 1e9:,.2f}B"
    if size >= 1e6:
        return f"${value / 1e6:,.1f}M"
    if size >= 1e4:
        return f"${value / 1e3:,.0f}k"
    return f"${value:,.2f}"


def signed_money(value: Any) -> str:
    """+$1.2M / −$35k / ±0: a difference in dollars."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "–"
    if abs(value) < 0.5:
        return "±0"
    return ("+" if value > 0 else "−") + money(abs(value))


def number(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.{digits}f}"
    return str(value)


def shadow_sentence(row: dict) -> str:
    """A shadow price in words ("one more MW in 2027Q3 saves $X")."""
    constraint, period, value = row["constraint"], row["period"], row["value"]
    if constraint.startswith("power_cap["):
        return f"One more MW of site power in {period} saves {money(value)}."
    if constraint.startswith("capex_budget["):
        return f"One more dollar of capex budget in {period} saves {money(value)}."
    if constraint.startswith("rack_capacity["):
        return f"One more usable {row['subject']} rack in {period} saves {money(value)}."
    if constraint.startswith("demand_cover["):
        tokens = "output" if "decode" in row["subject"] else "prompt"
        return (
            f"1,000 more {tokens} tokens/s of {row['subject']} demand in {period} "
            f"costs {money(value)}."
        )
    return f"{row['subject']} in {period}: {number(value)} {row['unit']}."


def binding_limits(shadow_prices: list[dict], shown: int = 8) -> list[dict]:
    """The limits that bind (non-zero price), limits of power and budget first, dearest first."""
    binding = [r for r in shadow_prices if abs(r.get("value") or 0) > 1e-6]
    limits = ("power_cap[", "capex_budget[", "rack_capacity[")
    binding.sort(key=lambda r: (not r["constraint"].startswith(limits), -abs(r["value"])))
    return [dict(r, sentence=shadow_sentence(r)) for r in binding[:shown]]


def purchase_matrix(purchases: list[dict], periods: list[str]) -> tuple[list[str], list[dict]]:
    """Racks bought, rack × period: (racks, rows with one cell per period and a total)."""
    racks = sorted({p["rack"] for p in purchases if p.get("racks_bought")})
    rows = []
    for period in periods:
        bought = {p["rack"]: p["racks_bought"] for p in purchases if p["period"] == period}
        capex = sum(p.get("capex_usd") or 0 for p in purchases if p["period"] == period)
        if any(bought.values()):
            rows.append({"period": period, "racks": bought, "capex_usd": capex})
    return racks, rows


def fleet_matrix(fleet: list[dict], periods: list[str]) -> tuple[list[str], list[dict]]:
    racks = sorted({f["rack"] for f in fleet if f.get("racks_installed")})
    rows = [
        {
            "period": period,
            "racks": {f["rack"]: f["racks_installed"] for f in fleet if f["period"] == period},
        }
        for period in periods
    ]
    return racks, rows


def sla_rows(service: list[dict]) -> list[dict]:
    """Per class and phase: the worst latency over the horizon against its target."""
    worst: dict[tuple[str, str], dict] = {}
    for row in service:
        key = (row["class"], row["phase"])
        latency = row.get("worst_latency_ms")
        if latency is None:
            continue
        if key not in worst or latency > worst[key]["worst_latency_ms"]:
            worst[key] = row
    return [
        {
            "class": cls,
            "metric": "TPOT" if phase == "decode" else "TTFT",
            "worst_latency_ms": row["worst_latency_ms"],
            "target_ms": row.get("target_ms"),
            "met": row.get("target_ms") is None
            or row["worst_latency_ms"] <= row["target_ms"] * (1 + 1e-6),
            "served_share": min(r.get("served_share", 1.0) for r in service if r["class"] == cls),
        }
        for (cls, phase), row in sorted(worst.items())
    ]


def cost_total(costs: list[dict]) -> dict[str, float]:
    keys = ("capex_usd", "energy_usd", "maintenance_usd", "salvage_usd", "total_usd")
    return {k: sum(c.get(k) or 0 for c in costs) for k in keys}


def plan_warnings(plan: dict) -> list[str]:
    """Withdrawn products (``warnings``) and roofline fall-backs and other diagnostics."""
    found = list(plan.get("warnings") or [])
    for item in plan.get("diagnostics") or []:
        message = item.get("message") if isinstance(item, dict) else str(item)
        if message and message not in found:
            found.append(message)
    return found


def scenario_tables(scenario: dict) -> dict[str, list[dict]]:
    """The scenario's tables as rows, under the names the pages and edit form use."""
    return {table: list(scenario.get(table) or []) for table in TABLE_TITLES}


def table_columns(rows: list[dict], editable: tuple[str, ...] = ()) -> list[str]:
    """Columns that hold a value in at least one row, in their first row's order, and the
    editable ones even when empty."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and (value not in (None, [], "") or key in editable):
                columns.append(key)
    return columns


def settings_rows(scenario_model) -> list[dict]:
    """The settings table as the spreadsheet shows it (key, value)."""
    return scenario_frames(scenario_model)["settings"].to_dict("records")


def edited(scenario: dict, form: dict[str, str]) -> dict:
    """The scenario with the edit form's fields applied (``table.index.field``); an empty
    optional field clears the value."""
    body = {**scenario}
    for table, fields in EDITABLE.items():
        rows = [dict(r) for r in body.get(table) or []]
        for index, row in enumerate(rows):
            for name in fields:
                key = f"{table}.{index}.{name}"
                if key in form:
                    row[name] = _parsed(form[key])
        body[table] = rows
    return body


def _parsed(text: str) -> float | str | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text  # validation names the field


KPI_ROWS = (
    ("status", "status", "text"),
    ("tco_usd", "discounted TCO", "money"),
    ("delta_tco_usd", "Δ TCO vs base", "delta"),
    ("delta_tco_pct", "Δ TCO %", "pct"),
    ("capex_usd", "capex (nominal)", "money"),
    ("peak_site_power_mw", "peak site power, MW", "number"),
    ("min_power_headroom_mw", "least power headroom, MW", "number"),
)


def comparison_view(rows: list[dict]) -> dict:
    """Side by side: KPI rows, racks bought, $/M tokens and SLA per class, each variant a
    column; deltas against the base."""
    extra = sorted({k for r in rows for k in r if ":" in k})
    groups = {
        "racks bought (horizon)": [k for k in extra if k.startswith("racks_bought:")],
        "$ per million output tokens": [k for k in extra if k.startswith("usd_per_m_tokens:")],
        "worst latency, ms": [k for k in extra if k.startswith(("ttft_ms:", "tpot_ms:"))],
    }
    base = rows[0] if rows else {}
    return {
        "variants": [r["variant"] for r in rows],
        "kpis": KPI_ROWS,
        "groups": groups,
        "base": base,
        "infeasible": [_explained(r) for r in rows if r.get("explanation")],
        "buys": [(r["variant"], r.get("buys") or "–") for r in rows],
    }


def _explained(row: dict) -> dict:
    """An infeasible variant's explanation: its first sentence, then one item per relaxation."""
    head, *items = (part.strip() for part in str(row["explanation"]).split(" - "))
    return {"variant": row["variant"], "status": row.get("status"), "head": head, "items": items}


def delta(row: dict, base: dict, key: str) -> str:
    """The difference to the base of one comparison cell ("+3" / "−$1.2M"), or ''."""
    value, reference = row.get(key), base.get(key)
    if row is base or not isinstance(value, int | float) or not isinstance(reference, int | float):
        return ""
    change = value - reference
    if abs(change) < 1e-9:
        return "±0"
    sign = "+" if change > 0 else "−"
    if key.startswith("usd_") or key.endswith("_usd"):
        return sign + money(abs(change))
    return sign + number(abs(change), 1)
