"""Stress tests: a plan's purchases fixed, evaluated against thousands of sampled futures.

With the fleet fixed, what is left in each future is a recourse LP (integer replicas relaxed),
built straight into HiGHS from numpy arrays (no Pyomo: a few ms per future):

    min  Σ_j,t e_j,t·alloc[j,t] + π_u·Σ_c,t U[c,t]                         (millions of USD)
    s.t. Σ_j∈r alloc[j,t] ≤ (1 − spare)·installed[r,t]                    (racks)
         Σ_j f_j·rate_j·alloc[j,t] + σ[c,φ,t] ≥ g_c,t·demand[c,φ,t]         (10⁶ tokens/s)
         U[c,t] ≥ k_c,t·σ[c,decode,t],  U[c,t] ≥ k_c,t·(D/P)_c,t·σ[c,prefill,t]   (10¹² tokens)
         alloc, σ, U ≥ 0

with e_j,t = δ_t·price_t·h_t·hours_t·PUE_t·(P_j − P_idle,r)/10⁶ the discounted energy of one rack
at column j above idle, f_j, g_c,t, h_t the future's rate, demand and electricity multipliers,
k_c,t = hours_t·3600·ρ_c·10⁶/10¹². The penalty π_u (USD per million tokens) is high by default
so the LP serves all it can. The rest of the TCO is fixed by the plan and priced per future:
capex (× capex multiplier), maintenance, idle energy and salvage.

Samples are grouped into tasks (``sample_batches``); a task carries the plan data (scenario and
rates) and a list of sample indices, never a live model, and draws sample i from
``SeedSequence(seed, spawn_key=(i,))``: results do not depend on the number of workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import highspy
import numpy as np
import pandas as pd

from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import HOURS_PER_YEAR, SampledQuantity
from rackplan.planner.core.data import PlanData
from rackplan.planner.core.futures import (
    BASE,
    FutureDraw,
    named_draws,
    pick_named,
    sample_draw,
    sampled_quantities,
)
from rackplan.planner.core.model import RATE_UNIT, SECONDS_PER_HOUR
from rackplan.planner.core.stochastic import TOKEN_UNIT

DEFAULT_PENALTY_USD_PER_MILLION_TOKENS = 1000.0
"""High enough (energy costs cents per million tokens) that the LP serves all it can."""
SHORTFALL_SHARE = 1e-6
"""A sample falls short when unserved tokens exceed this share of its demand."""


@dataclass(frozen=True)
class FixedPlan:
    """The purchases a stress test holds fixed: racks bought and installed per (rack, period)."""

    bought: dict[tuple[str, str], float]
    installed: dict[tuple[str, str], float]

    @classmethod
    def from_json(cls, plan: dict) -> FixedPlan:
        """From a plan's JSON (``rackplan solve --format json`` or ``plan.json``)."""
        if not plan.get("fleet"):
            raise InputError([Problem("plan", None, "fleet", "the plan has no fleet table")])
        installed = {(r["rack"], r["period"]): float(r["racks_installed"]) for r in plan["fleet"]}
        bought = {(r["rack"], r["period"]): float(r["racks_bought"]) for r in plan["fleet"]}
        return cls(bought, installed)

    @classmethod
    def read(cls, path: Path) -> FixedPlan:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise InputError([Problem(str(path), None, None, f"not a plan JSON: {exc}")]) from exc


# ---------------------------------------------------------------------------- the recourse LP
@dataclass(frozen=True)
class RecourseLP:
    """The LP's structure for one plan (module docstring), as numpy arrays (picklable)."""

    num_col: int
    num_row: int
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray
    nz_column: np.ndarray
    """For each nonzero, the rate column j it scales with (−1: none)."""
    col_cost: np.ndarray
    cost_period: np.ndarray
    """For each LP column, the period index its energy cost is priced in (−1: not energy)."""
    penalty_cols: np.ndarray
    """LP column indices of U[c,t], in (class, period) order."""
    row_lower: np.ndarray
    row_upper: np.ndarray
    demand_rows: np.ndarray
    demand_key: tuple[tuple[str, str], ...]
    """(class, period) of each demand row, for its demand multiplier."""
    unserved_key: tuple[tuple[str, str], ...]
    """(class, period) of each U column."""


