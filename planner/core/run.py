"""One call from a scenario to a checked, explained plan.

prepare → (pre-solve diagnostics) → build + solve → extract → verify → shadow prices →
baselines → explanation; an infeasible MIP gets an elastic re-solve that names the
smallest relaxations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Objective, Scenario
from rackplan.planner.core.baselines import baselines as compute_baselines
from rackplan.planner.core.data import PlanData, prepare
from rackplan.planner.core.diagnose import Relaxation, explain_infeasible
from rackplan.planner.core.plan import Plan, extract_plan
from rackplan.planner.core.shadow import shadow_prices
from rackplan.planner.core.solve import (
    PlanSolver,
    SolveOptions,
    SolveOutcome,
    TimeBudget,
    status_text,
)
from rackplan.planner.core.verify import Violation, verify_plan


@dataclass(frozen=True)
class PlanResult:
    """A plan (when one exists), the checker's verdict, and the explanation."""

    status: str
    plan: Plan | None
    violations: tuple[Violation, ...]
    relaxations: tuple[Relaxation, ...]
    explanation: tuple[str, ...]
    data: PlanData
    solver: PlanSolver | None = None
    cut_short: tuple[str, ...] = ()
    """Steps the plan's time budget stopped early or skipped (see ``TimeBudget``)."""

    @property
    def feasible(self) -> bool:
        return self.plan is not None

    @property
    def status_text(self) -> str:
        """ "optimal", "within 0.31 % of optimal", … (see ``solve.status_text``)."""
        return status_text(self.status, self.plan.outcome.gap if self.plan else None)

    def _repr_html_(self) -> str:
        """Jupyter's view: the status, what to buy when, the summary and the cost per token."""
        from html import escape

        parts = [
            f"<h4>{escape(self.data.scenario.name)}: {escape(self.status_text)}</h4>",
        ]
        if self.plan is None:
            items = "".join(f"<li>{escape(line)}</li>" for line in self.explanation)
            return "".join([*parts, f"<ul>{items}</ul>"])
        purchases = self.plan.purchases
        if not purchases.empty:
            schedule = purchases.pivot_table(
                index="rack", columns="period", values="racks_bought", aggfunc="sum", sort=False
            ).fillna(0)
            parts.append("<p><b>Racks to buy</b> (rack × period)</p>")
            parts.append(schedule.to_html(float_format=lambda x: f"{x:,.0f}"))
        items = "".join(f"<li>{escape(line)}</li>" for line in self.explanation[:12])
        parts.append(f"<ul>{items}</ul>")
        if not self.plan.cost_per_million_tokens.empty:
            parts.append("<p><b>Cost per million tokens</b></p>")
            parts.append(
                self.plan.cost_per_million_tokens.to_html(
                    index=False, float_format="{:,.3f}".format
                )
            )
        return "".join(parts)

    def as_json(self) -> dict:
        if self.plan is not None:
            body = self.plan.as_json()
        else:
            body = {
                "scenario": self.data.scenario.name,
                "status": self.status,
                "objective_usd": None,
                "best_bound_usd": None,
                "gap": None,
                **{
                    k: []
                    for k in (
                        "purchases",
                        "fleet",
                        "allocation",
                        "power",
                        "costs",
                        "shadow_prices",
                        "baselines",
                    )
                },
            }
        body["status"] = self.status
        body["status_text"] = self.status_text
        body["cut_short"] = list(self.cut_short)
        body["explanation"] = list(self.explanation)
        body["relaxations"] = [
            {
                "family": r.family,
                "index": list(r.index),
                "amount": r.amount,
                "message": r.message,
                "alone": r.alone,
            }
            for r in self.relaxations
        ]
        body["verification"] = [str(v) for v in self.violations]
        return body


def plan_scenario(
    scenario: Scenario,
    catalog: Catalog,
    options: SolveOptions | None = None,
    with_shadow_prices: bool = True,
    with_baselines: bool = True,
) -> PlanResult:
    """Plan a scenario within one time budget (``options.time_limit_s`` for the whole plan:
    preparation, main solve, shadow prices, baselines, explanation); each step gets what is left
    and the plan lists the steps the budget cut short."""
    options = options or SolveOptions()
    budget = TimeBudget(options.time_limit_s)
    data = prepare(scenario, catalog)
    fatal = data.fatal()
    if fatal:
        return PlanResult("infeasible", None, (), (), tuple(d.message for d in fatal), data)
    solver = PlanSolver(data, options, budget=budget)
    outcome = solver.solve()
    if not outcome.has_solution:
        return _infeasible(data, solver, outcome, options)
    plan = extract_plan(data, solver, outcome)
    violations = tuple(verify_plan(plan, scenario, catalog))
    extras: dict[str, object] = {}
    if with_shadow_prices and scenario.policy.objective is Objective.min_tco:
        extras["shadow_prices"] = shadow_prices(data, solver, outcome.objective)
    if with_baselines and scenario.policy.objective is Objective.min_tco:
        extras["baselines"] = compute_baselines(data, solver, outcome.objective)
    plan = plan.with_extras(**extras, cut_short=tuple(budget.cut_short))
    explanation = tuple(summarise(plan, data))
    plan = plan.with_extras(explanation=explanation)
    return PlanResult(
        outcome.status, plan, violations, (), explanation, data, solver, tuple(budget.cut_short)
    )


