"""Benchmark the planner on reproducible generated instances.

S (3 racks, 4 classes, 4 periods), M (6, 12, 12), L (10, 40, 16): build, solve and total
time, gap and model size; the whole CLI process on S; the what-if re-solve of M after one
parameter change against a rebuild. Medians over repeats (the machine is shared and noisy).

Run: ``make bench`` or ``.venv/bin/python bench/plan.py [--repeats N] [--sizes S,M,L] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rackplan.catalogs.loader import load_catalog  # noqa: E402
from rackplan.models.scenario import Demand, Period, RackOption, Scenario, WorkloadClass  # noqa: E402
from rackplan.planner.core.data import prepare  # noqa: E402
from rackplan.planner.core.solve import PlanSolver, SolveOptions  # noqa: E402
from rackplan.planner.core.whatif import Baseline, apply_change  # noqa: E402
from rackplan.planner.io.scenario_io import save_scenario_json  # noqa: E402

SIZES = {"S": (3, 4, 4), "M": (6, 12, 12), "L": (10, 40, 16)}
RACKS = (
    "gb200-nvl72", "vr-nvl72", "groq3-lpx", "vr-cpx-144", "hgx-h200", "gb300-nvl72", "hgx-b200",
    "hgx-b300", "hgx-h100", "groqrack-v1",
)  # fmt: skip
LLMS = (
    "llama-3.1-8b",
    "llama-3.1-70b",
    "mixtral-8x7b",
    "qwen3-235b-a22b",
    "gpt-oss-120b",
    "deepseek-v3",
)
SHAPES = {
    # name: (input tokens, output tokens, prefix hit, TTFT ms, TPOT ms)
    "chat": (2_000, 400, 0.3, 2_000, 40),
    "coding-agent": (12_000, 800, 0.6, 4_000, 30),
    "deep-research": (40_000, 1_500, 0.4, 20_000, 50),
    "voice": (600, 150, 0.2, 400, 15),
}
GAP = 0.005
"""The gap every run proves (the CLI default)."""
TARGETS = {
    "S_cli_s": 1.0,
    "help_s": 1.0,
    "L_total_s": 10.0,
    "L_gap": 0.005,
    "M_whatif_s": 0.1,
    "M_whatif_speedup": 10.0,
}
"""Issue 9's targets (and issue 14's for ``rackplan --help``)."""


def generate(size: str, seed: int = 2027) -> Scenario:
    """A reproducible instance: classes cycle through LLMs and shapes with seeded jitter;
    demand grows each quarter; the power cap grows; Vera Rubin types arrive in period 2."""
    n_racks, n_classes, n_periods = SIZES[size]
    rng = random.Random(f"{seed}-{size}")
    periods = tuple(
        Period(
            name=f"{2027 + t // 4}Q{t % 4 + 1}",
            hours=2190,
            power_cap_mw=round(40 + 25 * t * (n_classes / 4) ** 0.5, 1),
            electricity_usd_per_kwh=round(rng.uniform(0.06, 0.10), 3),
            pue=1.25,
        )
        for t in range(n_periods)
    )
    classes, demand = [], []
    shapes = list(SHAPES.items())
    for i in range(n_classes):
        shape_name, (inp, out, hit, ttft, tpot) = shapes[i % len(shapes)]
        llm = LLMS[(i // len(shapes) + i) % len(LLMS)]
        jitter = rng.uniform(0.8, 1.25)
        name = f"{shape_name}-{i:02d}"
        classes.append(
            WorkloadClass(
                name=name,
                llm=llm,
                input_tokens=round(inp * jitter),
                output_tokens=round(out * jitter),
                prefix_hit_rate=hit,
                ttft_ms=ttft,
                tpot_ms=tpot,
                max_utilisation=0.75,
            )
        )
        base = rng.uniform(300, 1500) * (4 / n_classes) ** 0.5
        growth = rng.uniform(1.03, 1.15)
        for t, period in enumerate(periods):
            demand.append(
                Demand(
                    period=period.name,
                    workload_class=name,
                    requests_per_s=round(base * growth**t, 2),
                )
            )
    racks = []
    for r in RACKS[:n_racks]:
        racks.append(
            RackOption(
                rack=r,
                first_period=periods[1].name
                if r.startswith(("vr-", "groq3")) and n_periods > 1
                else None,
                installed=4 if r == "gb200-nvl72" else 0,
                lifetime_periods=16 if r.startswith("hgx-h") else None,
            )
        )
    return Scenario(
        name=f"bench-{size}",
        periods=periods,
        classes=tuple(classes),
        demand=tuple(demand),
        racks=tuple(racks),
    )


def bench_solve(size: str, repeats: int, catalog, gap: float) -> dict:
    scenario = generate(size)
    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = prepare(scenario, catalog)
        t1 = time.perf_counter()
        solver = PlanSolver(data, SolveOptions(time_limit_s=120, rel_gap=gap))
        outcome = solver.solve()
        t2 = time.perf_counter()
        rows.append(
            {
                "rates_s": t1 - t0,
                "build_s": outcome.build_s,
                "solve_s": outcome.solve_s,
                "total_s": t2 - t0,
                "gap": outcome.gap,
                "status": outcome.status,
                "start": outcome.start,
            }
        )
    median = {
        k: statistics.median(r[k] for r in rows)
        for k in ("rates_s", "build_s", "solve_s", "total_s")
    }
    return {
        "size": size,
        "racks_classes_periods": SIZES[size],
        **median,
        "gap": max(r["gap"] or 0.0 for r in rows),
        "status": rows[-1]["status"],
        "start": rows[-1]["start"],
        "columns": len(data.columns),
        "variables": outcome.variables,
        "integer_variables": outcome.integer_variables,
        "constraints": outcome.constraints,
    }


def bench_cli(size: str, repeats: int) -> dict:
    """The whole ``rackplan solve --format json`` process (imports, rates, solve, baselines)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{size}.json"
        save_scenario_json(generate(size), path)
        command = [
            str(Path(sys.executable).with_name("rackplan")),
            "solve",
            str(path),
            "--format",
            "json",
        ]
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            timings.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"CLI failed: {done.stderr}")
        status = json.loads(done.stdout)["status"]
        helps = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([command[0], "--help"], capture_output=True, check=True)
            helps.append(time.perf_counter() - start)
    return {
        "size": size,
        "cli_median_s": statistics.median(timings),
        "cli_min_s": min(timings),
        "help_median_s": statistics.median(helps),
        "status": status,
    }


