"""The capacity-planning MIP (Pyomo), built in a fixed order:
sets → parameters → variables → expressions → constraints → objective.

Each constraint family is one function ``define_<family>``, registered in
``CONSTRAINT_FAMILIES``; its docstring states the inequality and units. Indices use
rack ids, class names and period names, so LP files, duals and infeasibility reports read
``power_cap[2027Q3]``. With ``elastic=True`` the relaxable families get non-negative slack
variables and the objective becomes the weighted sum of relative slacks (``diagnose.py``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import pyomo.core as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from rackplan.models.scenario import HOURS_PER_YEAR, Objective
from rackplan.planner.core.data import PlanData
from rackplan.planner.core.numeric import safe_ceil, safe_floor

PHASES = ("prefill", "decode")
RATE_UNIT = 1e6
"""Demand rows are written in millions of tokens/s, so HiGHS sees coefficients near 1."""
MONEY_UNIT = 1e6
"""Money rows and the TCO objective are written in millions of USD (same reason)."""
ENERGY_UNIT = 1e6
"""The min_power objective is written in GWh."""
SLACK_UNITS = {"demand_cover": RATE_UNIT, "capex_budget": MONEY_UNIT, "total_budget": MONEY_UNIT}
"""Elastic slack variables live in the scaled units of their rows; × this gives user units."""
POWER_TIEBREAK_USD = 1e-7
"""min_power: kWh per USD of TCO in the tie-break (a plan's TCO in USD is of the order of its
kWh, so this is ≈ 1e-7 of the objective)."""


def _linear(coefs: list[float], variables: list) -> LinearExpression | float:
    if not variables:
        return 0.0
    return LinearExpression(constant=0.0, linear_coefs=list(coefs), linear_vars=list(variables))


# ---------------------------------------------------------------------------- sets
def define_sets(m: pyo.ConcreteModel, data: PlanData) -> None:
    """R racks, C classes, T periods (ordered), J columns; JT the (column, period) pairs where
    the column's rack can exist; BUY the (rack, period) pairs where it can be bought."""
    m.R = pyo.Set(initialize=list(data.racks), ordered=True)
    m.C = pyo.Set(initialize=data.classes, ordered=True)
    m.T = pyo.Set(initialize=data.periods, ordered=True)
    m.PH = pyo.Set(initialize=PHASES, ordered=True)
    m.J = pyo.Set(initialize=range(len(data.columns)), ordered=True)
    exists = {
        r: [_rack_can_exist(data, r, t) for t in range(len(data.periods))] for r in data.racks
    }
    m.JT = pyo.Set(
        dimen=2,
        ordered=True,
        initialize=[
            (j, p)
            for j, col in enumerate(data.columns)
            for t, p in enumerate(data.periods)
            if exists[col.rack][t]
        ],
    )
    m.JT_INT = pyo.Set(
        dimen=2, ordered=True, initialize=[(j, p) for j, p in m.JT if data.columns[j].integer]
    )
    m.BUY = pyo.Set(
        dimen=2,
        ordered=True,
        initialize=[
            (r, p) for r in data.racks for t, p in enumerate(data.periods) if data.available(r, t)
        ],
    )


def _rack_can_exist(data: PlanData, rack: str, t: int) -> bool:
    info = data.racks[rack]
    existing = info.option.installed > 0 and (
        info.retire_existing_at is None or t < info.retire_existing_at
    )
    return existing or t >= info.first_period


