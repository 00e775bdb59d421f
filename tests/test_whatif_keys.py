"""Procurement what-if keys: each one changes the plan the way a fresh solve of the changed
scenario does, gives a full plan and buy matrix, and infeasible variants are explained."""

from __future__ import annotations

import pytest

from rackplan.catalogs.errors import InputError
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.session import (
    WITHIN_GAP_NOTE,
    Variant,
    changed_scenario,
    parse_variant_options,
    run_comparison,
)
from rackplan.planner.core.solve import SolveOptions
from tests.planning import Demand, RackOption, disaggregated_class, measured, periods, scenario

EXACT = SolveOptions(time_limit_s=30, rel_gap=1e-9)
PERIODS = ("P1", "P2", "P3")


def _scenario(demand: float = 2500, h100_installed: int = 0):
    """Two rack types; the B200 is cheaper per token, the H100 may have an existing fleet."""
    return scenario(
        periods=periods(*PERIODS, power_cap_mw=0.3),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(
                period=p, workload_class="chat", output_tokens_per_s=demand, prefill_decode_ratio=2
            )
            for p in PERIODS
        ),
        racks=(
            RackOption(
                rack="hgx-h100",
                capex_usd=1e6,
                power_kw_at_load=10,
                power_kw_idle=4,
                installed=h100_installed,
            ),
            RackOption(
                rack="hgx-b200",
                capex_usd=1.5e6,
                power_kw_at_load=12,
                power_kw_idle=5,
                supply_limit_per_period=4,
            ),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 9)
        + measured("hgx-b200", "chat", 9000, 2600, 11),
    )


def _compare(catalog, *options: str, sc=None, **kwargs):
    return run_comparison(
        sc or _scenario(), catalog, parse_variant_options(list(options)), EXACT, **kwargs
    )


def _bought(result, rack: str, period: str | None = None) -> float:
    rows = result.plan.purchases
    rows = rows[rows["rack"] == rack]
    if period is not None:
        rows = rows[rows["period"] == period]
    return float(rows["racks_bought"].sum())


def _fresh_tco(sc, catalog) -> float:
    return plan_scenario(sc, catalog, EXACT, with_baselines=False).plan.tco_usd


def test_supply_slip_moves_the_first_purchase(catalog):
    comparison = _compare(catalog, "slip:first_period:hgx-b200=P2")
    base, slip = comparison.results["base"], comparison.results["slip"]
    assert _bought(base, "hgx-b200", "P1") > 0
    assert _bought(slip, "hgx-b200", "P1") == 0
    assert _bought(slip, "hgx-h100", "P1") > 0
    assert slip.plan.tco_usd > base.plan.tco_usd


def test_supply_limit_scale_and_exclude_and_include(catalog):
    comparison = _compare(
        catalog,
        "half:supply_limit_scale=0.5",
        "one:supply_limit_scale:hgx-b200=0.25",
        "no-b200:exclude=hgx-b200",
        "no-b200-flag:exclude:hgx-b200=1",
        "gb200:include=gb200-nvl72",
    )
    r = comparison.results
    assert r["half"].plan.purchases.groupby("period")["racks_bought"].sum().max() >= 2
    assert r["half"].plan.purchases.query("rack == 'hgx-b200'")["racks_bought"].max() <= 2
    assert r["one"].plan.purchases.query("rack == 'hgx-b200'")["racks_bought"].max() <= 1
    for name in ("no-b200", "no-b200-flag"):
        assert _bought(r[name], "hgx-b200") == 0
        assert _bought(r[name], "hgx-h100") > 0
    assert r["no-b200"].plan.tco_usd == pytest.approx(r["no-b200-flag"].plan.tco_usd, rel=1e-9)
    assert "gb200-nvl72" in set(r["gb200"].plan.fleet["rack"])
    assert "gb200-nvl72" not in set(r["base"].plan.fleet["rack"])


def test_retire_and_power_down_existing_racks(catalog):
    sc = _scenario(h100_installed=3)
    comparison = _compare(catalog, "retire:retire:hgx-h100=P2", "down:power_down:hgx-h100=2", sc=sc)
    r = comparison.results
    fleet = r["retire"].plan.fleet.query("rack == 'hgx-h100'").set_index("period")
    assert fleet.loc["P1", "racks_installed"] == 3
    assert fleet.loc["P2", "racks_retired"] == 3
    assert fleet.loc["P2", "racks_installed"] == fleet.loc["P2", "racks_bought"]
    down = r["down"].plan.fleet.query("rack == 'hgx-h100'").set_index("period")
    assert down.loc["P1", "racks_installed"] == 1
    # fewer existing racks can never make the plan cheaper (capex is sunk, capacity is lost)
    assert r["retire"].plan.tco_usd >= r["base"].plan.tco_usd - 1e-6
    assert r["down"].plan.tco_usd >= r["base"].plan.tco_usd - 1e-6
    expected = changed_scenario(sc, catalog, Variant("down", (("power_down:hgx-h100", 2.0),)))
    assert expected.racks[0].installed == 1


