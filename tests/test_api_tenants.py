"""Tenants: two tenants attack each other's objects on EVERY route of the app's route table
(so a new route cannot skip the check), plus keys (admin scope, revoke, rotate, expiry) and
the ``rackplan keys`` commands."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rackplan.api.app import create_app
from rackplan.api.security import create_key
from rackplan.api.settings import Settings

QUICKSTART = json.loads(
    (Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json").read_text()
)
ALL_SCOPES = ("read", "write", "admin")

GLOBAL = {
    "health",
    "health_v1",
    "ready",
    "ready_v1",
    "list_catalog",
    "show_catalog_entry",
    "get_rates",
    "list_shared_catalog",
    "put_shared_catalog_entry",
}
"""Routes without tenant data: shipped catalogs, rates, health, shared catalogs."""
CREATES = {"create_scenario", "upload_scenario", "create_key"}
"""Routes that only create new objects in the caller's own tenant."""
LISTS = {"list_scenarios": "items", "list_keys": None}
"""Tenant-filtered lists (the key of the items list; None: the body is the list)."""
UPSERTS = {"put_user_catalog_entry"}
"""Routes whose path names the caller's own object (created on first use): another tenant's
object of the same name must be left untouched."""
UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def is_page(path: str, operation: str | None) -> bool:
    """A browser page (api/web): signed in with a cookie, not a key; tests/test_web.py attacks
    every one of them the same way with another tenant's session."""
    return operation is None and not path.startswith("/v1/") and path not in UNDOCUMENTED


def route_table(app) -> list[tuple[str, str, str | None]]:
    """(method, path, operation id) of every route the app serves, included routers flattened."""
    rows = []
    for route in app.routes:
        contexts = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for context in contexts:
            for method in sorted(getattr(context, "methods", None) or ()):
                if method != "HEAD":
                    rows.append((method, context.path, getattr(context, "operation_id", None)))
    return rows


