"""The power-cap basis (``policy.power_cap_basis``): nameplate vs expected draw.

- nameplate: PUE · Σ_r P_load,r · installed[r,t] / 1000 ≤ cap_t (MW);
- expected:  PUE · (Σ_r P_idle,r · installed[r,t] + Σ_j (P_j − P_idle) · alloc[j,t]) / 1000 ≤ cap_t.

A hand-solved case where the two bases choose different racks, the brute force with the
expected basis, and properties: with every operating point at or below its rack's at-load
power, the expected draw of any plan is at most its nameplate load, so a plan that meets a
nameplate cap meets the same expected cap and the optimum can only improve.
"""

from __future__ import annotations

import pytest

from rackplan.models.scenario import Objective, Policy, Scenario
from rackplan.planner.core.verify import verify_plan
from tests.planning import (
    Demand,
    RackOption,
    disaggregated_class,
    measured,
    periods,
    scenario,
    solve_checked,
)
from tests.test_planner_bruteforce import _instance, brute_force


def _two_racks(basis: str) -> Scenario:
    """One class: 1,000 output tokens/s of 1,000-in/500-out requests at ρ = 0.5, so 2,000
    decode and 4,000 prefill tokens/s to provision. Both racks do 4,000 prefill or 1,000 decode
    tokens/s per rack: 1 prefill + 2 decode racks, fully allocated.

    - hgx-h100: $1 M, 40 kW at load, 10 idle, runs at 20 kW: nameplate 3·40 = 120 kW,
      expected 3·10 + 3·(20 − 10) = 60 kW;
    - hgx-b200: $2 M, 30 kW at load, 10 idle, runs at 25 kW: nameplate 90 kW, expected 75 kW.

    Cap 95 kW (PUE 1): nameplate admits only 3 × b200 (1 h100 + 2 b200 = 100 kW); expected admits
    3 × h100, which is cheaper in capex and energy."""
    return scenario(
        name=f"basis-{basis}",
        periods=periods("P1", hours=1000.0, price=0.1, pue=1.0, power_cap_mw=0.095),
        classes=(disaggregated_class("chat"),),
        demand=(Demand(period="P1", workload_class="chat", output_tokens_per_s=1000),),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=40, power_kw_idle=10),
            RackOption(rack="hgx-b200", capex_usd=2e6, power_kw_at_load=30, power_kw_idle=10),
        ),
        measured_rates=measured("hgx-h100", "chat", prefill=4000, decode=1000, power_kw=20)
        + measured("hgx-b200", "chat", prefill=4000, decode=1000, power_kw=25),
        policy=Policy(power_cap_basis=basis),
    )


def _fleet(result) -> dict[str, float]:
    fleet = result.plan.fleet
    return {r: float(n) for r, n in zip(fleet["rack"], fleet["racks_installed"], strict=True) if n}


def test_nameplate_basis_buys_the_low_nameplate_rack(catalog):
    result = solve_checked(_two_racks("nameplate"), catalog)
    assert result.status == "optimal"
    assert _fleet(result) == {"hgx-b200": 3.0}
    # capex 3 × $2 M + energy 3 × 25 kW × 1,000 h × $0.1/kWh
    assert result.plan.tco_usd == pytest.approx(6e6 + 7_500)
    power = result.plan.power.iloc[0]
    assert power["capped_power_mw"] == pytest.approx(0.090)
    assert power["headroom_mw"] == pytest.approx(0.005)


def test_expected_basis_buys_the_low_draw_rack(catalog):
    result = solve_checked(_two_racks("expected"), catalog)
    assert result.status == "optimal"
    assert _fleet(result) == {"hgx-h100": 3.0}
    # capex 3 × $1 M + energy 3 × 20 kW × 1,000 h × $0.1/kWh
    assert result.plan.tco_usd == pytest.approx(3e6 + 6_000)
    power = result.plan.power.iloc[0]
    assert power["power_cap_basis"] == "expected"
    assert power["site_power_mw"] == pytest.approx(0.120)  # nameplate, reported as before
    assert power["capped_power_mw"] == pytest.approx(0.060)
    assert power["headroom_mw"] == pytest.approx(0.035)


