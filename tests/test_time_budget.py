"""One time budget per plan: every solve gets what is left; steps cut short are listed."""

from __future__ import annotations

from rackplan.planner.core import run
from rackplan.planner.core.solve import PlanSolver, SolveOptions, TimeBudget
from tests.planning import Demand, RackOption, disaggregated_class, measured, periods, scenario


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_counts_down_and_records_skipped_steps():
    clock = Clock()
    budget = TimeBudget(10.0, clock)
    assert budget.remaining() == 10.0 and not budget.skip_if_spent("a")
    clock.now = 7.5
    assert budget.remaining() == 2.5
    clock.now = 12.0
    assert budget.remaining() == 0.0
    assert budget.skip_if_spent("b") and budget.skip_if_spent("b")
    budget.cut("c")
    assert budget.cut_short == ["b", "c"]


def _two_types():
    return scenario(
        periods=periods("P1"),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1", workload_class="chat", output_tokens_per_s=1000, prefill_decode_ratio=2
            ),
        ),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=4),
            RackOption(rack="hgx-b200", capex_usd=1.5e6, power_kw_at_load=10, power_kw_idle=4),
        ),
        measured_rates=measured("hgx-h100", "chat", 1000, 1000, 9)
        + measured("hgx-b200", "chat", 8000, 1000, 9),
    )


def test_whole_plan_shares_one_budget(catalog, monkeypatch):
    """Budget 15 s, each MIP solve 'takes' 10 s: the main solve gets 15 s, the first baseline
    the 5 s left, and the remaining baselines are skipped and listed in the plan."""
    clock = Clock()
    monkeypatch.setattr(run, "TimeBudget", lambda seconds: TimeBudget(seconds, clock))
    limits: list[tuple[str, float]] = []
    original = PlanSolver.solve

    def timed(self, step="main solve"):
        limits.append((step, self.time_limit()))
        outcome = original(self, step)
        clock.now += 10.0
        return outcome

    monkeypatch.setattr(PlanSolver, "solve", timed)
    result = run.plan_scenario(_two_types(), catalog, SolveOptions(time_limit_s=15.0))
    assert limits == [("main solve", 15.0), ("baseline: single rack type hgx-h100", 5.0)]
    skipped = [
        "baseline: single rack type hgx-b200",
        "baseline: all-HBM aggregated",
        "baseline: greedy",
    ]
    assert result.cut_short == tuple(skipped)
    body = result.as_json()
    assert body["cut_short"] == skipped
    baselines = result.plan.baselines.set_index("baseline")
    assert baselines.loc["all-HBM aggregated", "status"] == "not solved: time budget spent"


def test_a_generous_budget_cuts_nothing(catalog):
    result = run.plan_scenario(_two_types(), catalog, SolveOptions(time_limit_s=60.0))
    assert result.cut_short == () and result.as_json()["cut_short"] == []
    assert "not solved: time budget spent" not in set(result.plan.baselines["status"])


def test_pareto_steps_share_the_budget(catalog):
    """A spent budget: every step of the sweep is skipped and listed."""
    from rackplan.planner.core.whatif import pareto

    frame = pareto(
        _two_types(), catalog, "budget_scale", 1.0, 2.0, 3, SolveOptions(time_limit_s=0.0)
    )
    assert set(frame["status"]) == {"not solved: time budget spent"}
    assert frame.attrs["cut_short"] == [f"pareto step budget_scale={v:g}" for v in (1.0, 1.5, 2.0)]
