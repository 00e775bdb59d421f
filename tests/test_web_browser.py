"""The pages in a real headless Chromium (Debian's, driven by Playwright) against a real
``rackplan serve``: a planning meeting from sign-in to sign-out, a second tenant, a forged
form, an expired session, an upload with problems and an infeasible variant.

Every page visited is kept as a screenshot in ``out/screenshots/`` (1280 px wide), and each
is checked for: no horizontal scrolling at 1280 px, a label on every input, and a load in
under a second.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "out" / "screenshots"
FRONTIER = ROOT / "examples" / "frontier-2027"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1280
PAGE_LOAD_MS = 1000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict]:
    """``rackplan serve`` on a fresh data folder, with keys for tenants acme and globex."""
    from rackplan.api.db import Database
    from rackplan.api.security import create_key
    from rackplan.api.settings import Settings

    data = tmp_path_factory.mktemp("web-data")
    url = Settings(data_dir=data, database_url=None).url
    db = Database(url)
    keys = {
        "acme": create_key(db, "alice", ("read", "write"), "acme")[1],
        "globex": create_key(db, "bob", ("read", "write"), "globex")[1],
    }
    db.engine.dispose()
    port = _free_port()
    env = dict(os.environ, RACKPLAN_DATA_DIR=str(data), RACKPLAN_SOLVE_WORKERS="2")
    env.pop("RACKPLAN_DATABASE_URL", None)
    log = (data / "server.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("rackplan")), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError("rackplan serve did not start")
    yield {"base": base, "keys": keys, "db_url": url, "log": data / "server.log"}
    process.terminate()
    process.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 900}, base_url=server["base"], accept_downloads=True
    )
    yield context.new_page()
    context.close()


def shot(page, name: str) -> None:
    """Keep a screenshot, and check the page: fits 1280 px, every input labelled, fast."""
    number = len(list(SHOTS.glob("*.png"))) + 1
    page.screenshot(path=str(SHOTS / f"{number:02d}-{name}.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= WIDTH, f"{name}: the page is {overflow} px wide at {WIDTH} px"
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
             .map(e => e.name)"""
    )
    assert unlabelled == [], f"{name}: inputs without a label: {unlabelled}"
    loaded = page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n ? n.responseEnd - n.startTime : 0; })()"
    )
    assert loaded < PAGE_LOAD_MS, f"{name}: the page took {loaded:.0f} ms"


def sign_in(page, key: str) -> None:
    """With the keyboard: the key field has the focus, Enter sends the form."""
    page.goto("/")
    page.wait_for_url("**/sign-in**")
    page.wait_for_function("document.activeElement?.id === 'api_key'", timeout=5000)
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/scenarios")


def wait_for_job(page, result: str) -> None:
    """The job page polls its job and moves on to its result: wait for ``result`` (a CSS
    selector of the result page)."""
    page.wait_for_selector(result, timeout=120_000)