def _infeasible(
    data: PlanData, solver: PlanSolver, outcome: SolveOutcome, options: SolveOptions
) -> PlanResult:
    budget = solver.budget
    cut = tuple(budget.cut_short) if budget else ()
    if outcome.status in {"no_solution", "error"}:
        message = (
            f"no feasible plan found within the time limit ({outcome.termination}); "
            "raise --time-limit or simplify the scenario"
        )
        return PlanResult(outcome.status, None, (), (), (message,), data, solver, cut)
    if budget is not None and budget.skip_if_spent("explanation: elastic re-solve"):
        message = "the scenario is infeasible; no time was left to find the smallest relaxations"
        return PlanResult(
            "infeasible", None, (), (), (message,), data, solver, tuple(budget.cut_short)
        )
    remaining = replace(options, time_limit_s=budget.remaining()) if budget else options
    relaxations = tuple(explain_infeasible(data, remaining))
    lines = ["the scenario is infeasible; the smallest relaxations that restore feasibility:"]
    lines += [f"  - {r.message}" for r in relaxations if not r.alone]
    families = {r.family for r in relaxations if not r.alone}
    alone = [r for r in relaxations if r.alone]
    if alone and len(families) > 1:
        lines.append("or, changing one kind of limit only:")
        lines += [f"  - {r.message}" for r in alone]
    if not relaxations:
        lines = [
            "the scenario is infeasible and no relaxation of demand, power, budget, space or "
            "supply repairs it"
        ]
    return PlanResult("infeasible", None, (), relaxations, tuple(lines), data, solver, cut)


def summarise(plan: Plan, data: PlanData) -> list[str]:
    """What a planner reads in ten seconds."""
    lines = []
    o = plan.outcome
    gap = "" if o.gap is None else f", gap {o.gap:.3%}"
    if o.status == "time_limit":
        lines.append(f"TIME LIMIT reached: best plan found so far, not proven optimal{gap}")
    elif o.status == "feasible":
        lines.append(
            f"{o.status_text}: no plan can be cheaper by more than that (the gap asked for; "
            "--gap 1e-4 proves optimality)"
        )
    lines += [f"warning: {d.message}" for d in data.diagnostics if not d.fatal]
    lines += [f"warning: {w}" for w in plan.warnings]
    buys = plan.purchases.groupby("period", sort=False)
    for period, rows in buys:
        # counts are whole up to solver tolerance (plan._round_count): the nearest, never int()
        items = ", ".join(f"{round(r.racks_bought)} × {r.rack}" for r in rows.itertuples())
        lines.append(f"buy in {period}: {items}")
    if plan.purchases.empty:
        lines.append("no purchases needed: the existing fleet serves the forecast")
    lines.append(
        f"discounted TCO ${plan.tco_usd / 1e6:,.1f}M; nominal "
        f"${plan.costs['total_usd'].sum() / 1e6:,.1f}M{gap}"
    )
    headroom = plan.power.dropna(subset=["headroom_mw"])
    if len(headroom):
        tight = headroom.loc[headroom["headroom_mw"].idxmin()]
        lines.append(
            f"tightest power headroom: {tight['headroom_mw']:.2f} MW in {tight['period']} (cap "
            f"{tight['power_cap_mw']:g} MW)"
        )
    lines += _cost_per_token_lines(plan.cost_per_million_tokens)
    if len(plan.baselines):
        for row in plan.baselines.itertuples():
            if row.saving_pct is not None and abs(row.saving_pct) < 0.05:
                lines.append(f"same cost as {row.baseline}")
            elif row.saving_pct is not None and not pd.isna(row.saving_pct):
                lines.append(
                    f"saves {row.saving_pct:.1f}% (${row.saving_usd / 1e6:,.1f}M) over "
                    f"{row.baseline}"
                )
            elif "infeasible" in str(row.baseline) or "none feasible" in str(row.baseline):
                lines.append(f"baseline {row.baseline}")
            else:
                lines.append(f"baseline {row.baseline}: infeasible")
    return lines


def _cost_per_token_lines(table: pd.DataFrame) -> list[str]:
    """One line per class: $ per million output tokens and per million total (prompt +
    output) tokens, then the scope of the cost (what it covers and what it leaves out)."""
    lines = []
    for row in table.to_dict("records"):
        output = row.get("usd_per_million_output_tokens")
        if output is None or pd.isna(output):
            continue
        line = f"class {row['class']}: ${output:,.3f} per million output tokens"
        total = row.get("usd_per_million_total_tokens")
        if total is not None and not pd.isna(total):
            line += f"; ${total:,.3f} per million tokens in and out"
        lines.append(line)
    if lines and "cost_scope" in table:
        lines.append(
            f"cost per token: {table['cost_scope'].iloc[0]}; tokens in and out = prompt + output"
        )
    return lines
