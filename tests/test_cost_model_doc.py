"""The worked example of docs/cost-model.md, solved: every figure in its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rackplan.models.scenario import Economics
from tests.planning import (
    Demand,
    RackOption,
    disaggregated_class,
    measured,
    periods,
    scenario,
    solve_checked,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "cost-model.md"


def _worked_example():
    return scenario(
        periods=periods("H1", "H2", hours=4380, price=0.1, pue=1.2),
        classes=(disaggregated_class(),),
        demand=tuple(
            Demand(period=p, workload_class="chat", output_tokens_per_s=500, prefill_decode_ratio=2)
            for p in ("H1", "H2")
        ),
        racks=(
            RackOption(
                rack="hgx-h100",
                capex_usd=1e6,
                power_kw_at_load=20,
                power_kw_idle=20,
                lifetime_periods=4,
            ),
        ),
        measured_rates=measured("hgx-h100", "chat", prefill=4000, decode=1000, power_kw=20),
        economics=Economics(
            discount_rate_per_year=0.1, maintenance_fraction_per_year=0.04, salvage="linear"
        ),
    )


def test_worked_example_matches_the_plan(catalog):
    plan = solve_checked(_worked_example(), catalog).plan
    costs = plan.costs.set_index("period")
    assert plan.purchases["racks_bought"].tolist() == [2]
    assert costs.loc["H1", "capex_usd"] == pytest.approx(2_000_000)
    assert costs["energy_usd"].tolist()[:2] == pytest.approx([21_024, 21_024])
    assert costs["maintenance_usd"].tolist()[:2] == pytest.approx([40_000, 40_000])
    assert costs.loc["H2", "discount_factor"] == pytest.approx(0.953463, rel=1e-6)
    assert costs.loc["H2", "discounted_usd"] == pytest.approx(58_184.10, abs=0.01)
    assert costs.loc["salvage", "discounted_usd"] == pytest.approx(-909_090.91, abs=0.01)
    assert plan.tco_usd == pytest.approx(1_210_117.19, abs=0.01)


def test_the_doc_states_the_same_total():
    text = DOC.read_text()
    total = re.search(r"\*\*TCO = .* = \$([\d,.]+)\.\*\*", text)
    assert total is not None and float(total.group(1).replace(",", "")) == pytest.approx(
        1_210_117.19, abs=0.01
    )
