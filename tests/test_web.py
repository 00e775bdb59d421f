"""The browser pages without a browser: the session cookie's flags, CSRF on every form, every
page route attacked by another tenant (so a new page cannot skip the check), redirects to the
sign-in form, escaping, headers, and the key never in a URL or the log."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rackplan.api.app import create_app
from rackplan.api.security import create_key, revoke_key
from rackplan.api.settings import Settings
from rackplan.api.web.auth import COOKIE, SIGN_IN_COOKIE
from tests.test_api_tenants import is_page, route_table

QUICKSTART = json.loads(
    (Path(__file__).parents[1] / "examples" / "quickstart" / "scenario.json").read_text()
)
UNGUARDED = {("GET", "/"), ("GET", "/sign-in"), ("POST", "/sign-in")}
"""Pages that need no session."""
OWN_LISTS = {("GET", "/scenarios")}
CREATES = {("POST", "/scenarios/upload"), ("POST", "/scenarios/start"), ("POST", "/sign-out")}
"""Pages without an object in their path: they list or create the caller's own."""


def _token(response, name: str) -> str:
    found = re.search(rf"{name}=([^;]*)", response.headers.get("set-cookie", ""))
    assert found, response.headers
    return found.group(1)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, key: str) -> tuple[str, str]:
    """(session cookie token, CSRF token) of a fresh sign-in; the client's jar stays empty."""
    client.cookies.clear()
    form = client.get("/sign-in")
    form_token = _token(form, SIGN_IN_COOKIE)
    client.cookies.clear()
    answer = client.post(
        "/sign-in",
        data={"api_key": key, "csrf_token": _csrf(form.text)},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={form_token}"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    token = _token(answer, COOKIE)
    client.cookies.clear()
    page = client.get("/scenarios", headers={"Cookie": f"{COOKIE}={token}"})
    return token, _csrf(page.text)


def _poll(client: TestClient, job_id: str, headers: dict) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "succeeded":
            return
        time.sleep(0.1)
    raise AssertionError("job did not finish")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Tenant a with a scenario, plan, job and solved session (made through the REST API);
    tenant b with a session on the pages."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), database_url=None)
    app = create_app(settings)
    with TestClient(app) as client:
        db = app.state.rackplan.db
        a_key_id, a_key = create_key(db, "alice", ("read", "write"), "tenant-a")
        _, b_key = create_key(db, "bob", ("read", "write"), "tenant-b")
        a = {"Authorization": f"Bearer {a_key}"}
        scenario = client.post("/v1/scenarios", json={"scenario": QUICKSTART}, headers=a).json()
        plan = client.post(
            f"/v1/scenarios/{scenario['id']}/plans",
            json={"wait_s": 120, "baselines": False},
            headers=a,
        ).json()
        session = client.post(
            "/v1/sessions", json={"name": "a", "scenario_id": scenario["id"]}, headers=a
        ).json()
        variant = {"name": "double", "changes": [{"key": "demand_scale", "value": 2}]}
        client.post(f"/v1/sessions/{session['id']}/variants", json=variant, headers=a)
        job = client.post(f"/v1/sessions/{session['id']}/solve", headers=a).json()
        _poll(client, job["id"], a)
        objects = {
            "scenario_id": scenario["id"],
            "plan_id": plan["id"],
            "session_id": session["id"],
            "job_id": job["id"],
        }
        yield {
            "client": client,
            "app": app,
            "a_key": a_key,
            "a_key_id": a_key_id,
            "b_key": b_key,
            "a": a,
            "objects": objects,
        }


def _pages(app) -> list[tuple[str, str]]:
    return [(m, p) for m, p, op in route_table(app) if is_page(p, op)]


def test_the_session_cookie_is_httponly_samesite_strict_and_secure_over_https(site):
    app = site["app"]
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        client = TestClient(app, base_url=base)
        form = client.get("/sign-in")
        answer = client.post(
            "/sign-in",
            data={"api_key": site["a_key"], "csrf_token": _csrf(form.text)},
            follow_redirects=False,
        )
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ("Secure" in cookie) is secure
        assert site["a_key"] not in cookie and site["a_key"] not in answer.headers["location"]


def test_every_form_needs_the_sessions_csrf_token(site):
    """A post without the token, or with another session's, is refused (403)."""
    client, objects = site["client"], site["objects"]
    token, _ = sign_in(client, site["a_key"])
    _, other_csrf = sign_in(client, site["a_key"])
    posts = [p for m, p in _pages(site["app"]) if m == "POST" and p != "/sign-in"]
    assert len(posts) >= 8
    for path in posts:
        url = path.format(**objects)
        for form in ({}, {"csrf_token": other_csrf}):
            answer = client.post(url, data=form, headers={"Cookie": f"{COOKIE}={token}"})
            assert answer.status_code == 403, (url, form, answer.status_code)
            assert "CSRF" in answer.text
    forged = client.post("/sign-in", data={"api_key": site["a_key"], "csrf_token": "forged"})
    assert forged.status_code == 403


def test_every_page_keeps_tenants_apart(site):
    """Tenant b, signed in, asks for each of a's objects on every page: 404, as for an id that
    does not exist; a page not classified here fails the test."""
    client, objects = site["client"], site["objects"]
    token, csrf = sign_in(client, site["b_key"])
    leaks, unclassified = [], []
    for method, path in _pages(site["app"]):
        names = re.findall(r"{(\w+)}", path)
        if not names:
            if (method, path) not in UNGUARDED | OWN_LISTS | CREATES:
                unclassified.append(f"{method} {path}")
            continue
        url = path.format(**objects)
        answer = client.request(
            method,
            url,
            data={"csrf_token": csrf, "name": "evil"} if method == "POST" else None,
            headers={"Cookie": f"{COOKIE}={token}"},
            follow_redirects=False,
        )
        if answer.status_code != 404 or "Not found" not in answer.text:
            leaks.append(f"{method} {url}: {answer.status_code} {answer.text[:200]}")
    assert not unclassified, f"classify these pages in tests/test_web.py: {unclassified}"
    assert not leaks, "\n".join(leaks)
    listing = client.get("/scenarios", headers={"Cookie": f"{COOKIE}={token}"}).text
    assert objects["scenario_id"] not in listing and objects["session_id"] not in listing


def test_without_a_session_pages_redirect_to_sign_in(site):
    client = site["client"]
    client.cookies.clear()
    for method, path in _pages(site["app"]):
        if (method, path) in UNGUARDED:
            continue
        url = path.format(**site["objects"])
        answer = client.request(method, url, follow_redirects=False)
        assert answer.status_code == 303, (method, url, answer.status_code)
        assert answer.headers["location"].startswith("/sign-in"), url
    made_up = {"Cookie": f"{COOKIE}=made-up"}
    stale = client.get("/scenarios", headers=made_up, follow_redirects=False)
    assert stale.status_code == 303


def test_a_revoked_key_ends_its_sessions(site):
    client = site["client"]
    db = site["app"].state.rackplan.db
    key_id, key = create_key(db, "short-lived", ("read", "write"), "tenant-a")
    token, _ = sign_in(client, key)
    cookie = {"Cookie": f"{COOKIE}={token}"}
    assert client.get("/scenarios", headers=cookie).status_code == 200
    revoke_key(db, key_id)
    answer = client.get("/scenarios", headers=cookie, follow_redirects=False)
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]