def build_recourse_lp(data: PlanData, plan: FixedPlan, penalty: float) -> RecourseLP:
    """Assemble the LP column by column (CSC). Columns: alloc[j,t] where rack r is installed
    at t, then σ[c,φ,t] per demand row, then U[c,t]."""
    s = data.scenario
    spare = s.policy.spare_fraction
    periods = data.periods
    rows: dict[tuple, int] = {}
    lower: list[float] = []
    upper: list[float] = []
    demand_rows, demand_key = [], []

    def row(key: tuple, lo: float, hi: float) -> int:
        rows[key] = len(lower)
        lower.append(lo)
        upper.append(hi)
        return rows[key]

    for r in data.racks:
        for p in periods:
            n = plan.installed.get((r, p), 0.0)
            if n > 0:
                row(("cap", r, p), -np.inf, (1 - spare) * n)
    for c in data.classes:
        for p in periods:
            for ph, table in (("decode", data.demand_decode), ("prefill", data.demand_prefill)):
                if table[(c, p)] > 0:
                    demand_rows.append(row(("dem", c, ph, p), table[(c, p)] / RATE_UNIT, np.inf))
                    demand_key.append((c, p))
    starts, index, value, nz_col, cost, cost_period = [], [], [], [], [], []

    def column(entries: list[tuple[int, float, int]], c: float, period: int) -> None:
        starts.append(len(index))
        for i, v, j in entries:
            index.append(i)
            value.append(v)
            nz_col.append(j)
        cost.append(c)
        cost_period.append(period)

    for t, p in enumerate(periods):
        period = s.periods[t]
        energy = data.discount_factor(t) * period.electricity_usd_per_kwh * period.hours
        for j, col in enumerate(data.columns):
            cap = rows.get(("cap", col.rack, p))
            if cap is None:
                continue
            entries = [(cap, 1.0, -1)]
            for ph, rate in (("decode", col.decode_rate), ("prefill", col.prefill_rate)):
                dem = rows.get(("dem", col.workload_class, ph, p))
                if rate > 0 and dem is not None:
                    entries.append((dem, rate / RATE_UNIT, j))
            extra_kw = col.power_kw - data.racks[col.rack].power_kw_idle
            column(entries, energy * period.pue * extra_kw / 1e6, t)
    unserved_rows: dict[tuple[str, str], list[tuple[int, float]]] = {}
    rho = {c.name: c.max_utilisation for c in s.classes}
    for c in data.classes:
        for t, p in enumerate(periods):
            k = s.periods[t].hours * SECONDS_PER_HOUR * rho[c] * RATE_UNIT / TOKEN_UNIT
            for ph in ("decode", "prefill"):
                dem = rows.get(("dem", c, ph, p))
                if dem is None:
                    continue
                ratio = 1.0
                if ph == "prefill":
                    ratio = data.demand_decode[(c, p)] / data.demand_prefill[(c, p)]
                link = row(("unserved", c, ph, p), 0.0, np.inf)
                unserved_rows.setdefault((c, p), []).append((link, k * ratio))
                column([(dem, 1.0, -1), (link, -k * ratio, -1)], 0.0, -1)
    penalty_cols, unserved_key = [], []
    for key, links in unserved_rows.items():
        penalty_cols.append(len(cost))
        unserved_key.append(key)
        column([(link, 1.0, -1) for link, _ in links], penalty, -1)
    starts.append(len(index))
    return RecourseLP(
        num_col=len(cost),
        num_row=len(lower),
        a_start=np.array(starts, dtype=np.int32),
        a_index=np.array(index, dtype=np.int32),
        a_value=np.array(value, dtype=float),
        nz_column=np.array(nz_col, dtype=np.int64),
        col_cost=np.array(cost, dtype=float),
        cost_period=np.array(cost_period, dtype=np.int64),
        penalty_cols=np.array(penalty_cols, dtype=np.int64),
        row_lower=np.array(lower, dtype=float),
        row_upper=np.array(upper, dtype=float),
        demand_rows=np.array(demand_rows, dtype=np.int64),
        demand_key=tuple(demand_key),
        unserved_key=tuple(unserved_key),
    )


def fixed_cost_usd(data: PlanData, plan: FixedPlan, draw: FutureDraw) -> float:
    """The TCO the plan fixes, in the draw's prices (USD): Σ_t δ_t·(capex·bought + maintenance
    share·capex·installed + price·hours·PUE·P_idle·installed) − salvage."""
    s = data.scenario
    total = 0.0
    end = data.end_discount_factor()
    maintenance = s.economics.maintenance_fraction_per_year
    for t, period in enumerate(s.periods):
        p = period.name
        price = period.electricity_usd_per_kwh * draw.electricity_factor(p)
        spend = 0.0
        for r, info in data.racks.items():
            capex = info.capex_usd * draw.capex_factor(r)
            bought = plan.bought.get((r, p), 0.0)
            installed = plan.installed.get((r, p), 0.0)
            spend += capex * bought
            spend += maintenance * period.hours / HOURS_PER_YEAR * capex * installed
            spend += price * period.hours * period.pue * info.power_kw_idle * installed
            total -= end * data.salvage_fraction(r, t) * capex * bought
        total += data.discount_factor(t) * spend
    return total


