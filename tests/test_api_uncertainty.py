"""Robust plans and stress tests through the REST API, as jobs: the results carry the keys
(and the numbers) of the CLI's robust.json / stress.json, exports as CSV zip and XLSX,
progress, idempotency, 422s naming the field, another tenant's results are 404, and a
cancelled job's solver process stops."""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rackplan.api.app import create_app
from rackplan.api.db import Database, JobRow
from rackplan.api.routes.uncertainty import MAX_STRESS_SAMPLES
from rackplan.api.security import create_key
from rackplan.api.settings import Settings
from rackplan.api.uncertainty_jobs import JobProgress, json_safe
from rackplan.planner.cli.main import app as cli_app

ROOT = Path(__file__).parents[1]
QUICKSTART_PATH = ROOT / "examples" / "quickstart" / "scenario.json"
QUICKSTART = json.loads(QUICKSTART_PATH.read_text())
ROBUST = {"wait_s": 120, "futures": 3, "seed": 1, "time_limit_s": 30}
STRESS = {"wait_s": 120, "samples": 60, "seed": 3}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Tenant A with a scenario, a plan, a robust plan and a stress test; B's headers."""
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("uncertainty"), database_url=None))
    with TestClient(app) as client:
        db = app.state.rackplan.db
        a = {"Authorization": f"Bearer {create_key(db, 'a', ('read', 'write'), 'ta')[1]}"}
        b = {"Authorization": f"Bearer {create_key(db, 'b', ('read', 'write'), 'tb')[1]}"}
        client.headers.update(a)
        sid = client.post("/v1/scenarios", json={"scenario": QUICKSTART}).json()["id"]
        plan = client.post(f"/v1/scenarios/{sid}/plans", json={"wait_s": 120, "baselines": False})
        assert plan.status_code == 201, plan.text
        robust = client.post(f"/v1/scenarios/{sid}/robust-plans", json=ROBUST)
        assert robust.status_code == 201, robust.text
        stress = client.post(f"/v1/plans/{plan.json()['id']}/stress-tests", json=STRESS)
        assert stress.status_code == 201, stress.text
        objects = {
            "scenario": sid,
            "plan": plan.json(),
            "robust": robust.json(),
            "stress": stress.json(),
        }
        yield client, b, objects


def _cli_json(args: list[str]) -> dict:
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_robust_plan_matches_the_cli(service):
    client, _, objects = service
    robust = objects["robust"]
    cli = _cli_json(
        [
            "robust",
            str(QUICKSTART_PATH),
            "--futures",
            "3",
            "--seed",
            "1",
            "--time-limit",
            "30",
            "--format",
            "json",
        ]
    )
    assert robust["kind"] == "robust" and robust["scenario_id"] == objects["scenario"]
    assert set(robust["result"]) == set(cli)
    assert robust["result"]["objective_usd"] == pytest.approx(cli["objective_usd"], rel=1e-6)
    assert robust["result"]["commit_purchases"] == json_safe(cli["commit_purchases"])
    fetched = client.get(f"/v1/robust-plans/{robust['id']}").json()
    assert fetched["result"] == robust["result"]
    assert fetched["audit"]["requested_by"] == "ta"
    job = client.get(f"/v1/jobs/{robust['id']}").json()
    assert job["kind"] == "robust" and job["status"] == "succeeded" and job["progress"] == 1.0


def test_stress_test_matches_the_cli(service, tmp_path):
    client, _, objects = service
    stress = objects["stress"]
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(objects["plan"]["plan"]))
    cli = _cli_json(
        [
            "stress",
            str(plan_path),
            str(QUICKSTART_PATH),
            "--samples",
            "60",
            "--seed",
            "3",
            "--local",
            "--format",
            "json",
        ]
    )
    result = stress["result"]
    assert stress["kind"] == "stress" and stress["plan_id"] == objects["plan"]["id"]
    assert set(result) == set(cli)
    assert result["samples"] == 60 and result["seed"] == 3
    for key in ("probability_of_shortfall", "tco_mean_usd", "tco_p95_usd"):
        assert result[key] == pytest.approx(cli[key], rel=1e-9), key
    assert client.get(f"/v1/stress-tests/{stress['id']}").json()["result"] == result


@pytest.mark.parametrize(
    ("kind", "tables"),
    [
        ("robust", {"summary", "commit_purchases", "futures", "purchases", "unserved"}),
        ("stress", {"summary", "classes", "periods", "samples"}),
    ],
)
def test_exports(service, kind, tables):
    client, _, objects = service
    base = {"robust": "/v1/robust-plans", "stress": "/v1/stress-tests"}[kind]
    url = f"{base}/{objects[kind]['id']}/export"
    assert client.get(url).json() == objects[kind]["result"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(url, params={"format": "csv"}).content))
    assert {Path(n).stem for n in archive.namelist()} == tables
    workbook = openpyxl.load_workbook(
        io.BytesIO(client.get(url, params={"format": "xlsx"}).content)
    )
    assert tables <= set(workbook.sheetnames)