def test_checker_applies_the_basis(catalog):
    """The expected-basis plan breaks the same cap read on the nameplate basis."""
    expected = solve_checked(_two_racks("expected"), catalog)
    problems = verify_plan(expected.plan, _two_racks("nameplate"), catalog)
    assert [p.check for p in problems] == ["power"]
    assert "nameplate" in problems[0].message


def _with_caps(seed: int, objective: Objective) -> Scenario | None:
    """A brute-force instance with a power cap in every period and every measured point at or
    below its rack's at-load power (as roofline points always are); None if it has no cap."""
    sc = _instance(seed, objective)
    if any(p.power_cap_mw is None for p in sc.periods):
        return None
    load = {o.rack: o.power_kw_at_load for o in sc.racks}
    rates = tuple(
        m.model_copy(update={"power_kw": min(m.power_kw, load[m.rack])}) for m in sc.measured_rates
    )
    return sc.model_copy(update={"measured_rates": rates})


def _basis(sc: Scenario, basis: str) -> Scenario:
    return sc.model_copy(update={"policy": sc.policy.model_copy(update={"power_cap_basis": basis})})


CAPPED = [
    (objective, seed)
    for objective in Objective
    for seed in [s for s in range(60) if _with_caps(s, objective) is not None][:8]
]
"""The first 8 capped instances of each objective (some with at most one rack type)."""


@pytest.mark.parametrize(("objective", "seed"), CAPPED, ids=[f"{o.value}-{s}" for o, s in CAPPED])
def test_expected_never_needs_more_power_than_nameplate(catalog, objective, seed):
    """Expected draw ≤ nameplate for every plan, so: the nameplate optimum checks out on the
    expected basis, the expected basis is feasible whenever nameplate is, and its optimum is
    no worse (lower TCO or energy, or more tokens served)."""
    sc = _with_caps(seed, objective)
    nameplate = solve_checked(_basis(sc, "nameplate"), catalog, with_baselines=False)
    expected = solve_checked(_basis(sc, "expected"), catalog, with_baselines=False)
    if nameplate.plan is None:
        pytest.skip("infeasible on the nameplate basis: nothing to compare")
    assert not verify_plan(nameplate.plan, _basis(sc, "expected"), catalog)
    assert expected.status == "optimal"
    plan = expected.plan
    assert (plan.power["capped_power_mw"] <= plan.power["site_power_mw"] + 1e-12).all()
    better, worse = expected.plan.outcome.objective, nameplate.plan.outcome.objective
    if objective is Objective.max_served:
        assert better >= worse * (1 - 1e-6) - 1e-6
    else:
        assert better <= worse * (1 + 1e-6) + 1e-6


@pytest.mark.parametrize(("objective", "seed"), CAPPED, ids=[f"{o.value}-{s}" for o, s in CAPPED])
def test_expected_basis_matches_brute_force(catalog, objective, seed):
    """The brute force with an expected-draw cap row in each period's allocation LP."""
    sc = _basis(_instance(seed, objective), "expected")
    best = brute_force(sc, catalog)
    result = solve_checked(sc, catalog, with_shadow_prices=False, with_baselines=False)
    if best is None:
        assert result.status == "infeasible"
        return
    assert result.status == "optimal"
    found = result.plan.tco_usd if objective is Objective.min_tco else result.plan.outcome.objective
    assert found == pytest.approx(best, rel=1e-6, abs=1e-6)


def test_power_cap_basis_survives_a_spreadsheet_round_trip(tmp_path):
    """The setting is read from settings.csv / the workbook and written back, not dropped."""
    from pathlib import Path

    from rackplan.planner.io.scenario_io import load_scenario
    from rackplan.planner.io.spreadsheets import read_scenario, write_scenario

    base = load_scenario(Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json")
    expected = base.model_copy(
        update={"policy": base.policy.model_copy(update={"power_cap_basis": "expected"})}
    )
    for target in (tmp_path / "folder", tmp_path / "book.xlsx"):
        write_scenario(expected, target)
        assert read_scenario(target).policy.power_cap_basis == "expected"
