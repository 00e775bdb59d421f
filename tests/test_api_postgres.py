"""The service on PostgreSQL: a round trip through a solve and an idempotent retry, on the
throw-away cluster of tests/postgres.py (or RACKPLAN_TEST_DATABASE_URL). The API modules
(test_api, test_api_tenants, test_api_hardening) also run whole on PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fastapi.testclient import TestClient

QUICKSTART = json.loads(
    (Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json").read_text()
)


def test_round_trip_on_postgresql(tmp_path, postgres_server):
    from rackplan.api.app import create_app
    from rackplan.api.db import SCHEMA_VERSION
    from rackplan.api.security import create_key
    from rackplan.api.settings import Settings
    from tests.postgres import fresh_database

    url = fresh_database(postgres_server)
    app = create_app(Settings(data_dir=tmp_path, database_url=url, solve_workers=1))
    with TestClient(app) as client:
        assert client.get("/v1/ready").json()["schema_version"] == SCHEMA_VERSION
        _, key = create_key(app.state.rackplan.db, "pg")
        client.headers.update({"Authorization": f"Bearer {key}"})
        scenario_id = client.post("/v1/scenarios", json={"scenario": QUICKSTART}).json()["id"]
        plan = client.post(
            f"/v1/scenarios/{scenario_id}/plans",
            json={"wait_s": 120, "baselines": False, "gap": 1e-6},
        )
        assert plan.status_code == 201, plan.text
        assert plan.json()["plan"]["status"] == "optimal"
        headers = {"Idempotency-Key": "k"}
        again = client.post(
            f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0}, headers=headers
        ).json()
        same = client.post(
            f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 0}, headers=headers
        ).json()
        assert again["id"] == same["id"]
        deadline = time.time() + 120
        while (
            client.get(f"/v1/jobs/{again['id']}").json()["status"] in {"queued", "running"}
            and time.time() < deadline
        ):
            time.sleep(0.1)
        assert client.get(f"/v1/jobs/{again['id']}").json()["status"] == "succeeded"
        assert client.get("/v1/scenarios?limit=10").json()["total"] == 1
        nul = client.post("/v1/sessions", json={"name": "a\u0000b", "scenario_id": scenario_id})
        assert nul.status_code == 422 and nul.json()["field"] == "body.name"
