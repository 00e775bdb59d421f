"""The spreadsheet form of a scenario: one table per concept, every column specified once.

``TABLES`` is the single source for the reader, the writer, the template and the docs:
each column has a kind (how a cell is parsed), whether it is required, an example and a
sentence of help with its unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    """text | number | integer | fraction | period | modes | choice | bool"""
    required: bool
    example: str
    help: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    required: bool
    help: str
    columns: tuple[Column, ...]
    key_value: bool = False
    """settings: one setting per row (key, value) instead of one record per row."""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


SETTINGS = Table(
    "settings",
    False,
    "Scenario-wide settings, one per row: key, value. Omitted keys take the defaults shown.",
    (
        Column("name", "text", False, "my-plan", "Scenario name (used for output folders)."),
        Column(
            "discount_rate_per_year",
            "fraction",
            False,
            "8%",
            "Discount rate per year, e.g. 8% or 0.08.",
        ),
        Column(
            "maintenance_fraction_per_year",
            "fraction",
            False,
            "3%",
            "Maintenance per year as a share of installed capex.",
        ),
        Column(
            "salvage",
            "choice",
            False,
            "none",
            "none, or linear: residual value of racks with a lifetime credited at the end.",
            ("none", "linear"),
        ),
        Column(
            "spare_fraction",
            "fraction",
            False,
            "0%",
            "Share of installed racks kept as spares (N+k).",
        ),
        Column(
            "max_rack_types",
            "integer",
            False,
            "",
            "At most this many rack types in the fleet (blank: no limit).",
        ),
        Column(
            "objective",
            "choice",
            False,
            "min_tco",
            "min_tco, max_served (within budget) or min_power.",
            ("min_tco", "max_served", "min_power"),
        ),
        Column("integer_replicas", "bool", False, "false", "true: allocate whole replicas only."),
        Column(
            "power_cap_basis",
            "choice",
            False,
            "nameplate",
            "What the power cap limits: nameplate (every installed rack at its at-load power) or "
            "expected (idle power of installed racks + the extra draw of allocated racks at their "
            "operating points); both × PUE.",
            ("nameplate", "expected"),
        ),
        Column(
            "total_budget_usd",
            "number",
            False,
            "",
            "Capex over the whole horizon, USD (blank: none).",
        ),
        Column(
            "floor_space_racks",
            "integer",
            False,
            "",
            "Rack positions available (blank: unlimited).",
        ),
    ),
    key_value=True,
)
PERIODS = Table(
    "periods",
    True,
    "One row per planning period, in time order.",
    (
        Column(
            "period",
            "period",
            True,
            "2027Q1",
            "Period label: 2027Q1, 2027-Q1 or Q1 2027 for quarters, or any short name.",
        ),
        Column(
            "hours", "number", True, "2190", "Length of the period, hours (a quarter is 2,190 h)."
        ),
        Column(
            "power_cap_mw",
            "number",
            False,
            "20",
            "Site power cap at the meter (IT × PUE), MW (blank: no cap).",
        ),
        Column(
            "capex_budget_usd",
            "number",
            False,
            "",
            "Capex allowed in this period, USD (blank: no limit).",
        ),
        Column(
            "electricity_usd_per_kwh", "number", True, "0.08", "Electricity price, USD per kWh."
        ),
        Column(
            "pue",
            "number",
            False,
            "1.2",
            "Power usage effectiveness (site / IT power); default 1.2.",
        ),
    ),
)
CLASSES = Table(
    "classes",
    True,
    "One row per workload class: an LLM, a request shape and its SLAs.",
    (
        Column("class", "text", True, "chat", "Class name, referenced by the forecast."),
        Column(
            "llm",
            "text",
            True,
            "llama-3.1-70b",
            "LLM id (rackplan catalog list llms, or llms.csv).",
        ),
        Column("input_tokens", "number", True, "2000", "Mean prompt length, tokens."),
        Column("output_tokens", "number", True, "400", "Mean output length, tokens."),
        Column(
            "prefix_hit_rate",
            "fraction",
            False,
            "30%",
            "Share of prompt tokens served from the prefix cache.",
        ),
        Column(
            "ttft_ms",
            "number",
            False,
            "2000",
            "Time-to-first-token target at sla_percentile, ms (blank: none).",
        ),
        Column(
            "tpot_ms",
            "number",
            False,
            "40",
            "Time-per-output-token target at sla_percentile, ms (blank: none).",
        ),
        Column(
            "sla_percentile",
            "choice",
            False,
            "p99",
            "Statistic the TTFT/TPOT targets bound: mean, p50, p90, p95 or p99 (blank: mean). "
            "Percentiles convert from the model's means: docs/physics.md.",
            ("mean", "p50", "p90", "p95", "p99"),
        ),
        Column(
            "speculative_draft_tokens",
            "integer",
            False,
            "0",
            "Speculative decoding / MTP: tokens drafted per step (blank or 0: off).",
        ),
        Column(
            "speculative_acceptance",
            "fraction",
            False,
            "",
            "Probability each drafted token is accepted (needs speculative_draft_tokens).",
        ),
        Column(
            "max_utilisation",
            "fraction",
            False,
            "80%",
            "Busiest a server may run; sets queueing and head-room.",
        ),
        Column(
            "modes",
            "modes",
            False,
            "disaggregated;aggregated",
            "Serving modes allowed: disaggregated, aggregated or both (;).",
        ),
        Column("precision", "choice", False, "fp8", "fp4, fp8 or bf16.", ("fp4", "fp8", "bf16")),
    ),
)
FORECAST = Table(
    "forecast",
    True,
    "Demand per period and class: requests_per_s, or output_tokens_per_s with an optional "
    "prefill_decode_ratio.",
    (
        Column("period", "period", True, "2027Q1", "A period of periods.csv."),
        Column("class", "text", True, "chat", "A class of classes.csv."),
        Column(
            "requests_per_s",
            "number",
            False,
            "500",
            "Requests per second (prompt and output lengths from the class).",
        ),
        Column(
            "output_tokens_per_s",
            "number",
            False,
            "",
            "Output tokens per second (instead of requests_per_s).",
        ),
        Column(
            "prefill_decode_ratio",
            "number",
            False,
            "",
            "Prompt tokens per output token for output_tokens_per_s (default: the class's L/O).",
        ),
    ),
)
FLEET = Table(
    "fleet",
    True,
    "One row per rack type in play: purchase rules, existing fleet and price/power overrides.",
    (
        Column(
            "rack",
            "text",
            True,
            "gb200-nvl72",
            "Rack type id (rackplan catalog list racks, or racks.csv).",
        ),
        Column(
            "first_period",
            "period",
            False,
            "",
            "First period it can be bought (blank: from the start).",
        ),
        Column(
            "supply_limit_per_period",
            "integer",
            False,
            "",
            "Most racks that can be bought in one period (blank: unlimited).",
        ),
        Column("lot_size", "integer", False, "1", "Racks are bought in multiples of this."),
        Column(
            "lifetime_periods",
            "integer",
            False,
            "",
            "Periods a rack serves before it retires (blank: beyond the horizon).",
        ),
        Column("installed", "integer", False, "0", "Racks already installed at the start."),
        Column(
            "existing_retire_period",
            "period",
            False,
            "",
            "Period in which the existing racks retire (blank: they stay).",
        ),
        Column("capex_usd", "number", False, "", "Price per rack override, USD (blank: catalog)."),
        Column(
            "power_kw_at_load",
            "number",
            False,
            "",
            "IT power per rack at load override, kW (blank: catalog).",
        ),
        Column(
            "power_kw_idle",
            "number",
            False,
            "",
            "IT power per rack idle override, kW (blank: catalog).",
        ),
    ),
)
RATES = Table(
    "rates",
    False,
    "Measured operating points that replace the roofline for (rack, class, mode).",
    (
        Column("rack", "text", True, "hgx-h100", "Rack type id."),
        Column("class", "text", True, "chat", "Class name."),
        Column(
            "mode",
            "choice",
            True,
            "decode",
            "prefill, decode or aggregated.",
            ("prefill", "decode", "aggregated"),
        ),
        Column(
            "tokens_per_s_per_rack",
            "number",
            True,
            "250000",
            "Output tokens/s (decode, aggregated) or prompt tokens/s (prefill) per rack.",
        ),
        Column("ttft_ms", "number", False, "", "Measured TTFT, ms."),
        Column("tpot_ms", "number", False, "35", "Measured TPOT, ms."),
        Column("power_kw", "number", True, "38", "IT power per rack at this point, kW."),
        Column(
            "racks_per_replica",
            "number",
            False,
            "1",
            "Racks one replica spans (fractions when several share a rack).",
        ),
        Column(
            "source", "text", True, "our benchmark 2026-10", "Where the measurement comes from."
        ),
    ),
)
FUTURES = Table(
    "futures",
    False,
    "Uncertainty for `rackplan robust` and `rackplan stress` (docs/uncertainty.md); `solve` "
    "ignores it. Either named futures — rows with `future`, its `probability` (on one row or "
    "repeated; they add up to 1) and one multiplier each (`parameter`, `target`, `period`, "
    "`scale`) — or distributions to sample from — rows with `parameter`, `target`, "
    "`distribution` and its numbers, no `future`. Not both.",
    (
        Column(
            "future",
            "text",
            False,
            "base",
            "Name of a named future (blank on distribution rows).",
        ),
        Column(
            "probability",
            "fraction",
            False,
            "100%",
            "Probability of the named future, e.g. 30% (the futures' probabilities add up to 1).",
        ),
        Column(
            "parameter",
            "choice",
            False,
            "demand",
            "Named futures: demand, capex, electricity or rate (a multiplier). Distributions: "
            "demand_growth (per-period growth multiplier, compounding), capex, electricity or "
            "rate.",
            ("demand", "demand_growth", "capex", "electricity", "rate"),
        ),
        Column(
            "target",
            "text",
            False,
            "",
            "A class (demand, demand_growth) or rack type (capex, rate); blank: all of them "
            "(sampled: one shared draw).",
        ),
        Column(
            "period",
            "period",
            False,
            "",
            "Named futures, demand and electricity only: the period scaled (blank: every period).",
        ),
        Column(
            "scale",
            "number",
            False,
            "1",
            "Named futures: the multiplier, e.g. 1.4 for 40 % more demand or 0.9 for rates 10 % "
            "below the model.",
        ),
        Column(
            "distribution",
            "choice",
            False,
            "",
            "Distributions: lognormal (median `mode`, default 1, log-sd `sigma`), triangular "
            "(`low`, `mode`, `high`), uniform (`low`, `high`) or band (rate only: uniform within "
            "each rate's validation band).",
            ("lognormal", "triangular", "uniform", "band"),
        ),
        Column("low", "number", False, "", "Smallest multiplier (triangular, uniform)."),
        Column(
            "mode",
            "number",
            False,
            "",
            "Most likely multiplier (triangular) or median (lognormal; default 1).",
        ),
        Column("high", "number", False, "", "Largest multiplier (triangular, uniform)."),
        Column(
            "sigma",
            "number",
            False,
            "",
            "Standard deviation of the multiplier's logarithm (lognormal), e.g. 0.1 per period.",
        ),
    ),
)
TABLES: tuple[Table, ...] = (SETTINGS, PERIODS, CLASSES, FORECAST, FLEET, RATES, FUTURES)
CATALOG_TABLES = ("racks", "llms")
"""Optional catalog extensions in a scenario folder/workbook (columns as in catalogs/data)."""


_INTRO = """A scenario is a folder of CSV files, one table each, or one XLSX workbook with the same
sheets (`rackplan template DIR` or `rackplan template FILE.xlsx` writes one to start
from). A folder or workbook may also carry `racks` and `llms` tables with the catalog's
columns (docs/catalogs.md) to add or override catalog entries. A scenario can also be
one JSON file (the schema of `models.scenario.Scenario`).

Import accepts what spreadsheets produce: UTF-8 with or without BOM, `,` or `;`
delimiters, trailing blank rows and columns, thousands separators (`1,234,567`, `1 234`,
`1.234,5`), a decimal comma (`0,08`), percentages (`20%`) in share columns, and quarters
written `2027Q1`, `2027-Q1` or `Q1 2027`. It is strict about meaning: unknown tables,
columns, settings or choices, a share above 1 without `%`, and references to unknown
periods or classes are errors, all reported at once with file (or sheet), row, column,
the value found and what was expected."""


def markdown() -> str:
    """docs/scenario-files.md, rendered from TABLES (a test keeps the file in step)."""
    lines = [
        "# Scenario files",
        "",
        *_INTRO.splitlines(),
        "",
        "This page is generated from `planner/io/scenario_tables.py`.",
    ]
    for table in TABLES:
        lines += [
            "",
            f"## {table.name}{'' if table.required else ' (optional)'}",
            "",
            table.help,
            "",
        ]
        lines += ["| column | required | example | meaning |", "|---|---|---|---|"]
        for c in table.columns:
            lines.append(
                f"| `{c.name}` | {'yes' if c.required else 'no'} | {c.example} | {c.help} |"
            )
    return "\n".join(lines) + "\n"