def zipped(folder: Path, target: Path, change=None) -> Path:
    """The scenario's CSV tables in a zip (``change(name, text)`` may edit a table)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.glob("*.csv")):
            text = path.read_text(encoding="utf-8")
            archive.writestr(path.name, change(path.name, text) if change else text)
    return target


def start_example(page, name: str) -> str:
    page.goto("/scenarios")
    page.select_option("#source", name)
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/scenarios/*")
    return page.url


def start_session(page, scenario_url: str, name: str) -> str:
    page.goto(scenario_url)
    page.fill("#session-name", name)
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/sessions/*")
    return page.url


def add_variant(page, name: str, fields: dict[str, str]) -> None:
    page.fill("#v-name", name)
    for field, value in fields.items():
        page.fill(f'[name="{field}"]', value)
    page.get_by_role("button", name="Add variant").click()
    page.wait_for_load_state()
    assert page.locator("#variants").get_by_text(name).count() >= 1, page.content()[:2000]


@pytest.fixture(scope="module")
def meeting(browser, server, tmp_path_factory) -> Iterator[dict]:
    """Tenant acme's planning meeting, step by step; what it made, for the tests below."""
    import rackplan

    folder = tmp_path_factory.mktemp("meeting")
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 900}, base_url=server["base"], accept_downloads=True
    )
    page = context.new_page()
    started = time.monotonic()
    made: dict = {}

    page.goto("/")
    page.wait_for_url("**/sign-in**")
    shot(page, "sign-in")
    sign_in(page, server["keys"]["acme"])
    shot(page, "scenarios-empty")

    page.set_input_files("#file", str(zipped(FRONTIER, folder / "frontier-2027.zip")))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url("**/scenarios/*")
    made["scenario"] = page.url
    made["scenario_text"] = page.inner_text("main")
    shot(page, "scenario-frontier")

    page.get_by_role("button", name="Solve this scenario").click()
    page.wait_for_url("**/jobs/*")
    made["job"] = page.url
    wait_for_job(page, "#buy-title")
    made["plan"] = page.url
    made["plan_text"] = page.inner_text("main")
    made["plan_charts"] = page.locator("svg.chart").evaluate_all(
        "charts => charts.map(c => [c.getAttribute('aria-label'), c.textContent])"
    )
    shot(page, "plan-frontier")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download XLSX").click()
    workbook = folder / "plan.xlsx"
    download.value.save_as(workbook)
    made["plan_workbook"] = rackplan.load_scenario(workbook)

    quickstart = start_example(page, "quickstart")
    made["quickstart"] = quickstart
    made["session"] = start_session(page, quickstart, "power and price")
    shot(page, "session-new")
    add_variant(page, "more-chat", {"demand_scale:chat": "1.5"})
    add_variant(page, "cheaper-gb200", {"price:gb200-nvl72": "2500000"})
    page.get_by_role("button", name="Solve base and variants").click()
    wait_for_job(page, "#c-title")
    made["comparison_text"] = page.inner_text("main")
    shot(page, "session-comparison")
    with page.expect_download() as download:
        page.locator("section").filter(has_text="side by side").get_by_role(
            "link", name="Download XLSX"
        ).click()
    comparison = folder / "comparison.xlsx"
    download.value.save_as(comparison)
    made["comparison_workbook"] = comparison

    page.select_option("#p-param", "power_cap_mw")
    page.fill("#p-start", "0.3")
    page.fill("#p-stop", "0.6")
    page.fill("#p-steps", "4")
    page.get_by_role("button", name="Run sweep").click()
    page.wait_for_url("**/jobs/*")
    shot(page, "job-progress")
    wait_for_job(page, 'svg[aria-label^="Pareto"]')
    made["sweep_charts"] = page.locator("svg.chart").evaluate_all(
        "charts => charts.map(c => c.getAttribute('aria-label'))"
    )
    shot(page, "session-pareto")

    page.goto("/scenarios")
    made["list_text"] = page.inner_text("main")
    shot(page, "scenarios-list")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/sign-in?signed_out=1")
    made["signed_out_text"] = page.inner_text("main")
    page.goto(made["plan"])
    made["after_sign_out_url"] = page.url
    made["seconds"] = time.monotonic() - started
    context.close()
    yield made


def test_a_planning_meeting_from_sign_in_to_sign_out(meeting):
    """Upload the frontier example, solve it, read the plan, download the workbook and read
    it back with rackplan's own importer; two variants, compared; a Pareto sweep; sign out."""
    import rackplan

    assert "periods" in meeting["scenario_text"] and "forecast" in meeting["scenario_text"]
    plan = meeting["plan_text"]
    for heading in (
        "What to buy",
        "Fleet",
        "Power against the cap",
        "Cost breakdown",
        "$ per million tokens and SLA per class",
        "Binding limits and shadow prices",
        "Baselines and savings",
        "Warnings",
    ):
        assert heading in plan, heading
    assert "withdrawn" in plan  # vr-cpx-144's warning (plan.warnings)
    assert "saves $" in plan or "costs $" in plan  # shadow prices in words
    labels = dict(meeting["plan_charts"])
    assert "racks bought per period" in labels
    assert "period (quarter)" in labels["racks bought per period"]
    assert "MW at the meter" in labels["site power against the cap"]
    assert "USD per million output tokens" in labels["cost per million output tokens by class"]

    original = rackplan.load_scenario(FRONTIER)
    read_back = meeting["plan_workbook"]
    assert read_back.periods == original.periods
    assert read_back.classes == original.classes
    assert read_back.racks == original.racks
    assert len(read_back.demand) == len(original.demand)

    comparison = meeting["comparison_text"]
    for name in ("base", "more-chat", "cheaper-gb200", "Δ TCO vs base", "−$"):
        assert name in comparison, name
    from openpyxl import load_workbook

    sheet = load_workbook(meeting["comparison_workbook"], read_only=True)["comparison"]
    variants = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert variants == ["base", "more-chat", "cheaper-gb200"]
    assert rackplan.load_scenario(meeting["comparison_workbook"]).name == "quickstart"

    assert "Pareto: TCO against power_cap_mw" in meeting["sweep_charts"]
    assert "frontier-2027" in meeting["list_text"] and "alice" in meeting["list_text"]
    assert "You are signed out" in meeting["signed_out_text"]
    assert "/sign-in" in meeting["after_sign_out_url"]
    assert meeting["seconds"] < 75, f"the meeting took {meeting['seconds']:.0f} s"


