"""Helpers for planner tests: compact scenario builders and a solve-and-check wrapper."""

from __future__ import annotations

from rackplan.models.scenario import (
    Demand,
    Economics,
    MeasuredRate,
    Period,
    Policy,
    RackOption,
    Scenario,
    ServingMode,
    WorkloadClass,
)
from rackplan.planner.core.run import PlanResult, plan_scenario
from rackplan.planner.core.solve import SolveOptions
from rackplan.planner.core.verify import verify_plan

FLAT = Economics(discount_rate_per_year=0.0, maintenance_fraction_per_year=0.0)
"""No discounting or maintenance: totals can be added up by hand."""


def periods(
    *names: str, hours: float = 1000.0, price: float = 0.1, pue: float = 1.0, **extra
) -> tuple[Period, ...]:
    return tuple(
        Period(name=n, hours=hours, electricity_usd_per_kwh=price, pue=pue, **extra) for n in names
    )


def measured(
    rack: str, cls: str, prefill: float, decode: float, power_kw: float
) -> tuple[MeasuredRate, ...]:
    """Measured prefill and decode rates for (rack, class) at ``power_kw`` per rack."""
    return (
        MeasuredRate(
            rack=rack,
            workload_class=cls,
            mode="prefill",
            tokens_per_s_per_rack=prefill,
            ttft_ms=100,
            power_kw=power_kw,
            source="test",
        ),
        MeasuredRate(
            rack=rack,
            workload_class=cls,
            mode="decode",
            tokens_per_s_per_rack=decode,
            tpot_ms=10,
            power_kw=power_kw,
            source="test",
        ),
    )


def disaggregated_class(
    name: str = "chat", llm: str = "llama-3.1-8b", utilisation: float = 0.5
) -> WorkloadClass:
    return WorkloadClass(
        name=name,
        llm=llm,
        input_tokens=1000,
        output_tokens=500,
        ttft_ms=1000,
        tpot_ms=50,
        max_utilisation=utilisation,
        modes=frozenset({ServingMode.disaggregated}),
    )


def scenario(**fields) -> Scenario:
    base = {"economics": FLAT, "policy": Policy()}
    return Scenario(**(base | fields))


def solve_checked(sc: Scenario, catalog, **kwargs) -> PlanResult:
    """Plan, and fail loudly if the independent checker finds anything."""
    result = plan_scenario(sc, catalog, SolveOptions(time_limit_s=30, rel_gap=1e-9), **kwargs)
    if result.plan is not None:
        problems = verify_plan(result.plan, sc, catalog)
        assert not problems, "\n".join(map(str, problems))
    return result


__all__ = [
    "Demand",
    "RackOption",
    "disaggregated_class",
    "measured",
    "periods",
    "scenario",
    "solve_checked",
]