def test_another_tenant_gets_404(service):
    client, b, objects = service
    robust, stress = objects["robust"]["id"], objects["stress"]["id"]
    for url in (
        f"/v1/robust-plans/{robust}",
        f"/v1/robust-plans/{robust}/export?format=csv",
        f"/v1/stress-tests/{stress}",
        f"/v1/stress-tests/{stress}/export",
    ):
        assert client.get(url, headers=b).status_code == 404, url
    posts = (
        (f"/v1/scenarios/{objects['scenario']}/robust-plans", {"futures": 2}),
        (f"/v1/plans/{objects['plan']['id']}/stress-tests", {"samples": 5}),
    )
    for url, body in posts:
        assert client.post(url, json=body, headers=b).status_code == 404, url


def test_a_result_is_only_found_under_its_own_kind(service):
    client, _, objects = service
    assert client.get(f"/v1/stress-tests/{objects['robust']['id']}").status_code == 404
    assert client.get(f"/v1/robust-plans/{objects['stress']['id']}").status_code == 404


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("robust", {"futures": 0}, "body.futures"),
        ("robust", {"commit_periods": 3}, "commit_periods"),
        ("robust", {"service_share": 0.5}, "penalty_usd_per_million_tokens"),
        ("robust", {"cvar_weight": -1}, "body.cvar_weight"),
        ("stress", {"samples": MAX_STRESS_SAMPLES + 1}, "body.samples"),
        ("stress", {"seed": -1}, "body.seed"),
        ("stress", {"scenario_id": "0" * 32}, None),
    ],
)
def test_bad_input_is_refused_naming_the_field(service, route, body, field):
    client, _, objects = service
    url = (
        f"/v1/scenarios/{objects['scenario']}/robust-plans"
        if route == "robust"
        else f"/v1/plans/{objects['plan']['id']}/stress-tests"
    )
    response = client.post(url, json=body)
    if field is None:  # an unknown scenario is a missing object, not bad input
        assert response.status_code == 404 and "scenario" in response.json()["detail"]
        return
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.headers["content-type"].startswith("application/problem+json")


def test_robust_plans_need_min_tco(service):
    client, _, _ = service
    scenario = dict(QUICKSTART, policy={"objective": "max_served"})
    sid = client.post("/v1/scenarios", json={"scenario": scenario}).json()["id"]
    response = client.post(f"/v1/scenarios/{sid}/robust-plans", json={"futures": 2})
    assert response.status_code == 422 and response.json()["field"] == "policy.objective"


def test_the_same_idempotency_key_replays_the_job(service):
    client, _, objects = service
    url = f"/v1/plans/{objects['plan']['id']}/stress-tests"
    headers = {"Idempotency-Key": "stress-once"}
    first = client.post(url, json={"samples": 7, "wait_s": 60}, headers=headers)
    again = client.post(url, json={"samples": 7, "wait_s": 60}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = client.post(url, json={"samples": 8}, headers=headers)
    assert other.status_code == 409


def test_progress_is_written_for_running_jobs_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    db = Database(url)
    with db.transaction() as session:
        for job_id, status in (("run", "running"), ("gone", "cancelled")):
            session.add(JobRow(id=job_id, kind="stress", status=status, request={}))
    for job_id in ("run", "gone"):
        progress = JobProgress(url, job_id, 4)
        progress.advance(2)
        progress.write()
        progress.close()
    with db.read() as session:
        assert session.get(JobRow, "run").progress == pytest.approx(0.1 + 0.9 * 2 / 4)
        assert session.get(JobRow, "gone").progress == 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux processes")
def test_a_cancelled_robust_plan_stops_its_solver_process(tmp_path):
    from tests.test_api_jobs import _alive, _large_scenario, _running_pid

    app = create_app(
        Settings(data_dir=tmp_path, database_url=None, solve_workers=1, solve_time_limit_s=600)
    )
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "k")
        client.headers.update({"Authorization": f"Bearer {key}"})
        sid = client.post("/v1/scenarios", json={"scenario": _large_scenario()}).json()["id"]
        body = {"futures": 10, "time_limit_s": 600}
        job = client.post(f"/v1/scenarios/{sid}/robust-plans", json=body)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        pid = _running_pid(app.state.rackplan.runner, job_id)
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel").json()
        assert cancelled["status"] == "cancelled" and "stopped" in cancelled["error"]
        deadline = time.time() + 5
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
        assert client.get(f"/v1/robust-plans/{job_id}").status_code == 404
