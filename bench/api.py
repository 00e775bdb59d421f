"""Benchmark the REST service: read throughput and health latency while two solves run.

Starts ``rackplan serve`` on 127.0.0.1 (a free port, a temporary data folder), creates a
key, stores the L instance of bench/plan.py (a solve of ~20 s), starts two solves, and for
``--seconds`` runs reader threads (GET a scenario, GET a job) and one health prober.
Loopback only; bounded in time.

Run: ``make bench`` or ``.venv/bin/python bench/api.py [--seconds 10] [--readers 4] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from plan import generate  # noqa: E402

TARGETS = {"reads_per_s": 500, "health_p99_ms": 50}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str, port: int, http_workers: int) -> subprocess.Popen:
    env = dict(os.environ, RACKPLAN_DATA_DIR=data_dir, RACKPLAN_SOLVE_WORKERS="2")
    rackplan = str(Path(sys.executable).with_name("rackplan"))
    command = [
        rackplan,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(http_workers),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def create_key(data_dir: str) -> str:
    env = dict(os.environ, RACKPLAN_DATA_DIR=data_dir)
    rackplan = str(Path(sys.executable).with_name("rackplan"))
    done = subprocess.run(
        [rackplan, "keys", "create", "bench"], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def wait_ready(base: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the service did not become ready")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk (C, little CPU) when installed, else Python threads",
    )
    parser.add_argument("--http-workers", type=int, default=2, help="rackplan serve --workers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        key = create_key(data_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(data_dir, port, args.http_workers)
        try:
            wait_ready(base)
            headers = {"Authorization": f"Bearer {key}"}
            # the L instance of bench/plan.py: each solve takes longer than the window
            scenario = generate("L").model_dump(mode="json")
            scenario_id = httpx.post(
                f"{base}/v1/scenarios", json={"scenario": scenario}, headers=headers, timeout=30
            ).json()["id"]
            solve = {"wait_s": 0, "time_limit_s": args.seconds + 30, "baselines": False}
            jobs = []
            for i in range(2):
                body = dict(solve, gap=0.005 + i / 1000)
                url = f"{base}/v1/scenarios/{scenario_id}/plans"
                jobs.append(httpx.post(url, json=body, headers=headers, timeout=30).json()["id"])
            time.sleep(1.0)
            running_at_start = [
                httpx.get(f"{base}/v1/jobs/{j}", headers=headers, timeout=10).json()["status"]
                for j in jobs
            ]
            stop = time.time() + args.seconds
            counts = [0] * args.readers
            health: list[float] = []

            def wrk_reader() -> None:
                url = f"{base}/v1/scenarios/{scenario_id}"
                auth = f"Authorization: Bearer {key}"
                command = ["wrk", "-t2", "-c16", f"-d{int(args.seconds)}s", "-H", auth, url]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                failed = 0
                for line in done.stdout.splitlines():
                    if line.strip().startswith("Non-2xx or 3xx responses:"):
                        failed = int(line.split(":")[1])
                    if line.startswith("Requests/sec:"):
                        counts[0] = int(float(line.split()[1]) * args.seconds)
                counts[0] -= failed  # only successful reads count

            def reader(index: int) -> None:
                with httpx.Client(base_url=base, timeout=10, headers=headers) as client:
                    while time.time() < stop:
                        first = client.get(f"/v1/scenarios/{scenario_id}")
                        second = client.get(f"/v1/jobs/{jobs[index % 2]}")
                        counts[index] += (first.status_code == 200) + (second.status_code == 200)

            def prober() -> None:
                with httpx.Client(base_url=base, timeout=10) as client:
                    while time.time() < stop:
                        start = time.perf_counter()
                        client.get("/v1/health")
                        health.append((time.perf_counter() - start) * 1e3)
                        time.sleep(0.01)

            use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
            if use_wrk:
                threads = [threading.Thread(target=wrk_reader)]
            else:
                threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
            threads.append(threading.Thread(target=prober))
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = [
                httpx.get(f"{base}/v1/jobs/{j}", headers=headers, timeout=10).json()["status"]
                for j in jobs
            ]
            statuses = [f"{a}->{b}" for a, b in zip(running_at_start, statuses, strict=True)]
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "seconds": args.seconds,
        "readers": args.readers,
        "client": "wrk" if use_wrk else "python threads",
        "http_workers": args.http_workers,
        "reads_per_s": sum(counts) / args.seconds,
        "health_median_ms": statistics.median(health),
        "health_p99_ms": percentile(health, 0.99),
        "health_samples": len(health),
        "solve_jobs_at_end": statuses,
        "targets": TARGETS,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"reads: {result['reads_per_s']:.0f} req/s ({result['client']}) while two "
        f"solves ran (target {TARGETS['reads_per_s']}); health median "
        f"{result['health_median_ms']:.1f} ms, p99 {result['health_p99_ms']:.1f} ms over "
        f"{len(health)} probes (target {TARGETS['health_p99_ms']} ms); "
        f"solve jobs: {', '.join(statuses)}"
    )


if __name__ == "__main__":
    main()