def _poll(client, job_id: str) -> dict:
    deadline = time.time() + 120
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in {"queued", "running"}:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, database_url):
    """Tenant A with one object of every kind; tenant B with a key of every scope."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("tenants"), database_url=database_url, solve_workers=2
    )
    app = create_app(settings)
    with TestClient(app) as client:
        db = app.state.rackplan.db
        a_key_id, a_key = create_key(db, "a", ALL_SCOPES, "tenant-a")
        _, b_key = create_key(db, "b", ALL_SCOPES, "tenant-b")
        a = {"Authorization": f"Bearer {a_key}"}
        b = {"Authorization": f"Bearer {b_key}"}
        h200 = client.get("/v1/catalogs/racks/hgx-h200", headers=a).json()
        entry = dict(h200, id="my-h200", capex_usd=500_000)
        for catalog in ("acme", "a-private"):
            url = f"/v1/user-catalogs/{catalog}/racks/my-h200"
            assert client.put(url, json=entry, headers=a).is_success
        scenario_id = client.post("/v1/scenarios", json={"scenario": QUICKSTART}, headers=a).json()[
            "id"
        ]
        plan = client.post(
            f"/v1/scenarios/{scenario_id}/plans",
            json={"wait_s": 120, "baselines": False},
            headers=a,
        )
        assert plan.status_code == 201, plan.text
        session_id = client.post(
            "/v1/sessions", json={"name": "a", "scenario_id": scenario_id}, headers=a
        ).json()["id"]
        variant = {"name": "double", "changes": [{"key": "demand_scale", "value": 2}]}
        assert client.post(
            f"/v1/sessions/{session_id}/variants", json=variant, headers=a
        ).is_success
        job = client.post(f"/v1/sessions/{session_id}/solve", headers=a).json()
        client.headers.update(a)
        assert _poll(client, job["id"])["status"] == "succeeded"
        robust = client.post(
            f"/v1/scenarios/{scenario_id}/robust-plans",
            json={"wait_s": 120, "futures": 2},
            headers=a,
        )
        assert robust.status_code == 201, robust.text
        stress = client.post(
            f"/v1/plans/{plan.json()['id']}/stress-tests",
            json={"wait_s": 120, "samples": 20},
            headers=a,
        )
        assert stress.status_code == 201, stress.text
        client.headers.clear()
        objects = {
            "scenario_id": scenario_id,
            "plan_id": plan.json()["id"],
            "job_id": job["id"],
            "session_id": session_id,
            "key_id": a_key_id,
            "catalog": "acme",
            "kind": "racks",
            "entry_id": "my-h200",
            "robust_plan_id": robust.json()["id"],
            "stress_test_id": stress.json()["id"],
        }
        yield client, a, b, objects, entry


def _body(operation: str, objects: dict, entry: dict) -> dict | None:
    """A valid body for each writing route, so the answer is about ownership, not validation."""
    bodies = {
        "solve_scenario": {"wait_s": 0, "baselines": False},
        "add_variant": {"name": "evil", "changes": [{"key": "demand_scale", "value": 9}]},
        "put_user_catalog_entry": dict(entry, capex_usd=1),
        "rotate_key": {},
        "create_session": {"name": "evil", "scenario_id": objects["scenario_id"]},
        "create_robust_plan": {"wait_s": 0, "futures": 2},
        "create_stress_test": {"wait_s": 0, "samples": 10},
    }
    return bodies.get(operation)


@pytest.fixture(scope="module")
def attack(tenants) -> tuple[list[str], list[str]]:
    """B, holding every scope, requests each of A's objects on every route with an object in
    its path (upserts last); returns (unclassified routes, leaks)."""
    client, _, b, objects, entry = tenants
    unclassified, leaks = [], []
    table = sorted(route_table(client.app), key=lambda row: row[2] in UPSERTS)
    for method, path, operation in table:
        names = re.findall(r"{(\w+)}", path)
        if path in UNDOCUMENTED or operation in GLOBAL | CREATES | set(LISTS):
            continue
        if is_page(path, operation):
            continue
        if not names and operation != "create_session":
            unclassified.append(f"{method} {path} ({operation})")
            continue
        missing = [n for n in names if n not in objects]
        assert not missing, f"{method} {path}: no object of tenant A for {missing}"
        url = path.format(**objects)
        response = client.request(method, url, json=_body(operation, objects, entry), headers=b)
        expected = 200 if operation in UPSERTS else 404
        hidden = expected != 404 or response.json().get("detail", "").startswith("no ")
        if response.status_code != expected or not hidden:
            leaks.append(
                f"{method} {url} ({operation}): {response.status_code} {response.text[:200]}"
            )
    return unclassified, leaks


def test_every_route_keeps_tenants_apart(attack):
    """404 (never 403, never data) for another tenant's objects on every route; a route that
    is not classified above fails the test, so a new route cannot skip it."""
    unclassified, leaks = attack
    assert not unclassified, f"classify these routes in test_api_tenants: {unclassified}"
    assert not leaks, "\n".join(leaks)


def test_a_is_untouched_after_the_attack(tenants, attack):
    client, a, _, objects, _ = tenants
    mine = client.get("/v1/user-catalogs/acme", headers=a).json()
    assert [e["entry"]["capex_usd"] for e in mine] == [500_000]
    session = client.get(f"/v1/sessions/{objects['session_id']}", headers=a).json()
    assert [v["name"] for v in session["variants"]] == ["double"]
    assert session["comparison"] is not None
    assert client.get(f"/v1/jobs/{objects['job_id']}", headers=a).json()["status"] == "succeeded"
    for url in (
        f"/v1/scenarios/{objects['scenario_id']}",
        f"/v1/plans/{objects['plan_id']}",
        f"/v1/plans/{objects['plan_id']}/export?format=csv",
        f"/v1/sessions/{objects['session_id']}/comparison",
        f"/v1/robust-plans/{objects['robust_plan_id']}",
        f"/v1/stress-tests/{objects['stress_test_id']}/export?format=xlsx",
    ):
        assert client.get(url, headers=a).status_code == 200, url


def test_lists_show_only_your_tenant(tenants):
    client, a, b, objects, _ = tenants
    assert objects["scenario_id"] in client.get("/v1/scenarios", headers=a).text
    theirs = client.get("/v1/scenarios", headers=b).json()
    assert objects["scenario_id"] not in {s["id"] for s in theirs["items"]}
    assert objects["key_id"] not in {k["id"] for k in client.get("/v1/keys", headers=b).json()}
    assert objects["key_id"] in {k["id"] for k in client.get("/v1/keys", headers=a).json()}


def test_other_tenants_ids_look_like_missing_ones(tenants):
    client, _, b, objects, _ = tenants
    theirs = client.get(f"/v1/plans/{objects['plan_id']}", headers=b).json()
    missing = client.get("/v1/plans/0123456789abcdef0123456789abcdef", headers=b).json()
    assert theirs["status"] == missing["status"] == 404
    assert theirs["detail"].replace(objects["plan_id"], "ID") == missing["detail"].replace(
        "0123456789abcdef0123456789abcdef", "ID"
    )


def test_audit_names_the_tenant_not_the_key(tenants):
    client, a, _, objects, _ = tenants
    plan = client.get(f"/v1/plans/{objects['plan_id']}", headers=a)
    assert plan.json()["audit"]["requested_by"] == "tenant-a"
    assert objects["key_id"] not in plan.text


def test_user_catalog_of_another_tenant_is_not_used(tenants):
    client, _, b, _, _ = tenants
    mine = client.post("/v1/scenarios", json={"scenario": QUICKSTART}, headers=b).json()["id"]
    response = client.post(
        f"/v1/scenarios/{mine}/plans", json={"wait_s": 0, "catalog": "a-private"}, headers=b
    )
    assert response.status_code == 404 and "a-private" in response.json()["detail"]


def test_admin_scope_manages_keys(tenants):
    client, a, _, _, _ = tenants
    issued = client.post("/v1/keys", json={"name": "bot", "scopes": ["read"]}, headers=a).json()
    bot = {"X-API-Key": issued["key"]}
    assert issued["tenant"] == "tenant-a" and client.get("/v1/scenarios", headers=bot).is_success
    assert client.get("/v1/keys", headers=bot).status_code == 403
    escalate = client.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=a)
    assert escalate.status_code == 422
    rotated = client.post(f"/v1/keys/{issued['id']}/rotate", json={}, headers=a).json()
    assert client.get("/v1/scenarios", headers=bot).status_code == 401
    bot = {"X-API-Key": rotated["key"]}
    assert client.get("/v1/scenarios", headers=bot).status_code == 200
    assert client.post(f"/v1/keys/{issued['id']}/revoke", headers=a).json()["revoked_at"]
    refused = client.get("/v1/scenarios", headers=bot)
    assert refused.status_code == 401 and "Bearer" in refused.headers["WWW-Authenticate"]


def test_expired_keys_are_refused(tenants):
    client, _, _, _, _ = tenants
    db = client.app.state.rackplan.db
    past = datetime.now(UTC) - timedelta(seconds=1)
    _, old = create_key(db, "old", ("read",), "tenant-a", expires_at=past)
    assert client.get("/v1/scenarios", headers={"X-API-Key": old}).status_code == 401
    future = datetime.now(UTC) + timedelta(days=1)
    _, fresh = create_key(db, "fresh", ("read",), "tenant-a", expires_at=future)
    assert client.get("/v1/scenarios", headers={"X-API-Key": fresh}).status_code == 200


def test_shared_catalogs_need_admin_to_write(tenants):
    client, a, _, _, entry = tenants
    db = client.app.state.rackplan.db
    _, writer = create_key(db, "w", ("read", "write"), "tenant-c")
    shared = dict(entry, id="shared-h200")
    url = "/v1/shared-catalogs/common/racks/shared-h200"
    refused = client.put(url, json=shared, headers={"X-API-Key": writer})
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert client.put(url, json=shared, headers=a).status_code == 200
    listed = client.get("/v1/shared-catalogs/common", headers={"X-API-Key": writer})
    assert [e["id"] for e in listed.json()] == ["shared-h200"]


def test_keys_commands(tmp_path, monkeypatch, capsys):
    from rackplan.planner.cli.main import main

    monkeypatch.setenv("RACKPLAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RACKPLAN_DATABASE_URL", raising=False)

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code or 0, capsys.readouterr().out

    code, made = run("keys", "create", "bot", "--tenant", "acme", "--expires-in-days", "3")
    assert code == 0, made
    key_id = made.split()[2]
    listed = json.loads(run("keys", "list", "--json")[1])
    assert listed[0]["id"] == key_id and listed[0]["tenant"] == "acme" and listed[0]["expires_at"]
    code, rotated = run("keys", "rotate", key_id)
    assert code == 0 and rotated.strip().splitlines()[-1].startswith("rp_")
    assert run("keys", "revoke", key_id)[0] == 0
    assert json.loads(run("keys", "list", "--json")[1])[0]["revoked_at"]
    assert run("keys", "revoke", "nope")[0] == 2
    assert run("keys", "create", "x", "--tenant", "Bad Name")[0] == 2