def test_a_second_tenant_sees_none_of_it(page, server, meeting):
    sign_in(page, server["keys"]["globex"])
    listing = page.inner_text("main")
    assert "Your scenarios (0)" in listing and "No scenarios yet" in listing
    assert page.locator("main table").count() == 0
    assert "power and price" not in listing
    for key in ("scenario", "plan", "session", "job"):
        response = page.goto(meeting[key])
        assert response.status == 404, (key, response.status)
        assert "Not found" in page.inner_text("main")
    shot(page, "other-tenant-404")
    for suffix in ("/plan.xlsx", "/plan.zip"):
        assert page.request.get(meeting["plan"] + suffix).status == 404
    assert page.request.get(meeting["session"] + "/comparison.xlsx").status == 404
    assert page.request.get(meeting["job"] + "/status").status == 404


def test_a_forged_form_is_refused(page, server):
    """A form whose CSRF token is not the session's is refused, and nothing is created."""
    sign_in(page, server["keys"]["acme"])
    before = page.inner_text("main")
    page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged')"
    )
    page.select_option("#source", "template")
    page.get_by_role("button", name="Create").click()
    page.wait_for_load_state()
    assert "CSRF" in page.inner_text("main")
    shot(page, "csrf-refused")
    posted = page.request.post("/scenarios/start", form={"source": "template"})
    assert posted.status == 403
    page.goto("/scenarios")
    assert page.inner_text("main") == before


def test_an_expired_session_asks_to_sign_in_again(page, server):
    from sqlalchemy import update

    from rackplan.api.db import Database, WebSessionRow, now

    sign_in(page, server["keys"]["acme"])
    db = Database(server["db_url"])
    with db.transaction() as session:
        session.execute(update(WebSessionRow).values(expires_at=now() - timedelta(seconds=1)))
    db.engine.dispose()
    page.goto("/scenarios")
    assert "/sign-in" in page.url
    assert "Your session expired" in page.inner_text("main")
    shot(page, "session-expired")
    sign_in(page, server["keys"]["acme"])
    assert page.url.endswith("/scenarios")


def test_an_upload_with_problems_shows_file_row_and_column(page, server, tmp_path):
    def broken(name: str, text: str) -> str:
        lines = text.splitlines()
        if name == "forecast.csv":
            lines[2] = lines[2].replace("3000.0", "lots", 1)
        if name == "periods.csv":
            cells = lines[1].split(",")
            cells[1] = "lots"
            lines[1] = ",".join(cells)
        return "\n".join(lines) + "\n"

    sign_in(page, server["keys"]["acme"])
    page.set_input_files("#file", str(zipped(FRONTIER, tmp_path / "broken.zip", broken)))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_load_state()
    rows = page.locator(".problems tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    shot(page, "upload-problems")
    files = {r[0] for r in rows}
    assert {"forecast.csv", "periods.csv"} <= files, rows
    periods = next(r for r in rows if r[0] == "periods.csv")
    assert periods[1] == "2" and periods[2] == "hours", periods
    forecast = next(r for r in rows if r[0] == "forecast.csv")
    assert forecast[1] == "3" and forecast[2] == "requests_per_s", forecast
    assert forecast[4] == "lots", forecast


def test_an_infeasible_variant_is_explained(page, server):
    sign_in(page, server["keys"]["acme"])
    scenario = start_example(page, "quickstart")
    start_session(page, scenario, "too little power")
    add_variant(page, "tiny-cap", {"power_cap_mw": "0.1"})
    page.get_by_role("button", name="Solve base and variants").click()
    wait_for_job(page, "#c-title")
    text = page.inner_text("main")
    shot(page, "session-infeasible")
    assert "tiny-cap is infeasible" in text
    assert "power cap in 2027Q1 short by" in text


def test_inline_edits_are_checked_saved_and_an_infeasible_plan_is_explained(page, server):
    """Edit the power caps in place: a bad value is named; good values make a new scenario,
    whose solve is infeasible and whose plan page says which limits to relax, by how much."""
    sign_in(page, server["keys"]["acme"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    start_example(page, "quickstart")
    cap = page.get_by_label("power_cap_mw of periods row 1")
    cap.fill("-5")
    page.get_by_role("button", name="Save edits as a new scenario").click()
    page.wait_for_selector(".problems")
    cells = page.locator(".problems tbody td").all_inner_texts()
    assert cells[:3] == ["periods", "1", "power_cap_mw"] and "-5" in cells[4], cells
    shot(page, "scenario-edit-problem")
    page.get_by_label("power_cap_mw of periods row 1").fill("0.1")
    page.get_by_label("power_cap_mw of periods row 2").fill("0.1")
    page.get_by_role("button", name="Save edits as a new scenario").click()
    page.wait_for_url("**/scenarios/*?edited=1")
    assert page.get_by_role("heading", name="quickstart (edited)").count() == 1
    assert page.get_by_label("power_cap_mw of periods row 1").input_value() == "0.1"
    page.get_by_role("button", name="Solve this scenario").click()
    wait_for_job(page, "#inf-title")
    text = page.inner_text("main")
    shot(page, "plan-infeasible")
    assert "No feasible plan" in text and "Limits to relax" in text
    assert "power cap in 2027Q1 short by" in text
