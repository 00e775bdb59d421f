"""Two-stage stochastic plans: purchases that survive an uncertain forecast.

The extensive form has one copy of the deterministic model (``model.py``, built by the same
``define_*`` functions) per future s, as a Pyomo block, and links them:

- first stage (here and now): ``lots[r,t]`` for the periods t < K (the commit horizon, the
  order lead time in periods) equal one shared ``commit_lots[r,t]`` in every future;
- second stage (recourse): later purchases and every allocation, per future.

Cost of future s, in USD: C_s = TCO_s + π_u · U_s, with U_s the output tokens left unserved
(millions) and π_u the penalty per million unserved tokens. The objective, in millions of USD:

    min  Σ_s p_s·C_s + w·CVaR_α(C),   CVaR_α(C) = min_η η + 1/(1−α)·Σ_s p_s·(C_s − η)⁺

(Rockafellar–Uryasev: η free and e_s ≥ C_s − η, e_s ≥ 0 make it linear). Service: with
``service_share`` = 1 every future serves all its demand; below 1 a binary z_s lets future s
fall short (demand-row slack ≤ demand·z_s) and Σ_s p_s·z_s ≤ 1 − share, so at least that
share of futures (by probability) is served in full.

Unserved tokens: a demand row's slack σ is in millions of provisioned tokens/s (forecast /
max utilisation ρ); future s leaves U[c,t] ≥ hours_t·3600·ρ_c·σ_decode output tokens unserved,
and ≥ hours_t·3600·ρ_c·σ_prefill·(decode/prefill demand) (requests whose prompts find no
prefill capacity), written in 10¹² tokens so the coefficients stay near 1.

Measures (each at the solver's gap): RP, the stochastic objective; EV, the plan for the
probability-weighted mean future; EEV, RP's objective with the first stage fixed to EV's;
WS, the wait-and-see value Σ p_s·H_s + w·CVaR_α(H) with H_s the hindsight (perfect
information) cost of future s. VSS = EEV − RP ≥ 0 and EVPI = RP − WS ≥ 0; regret_s = C_s − H_s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
import pyomo.core as pyo
from pyomo.contrib.solver.common.results import TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from rackplan.catalogs.errors import InputError, Problem
from rackplan.models.scenario import Objective
from rackplan.planner.core.data import PlanData
from rackplan.planner.core.futures import FutureDraw, mean_draw
from rackplan.planner.core.model import (
    CONSTRAINT_FAMILIES,
    MONEY_UNIT,
    RATE_UNIT,
    SECONDS_PER_HOUR,
    define_demand_cover,
    define_expressions,
    define_fleet_size_floor,
    define_parameters,
    define_sets,
    define_variables,
)
from rackplan.planner.core.solve import INFEASIBLE

TOKEN_UNIT = 1e12
"""Unserved tokens are modelled in 10¹² tokens: with the penalty in USD per million tokens,
penalty × U is then in millions of USD (the objective's unit)."""


@dataclass(frozen=True)
class StochasticOptions:
    """How a robust plan is made (module docstring for the math)."""

    commit_periods: int = 1
    """K: purchases in the first K periods are ordered now, the same in every future."""
    cvar_weight: float = 0.0
    """w ≥ 0: weight of CVaR_α of the cost in the objective (0: expected cost only)."""
    cvar_alpha: float = 0.9
    """α: CVaR averages the costliest 1 − α of futures (by probability)."""
    service_share: float = 1.0
    """Share of futures (by probability) that must serve all demand; 1: every future."""
    penalty_usd_per_million_tokens: float | None = None
    """π_u, USD per million unserved output tokens (needed when service_share < 1)."""
    time_limit_s: float = 120.0
    """Per solve (RP, EV, EEV and each hindsight solve), seconds."""
    rel_gap: float = 0.005

    def checked(self, periods: int) -> StochasticOptions:
        problems = []
        if not 0 <= self.commit_periods <= periods:
            problems.append(("commit_periods", f"between 0 and {periods} periods"))
        if self.cvar_weight < 0:
            problems.append(("cvar_weight", "not negative"))
        if not 0 <= self.cvar_alpha < 1:
            problems.append(("cvar_alpha", "in [0, 1)"))
        if not 0 <= self.service_share <= 1:
            problems.append(("service_share", "in [0, 1]"))
        if self.service_share < 1 and self.penalty_usd_per_million_tokens is None:
            problems.append(("penalty_usd_per_million_tokens", "given when service_share < 1"))
        if problems:
            raise InputError(
                [Problem("robust options", None, k, f"must be {m}") for k, m in problems]
            )
        return self

    @property
    def shortfall(self) -> bool:
        return self.service_share < 1


# ---------------------------------------------------------------------------- one future
def future_data(data: PlanData, draw: FutureDraw) -> PlanData:
    """``data`` with the draw's demand and rate multipliers applied (prices are parameters,
    set on the block by ``set_prices``)."""
    columns = [
        c
        if draw.rate_factor(j) == 1.0
        else replace(
            c,
            decode_rate=c.decode_rate * draw.rate_factor(j),
            prefill_rate=c.prefill_rate * draw.rate_factor(j),
        )
        for j, c in enumerate(data.columns)
    ]

    def scaled(table: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        return {k: v * draw.demand_factor(*k) for k, v in table.items()}

    return replace(
        data,
        columns=columns,
        demand_decode=scaled(data.demand_decode),
        demand_prefill=scaled(data.demand_prefill),
        forecast_output=scaled(data.forecast_output),
    )


def set_prices(b: pyo.Block, data: PlanData, draw: FutureDraw) -> None:
    """capex_usd[r] × capex factor, electricity_usd_per_kwh[t] × electricity factor."""
    for r, info in data.racks.items():
        b.capex_usd[r] = info.capex_usd * draw.capex_factor(r)
    for period in data.scenario.periods:
        b.electricity_usd_per_kwh[period.name] = (
            period.electricity_usd_per_kwh * draw.electricity_factor(period.name)
        )


def build_future_block(b: pyo.Block, data: PlanData, shortfall: bool) -> None:
    """The deterministic model of one future on block ``b`` (no objective).

    With ``shortfall`` the demand rows get the elastic slack of ``model.py`` (only that family)
    and the fleet-size floor, valid only when all demand is served, is left out; the unserved
    output tokens U[c,t] (10¹² tokens) bound both phases' slack (module docstring).
    """
    b.elastic = False
    define_sets(b, data)
    define_parameters(b, data)
    define_variables(b, data)
    define_expressions(b, data)
    for family in CONSTRAINT_FAMILIES:
        if shortfall and family is define_fleet_size_floor:
            continue
        if shortfall and family is define_demand_cover:
            b.elastic = True  # slack on the demand rows only
            family(b, data)
            b.elastic = False
            continue
        family(b, data)
    b.unserved = pyo.Var(b.C, b.T, domain=pyo.NonNegativeReals)
    if shortfall:
        _define_unserved(b, data)
    else:
        for v in b.unserved.values():
            v.fix(0.0)


def _define_unserved(b: pyo.Block, data: PlanData) -> None:
    """U[c,t] ≥ H_t·3600·ρ_c·σ[c,decode,t]·RATE_UNIT / TOKEN_UNIT, and the same for prefill
    slack × decode/prefill demand (output tokens of requests left without prefill)."""
    hours = {p.name: p.hours for p in data.scenario.periods}
    rho = {c.name: c.max_utilisation for c in data.scenario.classes}
    rows = list(b.slack_demand_cover.keys())

    def rule(_b, c, ph, p):
        factor = hours[p] * SECONDS_PER_HOUR * rho[c] * RATE_UNIT / TOKEN_UNIT
        if ph == "prefill":
            prefill = data.demand_prefill[(c, p)]
            factor *= data.demand_decode[(c, p)] / prefill if prefill > 0 else 0.0
        return b.unserved[c, p] >= factor * b.slack_demand_cover[c, ph, p]

    b.unserved_bound = pyo.Constraint(rows, rule=rule)


# ---------------------------------------------------------------------------- extensive form
def commit_keys(data: PlanData, periods: int) -> list[tuple[str, str]]:
    """(rack, period) purchase decisions inside the commit horizon (period index < K)."""
    first = set(data.periods[:periods])
    return [
        (r, p)
        for r in data.racks
        for t, p in enumerate(data.periods)
        if p in first and data.available(r, t)
    ]


def build_extensive_form(
    data: PlanData,
    draws: Sequence[FutureDraw],
    options: StochasticOptions,
    link: bool = True,
    fixed_commit: dict[tuple[str, str], float] | None = None,
) -> pyo.ConcreteModel:
    """The extensive form (module docstring). ``link=False`` drops the non-anticipativity
    rows (each future plans with hindsight); ``fixed_commit`` fixes the first-stage lots."""
    m = pyo.ConcreteModel(name=f"{data.scenario.name}-robust")
    m.S = pyo.RangeSet(0, len(draws) - 1)
    m.p = {s: draws[s].probability for s in m.S}
    shortfall = options.shortfall

    def future(b, s):
        local = future_data(data, draws[s])
        build_future_block(b, local, shortfall)
        set_prices(b, data, draws[s])

    m.future = pyo.Block(m.S, rule=future)
    keys = commit_keys(data, options.commit_periods)
    m.K = pyo.Set(dimen=2, initialize=keys, ordered=True)
    m.commit_lots = pyo.Var(m.K, domain=pyo.NonNegativeIntegers)
    if link:
        m.nonanticipativity = pyo.Constraint(
            m.S, m.K, rule=lambda _m, s, r, p: m.future[s].lots[r, p] == m.commit_lots[r, p]
        )
    if fixed_commit is not None:
        for key in keys:
            m.commit_lots[key].fix(round(fixed_commit.get(key, 0.0)))
    penalty = options.penalty_usd_per_million_tokens or 0.0
    m.cost = pyo.Expression(
        m.S,
        rule=lambda _m, s: (
            m.future[s].tco_usd / MONEY_UNIT + penalty * sum(m.future[s].unserved.values())
        ),
    )
    if shortfall:
        _define_service_share(m, options)
    m.eta = pyo.Var(domain=pyo.Reals)
    m.excess = pyo.Var(m.S, domain=pyo.NonNegativeReals)
    m.excess_bound = pyo.Constraint(m.S, rule=lambda _m, s: m.excess[s] >= m.cost[s] - m.eta)
    m.cvar = pyo.Expression(
        expr=m.eta + sum(m.p[s] * m.excess[s] for s in m.S) / (1 - options.cvar_alpha)
    )
    m.expected_cost = pyo.Expression(expr=sum(m.p[s] * m.cost[s] for s in m.S))
    if options.cvar_weight == 0:
        m.eta.fix(0.0)
        for v in m.excess.values():
            v.fix(0.0)
        m.excess_bound.deactivate()
    m.objective = pyo.Objective(
        expr=m.expected_cost + options.cvar_weight * m.cvar, sense=pyo.minimize
    )
    return m


def _define_service_share(m: pyo.ConcreteModel, options: StochasticOptions) -> None:
    """z_s ∈ {0,1}; σ[c,φ,t] ≤ demand[c,φ,t]·z_s; Σ_s p_s·z_s ≤ 1 − share."""
    m.short = pyo.Var(m.S, domain=pyo.Binary)
    rows = [(s, *k) for s in m.S for k in m.future[s].slack_demand_cover]
    m.short_link = pyo.Constraint(
        rows,
        rule=lambda _m, s, c, ph, p: (
            m.future[s].slack_demand_cover[c, ph, p]
            <= m.future[s].demand[c, ph, p] / RATE_UNIT * m.short[s]
        ),
    )
    m.service_share = pyo.Constraint(
        expr=sum(m.p[s] * m.short[s] for s in m.S) <= 1 - options.service_share + 1e-9
    )


# ---------------------------------------------------------------------------- solving
@dataclass(frozen=True)
class ExtensiveSolution:
    """One solved extensive form, in user units (USD, tokens)."""

    status: str
    objective_usd: float | None
    best_bound_usd: float | None
    gap: float | None
    solve_s: float
    build_s: float
    costs_usd: tuple[float, ...] = ()
    tco_usd: tuple[float, ...] = ()
    unserved_tokens: tuple[float, ...] = ()
    unserved_by_class: tuple[dict[str, float], ...] = ()
    commit: dict[tuple[str, str], float] = field(default_factory=dict)
    purchases: tuple[dict[tuple[str, str], float], ...] = ()
    fleet: tuple[dict[tuple[str, str], float], ...] = ()
    variables: int = 0
    integer_variables: int = 0

    @property
    def feasible(self) -> bool:
        return self.objective_usd is not None


def solve_extensive(
    data: PlanData,
    draws: Sequence[FutureDraw],
    options: StochasticOptions,
    link: bool = True,
    fixed_commit: dict[tuple[str, str], float] | None = None,
) -> ExtensiveSolution:
    """Build and solve the extensive form with HiGHS; read every future's cost, unserved
    tokens, purchases and fleet."""
    start = time.perf_counter()
    m = build_extensive_form(data, draws, options, link, fixed_commit)
    build_s = time.perf_counter() - start
    solver = Highs()
    start = time.perf_counter()
    results = solver.solve(
        m,
        time_limit=options.time_limit_s,
        threads=1,
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
        solver_options={"mip_rel_gap": options.rel_gap},
    )
    solve_s = time.perf_counter() - start
    incumbent = results.incumbent_objective
    bound = results.objective_bound
    variables = sum(1 for v in m.component_data_objects(pyo.Var) if not v.fixed)
    integers = sum(1 for v in m.component_data_objects(pyo.Var) if not v.fixed and v.is_integer())
    if incumbent is None or not math.isfinite(incumbent):
        condition = results.termination_condition
        status = "infeasible" if condition in INFEASIBLE else "no_solution"
        return ExtensiveSolution(status, None, None, None, solve_s, build_s, variables=variables)
    results.solution_loader.load_vars()
    gap = None
    if bound is not None and math.isfinite(bound):
        gap = abs(incumbent - bound) / max(abs(incumbent), 1e-9)
    optimal = results.termination_condition is TerminationCondition.convergenceCriteriaSatisfied
    return _read_solution(
        m,
        data,
        options,
        status="optimal" if optimal and (gap or 0) <= 1e-4 else "feasible",
        objective=incumbent * MONEY_UNIT,
        bound=None if bound is None or not math.isfinite(bound) else bound * MONEY_UNIT,
        gap=gap,
        times=(solve_s, build_s),
        size=(variables, integers),
    )


def _read_solution(m, data, options, status, objective, bound, gap, times, size):
    penalty = options.penalty_usd_per_million_tokens or 0.0
    costs, tcos, unserved, by_class, purchases, fleets = [], [], [], [], [], []
    for s in m.S:
        b = m.future[s]
        tco = pyo.value(b.tco_usd)
        tokens = {c: sum(pyo.value(b.unserved[c, p]) for p in b.T) * TOKEN_UNIT for c in b.C}
        total = sum(tokens.values())
        tcos.append(tco)
        unserved.append(total)
        by_class.append(tokens)
        costs.append(tco + penalty * total / 1e6)
        purchases.append(
            {
                (r, p): round(pyo.value(b.bought[r, p]))
                for r in b.R
                for p in b.T
                if pyo.value(b.bought[r, p]) > 0.5
            }
        )
        fleets.append({(r, p): round(pyo.value(b.installed[r, p])) for r in b.R for p in b.T})
    commit = {k: round(pyo.value(m.future[0].lots[k])) for k in m.K} if len(m.S) else {}
    return ExtensiveSolution(
        status=status,
        objective_usd=objective,
        best_bound_usd=bound,
        gap=gap,
        solve_s=times[0],
        build_s=times[1],
        costs_usd=tuple(costs),
        tco_usd=tuple(tcos),
        unserved_tokens=tuple(unserved),
        unserved_by_class=tuple(by_class),
        commit=commit,
        purchases=tuple(purchases),
        fleet=tuple(fleets),
        variables=size[0],
        integer_variables=size[1],
    )


def cvar(values: Sequence[float], probabilities: Sequence[float], alpha: float) -> float:
    """CVaR_α of a discrete distribution: min_η η + Σ p·(v − η)⁺ / (1 − α), attained at a value
    of the distribution (the α-quantile), so the minimum over the values is exact."""
    return min(
        eta
        + sum(p * max(v - eta, 0.0) for v, p in zip(values, probabilities, strict=True))
        / (1 - alpha)
        for eta in values
    )


Runner = Callable[[Callable, list], list]
"""Maps a function over a list of arguments (in order): sequential, or Dask (distributed.py)."""


def sequential(function: Callable, items: list) -> list:
    return [function(item) for item in items]


def hindsight_task(item: tuple[PlanData, FutureDraw, StochasticOptions]) -> float | None:
    """H_s: the best cost (USD) of one future known in advance (the future alone, probability 1;
    shortfall at the penalty allowed when the service share is below 1)."""
    data, draw, options = item
    alone = replace(options, cvar_weight=0.0, service_share=0.0 if options.shortfall else 1.0)
    solution = solve_extensive(data, [replace(draw, probability=1.0)], alone, link=False)
    return solution.objective_usd


# ---------------------------------------------------------------------------- the robust plan
@dataclass(frozen=True)
class RobustPlan:
    """A two-stage stochastic plan and its measures (module docstring)."""

    scenario: str
    options: StochasticOptions
    futures: tuple[FutureDraw, ...]
    rp: ExtensiveSolution
    ev: ExtensiveSolution
    eev: ExtensiveSolution
    hindsight_usd: tuple[float | None, ...]
    ws_usd: float | None
    lot_sizes: dict[str, int] = field(default_factory=dict)
    """Racks per lot of each rack type (commit decisions are in lots)."""

    @property
    def vss_usd(self) -> float | None:
        """EEV − RP; None when the mean-value plan cannot serve every future (VSS unbounded)."""
        if self.rp.objective_usd is None or self.eev.objective_usd is None:
            return None
        return self.eev.objective_usd - self.rp.objective_usd

    @property
    def evpi_usd(self) -> float | None:
        """RP − WS."""
        if self.rp.objective_usd is None or self.ws_usd is None:
            return None
        return self.rp.objective_usd - self.ws_usd

    def future_table(self) -> pd.DataFrame:
        """Per future: probability, TCO, unserved tokens, cost with the penalty, hindsight cost
        and regret (USD, output tokens)."""
        rows = []
        for s, draw in enumerate(self.futures):
            cost = self.rp.costs_usd[s] if self.rp.feasible else None
            best = self.hindsight_usd[s] if s < len(self.hindsight_usd) else None
            rows.append(
                {
                    "future": draw.name,
                    "probability": draw.probability,
                    "tco_usd": self.rp.tco_usd[s] if self.rp.feasible else None,
                    "unserved_tokens": self.rp.unserved_tokens[s] if self.rp.feasible else None,
                    "shortfall": bool(self.rp.unserved_tokens[s] > 1.0)
                    if self.rp.feasible
                    else None,
                    "cost_usd": cost,
                    "hindsight_cost_usd": best,
                    "regret_usd": None if cost is None or best is None else cost - best,
                    "ev_plan_cost_usd": self.eev.costs_usd[s] if self.eev.feasible else None,
                }
            )
        return pd.DataFrame(rows)

    def commit_table(self) -> pd.DataFrame:
        """What to order now: racks per (rack, period) inside the commit horizon."""
        rows = [
            {
                "rack": r,
                "period": p,
                "racks_bought": lots * _lot(self, r),
                "mean_forecast_plan_racks": self.ev.commit.get((r, p), 0) * _lot(self, r),
            }
            for (r, p), lots in self.rp.commit.items()
            if lots > 0 or self.ev.commit.get((r, p), 0) > 0
        ]
        return pd.DataFrame(
            rows, columns=["rack", "period", "racks_bought", "mean_forecast_plan_racks"]
        )

    def purchase_table(self) -> pd.DataFrame:
        """Every future's purchases (the commit horizon's are the same in all)."""
        rows = [
            {"future": self.futures[s].name, "rack": r, "period": p, "racks_bought": n}
            for s, bought in enumerate(self.rp.purchases)
            for (r, p), n in bought.items()
        ]
        return pd.DataFrame(rows, columns=["future", "rack", "period", "racks_bought"])

    def unserved_table(self) -> pd.DataFrame:
        rows = [
            {"future": self.futures[s].name, "class": c, "unserved_tokens": v}
            for s, by_class in enumerate(self.rp.unserved_by_class)
            for c, v in by_class.items()
        ]
        return pd.DataFrame(rows, columns=["future", "class", "unserved_tokens"])

    def summary(self) -> dict[str, object]:
        o = self.options
        return {
            "scenario": self.scenario,
            "status": self.rp.status,
            "futures": len(self.futures),
            "commit_periods": o.commit_periods,
            "cvar_weight": o.cvar_weight,
            "cvar_alpha": o.cvar_alpha,
            "service_share": o.service_share,
            "penalty_usd_per_million_tokens": o.penalty_usd_per_million_tokens,
            "objective_usd": self.rp.objective_usd,
            "best_bound_usd": self.rp.best_bound_usd,
            "gap": self.rp.gap,
            "expected_cost_usd": _expected(self.rp.costs_usd, self.futures),
            "cvar_usd": cvar(self.rp.costs_usd, [d.probability for d in self.futures], o.cvar_alpha)
            if self.rp.feasible
            else None,
            "ev_objective_usd": self.ev.objective_usd,
            "eev_usd": self.eev.objective_usd,
            "ws_usd": self.ws_usd,
            "vss_usd": self.vss_usd,
            "evpi_usd": self.evpi_usd,
            "build_s": self.rp.build_s,
            "solve_s": self.rp.solve_s,
            "variables": self.rp.variables,
            "integer_variables": self.rp.integer_variables,
        }

    def as_json(self) -> dict:
        from rackplan.planner.core.plan import json_records

        return {
            **self.summary(),
            "commit_purchases": json_records(self.commit_table()),
            "per_future": json_records(self.future_table()),
            "purchases": json_records(self.purchase_table()),
            "unserved": json_records(self.unserved_table()),
        }

    def frames(self) -> dict[str, pd.DataFrame]:
        """Export tables (CSV files or XLSX sheets)."""
        summary = pd.DataFrame([{"key": k, "value": v} for k, v in self.summary().items()])
        return {
            "summary": summary,
            "commit_purchases": self.commit_table(),
            "futures": self.future_table(),
            "purchases": self.purchase_table(),
            "unserved": self.unserved_table(),
        }


def _lot(plan: RobustPlan, rack: str) -> int:
    return plan.lot_sizes.get(rack, 1)


def _expected(costs: Sequence[float], draws: Sequence[FutureDraw]) -> float | None:
    if not costs:
        return None
    return sum(c * d.probability for c, d in zip(costs, draws, strict=True))


def robust_plan(
    data: PlanData,
    draws: Sequence[FutureDraw],
    options: StochasticOptions | None = None,
    runner: Runner = sequential,
    progress: Callable[[str], None] | None = None,
) -> RobustPlan:
    """RP, EV, EEV and the hindsight solves (mapped with ``runner``: tasks carry the data and
    one draw, never a live model), and the measures built from them."""
    options = (options or StochasticOptions()).checked(len(data.periods))
    if data.scenario.policy.objective is not Objective.min_tco:
        raise InputError(
            [Problem("robust", None, "objective", "robust plans minimise TCO: use min_tco")]
        )
    draws = list(draws)

    def step(name: str) -> None:
        if progress:
            progress(name)

    rp = solve_extensive(data, draws, options)
    step("stochastic plan")
    ev = solve_extensive(data, [mean_draw(draws)], options)
    step("mean-forecast plan")
    eev = (
        solve_extensive(data, draws, options, fixed_commit=ev.commit)
        if ev.feasible
        else ExtensiveSolution("not solved", None, None, None, 0.0, 0.0)
    )
    step("mean-forecast plan in every future")
    hindsight = runner(hindsight_task, [(data, d, options) for d in draws])
    step("hindsight plans")
    ws = None
    if all(h is not None for h in hindsight):
        probabilities = [d.probability for d in draws]
        ws = sum(p * h for p, h in zip(probabilities, hindsight, strict=True))
        if options.cvar_weight:
            ws += options.cvar_weight * cvar(hindsight, probabilities, options.cvar_alpha)
    lots = {r: info.option.lot_size for r, info in data.racks.items()}
    return RobustPlan(
        data.scenario.name, options, tuple(draws), rp, ev, eev, tuple(hindsight), ws, lots
    )