def test_names_are_escaped_and_pages_send_security_headers(site):
    client, a = site["client"], site["a"]
    hostile = dict(QUICKSTART, name="<script>alert(1)</script>")
    scenario = client.post("/v1/scenarios", json={"scenario": hostile}, headers=a).json()
    token, _ = sign_in(client, site["a_key"])
    cookie = {"Cookie": f"{COOKIE}={token}"}
    for url in ("/scenarios", f"/scenarios/{scenario['id']}"):
        page = client.get(url, headers=cookie)
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"


def test_sign_in_goes_back_only_to_this_site(site):
    client = site["client"]
    client.cookies.clear()
    form = client.get("/sign-in?next=//evil.example/x")
    assert "//evil.example" not in form.text
    answer = client.post(
        "/sign-in",
        data={"api_key": site["a_key"], "csrf_token": _csrf(form.text), "next": "//evil.example"},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={_token(form, SIGN_IN_COOKIE)}"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/scenarios"
    client.cookies.clear()


def test_a_wrong_key_is_refused_and_no_key_is_logged(site, caplog):
    client = site["client"]
    caplog.set_level(logging.DEBUG)
    client.cookies.clear()
    form = client.get("/sign-in")
    wrong = client.post(
        "/sign-in",
        data={"api_key": "rp_not-a-key", "csrf_token": _csrf(form.text)},
        headers={"Cookie": f"{SIGN_IN_COOKIE}={_token(form, SIGN_IN_COOKIE)}"},
    )
    assert wrong.status_code == 401 and "unknown, revoked or expired" in wrong.text
    assert "rp_not-a-key" not in wrong.text
    sign_in(client, site["a_key"])
    assert site["a_key"] not in caplog.text and "rp_not-a-key" not in caplog.text
    client.cookies.clear()


def test_the_job_page_shows_a_stress_test_made_through_the_api(site):
    """A robust plan or stress test is started through the API; its job page (and the status
    poll) must show it — a scenario's job, with no result page to move on to — not fail."""
    client, a = site["client"], site["a"]
    plan_id = site["objects"]["plan_id"]
    made = client.post(
        f"/v1/plans/{plan_id}/stress-tests", json={"samples": 20, "seed": 1, "wait_s": 0}, headers=a
    )
    assert made.status_code == 202, made.text  # wait_s 0: the job
    job_id = made.json()["id"]
    _poll(client, job_id, a)
    token, _ = sign_in(client, site["a_key"])
    cookie = {"Cookie": f"{COOKIE}={token}"}
    page = client.get(f"/jobs/{job_id}", headers=cookie)
    assert page.status_code == 200, page.text
    assert "Stress test" in page.text and "Back to the scenario" in page.text
    status = client.get(f"/jobs/{job_id}/status", headers=cookie)
    assert status.status_code == 200 and status.json()["next"] is None
