"""The LP-neighbourhood start (planner/core/start.py) supplies an incumbent and nothing else.

- the start is a feasible point of the loaded MIP (rows, bounds, integrality recomputed here
  from HiGHS's own matrix), no better than the LP bound;
- with it on, the proven optimum equals the brute force's and the optimum without it;
- the neighbourhood's bounds keep every fleet integer within one unit of its LP value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csc_matrix

from rackplan.models.scenario import Objective
from rackplan.planner.core.data import prepare
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.solve import PlanSolver, SolveOptions
from rackplan.planner.core.start import (
    lp_neighbourhood_start,
    lp_relaxation,
    neighbourhood_bounds,
    start_columns,
)
from rackplan.planner.core.verify import verify_plan
from rackplan.planner.io.scenario_io import load_scenario
from tests.test_planner_bruteforce import _instance, brute_force

ROOT = Path(__file__).resolve().parents[1]
EXACT = 1e-9
FEASIBILITY = 1e-6


def _loaded(data) -> PlanSolver:
    """A solver whose model is loaded into HiGHS (a first solve with the start off)."""
    solver = PlanSolver(data, SolveOptions(time_limit_s=30, rel_gap=EXACT, start_heuristic="off"))
    solver.solve()
    return solver


def _columns(solver: PlanSolver):
    return start_columns(solver.model, solver.data, solver.solver._pyomo_var_to_solver_var_map)


def _violation(lp, x: np.ndarray) -> float:
    """Largest violation of rows, column bounds and integrality by ``x`` (model units)."""
    a = lp.a_matrix_
    matrix = csc_matrix(
        (np.array(a.value_), np.array(a.index_), np.array(a.start_)),
        shape=(lp.num_row_, lp.num_col_),
    )
    rows = matrix @ x
    worst = max(
        np.max(np.array(lp.row_lower_) - rows, initial=0.0),
        np.max(rows - np.array(lp.row_upper_), initial=0.0),
        np.max(np.array(lp.col_lower_) - x, initial=0.0),
        np.max(x - np.array(lp.col_upper_), initial=0.0),
    )
    integer = np.array([int(t) for t in lp.integrality_]) == 1 if len(lp.integrality_) else []
    if len(integer):
        worst = max(worst, np.max(np.abs(x[integer] - np.round(x[integer])), initial=0.0))
    return float(worst)


@pytest.fixture(scope="module")
def agentic(catalog):
    return prepare(load_scenario(ROOT / "examples" / "agentic-shift"), catalog)


def test_start_is_a_feasible_plan_no_better_than_the_lp_bound(agentic):
    solver = _loaded(agentic)
    highs = solver.solver._solver_model
    result = lp_neighbourhood_start(highs, _columns(solver), rel_gap=0.005, time_limit=30)
    assert result.values is not None
    lp = highs.getLp()
    assert _violation(lp, np.array(result.values)) <= FEASIBILITY
    assert result.objective >= result.lp_bound - 1e-9 * abs(result.lp_bound)
    # the proven optimum (solved exactly above) lies between the LP bound and the start
    optimum = solver.model.objective.expr()
    assert result.lp_bound - 1e-6 <= optimum <= result.objective + 1e-6


def test_neighbourhood_keeps_fleet_integers_within_one_unit(agentic):
    solver = _loaded(agentic)
    lp = solver.solver._solver_model.getLp()
    x, _ = lp_relaxation(lp, 30)
    columns = _columns(solver)
    lower, upper = neighbourhood_bounds(lp, x, columns)
    fleet = np.array(columns.fleet)
    assert (upper[fleet] - lower[fleet] <= 1).all()
    assert (lower[fleet] <= x[fleet] + 1e-6).all() and (x[fleet] - 1e-6 <= upper[fleet]).all()
    unused = [i for cols in columns.usage.values() if all(x[k] <= 1e-6 for k in cols) for i in cols]
    assert unused and (upper[np.array(unused)] == 0).all()


def test_start_leaves_the_optimum_of_an_example_unchanged(agentic):
    objectives = []
    for mode in ("off", "on"):
        solver = PlanSolver(
            agentic, SolveOptions(time_limit_s=60, rel_gap=EXACT, start_heuristic=mode)
        )
        outcome = solver.solve()
        assert outcome.status == "optimal"
        assert (outcome.start is not None) == (mode == "on")
        objectives.append(outcome.objective)
    assert objectives[1] == pytest.approx(objectives[0], rel=1e-7)


CASES = [(o, seed) for o in Objective for seed in range(8)]


@pytest.mark.parametrize(("objective", "seed"), CASES, ids=[f"{o.value}-{s}" for o, s in CASES])
def test_start_never_changes_the_brute_force_optimum(catalog, objective, seed):
    sc = _instance(seed, objective)
    best = brute_force(sc, catalog)
    options = SolveOptions(time_limit_s=30, rel_gap=EXACT, start_heuristic="on")
    result = plan_scenario(sc, catalog, options, with_shadow_prices=False, with_baselines=False)
    if best is None:
        assert result.status == "infeasible"
        return
    assert result.status == "optimal"
    assert not verify_plan(result.plan, sc, catalog)
    assert result.plan.outcome.start is not None
    found = result.plan.tco_usd if objective is Objective.min_tco else result.plan.outcome.objective
    assert found == pytest.approx(best, rel=1e-6, abs=1e-6)
