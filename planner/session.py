"""What-if sessions: a base scenario and named variants, solved on one persistent model
where possible, compared side by side with deltas against the base."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyomo.environ as pyo

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.data import prepare
from rackplan.planner.plan import extract_plan
from rackplan.planner.solve import PlanSolver, SolveOptions
from rackplan.planner.whatif import IN_PLACE, REBUILD, Baseline, apply_change, rebuilt_scenario


@dataclass(frozen=True)
class Variant:
    name: str
    changes: tuple[tuple[str, float], ...]

    @property
    def in_place(self) -> bool:
        return all(key.partition(":")[0] in IN_PLACE for key, _ in self.changes)


def _number(text: str, where: str, key: str) -> float:
    try:
        return float(text.strip().replace("_", ""))
    except ValueError as exc:
        raise InputError([Problem(where, None, key, "value must be a number", text)]) from exc


def _check_key(key: str, where: str) -> None:
    if key.partition(":")[0] not in IN_PLACE + REBUILD:
        raise InputError(
            [
                Problem(
                    where,
                    None,
                    key,
                    f"unknown what-if key; use one of {', '.join(IN_PLACE + REBUILD)}",
                )
            ]
        )


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
            changes.append((key.strip(), _number(value, "--variant", key.strip())))
        variants.append(Variant(name.strip(), tuple(changes)))
    return variants


def read_variants_csv(path: Path) -> list[Variant]:
    """Rows ``variant,key,value``; rows of one variant are grouped in file order."""
    grouped: dict[str, list[tuple[str, float]]] = {}
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
                value = _number(row["value"] or "", str(path), "value")
            except InputError as exc:
                problems += [
                    Problem(str(path), number, p.column, p.message, p.value) for p in exc.problems
                ]
                continue
            grouped.setdefault(row["variant"].strip(), []).append((key, value))
    if problems:
        raise InputError(problems)
    return [Variant(name, tuple(changes)) for name, changes in grouped.items()]


def _kpis(name: str, changes: str, solver: PlanSolver, outcome) -> dict:
    row: dict[str, object] = {"variant": name, "changes": changes, "status": outcome.status}
    if not outcome.has_solution:
        return row
    plan = extract_plan(solver.data, solver, outcome)
    row["tco_usd"] = pyo.value(solver.model.tco_usd)
    row["capex_usd"] = float(plan.costs["capex_usd"].sum())
    row["peak_site_power_mw"] = float(plan.power["site_power_mw"].max())
    headroom = plan.power["headroom_mw"].dropna()
    row["min_power_headroom_mw"] = float(headroom.min()) if len(headroom) else None
    for rack, bought in plan.purchases.groupby("rack")["racks_bought"].sum().items():
        row[f"racks_bought:{rack}"] = float(bought)
    for r in plan.cost_per_million_tokens.itertuples():
        row[f"usd_per_m_tokens:{r._1}"] = r.usd_per_million_output_tokens
    worst = plan.service.groupby(["class", "phase"])["worst_latency_ms"].max()
    for (cls, phase), value in worst.items():
        row[f"{'tpot' if phase == 'decode' else 'ttft'}_ms:{cls}"] = value
    row["gap"] = outcome.gap
    return row


def compare_variants(
    scenario: Scenario,
    catalog: Catalog,
    variants: list[Variant],
    options: SolveOptions | None = None,
    progress: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Base + each variant: KPIs, and deltas of TCO against the base."""
    data = prepare(scenario, catalog)
    solver = PlanSolver(data, options)
    baseline = Baseline.of(solver)
    rows = [_kpis("base", "", solver, solver.solve())]
    if progress:
        progress()
    for variant in variants:
        text = ", ".join(f"{k}={v:g}" for k, v in variant.changes)
        if variant.in_place:
            _reset(solver, baseline)
            for key, value in variant.changes:
                apply_change(solver, baseline, key, value)
            rows.append(_kpis(variant.name, text, solver, solver.solve()))
            _reset(solver, baseline)
        else:
            changed = scenario
            for key, value in variant.changes:
                if key.partition(":")[0] in REBUILD:
                    changed = rebuilt_scenario(changed, key, value)
            local = PlanSolver(prepare(changed, catalog), options)
            local_baseline = Baseline.of(local)
            for key, value in variant.changes:
                if key.partition(":")[0] in IN_PLACE:
                    apply_change(local, local_baseline, key, value)
            rows.append(_kpis(variant.name, text, local, local.solve()))
        if progress:
            progress()
    frame = pd.DataFrame(rows)
    if "tco_usd" in frame:
        base = frame.loc[0, "tco_usd"]
        frame["delta_tco_usd"] = frame["tco_usd"] - base
        frame["delta_tco_pct"] = 100.0 * frame["delta_tco_usd"] / base if base else None
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