@dataclass(frozen=True)
class SampleResult:
    """One future's outcome: TCO (USD, without the penalty), unserved and demanded output
    tokens per (class, period)."""

    index: int
    name: str
    tco_usd: float
    unserved: dict[tuple[str, str], float]
    demand_tokens: dict[tuple[str, str], float]
    status: str

    @property
    def unserved_tokens(self) -> float:
        return sum(self.unserved.values())

    @property
    def shortfall(self) -> bool:
        return self.unserved_tokens > SHORTFALL_SHARE * max(sum(self.demand_tokens.values()), 1.0)


def evaluate(
    data: PlanData,
    plan: FixedPlan,
    lp: RecourseLP,
    draw: FutureDraw,
    index: int = 0,
    highs: highspy.Highs | None = None,
) -> SampleResult:
    """Solve the recourse LP of one future (pass ``highs`` to reuse one HiGHS instance)."""
    rate = np.ones(len(data.columns) + 1)
    for j, f in draw.rate.items():
        rate[j] = f
    values = lp.a_value * np.where(lp.nz_column >= 0, rate[lp.nz_column], 1.0)
    price = np.array([draw.electricity_factor(p) for p in data.periods] + [1.0])
    cost = lp.col_cost * np.where(lp.cost_period >= 0, price[lp.cost_period], 1.0)
    row_lower = lp.row_lower.copy()
    factors = np.array([draw.demand_factor(c, p) for c, p in lp.demand_key])
    if len(factors):
        row_lower[lp.demand_rows] *= factors
    h = highs or _quiet_highs()
    h.passModel(
        lp.num_col,
        lp.num_row,
        len(values),
        1,  # column-wise
        1,  # minimise
        0.0,
        cost,
        np.zeros(lp.num_col),
        np.full(lp.num_col, np.inf),
        row_lower,
        lp.row_upper,
        lp.a_start,
        lp.a_index,
        values,
        np.zeros(lp.num_col, dtype=np.int32),
    )
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    solution = np.array(h.getSolution().col_value)
    unserved = {
        key: float(solution[col]) * TOKEN_UNIT
        for key, col in zip(lp.unserved_key, lp.penalty_cols, strict=True)
    }
    energy = float(
        np.dot(cost[: len(cost)], solution)
        - np.dot(cost[lp.penalty_cols], solution[lp.penalty_cols])
    )
    return SampleResult(
        index=index,
        name=draw.name,
        tco_usd=fixed_cost_usd(data, plan, draw) + energy * 1e6,
        unserved=unserved,
        demand_tokens=_demand_tokens(data, draw),
        status=status,
    )


def _quiet_highs() -> highspy.Highs:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    return h


def _demand_tokens(data: PlanData, draw: FutureDraw) -> dict[tuple[str, str], float]:
    """Forecast output tokens per (class, period) in the draw."""
    hours = {p.name: p.hours for p in data.scenario.periods}
    return {
        (c, p): v * draw.demand_factor(c, p) * hours[p] * SECONDS_PER_HOUR
        for (c, p), v in data.forecast_output.items()
    }


# ---------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class StressTask:
    """One task: the plan data, the plan, what to sample, and the sample indices."""

    data: PlanData
    plan: FixedPlan
    seed: int
    indices: tuple[int, ...]
    penalty: float = DEFAULT_PENALTY_USD_PER_MILLION_TOKENS


def draw_for(data: PlanData, sampled: Sequence[SampledQuantity], seed: int, index: int):
    """Sample ``index``: a named future picked by probability, or a draw of the distributions."""
    futures = data.scenario.futures
    if futures is not None and futures.named:
        return pick_named(named_draws(data, futures), seed, index)
    return sample_draw(data, sampled, seed, index, 1.0)


def run_task(task: StressTask) -> list[SampleResult]:
    """Evaluate a task's samples on one HiGHS instance (the worker's side)."""
    lp = build_recourse_lp(task.data, task.plan, task.penalty)
    sampled = sampled_quantities(task.data.scenario)
    highs = _quiet_highs()
    return [
        evaluate(task.data, task.plan, lp, draw_for(task.data, sampled, task.seed, i), i, highs)
        for i in task.indices
    ]


def sample_batches(samples: int, batch: int) -> list[tuple[int, ...]]:
    """Consecutive index ranges of at most ``batch`` samples."""
    return [tuple(range(i, min(i + batch, samples))) for i in range(0, samples, batch)]


Runner = Callable[[Callable, list], list]


