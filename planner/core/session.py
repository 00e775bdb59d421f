"""What-if sessions: a base scenario and named variants, solved on one persistent model
where possible, compared side by side with deltas against the base.

Every variant keeps its full plan (``Comparison.results``) and its buy schedule (rack ×
period); an infeasible variant carries the planner's explanation (the smallest relaxations).
A TCO difference the solver has not proven (the interval [variant bound − base TCO, variant
TCO − base bound] contains 0) is marked ``delta_within_gap``; such variants, and the base,
are re-solved to ``refine_gap`` first.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.core.data import prepare
from rackplan.planner.core.matrices import buy_matrix, buys_text
from rackplan.planner.core.plan import Plan, extract_plan
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.solve import PlanSolver, SolveOptions, SolveOutcome
from rackplan.planner.core.suggest import did_you_mean
from rackplan.planner.core.whatif import (
    IN_PLACE,
    REBUILD,
    TEXT_KEYS,
    Baseline,
    Value,
    apply_change,
    check_change,
    key_name,
    rebuilt_scenario,
)

REFINE_GAP = 1e-5
"""Gap the base and close variants are re-solved to when a difference is within the gap."""


@dataclass(frozen=True)
class Variant:
    name: str
    changes: tuple[tuple[str, Value], ...]

    @property
    def in_place(self) -> bool:
        return all(key_name(key) in IN_PLACE for key, _ in self.changes)

    @property
    def text(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.changes)


def _show(value: Value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(text: str, where: str, key: str) -> float:
    try:
        return float(text.strip().replace("_", ""))
    except ValueError as exc:
        raise InputError([Problem(where, None, key, "value must be a number", text)]) from exc


def _value(text: str, where: str, key: str) -> Value:
    """A number, or text for keys that take a name (a period, a percentile, a rack)."""
    if key_name(key) in TEXT_KEYS:
        try:
            return float(text.strip().replace("_", ""))
        except ValueError:
            return text.strip()
    return _number(text, where, key)


def _check_key(key: str, where: str) -> None:
    if key_name(key) not in IN_PLACE + REBUILD:
        message = did_you_mean(key_name(key), IN_PLACE + REBUILD, "what-if key")
        raise InputError([Problem(where, None, key, message)])


def parse_variant_options(options: list[str]) -> list[Variant]:
    """``NAME:key=value[,key=value]`` → variants (keys may contain ':', e.g. capex_scale:rack)."""
    variants = []
    for option in options:
        name, _, body = option.partition(":")
        if not name or not body:
            raise InputError(
                [Problem("--variant", None, None, "expected NAME:key=value[,key=value]", option)]
            )
        changes = []
        for item in body.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise InputError([Problem("--variant", None, name, "expected key=value", item)])
            _check_key(key.strip(), "--variant")
            changes.append((key.strip(), _value(value, "--variant", key.strip())))
        variants.append(Variant(name.strip(), tuple(changes)))
    return variants


def read_variants_csv(path: Path) -> list[Variant]:
    """Rows ``variant,key,value``; rows of one variant are grouped in file order."""
    grouped: dict[str, list[tuple[str, Value]]] = {}
    problems = []
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"variant", "key", "value"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(
                [Problem(str(path), 1, c, "required column missing") for c in sorted(missing)]
            )
        for number, row in enumerate(reader, start=2):
            if not any((v or "").strip() for v in row.values()):
                continue
            key = (row["key"] or "").strip()
            try:
                _check_key(key, str(path))
                value = _value(row["value"] or "", str(path), key)
            except InputError as exc:
                problems += [
                    Problem(str(path), number, p.column, p.message, p.value) for p in exc.problems
                ]
                continue
            grouped.setdefault(row["variant"].strip(), []).append((key, value))
    if problems:
        raise InputError(problems)
    return [Variant(name, tuple(changes)) for name, changes in grouped.items()]


def check_variants(scenario: Scenario, catalog: Catalog | None, variants: list[Variant]) -> None:
    """Every problem of every variant at once (unknown racks, classes, periods, values)."""
    problems = []
    for variant in variants:
        for key, value in variant.changes:
            problems += check_change(scenario, catalog, key, value, f"variant '{variant.name}'")
    names = [v.name for v in variants]
    for name in sorted({n for n in names if names.count(n) > 1 or n == "base"}):
        message = "variant names must be unique and not 'base'"
        problems.append(Problem(f"variant '{name}'", None, None, message))
    if problems:
        raise InputError(problems)


def changed_scenario(scenario: Scenario, catalog: Catalog | None, variant: Variant) -> Scenario:
    """The scenario with every change of ``variant`` applied, in order (scales compose)."""
    for key, value in variant.changes:
        scenario = rebuilt_scenario(scenario, key, value, catalog)
    return scenario


@dataclass(frozen=True)
class VariantResult:
    """One solved variant (or the base): its plan when feasible, else its explanation."""

    name: str
    changes: str
    status: str
    outcome: SolveOutcome | None
    plan: Plan | None
    explanation: tuple[str, ...] = ()
    refined: bool = False

    @property
    def buy_matrix(self) -> pd.DataFrame | None:
        """Racks bought, rack × period (None when there is no plan)."""
        return None if self.plan is None else buy_matrix(self.plan)


@dataclass(frozen=True)
class Comparison:
    """The side-by-side table (one row per variant) and every variant's result."""

    frame: pd.DataFrame
    results: dict[str, VariantResult] = field(default_factory=dict)

    def buy_schedules(self) -> pd.DataFrame:
        """Every plan's buy matrix stacked: variant, rack, one column per period, total."""
        frames = []
        for name, result in self.results.items():
            matrix = result.buy_matrix
            if matrix is not None:
                frames.append(matrix.assign(variant=name)[["variant", *matrix.columns]])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _kpis(result: VariantResult) -> dict:
    """One comparison row: TCO, bound, capex, power, racks bought, $/M tokens, worst SLA."""
    row: dict[str, object] = {
        "variant": result.name,
        "changes": result.changes,
        "status": result.status,
    }
    plan = result.plan
    if plan is None:
        row["explanation"] = " ".join(line.strip() for line in result.explanation)
        return row
    row["tco_usd"] = plan.tco_usd
    row["best_bound_usd"] = plan.outcome.best_bound if plan.objective_unit == "USD" else None
    row["capex_usd"] = float(plan.costs["capex_usd"].sum())
    row["peak_site_power_mw"] = float(plan.power["site_power_mw"].max())
    headroom = plan.power["headroom_mw"].dropna()
    row["min_power_headroom_mw"] = float(headroom.min()) if len(headroom) else None
    row["buys"] = buys_text(plan)
    for rack, bought in plan.purchases.groupby("rack")["racks_bought"].sum().items():
        row[f"racks_bought:{rack}"] = float(bought)
    for r in plan.cost_per_million_tokens.itertuples():
        row[f"usd_per_m_tokens:{r._1}"] = r.usd_per_million_output_tokens
    worst = plan.service.groupby(["class", "phase"])["worst_latency_ms"].max()
    for (cls, phase), value in worst.items():
        row[f"{'tpot' if phase == 'decode' else 'ttft'}_ms:{cls}"] = value
    row["gap"] = plan.outcome.gap
    row["refined"] = result.refined
    return row


