"""What-if re-solves proved without branch and bound (planner/core/reoptimise.py).

- known answers for the pieces: row activities, feasibility, objective, the proven gap;
- the warm-started relaxation equals a cold solve of the changed LP (property test);
- a re-solve answered by a proof reports a plan that the independent checker accepts and an
  interval [bound, objective] consistent with a fresh solve of the changed scenario, for every
  kind of in-place change and all three objectives;
- a change that leaves the plan optimal is answered without a MIP; one that makes it
  infeasible is not answered by the old plan.
"""

from __future__ import annotations

from pathlib import Path

import highspy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackplan.models.scenario import Objective, Policy
from rackplan.planner.core.data import prepare
from rackplan.planner.core.plan import extract_plan
from rackplan.planner.core.reoptimise import (
    Relaxation,
    WarmRelaxation,
    is_feasible,
    objective_value,
    proof_of,
    proven_gap,
    row_activities,
)
from rackplan.planner.core.session import Variant, changed_scenario
from rackplan.planner.core.solve import PlanSolver, SolveOptions
from rackplan.planner.core.verify import verify_plan
from rackplan.planner.core.whatif import Baseline, apply_change
from rackplan.planner.io.scenario_io import load_scenario

ROOT = Path(__file__).resolve().parents[1]
GAP = 0.005


