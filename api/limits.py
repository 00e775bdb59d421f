"""Checks at the service's edge, before a request reaches the domain types: bounded sizes,
clean text and physically plausible numbers, in one linear pass over the JSON.

The domain types (``models/``) say what a valid scenario is; this module says what the
service accepts from strangers: at most ``MAX_ITEMS`` entries per table, names without control
characters or lone surrogates and at most ``MAX_NAME_CHARS`` long (so SQLite and PostgreSQL
behave the same), and numbers within ``PLAUSIBLE`` (a 1e300 request rate is a typo, not a
plan). Every problem names its field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_NAME_CHARS = 200
"""Names and ids (the database columns are 200 wide)."""
MAX_TEXT_CHARS = 2_000
"""Other text (sources, notes)."""
NAME_KEYS = frozenset({"name", "period", "workload_class", "rack", "llm", "id", "first_period"})
MAX_ITEMS = {
    "periods": 400,
    "classes": 200,
    "racks": 100,
    "demand": 20_000,
    "measured_rates": 2_000,
}
"""Entries per table of a scenario (a 400-period plan is 100 years of quarters)."""
MAX_ITEMS_OTHER = 1_000
MAX_PROBLEMS = 200


class EdgeError(Exception):
    """Input refused at the edge: ``problems`` is ``[{"field", "message"}]`` (a 422)."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems[:5]))


@dataclass(frozen=True)
class Limit:
    """The largest plausible value of a field, and its unit for the message."""

    most: float
    unit: str


PLAUSIBLE: dict[str, Limit] = {
    "hours": Limit(87_840, "hours (10 years)"),
    "power_cap_mw": Limit(100_000, "MW"),
    "capex_budget_usd": Limit(1e13, "USD"),
    "total_budget_usd": Limit(1e14, "USD"),
    "electricity_usd_per_kwh": Limit(100, "USD per kWh"),
    "pue": Limit(10, "(power usage effectiveness)"),
    "requests_per_s": Limit(1e9, "requests per second"),
    "output_tokens_per_s": Limit(1e12, "tokens per second"),
    "prefill_decode_ratio": Limit(1e6, "input tokens per output token"),
    "input_tokens": Limit(10_000_000, "tokens"),
    "output_tokens": Limit(10_000_000, "tokens"),
    "ttft_ms": Limit(3_600_000, "ms"),
    "tpot_ms": Limit(3_600_000, "ms"),
    "installed": Limit(1_000_000, "racks"),
    "supply_limit_per_period": Limit(1_000_000, "racks"),
    "lot_size": Limit(100_000, "racks"),
    "lifetime_periods": Limit(10_000, "periods"),
    "capex_usd": Limit(1e10, "USD per rack"),
    "power_kw_at_load": Limit(10_000, "kW per rack"),
    "power_kw_idle": Limit(10_000, "kW per rack"),
    "power_kw": Limit(10_000, "kW per rack"),
    "floor_space_racks": Limit(10_000_000, "racks"),
    "tokens_per_s_per_rack": Limit(1e10, "tokens per second"),
    "racks_per_replica": Limit(10_000, "racks"),
    "max_rack_types": Limit(1_000, "rack types"),
}
"""Per field name (wherever it appears): beyond these a number is a mistake, not a plan."""
LARGEST_NUMBER = 1e15
"""Any other number, in absolute value."""


def text_problem(value: str, limit: int = MAX_NAME_CHARS) -> str | None:
    """Why a piece of text is refused (None when it is fine): too long, a NUL or other control
    character, or a lone surrogate (which no database or spreadsheet can store)."""
    if len(value) > limit:
        return f"is {len(value)} characters long; use at most {limit}"
    for index, char in enumerate(value):
        code = ord(char)
        if code < 32 or code == 127 or 0x80 <= code < 0xA0:
            return f"has a control character (U+{code:04X}) at position {index}; remove it"
        if 0xD800 <= code <= 0xDFFF:
            return f"has a lone surrogate (U+{code:04X}) at position {index}; send valid UTF-8"
    return None


def _number_problem(key: str, value: float) -> str | None:
    if not math.isfinite(value):
        return "must be a finite number"
    limit = PLAUSIBLE.get(key)
    if limit is not None and abs(value) > limit.most:
        return f"{value:g} is beyond physical plausibility; at most {limit.most:g} {limit.unit}"
    if abs(value) > LARGEST_NUMBER:
        return f"{value:g} is beyond plausibility; at most {LARGEST_NUMBER:g}"
    return None


def check_json(value: Any, path: str = "", key: str = "") -> list[dict[str, str]]:
    """Every problem of a JSON value (linear in its size): ``[{"field", "message"}]``."""
    problems: list[dict[str, str]] = []
    stack: list[tuple[Any, str, str]] = [(value, path, key)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, where, name = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            limit = MAX_NAME_CHARS if name in NAME_KEYS else MAX_TEXT_CHARS
            found = text_problem(item, limit)
            if found:
                problems.append({"field": where, "message": f"the text {found}"})
        elif isinstance(item, int | float):
            found = _number_problem(name, float(item))
            if found:
                problems.append({"field": where, "message": found})
        elif isinstance(item, dict):
            for child_key, child in item.items():
                child_key = str(child_key)
                if text_problem(child_key, MAX_NAME_CHARS):
                    problems.append({"field": where, "message": "a key has invalid characters"})
                    continue
                stack.append((child, f"{where}.{child_key}" if where else child_key, child_key))
        elif isinstance(item, list | tuple):
            most = MAX_ITEMS.get(name, MAX_ITEMS_OTHER)
            if len(item) > most:
                problems.append(
                    {
                        "field": where,
                        "message": f"has {len(item)} entries; the service takes at most {most}",
                    }
                )
                continue
            stack.extend((child, f"{where}.{i}", name) for i, child in enumerate(item))
    problems.sort(key=lambda p: p["field"])
    return problems


def duplicate_names(scenario: dict) -> list[dict[str, str]]:
    """Duplicate period, class and rack names, found in linear time (a set per table)."""
    problems = []
    for table, key in (("periods", "name"), ("classes", "name"), ("racks", "rack")):
        seen: set[str] = set()
        for index, entry in enumerate(scenario.get(table) or []):
            name = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(
                    {
                        "field": f"{table}.{index}.{key}",
                        "message": f"duplicate name '{name}'; names in {table} must be unique",
                    }
                )
            seen.add(name)
    return problems
