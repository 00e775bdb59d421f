"""What-if changes on the persistent model give the same plan as solving the changed
scenario from scratch."""

from __future__ import annotations

import pytest

from rackplan.planner.core.data import prepare
from rackplan.planner.core.solve import PlanSolver, SolveOptions
from rackplan.planner.core.whatif import Baseline, apply_change
from tests.planning import Demand, RackOption, disaggregated_class, measured, periods, scenario

EXACT = SolveOptions(time_limit_s=30, rel_gap=1e-9)


def _scenario(demand: float):
    return scenario(
        periods=periods("P1", "P2", power_cap_mw=0.2),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(
                period=p, workload_class="chat", output_tokens_per_s=demand, prefill_decode_ratio=2
            )
            for p in ("P1", "P2")
        ),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4),
            RackOption(rack="hgx-b200", capex_usd=2.5e6, power_kw_at_load=12, power_kw_idle=5),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 9)
        + measured("hgx-b200", "chat", 9000, 2600, 11),
    )


def _fresh(sc, catalog) -> float:
    return PlanSolver(prepare(sc, catalog), EXACT).solve().objective


@pytest.mark.parametrize("scale", [0.3, 0.6, 1.0, 1.7])
def test_demand_scale_matches_a_fresh_solve(catalog, scale):
    """Scaling demand down must also lower the fleet-size floor (else a stale, too-high
    floor would force needless racks)."""
    solver = PlanSolver(prepare(_scenario(2500), catalog), EXACT)
    solver.solve()
    apply_change(solver, Baseline.of(solver), "demand_scale", scale)
    assert solver.solve().objective == pytest.approx(
        _fresh(_scenario(2500 * scale), catalog), rel=1e-9
    )


def test_power_cap_and_price_changes_match_fresh_solves(catalog):
    solver = PlanSolver(prepare(_scenario(2500), catalog), EXACT)
    solver.solve()
    baseline = Baseline.of(solver)
    apply_change(solver, baseline, "power_cap_scale", 0.5)
    apply_change(solver, baseline, "capex_scale:hgx-b200", 0.6)
    tight = _scenario(2500)
    tight = tight.model_copy(
        update={
            "periods": periods("P1", "P2", power_cap_mw=0.1),
            "racks": (tight.racks[0], tight.racks[1].model_copy(update={"capex_usd": 1.5e6})),
        }
    )
    assert solver.solve().objective == pytest.approx(_fresh(tight, catalog), rel=1e-9)


# ---- the K-types big-M must never cut off a feasible plan (review findings)
from rackplan.models.scenario import Period, Policy  # noqa: E402


def _k_types(k, *, budget_gap=False, out=500.0, replica_racks=1.0, lifetime=None):
    names = ("P1", "P2", "P3", "P4") if budget_gap else ("P1", "P2")
    pers = tuple(
        Period(
            name=n,
            hours=1000,
            electricity_usd_per_kwh=0.1,
            pue=1.0,
            capex_budget_usd=0.0 if (budget_gap and n == "P3") else None,
        )
        for n in names
    )
    rates = tuple(
        m.model_copy(update={"racks_per_replica": replica_racks})
        for m in measured("hgx-h100", "chat", 4000, 1000, 9)
    )
    return scenario(
        periods=pers,
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(period=p, workload_class="chat", output_tokens_per_s=out, prefill_decode_ratio=2)
            for p in names
        ),
        racks=(
            RackOption(
                rack="hgx-h100",
                capex_usd=1e6,
                power_kw_at_load=10,
                power_kw_idle=4,
                lifetime_periods=lifetime,
            ),
        ),
        measured_rates=rates,
        policy=Policy(max_rack_types=k),
    )


@pytest.mark.parametrize(
    "case",
    [
        {
            "budget_gap": True,
            "lifetime": 2,
        },  # a zero budget in P3 forces buying ahead; batches overlap
        {"out": 10.0, "replica_racks": 4.0},  # whole 4-rack replicas for each phase
    ],
)
def test_k_types_limit_does_not_cut_off_the_optimum(catalog, case):
    free = _fresh(_k_types(None, **case), catalog)
    limited = _fresh(_k_types(1, **case), catalog)
    assert free is not None and limited == pytest.approx(free, rel=1e-9)


def test_k_types_bound_follows_demand_what_ifs(catalog):
    solver = PlanSolver(prepare(_k_types(1), catalog), EXACT)
    solver.solve()
    apply_change(solver, Baseline.of(solver), "demand_scale", 3.0)
    assert solver.solve().objective == pytest.approx(
        _fresh(_k_types(1, out=1500.0), catalog), rel=1e-9
    )


def test_plan_tables_after_an_in_place_what_if_match_a_fresh_plan(catalog):
    """Demand, caps and prices in the tables come from the model, not the base scenario."""
    from rackplan.planner.core.plan import extract_plan

    solver = PlanSolver(prepare(_scenario(2500), catalog), EXACT)
    solver.solve()
    baseline = Baseline.of(solver)
    apply_change(solver, baseline, "demand_scale", 2.0)
    apply_change(solver, baseline, "power_cap_scale", 0.75)
    apply_change(solver, baseline, "electricity_scale", 3.0)
    changed = extract_plan(solver.data, solver, solver.solve())
    sc = _scenario(5000)
    sc = sc.model_copy(
        update={
            "periods": tuple(
                p.model_copy(update={"power_cap_mw": 0.15, "electricity_usd_per_kwh": 0.3})
                for p in sc.periods
            )
        }
    )
    fresh_solver = PlanSolver(prepare(sc, catalog), EXACT)
    fresh = extract_plan(fresh_solver.data, fresh_solver, fresh_solver.solve())
    for table, column in (
        ("cost_per_million_tokens", "usd_per_million_output_tokens"),
        ("power", "headroom_mw"),
        ("service", "forecast_tokens_per_s"),
    ):
        assert getattr(changed, table)[column].tolist() == pytest.approx(
            getattr(fresh, table)[column].tolist(), rel=1e-6
        )