class _Runner:
    """Solves the base and variants: in-place variants on one persistent model, the others
    rebuilt; an infeasible variant is explained on its changed scenario."""

    def __init__(self, scenario: Scenario, catalog: Catalog, options: SolveOptions):
        self.scenario, self.catalog, self.options = scenario, catalog, options
        self.solver = PlanSolver(prepare(scenario, catalog), options)
        self.baseline = Baseline.of(self.solver)

    def base(self, refined: bool = False) -> VariantResult:
        """The base scenario, solved on the persistent model."""
        return self._persistent(Variant("base", ()), refined)

    def run(self, variant: Variant, refined: bool = False) -> VariantResult:
        """One variant, solved in place when every change allows it, else rebuilt."""
        if variant.in_place:
            return self._persistent(variant, refined)
        changed = changed_scenario(self.scenario, self.catalog, variant)
        result = plan_scenario(
            changed, self.catalog, self.options, with_shadow_prices=False, with_baselines=False
        )
        outcome = result.plan.outcome if result.plan is not None else None
        explanation = () if result.plan is not None else result.explanation
        return VariantResult(
            variant.name, variant.text, result.status, outcome, result.plan, explanation, refined
        )

    def _persistent(self, variant: Variant, refined: bool) -> VariantResult:
        solver = self.solver
        solver.options = self.options
        _reset(solver, self.baseline)
        for key, value in variant.changes:
            apply_change(solver, Baseline.of(solver), key, float(value))
        outcome = solver.solve(f"what-if {variant.name}")
        plan = extract_plan(solver.data, solver, outcome) if outcome.has_solution else None
        _reset(solver, self.baseline)
        explanation: tuple[str, ...] = ()
        if plan is None:
            explanation = self._explain(variant)
        return VariantResult(
            variant.name, variant.text, outcome.status, outcome, plan, explanation, refined
        )

    def _explain(self, variant: Variant) -> tuple[str, ...]:
        """The planner's explanation of an infeasible variant (elastic re-solve)."""
        changed = changed_scenario(self.scenario, self.catalog, variant)
        result = plan_scenario(
            changed, self.catalog, self.options, with_shadow_prices=False, with_baselines=False
        )
        return result.explanation

    def tighter(self, gap: float) -> _Runner:
        """The same runner solving to ``gap`` from now on."""
        self.options = replace(self.options, rel_gap=min(gap, self.options.rel_gap))
        return self


