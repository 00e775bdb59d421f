"""Futures: the scenario's uncertainty turned into concrete draws the models can use.

A ``FutureDraw`` is one future as multipliers on the deterministic scenario:

- ``demand[(class, period)]``: forecast × factor (both phases; tokens/s);
- ``capex[rack]``: price per rack × factor (USD);
- ``electricity[period]``: price per kWh × factor (USD/kWh);
- ``rate[j]``: throughput of column j × factor (tokens/s per rack).

Missing keys mean 1. Named futures (``Futures.named``) give their draws directly; sampled
futures draw from ``Futures.sampled`` with a ``numpy`` generator seeded by
``SeedSequence(seed, spawn_key=(i,))`` — the i-th child of ``SeedSequence(seed).spawn`` — so
sample i is the same whichever worker draws it and however samples are batched. The spreadsheet
form (table ``futures``) is read and written here too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import ValidationError

from rackplan.catalogs.errors import Problem
from rackplan.models.scenario import (
    Futures,
    FutureScale,
    NamedFuture,
    SampledQuantity,
    Scenario,
)
from rackplan.planner.core.data import PlanData


@dataclass(frozen=True)
class FutureDraw:
    """One future as multipliers (module docstring); picklable plain data."""

    name: str
    probability: float
    demand: dict[tuple[str, str], float] = field(default_factory=dict)
    capex: dict[str, float] = field(default_factory=dict)
    electricity: dict[str, float] = field(default_factory=dict)
    rate: dict[int, float] = field(default_factory=dict)

    def demand_factor(self, cls: str, period: str) -> float:
        return self.demand.get((cls, period), 1.0)

    def capex_factor(self, rack: str) -> float:
        return self.capex.get(rack, 1.0)

    def electricity_factor(self, period: str) -> float:
        return self.electricity.get(period, 1.0)

    def rate_factor(self, column: int) -> float:
        return self.rate.get(column, 1.0)


BASE = FutureDraw("base", 1.0)
"""The forecast itself: every multiplier 1."""


# ---------------------------------------------------------------------------- named futures
def named_draws(data: PlanData, futures: Futures) -> list[FutureDraw]:
    """The named futures as draws: each scale multiplies the matching entries (scales of the
    same entry multiply)."""
    return [_named_draw(data, f) for f in futures.named]


def _named_draw(data: PlanData, future: NamedFuture) -> FutureDraw:
    demand: dict[tuple[str, str], float] = {}
    capex: dict[str, float] = {}
    electricity: dict[str, float] = {}
    rate: dict[int, float] = {}
    for s in future.scales:
        if s.parameter == "demand":
            for c in [s.target] if s.target else data.classes:
                for p in [s.period] if s.period else data.periods:
                    demand[(c, p)] = demand.get((c, p), 1.0) * s.scale
        elif s.parameter == "capex":
            for r in [s.target] if s.target else list(data.racks):
                capex[r] = capex.get(r, 1.0) * s.scale
        elif s.parameter == "electricity":
            for p in [s.period] if s.period else data.periods:
                electricity[p] = electricity.get(p, 1.0) * s.scale
        else:
            for j, col in enumerate(data.columns):
                if s.target is None or col.rack == s.target:
                    rate[j] = rate.get(j, 1.0) * s.scale
    return FutureDraw(future.name, future.probability, demand, capex, electricity, rate)


# ---------------------------------------------------------------------------- sampling
DEFAULT_SAMPLED = (SampledQuantity(parameter="rate", distribution="band"),)
"""What a scenario without futures samples: every rack's rates within their validation bands."""


def sample_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of sample ``index``: child ``index`` of ``SeedSequence(seed)`` (equal to
    ``SeedSequence(seed).spawn(index + 1)[index]``), independent of workers and batching."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def _multiplier(q: SampledQuantity, rng: np.random.Generator) -> float:
    """One draw of a multiplier: lognormal (median ``mode`` or 1, log-sd ``sigma``),
    triangular(low, mode, high) or uniform(low, high)."""
    if q.distribution == "lognormal":
        return float(math.exp(rng.normal(math.log(q.mode or 1.0), q.sigma or 0.0)))
    if q.distribution == "triangular":
        if q.low == q.high:
            return float(q.low)
        return float(rng.triangular(q.low, q.mode, q.high))
    return float(rng.uniform(q.low, q.high))


