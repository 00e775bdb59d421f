"""Near-optimal alternatives: each alternative's TCO is within the stated percentage of the
optimum (checked by the independent plan checker and against a fresh optimum), and the
fewest ≤ optimum ≤ most racks of the chosen type."""

from __future__ import annotations

import pytest

from rackplan.catalogs.errors import InputError
from rackplan.planner.core.alternatives import near_optimal, total_bought
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.verify import verify_plan
from tests.test_whatif_keys import EXACT, _scenario


@pytest.mark.parametrize("within", [1.0, 10.0])
def test_alternatives_stay_within_the_stated_percentage(catalog, within):
    sc = _scenario()
    result = near_optimal(sc, catalog, within, racks=["hgx-b200"], differ=True, options=EXACT)
    fresh = plan_scenario(sc, catalog, EXACT, with_baselines=False).plan.tco_usd
    assert result.optimum.tco_usd == pytest.approx(fresh, rel=1e-9)
    assert len(result.alternatives) == 3
    for alternative in result.alternatives:
        plan = alternative.plan
        assert plan is not None, alternative
        assert not verify_plan(plan, sc, catalog), alternative.goal
        assert plan.tco_usd <= fresh * (1 + within / 100) * (1 + 1e-9)
    low, high = result.rack_range("hgx-b200")
    optimum = total_bought(result.optimum, "hgx-b200")
    assert low <= optimum <= high
    if within == 10.0:
        assert low < high  # 10 % leaves room to swap B200s for H100s in this scenario


def test_statement_and_frame(catalog):
    result = near_optimal(_scenario(), catalog, 10.0, racks=["hgx-b200"], options=EXACT)
    (line,) = result.statements()
    low, high = result.rack_range("hgx-b200")
    assert f"plans buying {low:,.0f}–{high:,.0f} hgx-b200 racks" in line
    assert "within 10 % of the optimal TCO" in line
    frame = result.frame()
    assert frame["goal"].tolist() == ["optimum", "min", "max"]
    assert (frame["tco_above_optimum_pct"] <= 10 + 1e-6).all()


def test_unknown_rack_gets_did_you_mean(catalog):
    with pytest.raises(InputError, match="did you mean 'hgx-b200'"):
        near_optimal(_scenario(), catalog, 1.0, racks=["hgx-b20"], options=EXACT)


def test_cli_alternatives(tmp_path, catalog):
    from rackplan.planner.cli.main import main
    from rackplan.planner.io.scenario_io import save_scenario_json

    path = tmp_path / "s.json"
    save_scenario_json(_scenario(), path)
    assert main(["alternatives", str(path), "--within", "10%", "--rack", "hgx-b200"]) == 0
    assert main(["alternatives", str(path), "--within", "x"]) == 2