def test_demand_shape_per_class_and_period_matches_a_fresh_solve(catalog):
    comparison = _compare(catalog, "shape:demand_scale:chat@P2=2,demand_scale:@P3=0.5")
    shaped = _scenario().model_copy(
        update={
            "demand": tuple(
                d.model_copy(
                    update={
                        "output_tokens_per_s": d.output_tokens_per_s
                        * {"P1": 1.0, "P2": 2.0, "P3": 0.5}[d.period]
                    }
                )
                for d in _scenario().demand
            )
        }
    )
    result = comparison.results["shape"]
    assert result.plan.tco_usd == pytest.approx(_fresh_tco(shaped, catalog), rel=1e-7)
    forecast = result.plan.service.query("phase == 'decode'").set_index("period")
    assert forecast.loc["P2", "forecast_tokens_per_s"] == pytest.approx(5000)
    assert forecast.loc["P3", "forecast_tokens_per_s"] == pytest.approx(1250)


def test_sla_change_and_percentile_rebuild_the_rates(catalog):
    """A TPOT below every measured point (10 ms) leaves no way to serve the class; the
    percentile key is accepted and reaches the class."""
    comparison = _compare(catalog, "tight:tpot_ms:chat=5", "p99:sla_percentile:chat=p99")
    tight = comparison.results["tight"]
    assert tight.plan is None and tight.status == "infeasible"
    assert tight.explanation and "chat" in " ".join(tight.explanation)
    p99 = changed_scenario(_scenario(), catalog, Variant("p99", (("sla_percentile:chat", "p99"),)))
    assert p99.classes[0].sla_percentile == "p99"
    assert comparison.results["p99"].status in ("optimal", "infeasible")


def test_infeasible_in_place_variant_carries_the_elastic_explanation(catalog):
    comparison = _compare(catalog, "dark:power_cap_scale=0.05")
    dark = comparison.results["dark"]
    assert dark.plan is None and dark.status == "infeasible"
    assert any("power" in line for line in dark.explanation)
    row = comparison.frame.set_index("variant").loc["dark"]
    assert "power" in row["explanation"]


def test_every_variant_has_its_buy_matrix(catalog):
    comparison = _compare(catalog, "slip:first_period:hgx-b200=P3")
    for result in comparison.results.values():
        matrix = result.buy_matrix
        assert list(matrix.columns) == ["rack", *PERIODS, "total"]
        assert matrix["total"].sum() == pytest.approx(result.plan.purchases["racks_bought"].sum())
    schedules = comparison.buy_schedules()
    assert set(schedules["variant"]) == {"base", "slip"}
    slip = schedules.query("variant == 'slip' and rack == 'hgx-b200'")
    assert slip[["P1", "P2"]].to_numpy().sum() == 0


def test_difference_within_the_gap_is_marked_and_refined(catalog):
    """At a loose gap a small real change (+1 % electricity) is inside the proven interval:
    it is marked; with refinement base and variant are re-solved and the interval shrinks to
    the true difference, which is then proven (> 0)."""
    loose = SolveOptions(time_limit_s=30, rel_gap=0.5)
    sc = _scenario()
    variants = parse_variant_options(["dearer:electricity_scale=1.01"])
    unrefined = run_comparison(sc, catalog, variants, loose, refine_gap=None).frame
    row = unrefined.set_index("variant").loc["dearer"]
    assert row["delta_tco_low_usd"] <= 0 <= row["delta_tco_high_usd"]
    assert bool(row["delta_within_gap"]) and row["delta_note"] == WITHIN_GAP_NOTE
    assert not row["refined"]
    refined = run_comparison(sc, catalog, variants, loose, refine_gap=1e-9).frame
    row = refined.set_index("variant").loc["dearer"]
    assert row["refined"] and not row["delta_within_gap"] and row["delta_note"] == ""
    assert 0 < row["delta_tco_low_usd"] <= row["delta_tco_usd"] <= row["delta_tco_high_usd"]
    assert row["delta_tco_high_usd"] - row["delta_tco_low_usd"] < 1e-6 * row["tco_usd"]


def test_unknown_ids_get_did_you_mean_all_at_once(catalog):
    with pytest.raises(InputError) as info:
        _compare(
            catalog,
            "a:first_period:hgx-b20=P2",
            "b:retire:hgx-h100=P9",
            "c:sla_percentile:chat=p98",
            "d:demand_scale:chta=2",
        )
    text = str(info.value)
    assert len(info.value.problems) == 5
    assert "did you mean 'hgx-b200'" in text
    assert "did you mean 'p99'" in text
    assert "did you mean 'chat'" in text
    assert "no existing hgx-h100 racks" in text
