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
        for record in self.points.records():
            target = (
                self.workload.ttft_ms if record["phase"] == Phase.prefill else self.workload.tpot_ms
            )
            latency = record.get("ttft_ms", record.get("tpot_ms"))
            record["meets_sla"] = target is None or latency <= target
            points.append(record)
        return {
            "rack": self.rack_id,
            "llm": self.llm_id,
            "precision": self.precision,
            "workload": self.workload.model_dump(),
            "efficiency": self.efficiency,
            "operating_points": points,
            "end_to_end": self.end_to_end,
        }


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
            "source": efficiency.source,
        },
    )
