"""The REST API through FastAPI's TestClient: every route, errors, auth, limits,
idempotency, pagination, restart and concurrency."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from rackplan.api.app import create_app
from rackplan.api.db import Database, JobRow, ScenarioRow
from rackplan.api.jobs import RESTART_REASON
from rackplan.api.security import create_key
from rackplan.api.settings import Settings

EXAMPLES = Path(__file__).parents[1] / "examples"
QUICKSTART = json.loads((EXAMPLES / "quickstart" / "scenario.json").read_text())


def _settings(folder: Path, **changes) -> Settings:
    base = {
        "data_dir": folder,
        "database_url": None,
        "solve_workers": 2,
        "queue_limit": 6,
        "tenant_queue_limit": 6,
        "max_body_bytes": 200_000,
        "max_upload_bytes": 200_000,
    }
    return Settings(**(base | changes))


@pytest.fixture(scope="module")
def service(tmp_path_factory, database_url):
    app = create_app(_settings(tmp_path_factory.mktemp("api"), database_url=database_url))
    with TestClient(app) as client:
        db = app.state.rackplan.db
        _, writer = create_key(db, "tests")
        _, reader = create_key(db, "read-only", ("read",))
        client.headers.update({"Authorization": f"Bearer {writer}"})
        yield client, writer, reader


def _authorise(client, tenant: str = "default", scopes=("read", "write")) -> str:
    """Give the client a new key of ``tenant``; return the key."""
    _, key = create_key(client.app.state.rackplan.db, "tests", tuple(scopes), tenant)
    client.headers.update({"Authorization": f"Bearer {key}"})
    return key


def _poll(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in {"queued", "running"}:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _scenario(client, body=None) -> str:
    response = client.post("/v1/scenarios", json={"scenario": body or QUICKSTART})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_health_and_ready(service):
    client, _, _ = service
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["schema_current"] is True


def test_writes_need_a_key_with_write_scope(service):
    client, _, reader = service
    anonymous = client.post(
        "/v1/scenarios", json={"scenario": QUICKSTART}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    wrong = client.post(
        "/v1/scenarios", json={"scenario": QUICKSTART}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["message"] == "unknown API key"
    read_only = client.post(
        "/v1/scenarios",
        json={"scenario": QUICKSTART},
        headers={"X-API-Key": reader, "Authorization": ""},
    )
    assert read_only.status_code == 403 and "write" in read_only.json()["message"]


def test_reads_need_a_key_unless_anonymous_reads_are_opted_in(tmp_path):
    app = create_app(_settings(tmp_path / "closed"))
    with TestClient(app) as client:
        refused = client.get("/v1/catalogs/racks")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith(
            "Bearer"
        )
        _, key = create_key(app.state.rackplan.db, "r", ("read",))
        assert client.get("/v1/catalogs/racks", headers={"X-API-Key": key}).status_code == 200
        padded = client.get("/v1/catalogs/racks", headers={"X-API-Key": f"  {key} "})
        assert padded.status_code == 200
    opened = create_app(_settings(tmp_path / "open", anonymous_reads=True))
    with TestClient(opened) as client:
        assert client.get("/v1/catalogs/racks").status_code == 200
        assert client.post("/v1/scenarios", json={"scenario": QUICKSTART}).status_code == 401


def test_catalogs(service):
    client, _, _ = service
    racks = client.get("/v1/catalogs/racks").json()
    assert {r["id"] for r in racks} >= {"vr-nvl72", "groq3-lpx", "vr-cpx-144"}
    assert client.get("/v1/catalogs/llms/deepseek-v3").json()["mla_kv_lora_rank"] == 512
    missing = client.get("/v1/catalogs/racks/h100")
    assert missing.status_code == 404 and "hgx-h100" in missing.json()["message"]


def test_user_catalog_entry_is_validated_and_used(service):
    client, _, _ = service
    h200 = client.get("/v1/catalogs/racks/hgx-h200").json()
    cheap = dict(h200, id="my-h200", capex_usd=500_000)
    put = client.put("/v1/user-catalogs/acme/racks/my-h200", json=cheap)
    assert put.status_code == 200 and put.json()["entry"]["capex_usd"] == 500_000
    assert client.put("/v1/user-catalogs/acme/racks/other", json=cheap).status_code == 422
    bad = client.put("/v1/user-catalogs/acme/racks/my-h200", json=dict(cheap, chips_per_rack=-1))
    assert bad.status_code == 422 and bad.json()["field"] == "chips_per_rack"
    assert [e["id"] for e in client.get("/v1/user-catalogs/acme").json()] == ["my-h200"]
    scenario = dict(QUICKSTART, racks=[{"rack": "my-h200"}])
    plan = client.post(
        f"/v1/scenarios/{_scenario(client, scenario)}/plans",
        json={"wait_s": 120, "catalog": "acme", "baselines": False},
    )
    assert plan.status_code == 201, plan.text
    assert {p["rack"] for p in plan.json()["plan"]["purchases"]} == {"my-h200"}
    assert plan.json()["audit"]["catalog_entries"]["racks"][0]["capex_usd"] == 500_000


def test_scenario_create_get_and_errors(service):
    client, _, _ = service
    scenario_id = _scenario(client)
    got = client.get(f"/v1/scenarios/{scenario_id}").json()
    assert got["name"] == "quickstart" and got["scenario"]["periods"][0]["name"] == "2027Q1"
    bad = json.loads(json.dumps(QUICKSTART))
    bad["periods"][1]["hours"] = -1
    response = client.post("/v1/scenarios", json={"scenario": bad})
    assert response.status_code == 422
    assert response.json()["field"] == "body.scenario.periods.1.hours"
    assert "Traceback" not in response.text
    assert client.get("/v1/scenarios/nope").status_code == 404


def test_pagination(tmp_path):
    app = create_app(_settings(tmp_path))
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "w")
        client.headers.update({"Authorization": f"Bearer {key}"})
        ids = [_scenario(client) for _ in range(5)]
        first = client.get("/v1/scenarios?limit=2").json()
        assert first["total"] == 5 and len(first["items"]) == 2 and first["next_offset"] == 2
        seen = [i["id"] for i in first["items"]]
        offset = first["next_offset"]
        while offset is not None:
            page = client.get(f"/v1/scenarios?limit=2&offset={offset}").json()
            seen += [i["id"] for i in page["items"]]
            offset = page["next_offset"]
        assert sorted(seen) == sorted(ids)
        assert client.get("/v1/scenarios?limit=0").status_code == 422


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_upload_zip_and_xlsx(service, tmp_path):
    client, _, _ = service
    folder = EXAMPLES / "power-capped-colo"
    archive = _zip({f"scenario/{p.name}": p.read_bytes() for p in folder.glob("*.csv")})
    response = client.post(
        "/v1/scenarios/upload", files={"file": ("colo.zip", archive, "application/zip")}
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "power-capped-colo"
    from rackplan.planner.io.spreadsheets import read_scenario, write_scenario

    workbook = write_scenario(read_scenario(folder), tmp_path / "colo.xlsx")
    response = client.post(
        "/v1/scenarios/upload", files={"file": ("colo.xlsx", workbook.read_bytes())}
    )
    assert response.status_code == 201 and response.json()["scenario"]["floor_space_racks"] == 40


def test_upload_refuses_traversal_bombs_and_bad_files(service):
    client, _, _ = service
    traversal = _zip({"../../etc/periods.csv": b"period,hours\n"})
    response = client.post("/v1/scenarios/upload", files={"file": ("x.zip", traversal)})
    assert response.status_code == 422 and "unsafe path" in response.json()["message"]
    bomb = _zip({"periods.csv": b"0" * 190_000, "classes.csv": b"0" * 190_000})
    assert client.post("/v1/scenarios/upload", files={"file": ("b.zip", bomb)}).status_code == 413
    bad = _zip({"periods.csv": b"period,hours,electricity_usd_per_kwh\n2027Q1,lots,0.1\n"})
    response = client.post("/v1/scenarios/upload", files={"file": ("bad.zip", bad)})
    assert response.status_code == 422
    assert {
        "file": "periods.csv",
        "row": 2,
        "field": "hours",
        "message": "expected a number",
        "value": "lots",
    } in response.json()["problems"]
    assert client.post("/v1/scenarios/upload", files={"file": ("x.txt", b"hi")}).status_code == 422


def test_body_size_limit(service):
    client, _, _ = service
    response = client.post(
        "/v1/scenarios",
        content=b"{" + b" " * 300_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_solve_wait_export_and_job(service):
    client, _, _ = service
    scenario_id = _scenario(client)
    # a tight gap: "optimal" is only said at a proven gap ≤ 1e-4 (the default asks for 0.5 %)
    response = client.post(f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0, "gap": 1e-6})
    assert response.status_code == 202 and response.headers["Location"].startswith("/v1/jobs/")
    job = _poll(client, response.json()["id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    plan = client.get(f"/v1/plans/{job['plan_id']}").json()
    assert plan["status"] == "optimal" and plan["plan"]["objective_usd"] > 0
    assert len(plan["plan"]["baselines"]) == 3
    audit = plan["audit"]
    assert audit["solver"]["name"] == "HiGHS" and len(audit["rate_table_sha256"]) == 64
    assert audit["scenario"]["name"] == "quickstart" and audit["requested_by"]
    exported = client.get(f"/v1/plans/{job['plan_id']}/export?format=csv")
    names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
    assert {"summary.csv", "purchases.csv", "fleet.csv", "power.csv"} <= set(names)
    workbook = client.get(f"/v1/plans/{job['plan_id']}/export?format=xlsx")
    sheets = pd.read_excel(io.BytesIO(workbook.content), sheet_name=None)
    assert sheets["summary"].set_index("key").loc["status", "value"] == "optimal"
    assert (
        client.get(f"/v1/plans/{job['plan_id']}/export?format=json").json()["status"] == "optimal"
    )
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert client.get("/v1/jobs/nope").status_code == 404


def test_idempotency_key_returns_the_same_job(service):
    client, _, _ = service
    scenario_id = _scenario(client)
    headers = {"Idempotency-Key": "order-42"}
    first = client.post(f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0}, headers=headers)
    again = client.post(f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0}, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    different = client.post(
        f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0, "gap": 0.01}, headers=headers
    )
    assert different.status_code == 409
    _poll(client, first.json()["id"])


def test_infeasible_plan_is_explained(service):
    client, _, _ = service
    tight = json.loads(json.dumps(QUICKSTART))
    for period in tight["periods"]:
        period["power_cap_mw"] = 0.1
    response = client.post(f"/v1/scenarios/{_scenario(client, tight)}/plans", json={"wait_s": 120})
    assert response.status_code == 201
    plan = response.json()["plan"]
    assert plan["status"] == "infeasible"
    assert any("power cap in 2027Q1 short by" in line for line in plan["explanation"])


def test_queue_full_answers_429_and_cancel(tmp_path):
    app = create_app(_settings(tmp_path, solve_workers=1, queue_limit=1))
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "w")
        client.headers.update({"Authorization": f"Bearer {key}"})
        scenario_id = _scenario(
            client, json.loads((EXAMPLES / "quickstart" / "scenario.json").read_text())
        )
        first = client.post(f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0}).json()
        busy = client.post(f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0})
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "10"
        cancelled = client.post(f"/v1/jobs/{first['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["error"]
        time.sleep(0.5)
        assert client.get(f"/v1/jobs/{first['id']}").json()["status"] == "cancelled"


def test_sessions(service):
    client, _, _ = service
    scenario_id = _scenario(client)
    session = client.post(
        "/v1/sessions", json={"name": "what if", "scenario_id": scenario_id}
    ).json()
    sid = session["id"]
    assert client.get(f"/v1/sessions/{sid}/comparison").status_code == 409
    assert client.post(f"/v1/sessions/{sid}/solve").status_code == 422
    added = client.post(
        f"/v1/sessions/{sid}/variants",
        json={"name": "double", "changes": [{"key": "demand_scale", "value": 2}]},
    )
    assert added.status_code == 201
    client.post(
        f"/v1/sessions/{sid}/variants",
        json={"name": "cheap", "changes": [{"key": "capex_scale:gb200-nvl72", "value": 0.5}]},
    )
    bad = client.post(
        f"/v1/sessions/{sid}/variants",
        json={"name": "x", "changes": [{"key": "power", "value": 1}]},
    )
    assert bad.status_code == 422 and "unknown what-if key" in bad.json()["message"]
    dup = client.post(
        f"/v1/sessions/{sid}/variants",
        json={"name": "double", "changes": [{"key": "demand_scale", "value": 3}]},
    )
    assert dup.status_code == 409
    job = client.post(f"/v1/sessions/{sid}/solve")
    assert job.status_code == 202
    assert _poll(client, job.json()["id"])["status"] == "succeeded"
    rows = {r["variant"]: r for r in client.get(f"/v1/sessions/{sid}/comparison").json()}
    assert set(rows) == {"base", "double", "cheap"}
    assert rows["base"]["delta_tco_usd"] == 0 and rows["double"]["delta_tco_usd"] > 0
    workbook = client.get(f"/v1/sessions/{sid}/comparison.xlsx")
    assert pd.read_excel(io.BytesIO(workbook.content))["variant"].tolist() == [
        "base",
        "double",
        "cheap",
    ]
    assert client.post("/v1/sessions", json={"name": "x", "scenario_id": "nope"}).status_code == 404


def test_rates(service):
    client, _, _ = service
    data = client.get(
        "/v1/rates",
        params={
            "rack": "gb200-nvl72",
            "llm": "llama-3.1-70b",
            "input_tokens": 2000,
            "output_tokens": 400,
            "tpot_ms": 30,
        },
    ).json()
    assert (
        data["operating_points"] and data["end_to_end"]["disaggregated"]["decode"]["tpot_ms"] <= 30
    )
    missing = client.get(
        "/v1/rates",
        params={"rack": "nope", "llm": "llama-3.1-70b", "input_tokens": 1, "output_tokens": 1},
    )
    assert missing.status_code == 422 and "unknown rack type 'nope'" in missing.json()["message"]


def test_restart_accounts_for_jobs_in_flight(tmp_path):
    """Jobs a stopped service left 'running' are failed with the reason; 'queued' ones rerun."""
    settings = _settings(tmp_path)
    db = Database(settings.url)
    with db.transaction() as session:
        session.add(ScenarioRow(id="s1", name="quickstart", body=QUICKSTART))
        request = {
            "scenario_id": "s1",
            "scenario": QUICKSTART,
            "baselines": False,
            "time_limit_s": 60,
        }
        session.add(JobRow(id="was-running", kind="solve", status="running", request=request))
        session.add(JobRow(id="was-queued", kind="solve", status="queued", request=request))
    db.engine.dispose()
    app = create_app(settings)
    with TestClient(app) as client:
        _authorise(client)
        failed = client.get("/v1/jobs/was-running").json()
        assert failed["status"] == "failed" and failed["error"] == RESTART_REASON
        assert _poll(client, "was-queued")["status"] == "succeeded"


def test_concurrent_solves_keep_health_responsive(service):
    client, _, _ = service
    scenario_id = _scenario(
        client, json.loads((EXAMPLES / "quickstart" / "scenario.json").read_text())
    )
    jobs = [
        client.post(
            f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0, "gap": 0.01 + i / 1000}
        ).json()
        for i in range(3)
    ]
    latencies = []
    while any(
        client.get(f"/v1/jobs/{j['id']}").json()["status"] in {"queued", "running"} for j in jobs
    ):
        start = time.perf_counter()
        assert client.get("/health").status_code == 200
        latencies.append(time.perf_counter() - start)
        time.sleep(0.02)
    assert latencies and max(latencies) < 0.5
    assert all(_poll(client, j["id"])["status"] == "succeeded" for j in jobs)


def test_openapi_has_stable_operation_ids(service):
    client, _, _ = service
    spec = client.get("/openapi.json").json()
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {
        "create_scenario",
        "upload_scenario",
        "solve_scenario",
        "get_plan",
        "export_plan",
        "get_job",
        "cancel_job",
        "create_session",
        "add_variant",
        "solve_session",
        "compare_session",
        "get_rates",
        "health",
        "ready",
    } <= ids
    assert spec["openapi"].startswith("3.1")
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_schema_migrates_an_older_database(tmp_path):
    """A version-1 database (no jobs.owner column) is migrated to the current version at start."""
    from sqlalchemy import create_engine, inspect, text

    from rackplan.api.db import SCHEMA_VERSION, Base

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE jobs DROP COLUMN owner"))
        connection.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(id INTEGER PRIMARY KEY, version INTEGER, applied_at TIMESTAMP)"
            )
        )
        connection.execute(
            text("INSERT INTO schema_version (version, applied_at) VALUES (1, '2026-01-01')")
        )
    engine.dispose()
    db = Database(url)
    assert db.version == SCHEMA_VERSION == 6
    assert "owner" in {c["name"] for c in inspect(db.engine).get_columns("jobs")}


def test_jobs_of_another_live_worker_are_left_alone(tmp_path):
    """With several HTTP workers, a starting worker does not fail jobs a live sibling runs."""
    import os

    settings = _settings(tmp_path)
    db = Database(settings.url)
    request = {"scenario_id": "s1", "scenario": QUICKSTART, "baselines": False}
    with db.transaction() as session:
        session.add(ScenarioRow(id="s1", name="quickstart", body=QUICKSTART))
        session.add(
            JobRow(
                id="sibling",
                kind="solve",
                status="running",
                request=request,
                owner=f"{__import__('socket').gethostname()}:{os.getppid()}",
            )
        )
        session.add(
            JobRow(
                id="orphan", kind="solve", status="running", request=request, owner="otherhost:1"
            )
        )
    db.engine.dispose()
    app = create_app(settings)
    with TestClient(app) as client:
        _authorise(client)
        assert client.get("/v1/jobs/sibling").json()["status"] == "running"
        assert client.get("/v1/jobs/orphan").json()["status"] == "failed"


def test_cors_is_off_unless_configured(tmp_path):
    origin = {"Origin": "https://planner.example", "Access-Control-Request-Method": "GET"}
    closed = create_app(_settings(tmp_path / "a"))
    with TestClient(closed) as client:
        assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    opened = create_app(_settings(tmp_path / "b", cors_origins=("https://planner.example",)))
    with TestClient(opened) as client:
        response = client.options("/v1/catalogs/racks", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://planner.example"


def test_review_regressions(service, tmp_path):
    """Damaged zips, duplicate names, catalog tables in uploads, unknown ids, NaN and ':' in
    variant names all give 4xx JSON errors, not 500s or silent nulls."""
    client, _, _ = service
    folder = EXAMPLES / "power-capped-colo"
    good = {p.name: p.read_bytes() for p in folder.glob("*.csv")}
    duplicated = _zip(
        {**{f"a/{k}": v for k, v in good.items()}, "b/periods.csv": good["periods.csv"]}
    )
    response = client.post("/v1/scenarios/upload", files={"file": ("d.zip", duplicated)})
    assert (
        response.status_code == 422 and "two files named periods.csv" in response.json()["message"]
    )
    stored = bytearray(_zip({"periods.csv": good["periods.csv"]}))
    stored[40] ^= 0xFF  # corrupt the compressed data
    assert (
        client.post("/v1/scenarios/upload", files={"file": ("c.zip", bytes(stored))}).status_code
        == 422
    )
    with_catalog = _zip({**good, "racks.csv": b"id\nx\n"})
    response = client.post("/v1/scenarios/upload", files={"file": ("r.zip", with_catalog)})
    assert response.status_code == 422 and "user catalog" in response.json()["message"]
    unknown = json.loads(json.dumps(QUICKSTART))
    unknown["racks"].append({"rack": "no-such-rack"})
    # refused when the scenario is created (issue 14), naming the table, row and field
    response = client.post("/v1/scenarios", json={"scenario": unknown})
    assert response.status_code == 422 and response.json()["field"] == "racks.rack"
    assert response.json()["errors"][0]["value"] == "no-such-rack"
    infinite = (
        '{"scenario": '
        + json.dumps(QUICKSTART).replace('"hours": 2190', '"hours": Infinity', 1)
        + "}"
    )
    response = client.post(
        "/v1/scenarios", content=infinite, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    session = client.post(
        "/v1/sessions", json={"name": "s", "scenario_id": _scenario(client)}
    ).json()
    bad_name = client.post(
        f"/v1/sessions/{session['id']}/variants",
        json={"name": "a:b", "changes": [{"key": "demand_scale", "value": 2}]},
    )
    assert bad_name.status_code == 422


def test_a_killed_solver_process_does_not_break_the_service(tmp_path):
    app = create_app(_settings(tmp_path, solve_workers=1))
    with TestClient(app) as client:
        _, key = create_key(app.state.rackplan.db, "w")
        client.headers.update({"Authorization": f"Bearer {key}"})
        sid = _scenario(client)
        first = client.post(f"/v1/scenarios/{sid}/plans", json={"wait_s": 120, "baselines": False})
        assert first.status_code == 201
        runner = app.state.rackplan.runner
        job = client.post(f"/v1/scenarios/{sid}/plans", json={"wait_s": 0, "gap": 0.03}).json()
        deadline = time.time() + 30
        while not runner.running and time.time() < deadline:
            time.sleep(0.01)
        for item in list(runner.running.values()):
            item.process.kill()
        killed = _poll(client, job["id"])
        if killed["status"] == "failed":  # else the solve won the race with the kill
            assert "solver process died" in killed["error"]
        job = client.post(f"/v1/scenarios/{sid}/plans", json={"wait_s": 0, "gap": 0.01}).json()
        assert _poll(client, job["id"])["status"] == "succeeded"


def test_chunked_bodies_are_limited_too(service):
    client, _, _ = service

    def chunks():
        yield b'{"scenario": '
        for _ in range(40):
            yield b" " * 10_000
        yield b"}"

    response = client.post(
        "/v1/scenarios", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_concurrent_retries_with_one_idempotency_key_make_one_job(service):
    from concurrent.futures import ThreadPoolExecutor

    client, _, _ = service
    scenario_id = _scenario(client)

    def post(_):
        return client.post(
            f"/v1/scenarios/{scenario_id}/plans",
            json={"wait_s": 0},
            headers={"Idempotency-Key": "race-7"},
        ).json()["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(post, range(8)))
    assert len(ids) == 1
    _poll(client, ids.pop())


def test_times_carry_their_zone_and_only_the_owner_cancels(service):
    client, _, _ = service
    scenario = client.get(f"/v1/scenarios/{_scenario(client)}").json()
    assert scenario["created_at"].endswith(("Z", "+00:00"))
    job = client.post(
        f"/v1/scenarios/{scenario['id']}/plans", json={"wait_s": 0, "gap": 0.05}
    ).json()
    assert job["updated_at"].endswith(("Z", "+00:00"))
    other_app_key = create_key(client.app.state.rackplan.db, "someone else")[1]
    response = client.post(
        f"/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {other_app_key}"}
    )
    assert response.status_code in {403, 409}
    if response.status_code == 403:
        assert "only the key that started" in response.json()["message"]
    _poll(client, job["id"])


def test_a_version_3_database_keeps_its_data_under_the_default_tenant(tmp_path):
    """Rows and keys from before tenants belong to the default tenant after the migration:
    the old key still reads its scenario, a key of another tenant gets 404."""
    import sqlite3

    from rackplan.api.security import hash_key

    path = tmp_path / "rackplan.sqlite3"
    connection = sqlite3.connect(path)
    connection.executescript((Path(__file__).parent / "data" / "schema_v3.sql").read_text())
    connection.execute("INSERT INTO schema_version (version, applied_at) VALUES (3, '2026-01-01')")
    connection.execute(
        "INSERT INTO api_keys (id, name, key_hash, scopes, created_at) "
        "VALUES ('k1', 'old', ?, 'read,write', '2026-01-01')",
        (hash_key("rp_old"),),
    )
    connection.execute(
        "INSERT INTO scenarios (id, name, body, created_by, created_at) "
        "VALUES ('s-old', 'quickstart', ?, 'k1', '2026-01-01')",
        (json.dumps(QUICKSTART),),
    )
    connection.commit()
    connection.close()
    app = create_app(_settings(tmp_path))
    with TestClient(app) as client:
        assert app.state.rackplan.db.version == 6
        old = client.get("/v1/scenarios/s-old", headers={"Authorization": "Bearer rp_old"})
        assert old.status_code == 200 and old.json()["scenario"]["name"] == "quickstart"
        _authorise(client, "other")
        assert client.get("/v1/scenarios/s-old").status_code == 404
        assert client.get("/v1/scenarios").json()["total"] == 0


def test_unknown_rack_and_llm_ids_are_refused_when_the_scenario_is_created(service):
    """Reference checks at creation (not at solve time), each with a did-you-mean; an id from
    one of the tenant's user catalogs is known."""
    client, _, _ = service
    scenario = json.loads(json.dumps(QUICKSTART))
    scenario["racks"] = [{"rack": "gb200-nvl27"}]
    scenario["classes"][0]["llm"] = "llama-3.1-70"
    response = client.post("/v1/scenarios", json={"scenario": scenario})
    assert response.status_code == 422, response.text
    text = json.dumps(response.json())
    assert "gb200-nvl27" in text and "gb200-nvl72" in text  # did you mean
    assert "llama-3.1-70" in text and "llama-3.1-70b" in text
    h200 = client.get("/v1/catalogs/racks/hgx-h200").json()
    client.put("/v1/user-catalogs/refs/racks/refs-h200", json=dict(h200, id="refs-h200"))
    ok = dict(QUICKSTART, racks=[{"rack": "refs-h200"}])
    assert client.post("/v1/scenarios", json={"scenario": ok}).status_code == 201