WHATIF_CHANGES = {
    # name: (parameter, values alternated over the repeats)
    "power cap -3/-5 % (does not bind in M)": ("power_cap_scale", (0.97, 0.95)),
    "demand +2/+5 % (the old plan no longer serves it)": ("demand_scale", (1.02, 1.05)),
    "demand -5/-10 % (the old plan is feasible but no longer near-optimal)": (
        "demand_scale",
        (0.95, 0.90),
    ),
}
"""What-if changes timed on M: one the old plan survives, one it cannot, one it survives
badly. Each re-solve starts from the base plan (the change is undone and re-solved first)."""


def bench_whatif(size: str, repeats: int, catalog) -> dict:
    """Re-solve after one change on the persistent model, against a rebuild, per change."""
    data = prepare(generate(size), catalog)
    options = SolveOptions(time_limit_s=60, rel_gap=GAP)
    rebuilds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fresh = PlanSolver(data, options)
        fresh.solve()
        rebuilds.append(time.perf_counter() - start)
    rebuild = statistics.median(rebuilds)
    changes = {}
    for label, (parameter, values) in WHATIF_CHANGES.items():
        solver = PlanSolver(data, options)
        solver.solve()
        baseline = Baseline.of(solver)
        resolves, statuses, proved = [], set(), 0
        for i in range(repeats):
            apply_change(solver, baseline, parameter, 1.0)
            solver.solve()  # back to the base plan, untimed
            proofs = solver.quick_proofs
            apply_change(solver, baseline, parameter, values[i % len(values)])
            start = time.perf_counter()
            outcome = solver.solve()
            resolves.append(time.perf_counter() - start)
            statuses.add(outcome.status)
            proved += solver.quick_proofs > proofs
        resolve = statistics.median(resolves)
        changes[label] = {
            "whatif_resolve_s": resolve,
            "whatif_resolve_max_s": max(resolves),
            "speedup": rebuild / resolve,
            "status": sorted(statuses),
            "proved_without_mip": f"{proved}/{repeats}",
        }
    first = next(iter(changes.values()))
    return {
        "size": size,
        "rebuild_and_solve_s": rebuild,
        "whatif_resolve_s": first["whatif_resolve_s"],
        "speedup": first["speedup"],
        "changes": changes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="S,M,L")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    catalog = load_catalog()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    report: dict[str, object] = {"targets": TARGETS}
    report["solve"] = [bench_solve(s, args.repeats, catalog, gap=GAP) for s in sizes]
    if "S" in sizes:
        report["cli"] = bench_cli("S", max(args.repeats, 3))
    if "M" in sizes:
        report["whatif"] = bench_whatif("M", max(args.repeats, 5), catalog)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for row in report["solve"]:
        print(
            f"{row['size']} {row['racks_classes_periods']}: rates {row['rates_s']:.2f} s, build "
            f"{row['build_s']:.2f} s, "
            f"solve {row['solve_s']:.2f} s, total {row['total_s']:.2f} s, gap {row['gap']:.3%}, "
            f"{row['status']}; "
            f"{row['columns']} columns, {row['variables']} variables ({row['integer_variables']} "
            f"integer), {row['constraints']} constraints"
        )
        if row["start"]:
            print(f"  {row['start']}")
    if "cli" in report:
        cli = report["cli"]
        print(
            f"S whole CLI process: median {cli['cli_median_s']:.2f} s (min "
            f"{cli['cli_min_s']:.2f}); target {TARGETS['S_cli_s']} s; rackplan --help median "
            f"{cli['help_median_s']:.2f} s (target {TARGETS['help_s']} s)"
        )
    if "whatif" in report:
        w = report["whatif"]
        print(
            f"M what-if: rebuild+solve {w['rebuild_and_solve_s'] * 1e3:.0f} ms; re-solves "
            f"(targets {TARGETS['M_whatif_s'] * 1e3:.0f} ms, {TARGETS['M_whatif_speedup']:.0f}x):"
        )
        for label, c in w["changes"].items():
            print(
                f"  {label}: median {c['whatif_resolve_s'] * 1e3:.0f} ms "
                f"(max {c['whatif_resolve_max_s'] * 1e3:.0f}) -> {c['speedup']:.1f}x; "
                f"proved without a MIP {c['proved_without_mip']}; {', '.join(c['status'])}"
            )


if __name__ == "__main__":
    main()
