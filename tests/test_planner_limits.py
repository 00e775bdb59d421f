"""Property tests: a limit that does not bind leaves the optimum unchanged.

For random tiny scenarios (the brute-force generator without its supply limits: measured rates,
lots, lifetimes, existing fleets, all three objectives) solve once, then set each limit exactly
at what the optimum uses — the number of rack types, its site power, its capex per period and
in total, its purchases per type and period, its fleet size — and solve again. Each bound,
big-M and valid inequality of the model must leave the optimum feasible, so the objective must
not move.
"""

from __future__ import annotations

import pytest

from rackplan.models.scenario import Objective, Scenario
from rackplan.planner.core.plan import Plan
from tests.planning import solve_checked
from tests.test_planner_bruteforce import _instance

SEEDS = range(6)


def _objective(plan: Plan) -> float:
    return plan.outcome.objective


def _rack_types(sc: Scenario, plan: Plan) -> Scenario:
    used = plan.fleet[plan.fleet["racks_installed"] > 0]["rack"].nunique()
    return sc.model_copy(
        update={"policy": sc.policy.model_copy(update={"max_rack_types": max(1, used)})}
    )


def _power_caps(sc: Scenario, plan: Plan) -> Scenario:
    site = plan.power.set_index("period")["site_power_mw"]
    periods = tuple(
        p.model_copy(update={"power_cap_mw": site[p.name] if site[p.name] > 0 else None})
        for p in sc.periods
    )
    return sc.model_copy(update={"periods": periods})


def _budgets(sc: Scenario, plan: Plan) -> Scenario:
    spend = plan.costs.set_index("period")["capex_usd"]
    periods = tuple(
        p.model_copy(update={"capex_budget_usd": float(spend[p.name])}) for p in sc.periods
    )
    return sc.model_copy(update={"periods": periods, "total_budget_usd": float(spend.sum())})


def _supply(sc: Scenario, plan: Plan) -> Scenario:
    most = plan.fleet.groupby("rack")["racks_bought"].max()
    racks = tuple(
        r.model_copy(update={"supply_limit_per_period": round(float(most.get(r.rack, 0.0)))})
        for r in sc.racks
    )
    return sc.model_copy(update={"racks": racks})


def _floor_space(sc: Scenario, plan: Plan) -> Scenario:
    largest = plan.fleet.groupby("period")["racks_installed"].sum().max()
    return sc.model_copy(update={"floor_space_racks": round(float(largest))})


def _all_at_once(sc: Scenario, plan: Plan) -> Scenario:
    for limit in (_rack_types, _power_caps, _budgets, _supply, _floor_space):
        sc = limit(sc, plan)
    return sc


LIMITS = {
    "max_rack_types": _rack_types,
    "power_cap": _power_caps,
    "budgets": _budgets,
    "supply": _supply,
    "floor_space": _floor_space,
    "all at once": _all_at_once,
}
CASES = [(objective, seed) for objective in Objective for seed in SEEDS]


@pytest.mark.parametrize(("objective", "seed"), CASES, ids=[f"{o.value}-{s}" for o, s in CASES])
def test_limits_at_the_optimums_usage_do_not_change_it(catalog, objective, seed):
    generated = _instance(seed, objective)
    # no supply limits in the base: the K-types big-M then rests on its demand bound alone
    unlimited = tuple(
        r.model_copy(update={"supply_limit_per_period": None}) for r in generated.racks
    )
    sc = generated.model_copy(update={"racks": unlimited})
    base = solve_checked(sc, catalog, with_shadow_prices=False, with_baselines=False)
    if base.plan is None:
        pytest.skip("infeasible instance: nothing to hold fixed")
    assert base.status == "optimal"
    for name, limit in LIMITS.items():
        limited = solve_checked(
            limit(sc, base.plan), catalog, with_shadow_prices=False, with_baselines=False
        )
        assert limited.status == "optimal", name
        assert _objective(limited.plan) == pytest.approx(
            _objective(base.plan), rel=1e-6, abs=1e-6
        ), name
