"""Tiny scenarios solved by hand (the arithmetic is in each docstring), solved by real HiGHS."""

from __future__ import annotations

import pytest

from rackplan.models.scenario import Objective, Policy
from tests.planning import (
    Demand,
    RackOption,
    disaggregated_class,
    measured,
    periods,
    scenario,
    solve_checked,
)


def _one_rack_one_period():
    """2,500 output tok/s at a 2:1 prompt ratio on H100s measured at 4,000 prefill and 1,000
    decode tok/s per rack, $1M and 10 kW each, one period."""
    return scenario(
        periods=periods("P1"),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1", workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            ),
        ),
        racks=(RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),),
        measured_rates=measured("hgx-h100", "chat", prefill=4000, decode=1000, power_kw=10),
    )


def test_one_rack_type_one_period(catalog):
    """Forecast 2,500 output tok/s at a 2:1 prompt ratio → 5,000 prompt tok/s; ρ = 0.5 doubles both.
    Decode: 5,000 / 1,000 per rack = 5 racks; prefill: 10,000 / 4,000 = 2.5 racks → 7.5 → 8 racks.
    Capex 8 × $1M = $8,000,000; energy 8 racks × 10 kW × 1,000 h × $0.1 = $8,000 (idle = load).
    TCO = $8,008,000.
    """
    sc = _one_rack_one_period()
    result = solve_checked(sc, catalog)
    plan = result.plan
    assert result.status == "optimal"
    assert plan.tco_usd == pytest.approx(8_008_000)
    assert plan.purchases["racks_bought"].tolist() == [8]
    service = plan.service.set_index("phase")
    assert service.loc["decode", "capacity_tokens_per_s"] == pytest.approx(5000)
    assert service.loc["prefill", "capacity_tokens_per_s"] == pytest.approx(10000)


def test_cheaper_mix_across_types_and_lots(catalog):
    """Type A (h100): $1M, prefill 4,000/rack, decode 1,000/rack. Type B (b200): $3M, prefill
    20,000/rack, decode 2,000/rack, sold in lots of 2. ρ = 0.5, demand 1,000 out tok/s at 10:1
    → needs 2,000 decode and 20,000 prefill tok/s.
    Options: all A: 2 decode + 5 prefill = 7 racks = $7M. All B: prefill 1, decode 1 → 2 racks
    (one lot) = $6M. Mix: 2 A decode ($2M) + 1 B prefill — but B comes in lots of 2 → $6M + $2M.
    Best: one lot of B = $6M (energy: 2 racks × 10 kW × 1,000 h × $0.1 = $2,000).
    """
    sc = scenario(
        periods=periods("P1"),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1",
                workload_class="chat",
                output_tokens_per_s=1000,
                prefill_decode_ratio=10,
            ),
        ),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),
            RackOption(
                rack="hgx-b200", capex_usd=3e6, power_kw_at_load=10, power_kw_idle=10, lot_size=2
            ),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10)
        + measured("hgx-b200", "chat", 20000, 2000, 10),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.tco_usd == pytest.approx(6_002_000)
    bought = plan.purchases.set_index("rack")["racks_bought"].to_dict()
    assert bought == {"hgx-b200": 2}


def test_power_cap_forces_the_efficient_rack(catalog):
    """Same demand as above without lots. Unconstrained, A is cheapest per rack ($1M) but needs
    7 racks × 10 kW = 70 kW; B needs 2 racks × 30 kW = 60 kW for $6M. With a 65 kW cap only
    plans within 65 kW are allowed: mixes like 2 A decode (20 kW) + 1 B prefill (30 kW) =
    50 kW for $2M + $3M = $5M are best.
    Energy: A 2 × 10 kW + B 1 × 30 kW = 50 kW × 1,000 h × $0.1 = $5,000 → $5,005,000.
    (Without the cap the same mix is also optimal: check it is within the cap either way.)
    """
    sc = scenario(
        periods=periods("P1", power_cap_mw=0.065),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1",
                workload_class="chat",
                output_tokens_per_s=1000,
                prefill_decode_ratio=10,
            ),
        ),
        racks=(
            RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),
            RackOption(rack="hgx-b200", capex_usd=3e6, power_kw_at_load=30, power_kw_idle=30),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10)
        + measured("hgx-b200", "chat", 20000, 2000, 30),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.tco_usd == pytest.approx(5_005_000)
    assert plan.power["site_power_mw"].iloc[0] == pytest.approx(0.05)