def sample_draw(
    data: PlanData, sampled: Iterable[SampledQuantity], seed: int, index: int, probability: float
) -> FutureDraw:
    """Sample ``index`` of the distributions (module docstring), with the given probability.

    Draw order is fixed (the table's row order; within a row: classes, then periods, then
    racks in scenario order), so a sample depends on (seed, index) only.
    """
    rng = np.random.default_rng(sample_seed(seed, index))
    demand: dict[tuple[str, str], float] = defaultdict(lambda: 1.0)
    capex: dict[str, float] = defaultdict(lambda: 1.0)
    electricity: dict[str, float] = defaultdict(lambda: 1.0)
    rate: dict[int, float] = defaultdict(lambda: 1.0)
    for q in sampled:
        if q.parameter == "demand_growth":
            _sample_growth(data, q, rng, demand)
        elif q.parameter == "capex":
            _sample_per_target(q, list(data.racks), rng, capex)
        elif q.parameter == "electricity":
            factor = _multiplier(q, rng)
            for p in data.periods:
                electricity[p] *= factor
        else:
            _sample_rates(data, q, rng, rate)
    return FutureDraw(
        f"sample-{index}", probability, dict(demand), dict(capex), dict(electricity), dict(rate)
    )


def _sample_growth(data: PlanData, q: SampledQuantity, rng, demand: dict) -> None:
    """demand_t × Π_{s≤t} g_s, one path per class (or one path shared by every class)."""
    groups = [[q.target]] if q.target else [data.classes]
    for classes in groups:
        level = 1.0
        for p in data.periods:
            level *= _multiplier(q, rng)
            for c in classes:
                demand[(c, p)] *= level


def _sample_per_target(q: SampledQuantity, targets: list[str], rng, factors: dict) -> None:
    """One multiplier for the target, or one shared by all targets when none is named."""
    factor = _multiplier(q, rng)
    for t in [q.target] if q.target else targets:
        factors[t] *= factor


def _sample_rates(data: PlanData, q: SampledQuantity, rng, rate: dict) -> None:
    """band: one quantile u ~ U(0, 1) per rack; column j's factor is low_j + u·(high_j − low_j)
    from ``Column.rate_bounds(1)``. Otherwise one multiplier per rack (all of them: the target
    or every rack, each its own draw)."""
    racks = [q.target] if q.target else list(data.racks)
    for r in racks:
        if q.distribution == "band":
            u = float(rng.uniform())
            for j, col in enumerate(data.columns):
                if col.rack == r:
                    low, high = col.rate_bounds(1.0)
                    rate[j] *= low + u * (high - low)
        else:
            factor = _multiplier(q, rng)
            for j, col in enumerate(data.columns):
                if col.rack == r:
                    rate[j] *= factor


def sampled_quantities(scenario: Scenario) -> tuple[SampledQuantity, ...]:
    """The scenario's distributions, or ``DEFAULT_SAMPLED`` when it has no futures."""
    if scenario.futures is None:
        return DEFAULT_SAMPLED
    return scenario.futures.sampled


def scenario_draws(data: PlanData, count: int, seed: int) -> list[FutureDraw]:
    """The futures a robust plan optimises over: the named futures if the scenario has them,
    else ``count`` equally likely samples of its distributions (``DEFAULT_SAMPLED`` without a
    futures table)."""
    futures = data.scenario.futures
    if futures is not None and futures.named:
        return named_draws(data, futures)
    if count < 1:
        raise ValueError("sample at least one future")
    sampled = sampled_quantities(data.scenario)
    return [sample_draw(data, sampled, seed, i, 1.0 / count) for i in range(count)]


def pick_named(draws: list[FutureDraw], seed: int, index: int) -> FutureDraw:
    """Sample ``index`` from named futures, picked with their probabilities (stress tests)."""
    rng = np.random.default_rng(sample_seed(seed, index))
    weights = np.array([d.probability for d in draws])
    chosen = draws[int(rng.choice(len(draws), p=weights / weights.sum()))]
    return FutureDraw(
        f"sample-{index}:{chosen.name}",
        1.0,
        chosen.demand,
        chosen.capex,
        chosen.electricity,
        chosen.rate,
    )


