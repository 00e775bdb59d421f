"""Rate reports: operating points and end-to-end serving for one rack × LLM × workload.

The planner and the command line both read rates through here, so the numbers a user
sees are the numbers the optimiser uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from rackplan.catalogs.loader import Catalog
from rackplan.models.base import Phase
from rackplan.models.operating_points import PointTable, ReplicaSet, operating_points
from rackplan.models.serving import aggregated, disaggregated
from rackplan.models.workload import PRECISIONS, Workload


@dataclass(frozen=True)
class RateReport:
    """Everything ``rackplan rates`` shows, in the JSON contract's shape via ``as_json``."""

    rack_id: str
    llm_id: str
    precision: str
    workload: Workload
    points: PointTable
    end_to_end: dict[str, dict]
    efficiency: dict[str, float | str]

    def as_json(self) -> dict:
        points = []
        low, high = self.band_pct
        for record in self.points.records():
            target = (
                self.workload.ttft_ms if record["phase"] == Phase.prefill else self.workload.tpot_ms
            )
            latency = record.get("ttft_ms", record.get("tpot_ms"))
            record["meets_sla"] = target is None or latency <= target
            rate = record["tokens_per_s_per_rack"]
            record["low"] = rate * (1 - low / 100)
            record["high"] = rate * (1 + high / 100)
            points.append(record)
        end_to_end = {}
        for mode, result in self.end_to_end.items():
            result = dict(result)
            rate = result.get("output_tokens_per_s_per_rack")
            result["low"] = None if rate is None else rate * (1 - low / 100)
            result["high"] = None if rate is None else rate * (1 + high / 100)
            end_to_end[mode] = result
        return {
            "rack": self.rack_id,
            "llm": self.llm_id,
            "precision": self.precision,
            "workload": self.workload.model_dump(),
            "efficiency": self.efficiency,
            "rate_band": {
                "low_pct": low,
                "high_pct": high,
                "meaning": "low/high: tokens/s per rack × (1 − low_pct/100) and "
                "× (1 + high_pct/100), the central 80 % of the rack family's validation error "
                "on measurements it was not fitted to (docs/calibration.md)",
            },
            "operating_points": points,
            "end_to_end": end_to_end,
        }

    @property
    def band_pct(self) -> tuple[float, float]:
        """(low %, high %) of the rack family's rate band."""
        return (
            float(self.efficiency.get("rate_error_low_pct", 0.0)),
            float(self.efficiency.get("rate_error_high_pct", 0.0)),
        )


def rate_report(
    catalog: Catalog, rack_id: str, llm_id: str, workload: Workload, precision: str = "fp8"
) -> RateReport:
    """Operating points (dominated ones pruned) and both serving modes for one combination."""
    rack = catalog.rack(rack_id)
    llm = catalog.llm(llm_id)
    efficiency = catalog.efficiency_for(rack)
    chosen = PRECISIONS[precision]
    points = operating_points(rack, llm, chosen, workload, efficiency)
    replicas = ReplicaSet.build(rack, llm, chosen, workload, efficiency)
    modes = {"aggregated": aggregated(replicas), "disaggregated": disaggregated(replicas)}
    return RateReport(
        rack_id=rack_id,
        llm_id=llm_id,
        precision=precision,
        workload=workload,
        points=points,
        end_to_end={mode: result.as_dict() for mode, result in modes.items()},
        efficiency={
            "family": rack.family,
            "flops_fraction": efficiency.flops_fraction,
            "bandwidth_fraction": efficiency.bandwidth_fraction,
            "layer_overhead_us": efficiency.layer_overhead_us,
            "overlap_exponent": efficiency.overlap_exponent,
            "rate_error_low_pct": efficiency.rate_error_low_pct,
            "rate_error_high_pct": efficiency.rate_error_high_pct,
            "source": efficiency.source,
        },
    )
