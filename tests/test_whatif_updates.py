"""Re-solves push only what changed: the objective is re-sent to HiGHS only when one of its
parameters (capex, electricity price, demand) changed, yet every sequence of what-ifs still
matches a fresh solve of the changed scenario."""

from __future__ import annotations

import pytest

from rackplan.models.scenario import Objective, Policy
from rackplan.planner.core.data import prepare
from rackplan.planner.core.solve import PlanSolver
from rackplan.planner.core.whatif import Baseline, apply_change
from tests.planning import periods
from tests.test_whatif import EXACT, _fresh, _scenario


def _count_objective_pushes(solver: PlanSolver) -> list[int]:
    """Count calls of Pyomo's objective update (after the first solve has loaded it)."""
    objective = solver.solver._mutable_objective
    calls = [0]
    inner = objective.update

    def counted() -> None:
        calls[0] += 1
        inner()

    objective.update = counted
    return calls


def test_cap_only_change_does_not_push_the_objective_but_a_price_change_does(catalog):
    solver = PlanSolver(prepare(_scenario(2500), catalog), EXACT)
    solver.solve()
    pushes = _count_objective_pushes(solver)
    baseline = Baseline.of(solver)
    apply_change(solver, baseline, "power_cap_scale", 0.5)
    solver.solve()
    assert pushes[0] == 0
    apply_change(solver, baseline, "electricity_scale", 3.0)
    solver.solve()
    assert pushes[0] == 1


def test_price_change_after_a_cap_change_matches_a_fresh_solve(catalog):
    """Cap first (objective skipped), then capex and price (objective pushed), then the cap
    back: each re-solve equals a fresh solve of the scenario as changed so far."""
    base = _scenario(2500)
    solver = PlanSolver(prepare(base, catalog), EXACT)
    solver.solve()
    baseline = Baseline.of(solver)
    apply_change(solver, baseline, "power_cap_scale", 0.5)
    capped = base.model_copy(update={"periods": periods("P1", "P2", power_cap_mw=0.1)})
    assert solver.solve().objective == pytest.approx(_fresh(capped, catalog), rel=1e-9)
    apply_change(solver, baseline, "capex_scale:hgx-b200", 0.6)
    apply_change(solver, baseline, "electricity_scale", 3.0)
    racks = (base.racks[0], base.racks[1].model_copy(update={"capex_usd": 1.5e6}))
    pricey = capped.model_copy(
        update={"periods": periods("P1", "P2", power_cap_mw=0.1, price=0.3), "racks": racks}
    )
    assert solver.solve().objective == pytest.approx(_fresh(pricey, catalog), rel=1e-9)
    apply_change(solver, baseline, "power_cap_scale", 1.0)
    loose = pricey.model_copy(update={"periods": periods("P1", "P2", power_cap_mw=0.2, price=0.3)})
    assert solver.solve().objective == pytest.approx(_fresh(loose, catalog), rel=1e-9)


def test_demand_change_under_max_served_pushes_the_objective(catalog):
    """max_served weights served shares by the demand row: a demand what-if changes the
    objective's coefficients, so it must be pushed and match a fresh solve."""
    base = _scenario(2500).model_copy(update={"policy": Policy(objective=Objective.max_served)})
    solver = PlanSolver(prepare(base, catalog), EXACT)
    solver.solve()
    apply_change(solver, Baseline.of(solver), "demand_scale", 1.7)
    scaled = _scenario(2500 * 1.7).model_copy(update={"policy": base.policy})
    assert solver.solve().objective == pytest.approx(_fresh(scaled, catalog), rel=1e-9)