def test_lifetime_forces_a_repurchase(catalog):
    """Two periods, racks live one period: 8 racks in P1 retire at the start of P2, so 8 more
    are bought in P2. TCO = 16 × $1M + 2 periods × 8 × 10 kW × 1,000 h × $0.1 = $16,016,000."""
    sc = scenario(
        periods=periods("P1", "P2"),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(
                period=p, workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            )
            for p in ("P1", "P2")
        ),
        racks=(
            RackOption(
                rack="hgx-h100",
                capex_usd=1e6,
                power_kw_at_load=10,
                power_kw_idle=10,
                lifetime_periods=1,
            ),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.tco_usd == pytest.approx(16_016_000)
    fleet = plan.fleet.set_index("period")
    assert fleet.loc["P2", "racks_retired"] == 8 and fleet.loc["P2", "racks_installed"] == 8


def test_existing_fleet_is_used_before_buying(catalog):
    """5 racks already installed: only 3 more are bought. Capex $3M; energy 8 × $1,000 = $8,000."""
    sc = scenario(
        periods=periods("P1"),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1", workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            ),
        ),
        racks=(
            RackOption(
                rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10, installed=5
            ),
        ),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.tco_usd == pytest.approx(3_008_000)


def test_discounting_and_maintenance(catalog):
    """One period of 8,760 h (one year) at 10 %/yr discount, 5 %/yr maintenance, then a second
    year with the same fleet. Year 1: 8 racks $8M + maintenance 0.05 × $8M = $0.4M + energy
    8 × 10 kW × 8,760 h × $0.1 = $70,080. Year 2 (factor 1/1.1): $0.4M + $70,080.
    TCO = 8,470,080 + 470,080 / 1.1 = 8,897,425.45…
    """
    from rackplan.models.scenario import Economics

    sc = scenario(
        periods=periods("Y1", "Y2", hours=8760),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(
                period=p, workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            )
            for p in ("Y1", "Y2")
        ),
        racks=(RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10),
        economics=Economics(discount_rate_per_year=0.1, maintenance_fraction_per_year=0.05),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.tco_usd == pytest.approx(8_470_080 + 470_080 / 1.1)


def test_spare_fraction_adds_racks(catalog):
    """20 % spares: allocation ≤ 0.8 × installed; 7.5 racks of work → ⌈7.5 / 0.8⌉ = 10 racks."""
    sc = scenario(
        periods=periods("P1"),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1", workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            ),
        ),
        racks=(RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10),
        policy=Policy(spare_fraction=0.2),
    )
    plan = solve_checked(sc, catalog).plan
    assert plan.purchases["racks_bought"].sum() == 10


def test_max_served_within_budget(catalog):
    """A $4M budget buys 4 racks: prefill needs 2.5 racks per 2,500 tok/s, decode 5: serving a
    share s needs 7.5·s racks ≤ 4 → s = 8/15 = 0.5333 of the forecast."""
    sc = scenario(
        periods=periods("P1", capex_budget_usd=4e6),
        classes=(disaggregated_class(),),
        demand=(
            Demand(
                period="P1", workload_class="chat", output_tokens_per_s=2500, prefill_decode_ratio=2
            ),
        ),
        racks=(RackOption(rack="hgx-h100", capex_usd=1e6, power_kw_at_load=10, power_kw_idle=10),),
        measured_rates=measured("hgx-h100", "chat", 4000, 1000, 10),
        policy=Policy(objective=Objective.max_served),
    )
    result = solve_checked(sc, catalog)
    import pyomo.environ as pyo

    served = pyo.value(result.solver.model.served["chat", "P1"])
    assert served == pytest.approx(4 / 7.5)


def test_a_plan_buying_a_withdrawn_product_warns(catalog):
    """The same plan on a catalog where hgx-h100 is withdrawn carries a warning naming it, in
    the plan JSON and the CLI summary; on the shipped catalog it carries none."""
    from dataclasses import replace

    from rackplan.planner.core.run import summarise

    sc = _one_rack_one_period()
    shipping = solve_checked(sc, catalog)
    assert shipping.plan.warnings == ()
    withdrawn_rack = catalog.rack("hgx-h100").model_copy(
        update={"status": "withdrawn: test double"}
    )
    withdrawn = replace(catalog, racks={**catalog.racks, "hgx-h100": withdrawn_rack})
    result = solve_checked(sc, withdrawn)
    (warning,) = result.plan.warnings
    assert "8 × hgx-h100" in warning and "withdrawn" in warning
    assert result.plan.as_json()["warnings"] == [warning]
    assert f"warning: {warning}" in summarise(result.plan, result.data)
