"""Benchmark: the full rate table — every catalog rack × LLM × three workload shapes.

Reports the median and spread over repeated runs (the machine is shared and noisy).
Run: ``make bench`` or ``.venv/bin/python bench/rates.py [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from rackplan.catalogs.loader import load_catalog
from rackplan.models.operating_points import operating_points
from rackplan.models.workload import PRECISIONS, Workload

SHAPES = {
    "chat": Workload(input_tokens=1_000, output_tokens=1_000, ttft_ms=2_000, tpot_ms=50),
    "deep-research": Workload(
        input_tokens=40_000, output_tokens=1_000, prefix_hit_rate=0.3, ttft_ms=20_000, tpot_ms=50
    ),
    "voice": Workload(input_tokens=500, output_tokens=200, ttft_ms=300, tpot_ms=5),
}
TARGET_S = 0.100


def rate_table(sla_points: bool) -> int:
    """Build every operating-point table once; return the number of points.

    ``sla_points=False``: the grid (powers of two, the knee refinement, the capacity limit),
    pruned. ``True`` adds, per replica size, the exact largest batch meeting each SLA.
    """
    catalog = load_catalog()
    count = 0
    for rack in catalog.racks.values():
        efficiency = catalog.efficiency_for(rack)
        for llm in catalog.llms.values():
            for workload in SHAPES.values():
                table = operating_points(
                    rack, llm, PRECISIONS["fp8"], workload, efficiency, sla_points=sla_points
                )
                count += len(table)
    return count


def measure(repeats: int, sla_points: bool) -> tuple[list[float], int]:
    rate_table(sla_points)  # warm-up: imports, caches
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        points = rate_table(sla_points)
        timings.append(time.perf_counter() - start)
    return timings, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = load_catalog()
    combos = len(catalog.racks) * len(catalog.llms) * len(SHAPES)
    results = {}
    for label, sla in (("grid", False), ("grid + exact SLA points", True)):
        timings, points = measure(args.repeats, sla)
        results[label] = {
            "combinations": combos,
            "operating_points": points,
            "median_s": statistics.median(timings),
            "min_s": min(timings),
            "max_s": max(timings),
            "target_s": TARGET_S,
            "median_over_target": statistics.median(timings) / TARGET_S,
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for label, r in results.items():
        print(
            f"rate table ({label}): {combos} rack x LLM x workload combinations, "
            f"{r['operating_points']} operating points; median {r['median_s'] * 1e3:.1f} ms "
            f"(min {r['min_s'] * 1e3:.1f}, max {r['max_s'] * 1e3:.1f}) over {args.repeats} runs; "
            f"target {TARGET_S * 1e3:.0f} ms -> {r['median_over_target']:.2f}x of target"
        )


if __name__ == "__main__":
    main()
