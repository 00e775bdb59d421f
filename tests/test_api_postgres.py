"""The service on PostgreSQL. Runs when RACKPLAN_TEST_DATABASE_URL names a scratch database
(e.g. postgresql+psycopg://postgres@/rackplan_test?host=/tmp/pg&port=5433); its tables are
dropped first. CI runs SQLite only (no PostgreSQL server on a fresh machine)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

URL = os.environ.get("RACKPLAN_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="set RACKPLAN_TEST_DATABASE_URL to a scratch PostgreSQL database"
)
QUICKSTART = json.loads(
    (Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json").read_text()
)


def test_round_trip_on_postgresql(tmp_path):
    from sqlalchemy import create_engine, text

    from rackplan.api.app import create_app
    from rackplan.api.db import SCHEMA_VERSION
    from rackplan.api.security import create_key
    from rackplan.api.settings import Settings

    engine = create_engine(URL)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    app = create_app(Settings(data_dir=tmp_path, database_url=URL, solve_workers=1))
    with TestClient(app) as client:
        assert client.get("/ready").json()["schema_version"] == SCHEMA_VERSION
        _, key = create_key(app.state.rackplan.db, "pg")
        client.headers.update({"Authorization": f"Bearer {key}"})
        scenario_id = client.post("/v1/scenarios", json={"scenario": QUICKSTART}).json()["id"]
        plan = client.post(
            f"/v1/scenarios/{scenario_id}/plans", json={"wait_s": 120, "baselines": False}
        )
        assert plan.status_code == 201, plan.text
        assert plan.json()["plan"]["status"] == "optimal"
        again = client.post(
            f"/v1/scenarios/{scenario_id}/plans",
            json={"wait_s": 0},
            headers={"Idempotency-Key": "k"},
        ).json()
        same = client.post(
            f"/v1/scenarios/{scenario_id}/plans",
            json={"wait_s": 0},
            headers={"Idempotency-Key": "k"},
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