def run_comparison(
    scenario: Scenario,
    catalog: Catalog,
    variants: list[Variant],
    options: SolveOptions | None = None,
    progress: Callable[[], None] | None = None,
    refine_gap: float | None = REFINE_GAP,
) -> Comparison:
    """Base + each variant: full plans, KPIs, TCO deltas against the base with the interval the
    solver's bounds allow; variants whose difference is within the gap are re-solved to
    ``refine_gap`` (with the base) when that is tighter than the options' gap."""
    check_variants(scenario, catalog, variants)
    options = options or SolveOptions()
    runner = _Runner(scenario, catalog, options)
    results = {"base": runner.base()}
    if progress:
        progress()
    for variant in variants:
        results[variant.name] = runner.run(variant)
        if progress:
            progress()
    close = [v for v in variants if _unproven(results["base"], results[v.name])]
    if close and refine_gap is not None and refine_gap < options.rel_gap:
        runner.tighter(refine_gap)
        results["base"] = runner.base(refined=True)
        # against the refined base, every variant the bounds cannot tell apart is re-solved
        for variant in variants:
            if _overlaps(results["base"], results[variant.name]):
                results[variant.name] = runner.run(variant, refined=True)
    frame = _frame(results)
    return Comparison(frame, results)


def compare_variants(
    scenario: Scenario,
    catalog: Catalog,
    variants: list[Variant],
    options: SolveOptions | None = None,
    progress: Callable[[], None] | None = None,
    refine_gap: float | None = REFINE_GAP,
) -> pd.DataFrame:
    """Base + each variant: KPIs, and deltas of TCO against the base (``run_comparison``)."""
    return run_comparison(scenario, catalog, variants, options, progress, refine_gap).frame


def delta_interval(base: VariantResult, variant: VariantResult) -> tuple[float, float] | None:
    """[low, high] of the true TCO difference variant − base allowed by both solves' bounds."""
    if base.plan is None or variant.plan is None:
        return None
    b, v = base.plan, variant.plan
    if b.objective_unit != "USD" or v.objective_unit != "USD":
        return None
    b_bound = b.outcome.best_bound if b.outcome.best_bound is not None else b.tco_usd
    v_bound = v.outcome.best_bound if v.outcome.best_bound is not None else v.tco_usd
    return min(v_bound, v.tco_usd) - b.tco_usd, v.tco_usd - min(b_bound, b.tco_usd)


def _unproven(base: VariantResult, variant: VariantResult) -> bool:
    """True when the reported difference is not zero but the bounds allow zero."""
    interval = delta_interval(base, variant)
    if interval is None:
        return False
    low, high = interval
    tolerance = 1e-9 * max(abs(base.plan.tco_usd), 1.0)
    delta = variant.plan.tco_usd - base.plan.tco_usd
    return abs(delta) > tolerance and low <= tolerance and high >= -tolerance


def _overlaps(base: VariantResult, variant: VariantResult) -> bool:
    """True when the bounds allow a zero difference (whatever the reported one)."""
    interval = delta_interval(base, variant)
    return interval is not None and interval[0] <= 0 <= interval[1]


WITHIN_GAP_NOTE = "within the solver's proven gap: not a proven difference"


def _frame(results: dict[str, VariantResult]) -> pd.DataFrame:
    """The comparison table with deltas, their proven interval and a note."""
    frame = pd.DataFrame([_kpis(r) for r in results.values()])
    if "tco_usd" not in frame:
        return frame
    base = frame.loc[0, "tco_usd"]
    frame["delta_tco_usd"] = frame["tco_usd"] - base
    frame["delta_tco_pct"] = 100.0 * frame["delta_tco_usd"] / base if base else None
    lows, highs, within, notes = [], [], [], []
    for name, result in results.items():
        interval = None if name == "base" else delta_interval(results["base"], result)
        lows.append(None if interval is None else interval[0])
        highs.append(None if interval is None else interval[1])
        unproven = name != "base" and _overlaps(results["base"], result)
        within.append(None if interval is None else bool(unproven))
        notes.append(WITHIN_GAP_NOTE if unproven and frame.loc[len(notes), "delta_tco_usd"] else "")
    frame["delta_tco_low_usd"] = lows
    frame["delta_tco_high_usd"] = highs
    frame["delta_within_gap"] = within
    frame["delta_note"] = notes
    return frame


def _reset(solver: PlanSolver, baseline: Baseline) -> None:
    """Every in-place parameter back to the base scenario's value."""
    for p, cap in baseline.power_cap_mw.items():
        solver.set_power_cap_mw(p, cap)
    for p, budget in baseline.capex_budget_usd.items():
        solver.set_capex_budget_usd(p, budget)
    for (c, phase, p), demand in baseline.demand.items():
        solver.set_demand(c, phase, p, demand)
    for r, price in baseline.capex_usd.items():
        solver.set_capex_usd(r, price)
    for p, price in baseline.electricity.items():
        solver.set_electricity_usd_per_kwh(p, price)