def mean_draw(draws: list[FutureDraw]) -> FutureDraw:
    """The probability-weighted mean of every multiplier (the expected-value future)."""
    total = sum(d.probability for d in draws)

    def mean(attribute: str) -> dict:
        keys = set().union(*(getattr(d, attribute) for d in draws))
        return {
            k: sum(d.probability * getattr(d, attribute).get(k, 1.0) for d in draws) / total
            for k in keys
        }

    return FutureDraw("mean", 1.0, mean("demand"), mean("capex"), mean("electricity"), mean("rate"))


# ---------------------------------------------------------------------------- table form
def futures_from_records(
    source: str, records: list[tuple[int, dict[str, object]]]
) -> tuple[Futures | None, list[Problem]]:
    """Rows of the ``futures`` table → ``Futures`` (rows with a ``future`` are named futures,
    rows without one distributions), and every problem with its row."""
    problems: list[Problem] = []
    named: dict[str, dict] = {}
    sampled: list[SampledQuantity] = []
    for number, record in records:
        try:
            if record.get("future"):
                _add_named_row(named, number, record, source, problems)
            else:
                sampled.append(_sampled_row(record))
        except ValidationError as exc:
            for error in exc.errors():
                column = str(error["loc"][0]) if error["loc"] else None
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(Problem(source, number, column, message))
    futures_list = []
    for name, entry in named.items():
        if entry["probability"] is None:
            problems.append(
                Problem(source, entry["row"], "probability", f"future '{name}' has no probability")
            )
            continue
        futures_list.append(
            NamedFuture(name=name, probability=entry["probability"], scales=tuple(entry["scales"]))
        )
    if problems:
        return None, problems
    if not futures_list and not sampled:
        return None, []
    try:
        return Futures(named=tuple(futures_list), sampled=tuple(sampled)), []
    except ValidationError as exc:
        return None, [
            Problem(source, None, None, str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]


def _add_named_row(named: dict, number: int, record: dict, source: str, problems: list) -> None:
    name = str(record["future"])
    entry = named.setdefault(name, {"probability": None, "scales": [], "row": number})
    probability = record.get("probability")
    if probability is not None:
        if entry["probability"] is not None and abs(entry["probability"] - probability) > 1e-12:
            problems.append(
                Problem(source, number, "probability", f"future '{name}' has two probabilities")
            )
        entry["probability"] = probability
    if record.get("distribution"):
        problems.append(
            Problem(source, number, "distribution", "named futures take scales, not distributions")
        )
    if record.get("parameter") is not None:
        entry["scales"].append(
            FutureScale(
                parameter=record["parameter"],
                target=record.get("target") or None,
                period=record.get("period") or None,
                scale=record.get("scale", 1.0),
            )
        )


def _sampled_row(record: dict) -> SampledQuantity:
    fields = {
        k: record[k]
        for k in ("parameter", "target", "distribution", "low", "mode", "high", "sigma")
        if record.get(k) not in (None, "")
    }
    return SampledQuantity(**fields)


FUTURE_COLUMNS = (
    "future",
    "probability",
    "parameter",
    "target",
    "period",
    "scale",
    "distribution",
    "low",
    "mode",
    "high",
    "sigma",
)


def futures_frame(futures: Futures) -> pd.DataFrame:
    """The ``futures`` table of a scenario (writer side of ``futures_from_records``)."""
    rows = []
    for f in futures.named:
        for i, s in enumerate(f.scales or (None,)):
            row = {"future": f.name, "probability": f.probability if i == 0 else None}
            if s is not None:
                row |= {
                    "parameter": s.parameter,
                    "target": s.target,
                    "period": s.period,
                    "scale": s.scale,
                }
            rows.append(row)
    for q in futures.sampled:
        rows.append(q.model_dump())
    frame = pd.DataFrame(rows, columns=list(FUTURE_COLUMNS))
    return frame.astype(object).where(frame.notna(), "")