# ---------------------------------------------------------------------------- parameters
def define_parameters(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Mutable where a what-if may change them (caps, budgets, demand, prices)."""
    s = data.scenario
    m.power_cap_mw = pyo.Param(
        [p.name for p in s.periods if p.power_cap_mw is not None],
        initialize={p.name: p.power_cap_mw for p in s.periods if p.power_cap_mw is not None},
        mutable=True,
        within=pyo.Reals,
    )
    m.capex_budget_usd = pyo.Param(
        [p.name for p in s.periods if p.capex_budget_usd is not None],
        initialize={
            p.name: p.capex_budget_usd for p in s.periods if p.capex_budget_usd is not None
        },
        mutable=True,
        within=pyo.Reals,
    )
    m.total_budget_usd = pyo.Param(
        initialize=s.total_budget_usd or 0.0, mutable=True, within=pyo.Reals
    )
    m.floor_space_racks = pyo.Param(
        initialize=s.floor_space_racks or 0, mutable=True, within=pyo.Reals
    )
    m.demand = pyo.Param(
        m.C,
        m.PH,
        m.T,
        initialize={
            (c, ph, p): (data.demand_prefill if ph == "prefill" else data.demand_decode)[(c, p)]
            for c in data.classes
            for ph in PHASES
            for p in data.periods
        },
        mutable=True,
        within=pyo.Reals,
    )
    m.capex_usd = pyo.Param(
        m.R, initialize={r: d.capex_usd for r, d in data.racks.items()}, mutable=True
    )
    m.electricity_usd_per_kwh = pyo.Param(
        m.T, initialize={p.name: p.electricity_usd_per_kwh for p in s.periods}, mutable=True
    )
    m.fleet_floor = pyo.Param(m.T, initialize=fleet_floor(data), mutable=True, within=pyo.Reals)


def fleet_floor(
    data: PlanData, demand: Callable[[str, str, str], float] | None = None
) -> dict[str, float]:
    """Valid lower bound on total installed racks per period (see define_fleet_size_floor).

    ``demand(class, phase, period)`` gives the current demand row value (tokens/s); by default
    the scenario's. What-if changes to demand must refresh the bound (``PlanSolver``), or a
    lowered demand would keep an invalid, too-high floor.
    """
    demand = demand or _demand_of(data)
    spare = data.scenario.policy.spare_fraction
    best = defaultdict(float)
    for col in data.columns:
        key = col.workload_class
        best[(key, "decode")] = max(best[(key, "decode")], col.decode_rate)
        best[(key, "prefill")] = max(best[(key, "prefill")], col.prefill_rate)
    floor = {}
    for p in data.periods:
        bounds = []
        for phase in ("decode", "prefill"):
            need = 0.0
            for c in data.classes:
                value = demand(c, phase, p)
                if value > 0 and best[(c, phase)] > 0:
                    need += value / best[(c, phase)]
            bounds.append(need)
        floor[p] = safe_ceil(max(bounds) / (1 - spare)) if max(bounds) > 0 else 0
    return floor


# ---------------------------------------------------------------------------- variables
def define_variables(m: pyo.ConcreteModel, data: PlanData) -> None:
    """lots (integer purchases in lots), installed racks, allocation (racks at a column),
    whole replicas where required, rack-type choice, served share (max_served only)."""
    m.lots = pyo.Var(m.BUY, domain=pyo.NonNegativeIntegers)
    m.installed = pyo.Var(m.R, m.T, domain=pyo.NonNegativeIntegers)
    m.alloc = pyo.Var(m.JT, domain=pyo.NonNegativeReals)
    m.replicas = pyo.Var(m.JT_INT, domain=pyo.NonNegativeIntegers)
    if data.scenario.policy.max_rack_types is not None:
        m.type_used = pyo.Var(m.R, domain=pyo.Binary)
    if data.scenario.policy.objective is Objective.max_served:
        m.served = pyo.Var(m.C, m.T, bounds=(0.0, 1.0))


# ---------------------------------------------------------------------------- expressions
def define_expressions(m: pyo.ConcreteModel, data: PlanData) -> None:
    """bought = lot·lots; retired (lifetimes); provisioned power; energy; money per period."""
    s = data.scenario
    periods = data.periods

    def bought(_m, r, p):
        return data.racks[r].option.lot_size * m.lots[r, p] if (r, p) in m.BUY else 0.0

    m.bought = pyo.Expression(m.R, m.T, rule=bought)
    define_lifetime_expressions(m, data)
    m.it_power_kw = pyo.Expression(
        m.T,
        rule=lambda _m, p: _linear(
            [data.racks[r].power_kw_at_load for r in m.R], [m.installed[r, p] for r in m.R]
        ),
    )
    define_operating_power(m, data)

    def energy(_m, p):
        period = s.periods[periods.index(p)]
        return period.hours * period.pue * m.operating_it_kw[p]

    m.energy_kwh = pyo.Expression(m.T, rule=energy)
    m.capex_spend_usd = pyo.Expression(
        m.T, rule=lambda _m, p: sum(m.capex_usd[r] * m.bought[r, p] for r in m.R)
    )
    m.energy_usd = pyo.Expression(
        m.T, rule=lambda _m, p: m.electricity_usd_per_kwh[p] * m.energy_kwh[p]
    )
    maintenance = s.economics.maintenance_fraction_per_year

    def maintenance_usd(_m, p):
        hours = s.periods[periods.index(p)].hours
        return (
            maintenance
            * hours
            / HOURS_PER_YEAR
            * sum(m.capex_usd[r] * m.installed[r, p] for r in m.R)
        )

    m.maintenance_usd = pyo.Expression(m.T, rule=maintenance_usd)
    end = data.end_discount_factor()
    m.salvage_usd = pyo.Expression(
        expr=sum(
            end * data.salvage_fraction(r, periods.index(p)) * m.capex_usd[r] * m.bought[r, p]
            for r, p in m.BUY
            if data.salvage_fraction(r, periods.index(p)) > 0
        )
    )
    m.tco_usd = pyo.Expression(
        expr=sum(
            data.discount_factor(t)
            * (m.capex_spend_usd[p] + m.energy_usd[p] + m.maintenance_usd[p])
            for t, p in enumerate(periods)
        )
        - m.salvage_usd
    )


def define_operating_power(m: pyo.ConcreteModel, data: PlanData) -> None:
    """operating_it_kw[t] = Σ_r P_idle,r·installed[r,t] + Σ_j (P_j − P_idle,r(j))·alloc[j,t]
    (kW of IT load: every installed rack idles, an allocated rack draws its operating point's
    power). Energy is this × PUE × hours; the ``expected`` power-cap basis is this × PUE."""
    by_period = defaultdict(lambda: ([], []))
    for r in m.R:
        for p in m.T:
            coefs, variables = by_period[p]
            coefs.append(data.racks[r].power_kw_idle)
            variables.append(m.installed[r, p])
    for j, p in m.JT:
        col = data.columns[j]
        coefs, variables = by_period[p]
        coefs.append(col.power_kw - data.racks[col.rack].power_kw_idle)
        variables.append(m.alloc[j, p])
    m.operating_it_kw = pyo.Expression(m.T, rule=lambda _m, p: _linear(*by_period[p]))


def capped_it_kw(m: pyo.ConcreteModel, data: PlanData, period: str):
    """The IT load (kW) the power cap limits in ``period``, by ``policy.power_cap_basis``:
    nameplate → Σ_r P_load,r·installed[r,t]; expected → ``operating_it_kw[t]``."""
    if data.scenario.policy.power_cap_basis == "expected":
        return m.operating_it_kw[period]
    return m.it_power_kw[period]


def define_lifetime_expressions(m: pyo.ConcreteModel, data: PlanData) -> None:
    """retired[r,t] = bought[r, t − lifetime_r] + (existing fleet if it retires at t), racks."""
    periods = data.periods

    def retired(_m, r, p):
        t = periods.index(p)
        value = 0.0
        source = data.retiring_purchase_period(r, t)
        if source is not None:
            value = value + m.bought[r, periods[source]]
        if data.racks[r].retire_existing_at == t:
            value = value + data.racks[r].option.installed
        return value

    m.retired = pyo.Expression(m.R, m.T, rule=retired)


# ---------------------------------------------------------------------------- constraints
def _slack(m: pyo.ConcreteModel, name: str, index) -> pyo.Var | None:
    """Create (once) and return the elastic slack variable of a family, or None."""
    if not m.elastic:
        return None
    if not hasattr(m, f"slack_{name}"):
        m.add_component(f"slack_{name}", pyo.Var(index, domain=pyo.NonNegativeReals))
    return getattr(m, f"slack_{name}")


def define_fleet_continuity(m: pyo.ConcreteModel, data: PlanData) -> None:
    """installed[r,t] = installed[r,t−1] + bought[r,t] − retired[r,t]   (racks);
    installed[r,t0] = existing_r + bought[r,t0] − retired[r,t0]."""
    periods = data.periods

    def rule(_m, r, p):
        t = periods.index(p)
        previous = m.installed[r, periods[t - 1]] if t > 0 else data.racks[r].option.installed
        return m.installed[r, p] == previous + m.bought[r, p] - m.retired[r, p]

    m.fleet_continuity = pyo.Constraint(m.R, m.T, rule=rule)


def define_rack_capacity(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Σ_j alloc[j,t] ≤ (1 − spare)·installed[r,t] for the columns j of rack r   (racks)."""
    spare = data.scenario.policy.spare_fraction
    by_rack = defaultdict(list)
    for j, p in m.JT:
        by_rack[(data.columns[j].rack, p)].append(m.alloc[j, p])

    def rule(_m, r, p):
        used = by_rack.get((r, p))
        if not used:
            return pyo.Constraint.Skip
        return _linear([1.0] * len(used), used) <= (1 - spare) * m.installed[r, p]

    m.rack_capacity = pyo.Constraint(m.R, m.T, rule=rule)


def define_demand_cover(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Σ_j rate_j·alloc[j,t] ≥ demand[c,phase,t] (· served[c,t] under max_served)   (tokens/s,
    written in millions of tokens/s: see RATE_UNIT).

    Decode rows count output tokens/s (decode and aggregated columns), prefill rows prompt
    tokens/s (prefill and aggregated columns); demand already includes 1/max utilisation.
    """
    terms = defaultdict(lambda: ([], []))
    for j, p in m.JT:
        col = data.columns[j]
        for phase, rate in (("decode", col.decode_rate), ("prefill", col.prefill_rate)):
            if rate > 0:
                coefs, variables = terms[(col.workload_class, phase, p)]
                coefs.append(rate / RATE_UNIT)
                variables.append(m.alloc[j, p])
    rows = [
        (c, ph, p) for c in m.C for ph in m.PH for p in m.T if pyo.value(m.demand[c, ph, p]) > 0
    ]
    shortfall = _slack(m, "demand_cover", rows)
    served = getattr(m, "served", None)

    def rule(_m, c, ph, p):
        coefs, variables = terms.get((c, ph, p), ([], []))
        supplied = _linear(coefs, variables)
        if shortfall is not None:
            supplied = supplied + shortfall[c, ph, p]
        demand = m.demand[c, ph, p] / RATE_UNIT
        needed = demand * served[c, p] if served is not None else demand
        return supplied >= needed

    m.demand_cover = pyo.Constraint(rows, rule=rule)


def define_power_cap(m: pyo.ConcreteModel, data: PlanData) -> None:
    """PUE_t · L_t / 1000 ≤ power_cap_mw[t]   (MW at the meter), L_t the capped IT load in kW
    (``capped_it_kw``): nameplate Σ_r P_load,r·installed[r,t], or the expected draw
    Σ_r P_idle,r·installed[r,t] + Σ_j (P_j − P_idle)·alloc[j,t]."""
    pue = {p.name: p.pue for p in data.scenario.periods}
    rows = list(m.power_cap_mw.keys())
    excess = _slack(m, "power_cap", rows)
    m.capped_site_mw = pyo.Expression(
        m.T, rule=lambda _m, p: pue[p] * capped_it_kw(m, data, p) / 1000.0
    )

    def rule(_m, p):
        cap = m.power_cap_mw[p] + (excess[p] if excess is not None else 0.0)
        return m.capped_site_mw[p] <= cap

    m.power_cap = pyo.Constraint(rows, rule=rule)


def define_capex_budget(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Σ_r capex_r·bought[r,t] ≤ capex_budget_usd[t]; Σ_t,r capex_r·bought[r,t] ≤ total   (USD,
    written in millions: see MONEY_UNIT)."""
    rows = list(m.capex_budget_usd.keys())
    excess = _slack(m, "capex_budget", rows)
    m.capex_budget = pyo.Constraint(
        rows,
        rule=lambda _m, p: (
            m.capex_spend_usd[p] / MONEY_UNIT
            <= m.capex_budget_usd[p] / MONEY_UNIT + (excess[p] if excess is not None else 0.0)
        ),
    )
    if data.scenario.total_budget_usd is not None:
        total_excess = _slack(m, "total_budget", [0])
        extra = total_excess[0] if total_excess is not None else 0.0
        m.total_budget = pyo.Constraint(
            expr=sum(m.capex_spend_usd[p] for p in m.T) / MONEY_UNIT
            <= m.total_budget_usd / MONEY_UNIT + extra
        )


def define_floor_space(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Σ_r installed[r,t] ≤ floor_space_racks   (rack positions)."""
    if data.scenario.floor_space_racks is None:
        return
    excess = _slack(m, "floor_space", list(m.T))
    m.floor_space = pyo.Constraint(
        m.T,
        rule=lambda _m, p: (
            sum(m.installed[r, p] for r in m.R)
            <= m.floor_space_racks + (excess[p] if excess is not None else 0.0)
        ),
    )


def define_rack_supply(m: pyo.ConcreteModel, data: PlanData) -> None:
    """bought[r,t] ≤ supply_limit_r per period (racks). Availability is structural: lots exist
    only from the first period a type can be bought; purchases are lot_size·lots."""
    rows = [(r, p) for r, p in m.BUY if data.racks[r].option.supply_limit_per_period is not None]
    excess = _slack(m, "rack_supply_max", rows)
    m.rack_supply_max = pyo.Constraint(
        rows,
        rule=lambda _m, r, p: (
            m.bought[r, p]
            <= data.racks[r].option.supply_limit_per_period
            + (excess[r, p] if excess is not None else 0.0)
        ),
    )


def define_rack_types_max(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Σ_r type_used[r] ≤ K and installed[r,t] ≤ M_r·type_used[r] (M_r: ``fleet_upper_bounds``,
    a mutable parameter refreshed when demand or power caps change)."""
    limit = data.scenario.policy.max_rack_types
    if limit is None:
        return
    m.rack_types_max = pyo.Constraint(expr=sum(m.type_used[r] for r in m.R) <= limit)
    m.fleet_bound = pyo.Param(
        m.R,
        initialize=fleet_upper_bounds(data, elastic=m.elastic),
        mutable=True,
        within=pyo.Reals,
    )
    m.rack_type_link = pyo.Constraint(
        m.R, m.T, rule=lambda _m, r, p: m.installed[r, p] <= m.fleet_bound[r] * m.type_used[r]
    )


def _demand_of(data: PlanData) -> Callable[[str, str, str], float]:
    """The scenario's demand rows, ``demand(class, phase, period)`` in tokens/s."""

    def demand(c: str, phase: str, p: str) -> float:
        return (data.demand_decode if phase == "decode" else data.demand_prefill)[(c, p)]

    return demand


def slowest_rates(data: PlanData) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(rack, class, phase) → (ρ_min, q_max): the slowest rate of any column of that rack
    covering that phase of the class (tokens/s per rack), and the largest whole-replica step
    ρ_j·n_j of its integer columns (tokens/s; 0 when all its columns are continuous).

    Bounds on how many racks a plan may use must hold for *every* column, so they divide by
    ρ_min, never by the best rate.
    """
    found: dict[tuple[str, str, str], tuple[float, float]] = {}
    for col in data.columns:
        for phase, rate in (("decode", col.decode_rate), ("prefill", col.prefill_rate)):
            if rate <= 0:
                continue
            key = (col.rack, col.workload_class, phase)
            step = rate * col.racks_per_replica if col.integer else 0.0
            slowest, largest = found.get(key, (math.inf, 0.0))
            found[key] = (min(slowest, rate), max(largest, step))
    return found


def fleet_upper_bounds(
    data: PlanData,
    demand: Callable[[str, str, str], float] | None = None,
    power_cap_mw: dict[str, float] | None = None,
    elastic: bool = False,
) -> dict[str, float]:
    """M_r: a fleet size of rack type r that some optimal plan never exceeds (the K-types big-M).

    The smallest of the bounds that apply:

    - hard limits, valid for every feasible plan (skipped when ``elastic``: slacks relax them):
      existing + supply_r × periods; the floor space; with a cap in every period,
      ⌊max_t cap_t · 1000 / (PUE_t · L_r)⌋ racks, L_r the least capped load one rack adds
      (``least_capped_kw_per_rack``: P_load,r on the nameplate basis, about P_idle,r on the
      expected one; no limit when L_r ≤ 0, nor when another type's L is negative, since its
      racks could then offset r's);
    - a demand bound, valid for some optimal plan: take an optimal plan and drop allocation that
      covers more than needed. What is left of r's allocation for class c and phase φ covers at
      most demand + q_max (one whole replica too many), at ≥ ρ_min tokens/s per rack, so
      U_r,t = Σ_c,φ (demand_c,φ,t + q_max) / ρ_min / (1 − spare) racks hold it (an aggregated
      column counts in both phases, so the sum over phases covers it). If removing one lot of a
      purchase batch left ≥ U_r,t racks in every period it is alive, the plan without that lot
      is feasible and strictly cheaper (capex > salvage; energy and maintenance fall). So every
      batch has ≤ ⌈max_t U_r,t / lot⌉ lots, and M_r = existing + periods × that batch. Valid with
      forced early buying, overlapping lifetimes and whole replicas, for every objective (each
      has TCO at least as a tie-break).

    ``demand`` and ``power_cap_mw`` give the current parameter values (what-ifs), by default the
    scenario's.
    """
    demand = demand or _demand_of(data)
    caps = (
        power_cap_mw
        if power_cap_mw is not None
        else {p.name: p.power_cap_mw for p in data.scenario.periods if p.power_cap_mw is not None}
    )
    spare = data.scenario.policy.spare_fraction
    count = len(data.periods)
    rates = slowest_rates(data)
    bounds = {}
    for r, info in data.racks.items():
        batch = max(
            sum(
                (demand(c, phase, p) + step) / slowest
                for (rack, c, phase), (slowest, step) in rates.items()
                if rack == r and demand(c, phase, p) > 0
            )
            / (1 - spare)
            for p in data.periods
        )
        lot = info.option.lot_size
        hard = [info.option.installed + count * safe_ceil(batch / lot) * lot]
        if not elastic:
            hard += _hard_fleet_limits(data, r, caps)
        bounds[r] = float(max(min(hard), info.option.installed))
    return bounds


def _hard_fleet_limits(data: PlanData, rack: str, caps: dict[str, float]) -> list[int]:
    """Limits on installed racks of one type that every feasible plan obeys (racks)."""
    info = data.racks[rack]
    count = len(data.periods)
    limits = []
    if info.option.supply_limit_per_period is not None:
        limits.append(info.option.installed + info.option.supply_limit_per_period * count)
    if data.scenario.floor_space_racks is not None:
        limits.append(data.scenario.floor_space_racks)
    pue = {p.name: p.pue for p in data.scenario.periods}
    least_kw = least_capped_kw_per_rack(data, rack)
    others_nonnegative = all(least_capped_kw_per_rack(data, r) >= 0 for r in data.racks)
    if len(caps) == count and least_kw > 0 and others_nonnegative:
        limits.append(max(safe_floor(caps[p] * 1000.0 / (pue[p] * least_kw)) for p in caps))
    return limits


def least_capped_kw_per_rack(data: PlanData, rack: str) -> float:
    """The least IT load (kW) one installed rack of this type adds to the capped load, in any
    plan: nameplate → P_load; expected → P_idle + (1 − spare)·min(0, min_j P_j − P_idle) (a rack
    idles, or is allocated up to 1 − spare at a column j; measured points may draw below idle).
    ≤ 0 means the cap gives no bound on the count."""
    info = data.racks[rack]
    if data.scenario.policy.power_cap_basis != "expected":
        return info.power_kw_at_load
    below = min([0.0] + [c.power_kw - info.power_kw_idle for c in data.columns if c.rack == rack])
    return info.power_kw_idle + (1 - data.scenario.policy.spare_fraction) * below


def define_replica_integrality(m: pyo.ConcreteModel, data: PlanData) -> None:
    """alloc[j,t] = racks_per_replica_j · replicas[j,t], replicas integer (whole replicas)."""
    m.replica_integrality = pyo.Constraint(
        m.JT_INT,
        rule=lambda _m, j, p: m.alloc[j, p] == data.columns[j].racks_per_replica * m.replicas[j, p],
    )


def define_fleet_size_floor(m: pyo.ConcreteModel, data: PlanData) -> None:
    """Valid inequality: Σ_r installed[r,t] ≥ ⌈max_phase Σ_c demand/best rate / (1 − spare)⌉.

    Each class needs at least demand / (its best rate) racks of allocation in each phase, and
    allocation ≤ (1 − spare)·installed, so no feasible plan has fewer racks; rounding up
    tightens the LP relaxation. Omitted under max_served (demand may go unserved) and in
    elastic mode.
    """
    if data.scenario.policy.objective is Objective.max_served or m.elastic:
        return
    m.fleet_size_floor = pyo.Constraint(
        m.T, rule=lambda _m, p: sum(m.installed[r, p] for r in m.R) >= m.fleet_floor[p]
    )


CONSTRAINT_FAMILIES: tuple[Callable[[pyo.ConcreteModel, PlanData], None], ...] = (
    define_fleet_continuity,
    define_rack_capacity,
    define_demand_cover,
    define_power_cap,
    define_capex_budget,
    define_floor_space,
    define_rack_supply,
    define_rack_types_max,
    define_replica_integrality,
    define_fleet_size_floor,
)
"""Every constraint family, in build order."""

RELAXABLE_FAMILIES = {
    "demand_cover": 100.0,
    "power_cap": 1.0,
    "capex_budget": 1.0,
    "total_budget": 1.0,
    "floor_space": 1.0,
    "rack_supply_max": 1.0,
}
"""Elastic families and their priority weights: relaxing a limit (power, money, space,
supply) is preferred to leaving demand unserved."""


# ---------------------------------------------------------------------------- objective
SECONDS_PER_HOUR = 3600.0
TIEBREAK_SHARE = 1e-7
"""Weight of the TCO tie-break relative to the primary objective: far below any gap a plan is
judged by (1e-4), so it only chooses among plans that are equal on the primary objective."""


def define_objective(m: pyo.ConcreteModel, data: PlanData) -> None:
    """The solver minimises or maximises (primary ± tie-break) / scale, where

    - min_tco: primary = discounted TCO (USD); no tie-break; scale 1e6 (millions of USD);
    - max_served: primary = Σ_t,c hours_t · 3600 · forecast_c,t · served[c,t] — output tokens
      served over the horizon, each period weighted by its length (a token is a token whenever
      it is served; no discounting); served ≤ 1 caps it at the forecast. Tie-break: − cheapest TCO;
    - min_power: primary = Σ_t energy_kwh[t] (kWh at the meter); tie-break: + TCO;
    - elastic: Σ_family weight · slack / limit (``_elastic_objective``).

    ``m.primary_objective`` and ``m.tiebreak`` (both in the primary's units) let the solve
    report the pure objective and its bound; ``m.objective_scale`` turns solver units back
    into user units. The tie-break weight puts TCO at about ``TIEBREAK_SHARE`` of the primary.
    """
    if m.elastic:
        m.objective_scale = 1.0
        m.objective = pyo.Objective(expr=_elastic_objective(m, data), sense=pyo.minimize)
        return
    objective = data.scenario.policy.objective
    if objective is Objective.max_served:
        primary, sense = _served_tokens(m, data), pyo.maximize
        m.objective_scale = max(1.0, sum(_forecast_tokens(data).values()))
    elif objective is Objective.min_power:
        primary, sense = sum(m.energy_kwh[p] for p in m.T), pyo.minimize
        m.objective_scale = ENERGY_UNIT
    else:
        primary, sense = m.tco_usd, pyo.minimize
        m.objective_scale = MONEY_UNIT
    m.primary_objective = pyo.Expression(expr=primary)
    weight = {
        Objective.min_tco: 0.0,
        Objective.min_power: POWER_TIEBREAK_USD,
        Objective.max_served: _served_tiebreak_weight(m, data),
    }[objective]
    m.tiebreak_weight = weight
    m.tiebreak = pyo.Expression(expr=weight * m.tco_usd)
    sign = -1.0 if sense == pyo.maximize else 1.0
    m.objective = pyo.Objective(
        expr=(m.primary_objective + sign * m.tiebreak) / m.objective_scale, sense=sense
    )


def _forecast_tokens(data: PlanData) -> dict[tuple[str, str], float]:
    """(class, period) → forecast output tokens in the period (tokens/s × hours × 3600)."""
    hours = {p.name: p.hours for p in data.scenario.periods}
    return {
        (c, p): rate * hours[p] * SECONDS_PER_HOUR for (c, p), rate in data.forecast_output.items()
    }


def _served_tokens(m: pyo.ConcreteModel, data: PlanData):
    """Σ_t,c hours_t · 3600 · forecast_c,t · served[c,t] (output tokens). The forecast is read
    from the demand row (forecast / max utilisation) so demand what-ifs carry through."""
    hours = {p.name: p.hours for p in data.scenario.periods}
    utilisation = {c.name: c.max_utilisation for c in data.scenario.classes}
    return sum(
        hours[p] * SECONDS_PER_HOUR * utilisation[c] * m.demand[c, "decode", p] * m.served[c, p]
        for c in m.C
        for p in m.T
    )


def _served_tiebreak_weight(m: pyo.ConcreteModel, data: PlanData) -> float:
    """Tokens per USD such that the capex of a fleet of the fleet floor's size, bought in every
    period, weighs ``TIEBREAK_SHARE`` of the whole forecast (``m.objective_scale``)."""
    capex = max(info.capex_usd for info in data.racks.values())
    racks = max([1.0, *fleet_floor(data).values()])
    return TIEBREAK_SHARE * m.objective_scale / (capex * racks * len(data.periods))


def _elastic_objective(m: pyo.ConcreteModel, data: PlanData):
    """Σ weight·slack/scale, scale = the row's own limit (demand, cap, budget…), so a 10 %
    shortfall weighs the same in every row; a tiny TCO term picks the cheapest relaxation."""
    total = 1e-12 * m.tco_usd
    for family, weight in RELAXABLE_FAMILIES.items():
        slack = getattr(m, f"slack_{family}", None)
        if slack is None:
            continue
        for index in slack:
            total = total + weight * slack[index] / _slack_scale(m, data, family, index)
    return total


def _slack_scale(m: pyo.ConcreteModel, data: PlanData, family: str, index) -> float:
    if family == "demand_cover":
        return max(pyo.value(m.demand[index]) / RATE_UNIT, 1e-12)
    if family == "power_cap":
        return max(pyo.value(m.power_cap_mw[index]), 1e-6)
    if family == "capex_budget":
        return max(pyo.value(m.capex_budget_usd[index]) / MONEY_UNIT, 1e-6)
    if family == "total_budget":
        return max(pyo.value(m.total_budget_usd) / MONEY_UNIT, 1e-6)
    if family == "floor_space":
        return max(pyo.value(m.floor_space_racks), 1.0)
    r, _ = index
    return max(float(data.racks[r].option.supply_limit_per_period or 0), 1.0)


def build_model(data: PlanData, elastic: bool = False) -> pyo.ConcreteModel:
    """Build the Pyomo model for ``data`` (see module docstring for the order)."""
    m = pyo.ConcreteModel(name=data.scenario.name)
    m.elastic = elastic
    define_sets(m, data)
    define_parameters(m, data)
    define_variables(m, data)
    define_expressions(m, data)
    for family in CONSTRAINT_FAMILIES:
        family(m, data)
    define_objective(m, data)
    return m
