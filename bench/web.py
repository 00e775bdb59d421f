"""Benchmark: the browser pages' server time while two L solves run.

Starts ``rackplan serve`` (as bench/api.py does), stores and solves the frontier-2027 example
and opens a what-if session on it, starts two L solves of bench/plan.py, signs in as a browser
would (sign-in form, CSRF token, session cookie), then fetches each page repeatedly and reports
the median and maximum response time per page. Target: every page under 1 s.
Run: ``.venv/bin/python bench/web.py [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plan import generate

from api import create_key, free_port, start_server, wait_ready
from rackplan.planner.library import load_scenario

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def _post(client: httpx.Client, url: str, body: dict) -> dict:
    response = client.post(url, json=body)
    response.raise_for_status()
    return response.json()


def _sign_in(base: str, key: str) -> httpx.Client:
    """A cookie-holding client signed in through the form, as a browser is."""
    browser = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    form = browser.get("/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if token is None:
        raise SystemExit("no CSRF token on the sign-in page")
    signed = browser.post("/sign-in", data={"api_key": key, "csrf_token": token.group(1)})
    if "/scenarios" not in str(signed.url):
        raise SystemExit(f"sign-in failed: {signed.status_code}")
    return browser


def _setup(api: httpx.Client) -> dict[str, str]:
    """The frontier example stored and solved, a session on it, two L solves started."""
    frontier = load_scenario(ROOT / "examples" / "frontier-2027").model_dump(mode="json")
    scenario_id = _post(api, "/v1/scenarios", {"scenario": frontier})["id"]
    plan = _post(api, f"/v1/scenarios/{scenario_id}/plans", {"wait_s": 120})
    session = _post(api, "/v1/sessions", {"scenario_id": scenario_id, "name": "bench"})
    big = _post(api, "/v1/scenarios", {"scenario": generate("L").model_dump(mode="json")})["id"]
    for i in range(2):
        body = {"wait_s": 0, "time_limit_s": 120, "baselines": False, "gap": 0.001 + i / 1e4}
        _post(api, f"/v1/scenarios/{big}/plans", body)
    return {
        "scenarios": "/scenarios",
        "scenario": f"/scenarios/{scenario_id}",
        "plan": f"/plans/{plan['id']}",
        "session": f"/sessions/{session['id']}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        key = create_key(data_dir)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(data_dir, port, 1)
        try:
            wait_ready(base)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, timeout=180, headers=headers) as api:
                pages = _setup(api)
            time.sleep(1.0)  # the two L solves are under way
            browser = _sign_in(base, key)
            results = {}
            for name, path in pages.items():
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    response = browser.get(path)
                    times.append(time.perf_counter() - start)
                    response.raise_for_status()
                results[name] = {"median_s": statistics.median(times), "max_s": max(times)}
        finally:
            server.terminate()
            server.wait(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        verdict = "ok" if r["max_s"] <= TARGET_S else "over"
        print(
            f"{name:10s} median {r['median_s'] * 1e3:6.0f} ms, max {r['max_s'] * 1e3:6.0f} ms "
            f"(target {TARGET_S:.0f} s: {verdict})"
        )


if __name__ == "__main__":
    main()