def stress_test(
    data: PlanData,
    plan: FixedPlan,
    samples: int,
    seed: int = 0,
    runner: Runner | None = None,
    batch: int = 100,
    penalty: float = DEFAULT_PENALTY_USD_PER_MILLION_TOKENS,
) -> StressReport:
    """Evaluate ``plan`` against ``samples`` futures (mapped over tasks with ``runner``,
    sequentially by default) and summarise."""
    if samples < 1:
        raise InputError([Problem("stress", None, "samples", "sample at least one future")])
    tasks = [StressTask(data, plan, seed, b, penalty) for b in sample_batches(samples, batch)]
    results = (runner or (lambda f, items: [f(i) for i in items]))(run_task, tasks)
    flat = sorted((r for batch_results in results for r in batch_results), key=lambda r: r.index)
    return StressReport(data.scenario.name, seed, tuple(flat), data.classes, data.periods)


def base_result(data: PlanData, plan: FixedPlan) -> SampleResult:
    """The plan in the forecast itself (every multiplier 1)."""
    lp = build_recourse_lp(data, plan, DEFAULT_PENALTY_USD_PER_MILLION_TOKENS)
    return evaluate(data, plan, lp, BASE)


# ---------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class StressReport:
    """Samples and their summary: probability of shortfall, unserved tokens per class
    (expected, 95th percentile), the TCO distribution, and per-period fans."""

    scenario: str
    seed: int
    results: tuple[SampleResult, ...]
    classes: list[str]
    periods: list[str]

    def sample_table(self) -> pd.DataFrame:
        rows = []
        for r in self.results:
            row = {
                "sample": r.index,
                "future": r.name,
                "tco_usd": r.tco_usd,
                "unserved_tokens": r.unserved_tokens,
                "shortfall": r.shortfall,
                "status": r.status,
            }
            for c in self.classes:
                row[f"unserved_tokens:{c}"] = sum(r.unserved.get((c, p), 0.0) for p in self.periods)
            rows.append(row)
        return pd.DataFrame(rows)

    def class_table(self) -> pd.DataFrame:
        """Per class: probability of shortfall, expected and p95 unserved output tokens."""
        samples = self.sample_table()
        rows = []
        for c in self.classes:
            values = samples[f"unserved_tokens:{c}"]
            demand = np.array(
                [sum(r.demand_tokens.get((c, p), 0.0) for p in self.periods) for r in self.results]
            )
            rows.append(
                {
                    "class": c,
                    "probability_of_shortfall": float(
                        (values.to_numpy() > SHORTFALL_SHARE * np.maximum(demand, 1.0)).mean()
                    ),
                    "expected_unserved_tokens": float(values.mean()),
                    "p95_unserved_tokens": float(values.quantile(0.95)),
                    "expected_demand_tokens": float(demand.mean()),
                }
            )
        return pd.DataFrame(rows)

    def period_table(self) -> pd.DataFrame:
        """Per period: quantiles (5, 25, 50, 75, 95 %) of demanded and unserved output tokens
        (all classes) across samples — the fan chart's data."""
        rows = []
        for p in self.periods:
            demand = np.array(
                [sum(r.demand_tokens.get((c, p), 0.0) for c in self.classes) for r in self.results]
            )
            short = np.array(
                [sum(r.unserved.get((c, p), 0.0) for c in self.classes) for r in self.results]
            )
            row = {"period": p}
            for q in (5, 25, 50, 75, 95):
                row[f"demand_tokens_p{q}"] = float(np.percentile(demand, q))
                row[f"unserved_tokens_p{q}"] = float(np.percentile(short, q))
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, object]:
        tco = np.array([r.tco_usd for r in self.results])
        return {
            "scenario": self.scenario,
            "samples": len(self.results),
            "seed": self.seed,
            "probability_of_shortfall": float(np.mean([r.shortfall for r in self.results])),
            "expected_unserved_tokens": float(np.mean([r.unserved_tokens for r in self.results])),
            "p95_unserved_tokens": float(
                np.percentile([r.unserved_tokens for r in self.results], 95)
            ),
            "tco_mean_usd": float(tco.mean()),
            "tco_p5_usd": float(np.percentile(tco, 5)),
            "tco_p50_usd": float(np.percentile(tco, 50)),
            "tco_p95_usd": float(np.percentile(tco, 95)),
            "not_optimal": sum(r.status != "Optimal" for r in self.results),
        }

    def as_json(self) -> dict:
        from rackplan.planner.core.plan import json_records

        return {
            **self.summary(),
            "classes": json_records(self.class_table()),
            "periods": json_records(self.period_table()),
        }

    def frames(self) -> dict[str, pd.DataFrame]:
        summary = pd.DataFrame([{"key": k, "value": v} for k, v in self.summary().items()])
        return {
            "summary": summary,
            "classes": self.class_table(),
            "periods": self.period_table(),
            "samples": self.sample_table(),
        }