def _tiny_lp(demand: float = 3.0) -> highspy.HighsLp:
    """min x + 2y + 1 s.t. x + y ≥ demand, x − y ≤ 1; 0 ≤ x ≤ 2, 0 ≤ y ≤ 5; x, y integer."""
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = 2, 2
    lp.col_cost_ = np.array([1.0, 2.0])
    lp.offset_ = 1.0
    lp.col_lower_ = np.array([0.0, 0.0])
    lp.col_upper_ = np.array([2.0, 5.0])
    lp.row_lower_ = np.array([demand, -highspy.kHighsInf])
    lp.row_upper_ = np.array([highspy.kHighsInf, 1.0])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array([0, 2, 4], dtype=np.int32)
    lp.a_matrix_.index_ = np.array([0, 1, 0, 1], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([1.0, 1.0, 1.0, -1.0])
    lp.integrality_ = [highspy.HighsVarType.kInteger] * 2
    return lp


def test_row_activities_and_objective_by_hand():
    lp = _tiny_lp()
    x = np.array([2.0, 1.0])
    assert row_activities(lp, x).tolist() == [3.0, 1.0]  # x + y, x − y
    assert objective_value(lp, x) == 2.0 + 2.0 + 1.0


@pytest.mark.parametrize(
    ("x", "feasible"),
    [
        ([2.0, 1.0], True),  # x + y = 3 (tight), x − y = 1 (tight)
        ([1.0, 1.0], False),  # x + y = 2 < 3
        ([2.0, 0.5], False),  # x − y = 1.5 > 1 (and x + y short)
        ([3.0, 2.0], False),  # x above its upper bound 2
        ([2.0, 1.0 - 5e-7], True),  # within the 1e-6 tolerance
        ([2.0, 1.0 - 5e-6], False),  # outside it
    ],
)
def test_feasibility_by_hand(x, feasible):
    assert is_feasible(_tiny_lp(), np.array(x)) is feasible


def test_proven_gap_by_hand():
    assert proven_gap(100.0, 99.0, maximise=False) == pytest.approx(0.01)
    assert proven_gap(100.0, 101.0, maximise=True) == pytest.approx(0.01)
    assert proven_gap(100.0, 100.0 + 1e-9, maximise=False) == 0.0  # never negative


def test_proof_needs_the_gap():
    lp = _tiny_lp()
    x = np.array([2.0, 1.0])  # objective 5; the relaxation's optimum is 5 too (x=2, y=1)
    relaxation = WarmRelaxation().solve(lp, 5.0)
    assert relaxation is not None and relaxation.bound == pytest.approx(5.0)
    assert proof_of(lp, x, relaxation, 0.0) is not None
    loose = Relaxation(relaxation.values, 4.0)  # a bound 20 % below: no proof at 5 %
    assert proof_of(lp, x, loose, 0.05) is None
    assert proof_of(lp, x, loose, 0.25).gap == pytest.approx(0.2)


@settings(max_examples=25, deadline=None)
@given(demands=st.lists(st.floats(0.0, 6.5), min_size=1, max_size=6))
def test_warm_relaxation_equals_a_cold_solve(demands):
    """Each re-solve from the previous basis reaches the same optimum as a fresh HiGHS."""
    warm = WarmRelaxation()
    for demand in demands:
        lp = _tiny_lp(demand)
        cold = WarmRelaxation().solve(_tiny_lp(demand), 5.0)
        again = warm.solve(lp, 5.0)
        assert (cold is None) == (again is None)
        if cold is not None:
            # equal up to HiGHS's primal feasibility tolerance (1e-7) times the costs (≤ 2):
            # a demand of 6e-8 may be met by x = 6e-8 or counted as met by x = 0
            assert again.bound == pytest.approx(cold.bound, rel=1e-9, abs=1e-6)


@pytest.fixture(scope="module")
def agentic_scenario():
    return load_scenario(ROOT / "examples" / "agentic-shift")


def _interval(outcome) -> tuple[float, float]:
    low, high = sorted((outcome.objective, outcome.best_bound))
    return low, high


def _fresh(scenario, catalog, change: tuple[str, float], objective: Objective):
    """A new model of ``scenario`` with ``change`` applied before its first solve."""
    sc = scenario.model_copy(update={"policy": Policy(objective=objective)})
    solver = PlanSolver(prepare(sc, catalog), SolveOptions(time_limit_s=60, rel_gap=GAP))
    apply_change(solver, Baseline.of(solver), *change)
    return solver.solve()


CHANGES = [
    ("power_cap_scale", 0.9),
    ("demand_scale", 1.05),
    ("demand_scale", 0.9),
    ("electricity_scale", 1.4),
    ("budget_scale", 0.8),
]


@pytest.mark.parametrize("objective", list(Objective))
def test_resolves_agree_with_fresh_solves(catalog, agentic_scenario, objective):
    """After each in-place change (cumulative, as in a session) the re-solve's plan passes the
    independent checker, its gap is the requested one or better, and its [bound, objective]
    interval overlaps a fresh solve's: both are within the gap of the same optimum."""
    sc = agentic_scenario.model_copy(update={"policy": Policy(objective=objective)})
    data = prepare(sc, catalog)
    solver = PlanSolver(data, SolveOptions(time_limit_s=60, rel_gap=GAP))
    first = solver.solve()
    assert first.has_solution
    baseline = Baseline.of(solver)
    for change in CHANGES:
        apply_change(solver, baseline, *change)
        outcome = solver.solve()
        fresh = _fresh(agentic_scenario, catalog, change, objective)
        assert outcome.status == fresh.status
        if not outcome.has_solution:
            continue
        assert outcome.gap <= GAP + 1e-12
        changed = changed_scenario(sc, catalog, Variant("v", (change,)))
        plan = extract_plan(solver.data, solver, outcome)
        assert not verify_plan(plan, changed, catalog), change
        low, high = _interval(outcome)
        fresh_low, fresh_high = _interval(fresh)
        tolerance = 1e-7 * max(abs(high), 1.0)
        assert low <= fresh_high + tolerance and fresh_low <= high + tolerance, change
        apply_change(solver, baseline, change[0], 1.0)
    assert solver.quick_proofs > 0


def test_an_unchanged_plan_is_proved_without_a_mip(catalog, agentic_scenario):
    """Doubling a cap that does not bind: the same plan, the same objective, a proof."""
    data = prepare(agentic_scenario, catalog)
    solver = PlanSolver(data, SolveOptions(time_limit_s=60, rel_gap=GAP))
    before = solver.solve()
    bought = {k: v.value for k, v in solver.model.lots.items()}
    apply_change(solver, Baseline.of(solver), "power_cap_scale", 2.0)
    after = solver.solve()
    assert solver.quick_proofs == 1
    assert after.termination == "convergenceCriteriaSatisfied"
    assert after.objective == pytest.approx(before.objective, rel=1e-12)
    assert {k: v.value for k, v in solver.model.lots.items()} == bought


def test_a_plan_the_change_breaks_is_not_reused(catalog, agentic_scenario):
    """More demand than the old fleet serves: the old plan fails the check, and the plan
    returned (proof or MIP) serves the new demand — the independent checker says so."""
    data = prepare(agentic_scenario, catalog)
    solver = PlanSolver(data, SolveOptions(time_limit_s=60, rel_gap=GAP))
    solver.solve()
    lp = solver.solver._solver_model.getLp()
    old = np.array(solver.solver._solver_model.getSolution().col_value)
    assert is_feasible(lp, old)
    apply_change(solver, Baseline.of(solver), "demand_scale", 1.3)
    solver.solver.update()
    assert not is_feasible(solver.solver._solver_model.getLp(), old)
    outcome = solver.solve()
    assert outcome.has_solution
    changed = changed_scenario(agentic_scenario, catalog, Variant("v", (("demand_scale", 1.3),)))
    plan = extract_plan(solver.data, solver, outcome)
    assert not verify_plan(plan, changed, catalog)


def _rowwise(lp: highspy.HighsLp) -> highspy.HighsLp:
    """The same LP with its matrix stored row by row (as HiGHS keeps it after some updates)."""
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.array([0, 2, 4], dtype=np.int32)  # row 0: x + y; row 1: x − y
    lp.a_matrix_.index_ = np.array([0, 1, 0, 1], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([1.0, 1.0, 1.0, -1.0])
    return lp


def test_row_activities_row_wise_equal_column_wise():
    x = np.array([2.0, 0.5])
    assert row_activities(_rowwise(_tiny_lp()), x).tolist() == [2.5, 1.5]
    assert row_activities(_tiny_lp(), x).tolist() == [2.5, 1.5]
    assert is_feasible(_rowwise(_tiny_lp()), np.array([2.0, 1.0]))


def test_stale_entries_beyond_the_matrix_are_ignored():
    """A coefficient set to 0 leaves entries past start_[-1] in index_/value_; they are not
    part of the matrix (this used to crash a what-if re-solve)."""
    lp = _tiny_lp()
    lp.a_matrix_.start_ = np.array([0, 2, 3], dtype=np.int32)  # y's −1 in row 1 dropped
    lp.a_matrix_.index_ = np.array([0, 1, 0, 1, 1], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([1.0, 1.0, 1.0, -1.0, 7.0])
    assert row_activities(lp, np.array([2.0, 1.0])).tolist() == [3.0, 2.0]


def test_many_relaxations_each_get_their_own_time_limit():
    """HiGHS measures its time limit against an instance's summed run time: each relaxation
    solve must get its own, or a long session would stop proving anything."""
    warm = WarmRelaxation()
    for demand in np.linspace(0.0, 6.0, 400):
        assert warm.solve(_tiny_lp(float(demand)), 0.01) is not None


@pytest.mark.parametrize(
    ("objective", "change"),
    [(Objective.max_served, ("demand_scale", 0.0)), (Objective.min_tco, ("capex_scale", 0.0))],
)
def test_a_coefficient_set_to_zero_re_solves(catalog, objective, change):
    """max_served weights served tokens by demand; a budget row holds capex: setting either to
    0 removes matrix coefficients. The re-solve matches a fresh solve and nothing crashes."""
    sc = load_scenario(ROOT / "examples" / "quickstart" / "scenario.json")
    budget = [p.model_copy(update={"capex_budget_usd": 5e7}) for p in sc.periods]
    sc = sc.model_copy(update={"policy": Policy(objective=objective), "periods": tuple(budget)})
    if change[0] == "capex_scale":
        change = (f"capex_scale:{sc.racks[0].rack}", 0.0)
    solver = PlanSolver(prepare(sc, catalog), SolveOptions(time_limit_s=60, rel_gap=GAP))
    solver.solve()
    apply_change(solver, Baseline.of(solver), *change)
    outcome = solver.solve()
    fresh = _fresh(sc, catalog, change, objective)
    assert outcome.status == fresh.status
    assert outcome.objective == pytest.approx(fresh.objective, rel=GAP, abs=1e-6)


def test_nothing_to_serve_is_optimal_not_an_infinite_gap(catalog):
    """max_served with zero demand: objective and bound are both 0 — gap 0, not 0/1e-9."""
    sc = load_scenario(ROOT / "examples" / "quickstart" / "scenario.json")
    sc = sc.model_copy(update={"policy": Policy(objective=Objective.max_served)})
    solver = PlanSolver(prepare(sc, catalog), SolveOptions(time_limit_s=60, rel_gap=GAP))
    solver.solve()
    apply_change(solver, Baseline.of(solver), "demand_scale", 0.0)
    outcome = solver.solve()
    assert outcome.objective == pytest.approx(0.0, abs=1e-6)
    assert outcome.gap == 0.0 and outcome.status == "optimal"


def test_nothing_to_serve_is_optimal_on_a_scaled_objective(catalog, agentic_scenario):
    """agentic-shift under max_served scales the objective by its forecast (~1e13 tokens): a
    solver-unit difference of 1e-9 is 1e4+ tokens there, still no gap when both are ~0."""
    sc = agentic_scenario.model_copy(update={"policy": Policy(objective=Objective.max_served)})
    solver = PlanSolver(prepare(sc, catalog), SolveOptions(time_limit_s=60, rel_gap=GAP))
    solver.solve()
    apply_change(solver, Baseline.of(solver), "demand_scale", 0.0)
    outcome = solver.solve()
    assert outcome.gap == 0.0 and outcome.status == "optimal"
