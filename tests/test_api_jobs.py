"""Jobs under faults: cancel kills the solver process, solver processes die with the server,
SIGTERM re-queues running jobs, one time budget per job, fair scheduling across tenants,
waiters capped per key."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rackplan.api.app import create_app
from rackplan.api.db import Database, JobRow
from rackplan.api.jobs import JobRunner
from rackplan.api.security import create_key
from rackplan.api.settings import Settings

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")


def _large_scenario() -> dict:
    """bench/plan.py's L instance: a solve that runs for minutes."""
    spec = importlib.util.spec_from_file_location("bench_plan", ROOT / "bench" / "plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate("L").model_dump(mode="json")


@pytest.fixture(scope="module")
def large() -> dict:
    return _large_scenario()


@contextlib.contextmanager
def socket_port():
    """A free TCP port on 127.0.0.1 (released before the server binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purposes
        return stat.read().split()[2] != "Z"


def _app(tmp_path, **changes):
    base = {"data_dir": tmp_path, "database_url": None, "solve_workers": 1, "queue_limit": 4}
    return create_app(Settings(**(base | changes)))


def _running_pid(runner: JobRunner, job_id: str, timeout: float = 30) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        item = runner.running.get(job_id)
        if item is not None and item.process.pid:
            return item.process.pid
        time.sleep(0.02)
    raise AssertionError("the job never started")


def _start_large(client, large: dict, **solve) -> str:
    sid = client.post("/v1/scenarios", json={"scenario": large}).json()["id"]
    body = {"wait_s": 0, "baselines": True, "time_limit_s": 600} | solve
    job = client.post(f"/v1/scenarios/{sid}/plans", json=body)
    assert job.status_code == 202, job.text
    return job.json()["id"]


def test_cancel_stops_the_solver_process(tmp_path, large):
    app = _app(tmp_path)
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        job_id = _start_large(client, large)
        pid = _running_pid(app.state.rackplan.runner, job_id)
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel").json()
        assert cancelled["status"] == "cancelled" and "stopped" in cancelled["error"]
        deadline = time.time() + 5
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)


def test_a_cancel_recorded_by_another_server_stops_the_process(tmp_path, large):
    app = _app(tmp_path)
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        job_id = _start_large(client, large)
        pid = _running_pid(app.state.rackplan.runner, job_id)
        with app.state.rackplan.db.transaction() as session:  # what another server's cancel does
            session.get(JobRow, job_id).status = "cancelled"
        deadline = time.time() + 5
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)


def test_sigterm_requeues_running_jobs(tmp_path, large):
    app = _app(tmp_path)
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        job_id = _start_large(client, large)
        pid = _running_pid(app.state.rackplan.runner, job_id)
    db = Database(Settings(data_dir=tmp_path, database_url=None).url)
    with db.read() as session:
        job = session.get(JobRow, job_id)
        assert job.status == "queued" and job.owner is None
    assert not _alive(pid)


def test_one_time_budget_per_job(tmp_path, large):
    app = _app(tmp_path, job_budget_factor=0.0, job_budget_slack_s=1.0)
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        job_id = _start_large(client, large)
        deadline = time.time() + 20
        while time.time() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] not in {"queued", "running"}:
                break
            time.sleep(0.1)
        assert job["status"] == "failed" and "time budget (1 s)" in job["error"]


SERVER = textwrap.dedent(
    """
    import json, sys, time
    from rackplan.api.db import Database, JobRow
    from rackplan.api.jobs import JobRunner
    url, scenario = sys.argv[1], json.load(open(sys.argv[2]))
    db = Database(url)
    with db.transaction() as session:
        session.add(JobRow(id="j", kind="solve", status="queued",
                           request={"scenario_id": "s", "scenario": scenario}))
    runner = JobRunner(db, url, 1, 4)
    runner.submit("j", "solve", {"scenario_id": "s", "scenario": scenario, "time_limit_s": 600})
    while "j" not in runner.running:
        time.sleep(0.02)
    print(runner.running["j"].process.pid, flush=True)
    time.sleep(600)
    """
)


def test_solver_processes_die_with_the_server(tmp_path, large):
    """kill -9 of the server: its solver process goes too (fork server + parent-death signal)."""
    (tmp_path / "s.json").write_text(json.dumps(large))
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, url, str(tmp_path / "s.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(server.stdout.readline())
        assert _alive(pid)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.time() + 10
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        server.kill()


def test_fair_order_across_tenants_and_sizes(tmp_path):
    """Tenants take turns; within a tenant the smallest job goes first."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    runner = JobRunner(db, "unused", 1, 10)
    runner.stopping.set()
    runner.thread.join(timeout=5)

    def scenario(periods: int) -> dict:
        return {"periods": [{}] * periods, "classes": [{}], "racks": [{}]}

    runner.submit("a-large-1", "solve", {"tenant": "a", "scenario": scenario(40)})
    runner.submit("a-large-2", "solve", {"tenant": "a", "scenario": scenario(40)})
    runner.submit("a-small", "solve", {"tenant": "a", "scenario": scenario(2)})
    runner.submit("b-small", "solve", {"tenant": "b", "scenario": scenario(2)})
    order = []
    while (job := runner._next()) is not None:
        order.append(job.job_id)
    assert order == ["a-small", "b-small", "a-large-1", "a-large-2"]


def test_waiters_are_capped_per_key(tmp_path, large):
    app = _app(tmp_path, max_waiters_per_key=1)
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        sid = client.post("/v1/scenarios", json={"scenario": large}).json()["id"]
        body = {"wait_s": 2, "baselines": True, "time_limit_s": 600}
        url = f"/v1/scenarios/{sid}/plans"
        first: dict = {}
        waiter = threading.Thread(target=lambda: first.update(r=client.post(url, json=body)))
        waiter.start()
        deadline = time.time() + 10
        while not app.state.rackplan.waiting and time.time() < deadline:
            time.sleep(0.02)
        start = time.perf_counter()
        second = client.post(url, json=body)
        assert second.status_code == 202 and time.perf_counter() - start < 2
        waiter.join()
        assert first["r"].status_code == 202
        for job_id in {first["r"].json()["id"], second.json()["id"]}:
            client.post(f"/v1/jobs/{job_id}/cancel")


def test_one_tenant_cannot_fill_the_queue(tmp_path, large):
    """Past its own limit a tenant gets 429 naming the limit; another tenant still gets in."""
    app = _app(tmp_path, tenant_queue_limit=1, queue_limit=4)
    with TestClient(app) as client:
        db = app.state.rackplan.db
        a = {"Authorization": f"Bearer {create_key(db, 'a', tenant='a')[1]}"}
        b = {"Authorization": f"Bearer {create_key(db, 'b', tenant='b')[1]}"}
        started = []
        for headers in (a, a, b):
            client.headers.update(headers)
            sid = client.post("/v1/scenarios", json={"scenario": large}).json()["id"]
            started.append(client.post(f"/v1/scenarios/{sid}/plans", json={"wait_s": 0}))
        assert started[0].status_code == 202
        assert started[1].status_code == 429 and "your tenant" in started[1].json()["detail"]
        assert started[1].headers["Retry-After"]
        assert started[2].status_code == 202
        for response, headers in ((started[0], a), (started[2], b)):
            client.post(f"/v1/jobs/{response.json()['id']}/cancel", headers=headers)


def test_sigterm_to_rackplan_serve_requeues_and_exits_promptly(tmp_path, large):
    """The real server: SIGTERM while a request waits on a running solve ends the server
    within seconds, kills the solver and leaves the job queued for the next start."""
    import httpx

    env = dict(os.environ, RACKPLAN_DATA_DIR=str(tmp_path), RACKPLAN_SOLVE_WORKERS="1")
    env.pop("RACKPLAN_DATABASE_URL", None)
    db = Database(Settings(data_dir=tmp_path, database_url=None).url)
    _, key = create_key(db, "sigterm")
    with socket_port() as port:
        rackplan = str(Path(sys.executable).with_name("rackplan"))
        server = subprocess.Popen(
            [rackplan, "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        sid = httpx.post(
            f"{base}/v1/scenarios", json={"scenario": large}, headers=headers, timeout=30
        ).json()["id"]
        body = {"wait_s": 60, "time_limit_s": 600}

        def wait_for_plan() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the stopping server may hang up
                httpx.post(
                    f"{base}/v1/scenarios/{sid}/plans", json=body, headers=headers, timeout=90
                )

        waiter = threading.Thread(target=wait_for_plan, daemon=True)
        waiter.start()
        deadline = time.time() + 30
        job = None
        while job is None and time.time() < deadline:
            with db.read() as session:
                job = session.scalars(select(JobRow).where(JobRow.status == "running")).first()
            time.sleep(0.1)
        assert job is not None, "the solve never started"
        start = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        assert time.perf_counter() - start < 12  # 5 s of graceful shutdown, then stop
        with db.read() as session:
            assert session.get(JobRow, job.id).status == "queued"
    finally:
        server.kill()
