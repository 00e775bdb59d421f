"""The what-if session page: variants from a form, solve (a job), the comparison side by side,
a Pareto sweep, and downloads of the comparison."""

from __future__ import annotations

import io
import json

import pandas as pd
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from rackplan.api.db import ScenarioRow, SweepRow
from rackplan.api.deps import State, StateDep, owned
from rackplan.api.routes.catalogs import shipped_catalog
from rackplan.api.routes.jobs import start_job
from rackplan.api.routes.plans import neutralised
from rackplan.api.routes.sessions import _comparison, _session_out, add_variant, solve_session
from rackplan.api.schemas import VariantChange, VariantIn
from rackplan.api.security import Caller
from rackplan.api.web import charts, views
from rackplan.api.web.common import FormUser, User, WebRoute, problem_rows, redirect, render, writer
from rackplan.api.web.plans import XLSX, attachment, workbook_bytes
from rackplan.catalogs.errors import InputError
from rackplan.models.scenario import Scenario
from rackplan.planner.core.session import Variant, check_variants

router = APIRouter(route_class=WebRoute, include_in_schema=False)
SWEEP_STEPS = (2, 12)
SWEEP_TIME_LIMIT_S = 60.0


def _base_prices(scenario: Scenario) -> dict[str, float]:
    """Each rack option's price: the scenario's, else the shipped catalog's."""
    catalog = shipped_catalog()
    return {
        o.rack: o.capex_usd or (catalog.racks[o.rack].capex_usd if o.rack in catalog.racks else 0)
        for o in scenario.racks
    }


def _number(form: dict[str, str], field: str) -> float | None:
    text = (form.get(field) or "").strip().replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError([_problem(field, "must be a number", text)]) from None


def _problem(field: str, message: str, value: object = None):
    from rackplan.catalogs.errors import Problem

    return Problem("variant form", None, field, message, value)


def variant_changes(form: dict[str, str], scenario: Scenario) -> list[VariantChange]:
    """The form's filled fields as what-if changes (a price in USD becomes capex_scale)."""
    changes: list[tuple[str, float]] = []
    for key in ("power_cap_mw", "electricity_scale"):
        value = _number(form, key)
        if value is not None:
            changes.append((key, value))
    for c in scenario.classes:
        for key in ("demand_scale", "ttft_ms", "tpot_ms"):
            value = _number(form, f"{key}:{c.name}")
            if value is not None:
                changes.append((f"{key}:{c.name}", value))
    for rack, base in _base_prices(scenario).items():
        price = _number(form, f"price:{rack}")
        if price is not None and base:
            changes.append((f"capex_scale:{rack}", price / base))
    if not changes:
        raise InputError([_problem(None, "fill in at least one change")])
    return [VariantChange(key=k, value=v) for k, v in changes]


def _scenario_of(app: State, scenario_id: str, caller: Caller) -> tuple[str, Scenario, dict]:
    with app.db.read() as session:
        row = owned(session, ScenarioRow, scenario_id, caller, "scenario")
        return row.name, Scenario.model_validate(row.body), row.body


def _latest_sweep(app: State, session_id: str, caller: Caller) -> SweepRow | None:
    with app.db.read() as session:
        return session.scalars(
            select(SweepRow)
            .where(SweepRow.session_id == session_id, SweepRow.tenant == caller.tenant)
            .order_by(SweepRow.created_at.desc())
        ).first()


def _comparison_charts(session_id: str, rows: list[dict]) -> dict:
    key = (session_id, json.dumps(rows, sort_keys=True, default=str))
    solved = [r for r in rows if r.get("tco_usd") is not None]
    return {
        "tco": charts.cached(
            (*key, "tco"),
            lambda: charts.bars_chart(
                [r["variant"] for r in solved],
                [r["tco_usd"] / 1e6 for r in solved],
                "discounted TCO by variant",
                "discounted TCO, USD millions",
                "variant",
            ),
        ),
        "racks": charts.cached((*key, "racks"), lambda: charts.racks_by_variant_chart(solved)),
    }


def session_context(app: State, session_id: str, caller: Caller) -> dict:
    out = _session_out(app, session_id, caller)  # the API's ownership check
    name, scenario, _ = _scenario_of(app, out.scenario_id, caller)
    sweep = _latest_sweep(app, session_id, caller)
    context = {
        "title": f"What-if: {out.name}",
        "session": out,
        "scenario_name": name,
        "classes": [c.name for c in scenario.classes],
        "prices": _base_prices(scenario),
        "caps": sorted({p.power_cap_mw for p in scenario.periods if p.power_cap_mw}),
        "sweep": sweep,
        "sweep_parameters": sweep_parameters(scenario),
        "comparison": None,
    }
    if sweep is not None and sweep.result:
        context["sweep_chart"] = charts.cached(
            (sweep.id, "pareto"), lambda: charts.pareto_chart(sweep.result, sweep.parameter)
        )
    if out.comparison:
        context["comparison"] = views.comparison_view(out.comparison)
        context["rows"] = out.comparison
        context["charts"] = _comparison_charts(session_id, out.comparison)
    return context


def sweep_parameters(scenario: Scenario) -> list[tuple[str, str]]:
    """(what-if key, label) of the parameters a Pareto sweep can vary."""
    options = [
        ("power_cap_mw", "power cap, MW (every period)"),
        ("power_cap_scale", "power cap × (scale)"),
        ("electricity_scale", "electricity price × (scale)"),
        ("demand_scale", "demand × (every class)"),
        ("budget_scale", "capex budget × (scale)"),
    ]
    options += [(f"capex_scale:{o.rack}", f"price of {o.rack} × (scale)") for o in scenario.racks]
    for c in scenario.classes:
        options += [(f"tpot_ms:{c.name}", f"TPOT target of {c.name}, ms")]
        options += [(f"ttft_ms:{c.name}", f"TTFT target of {c.name}, ms")]
    return options


@router.get("/sessions/{session_id}")
def session_page(session_id: str, request: Request, app: StateDep, user: User) -> Response:
    return render(request, "session.html", session_context(app, session_id, user.caller), user)


def _form_failed(request: Request, app: State, session_id: str, user, exc, form) -> Response:
    context = session_context(app, session_id, user.caller)
    context.update(problems=problem_rows(exc), form=form)
    return render(request, "session.html", context, user, 422)


@router.post("/sessions/{session_id}/variants")
async def new_variant(session_id: str, request: Request, app: StateDep, user: FormUser) -> Response:
    """A variant from the form, added through the API's own route (same checks)."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    writer(user)

    def work() -> Response:
        out = _session_out(app, session_id, user.caller)
        _, scenario, _ = _scenario_of(app, out.scenario_id, user.caller)
        try:
            changes = variant_changes(form, scenario)
            name = (form.get("name") or "").strip()
            variant = VariantIn(name=name, changes=changes)
            check_variants(
                scenario,
                shipped_catalog(),
                [Variant(name, tuple((c.key, c.value) for c in changes))],
            )
            add_variant(session_id, variant, app, user.caller)
        except (InputError, ValidationError, HTTPException) as exc:
            return _form_failed(request, app, session_id, user, exc, form)
        return redirect(f"/sessions/{session_id}#variants")

    return await run_in_threadpool(work)


@router.post("/sessions/{session_id}/solve")
def solve(
    session_id: str,
    app: StateDep,
    user: FormUser,
) -> Response:
    """Solve base and variants (the API's session job); progress on the job page."""
    writer(user)
    answer = solve_session(session_id, app, user.caller)
    return redirect(f"/jobs/{json.loads(answer.body)['id']}")


def _sweep_values(form: dict[str, str]) -> tuple[float, float, int]:
    start, stop = _number(form, "start"), _number(form, "stop")
    steps = _number(form, "steps")
    if start is None or stop is None or steps is None:
        raise InputError([_problem("start", "give from, to and steps")])
    if not SWEEP_STEPS[0] <= steps <= SWEEP_STEPS[1] or not float(steps).is_integer():
        raise InputError([_problem("steps", f"a whole number from {SWEEP_STEPS[0]} to "
                                            f"{SWEEP_STEPS[1]}", steps)])  # fmt: skip
    return start, stop, int(steps)


@router.post("/sessions/{session_id}/sweeps")
async def new_sweep(session_id: str, request: Request, app: StateDep, user: FormUser) -> Response:
    """A Pareto sweep of TCO against one parameter, as a job."""
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    writer(user)

    def work() -> Response:
        out = _session_out(app, session_id, user.caller)
        _, scenario, body = _scenario_of(app, out.scenario_id, user.caller)
        parameter = (form.get("parameter") or "").strip()
        try:
            start, stop, steps = _sweep_values(form)
            if parameter not in dict(sweep_parameters(scenario)):
                raise InputError([_problem("parameter", "choose a parameter from the list")])
            checks = [Variant(f"at {v:g}", ((parameter, v),)) for v in (start, stop)]
            check_variants(scenario, shipped_catalog(), checks)
        except InputError as exc:
            return _form_failed(request, app, session_id, user, exc, form)
        job_id = _start_sweep(app, out.id, body, parameter, start, stop, steps, user.caller)
        return redirect(f"/jobs/{job_id}")

    return await run_in_threadpool(work)


def _start_sweep(app: State, session_id: str, scenario: dict, parameter: str, start: float,
                 stop: float, steps: int, caller: Caller) -> str:  # fmt: skip
    with app.db.transaction() as session:
        sweep = SweepRow(
            session_id=session_id, parameter=parameter, start=start, stop=stop, steps=steps,
            tenant=caller.tenant,
        )  # fmt: skip
        session.add(sweep)
        session.flush()
        sweep_id = sweep.id
    request = {
        "sweep_id": sweep_id,
        "session_id": session_id,
        "scenario": scenario,
        "parameter": parameter,
        "start": start,
        "stop": stop,
        "steps": steps,
        "time_limit_s": min(SWEEP_TIME_LIMIT_S, app.settings.solve_time_limit_s),
        "tenant": caller.tenant,
    }
    job = start_job(app, "pareto", request, caller, None)
    with app.db.transaction() as session:
        session.get(SweepRow, sweep_id).job_id = job.id
    return job.id


def _comparison_frame(app: State, session_id: str, caller: Caller) -> pd.DataFrame:
    return pd.DataFrame(_comparison(app, session_id, caller))  # 409 until solved


@router.get("/sessions/{session_id}/comparison.xlsx")
def comparison_workbook(session_id: str, app: StateDep, user: User) -> Response:
    frame = _comparison_frame(app, session_id, user.caller)
    out = _session_out(app, session_id, user.caller)
    _, _, body = _scenario_of(app, out.scenario_id, user.caller)
    content = workbook_bytes({"comparison": frame}, body)
    return attachment(content, XLSX, f"comparison-{session_id}.xlsx")


@router.get("/sessions/{session_id}/comparison.csv")
def comparison_csv(session_id: str, app: StateDep, user: User) -> Response:
    frame = neutralised(_comparison_frame(app, session_id, user.caller))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return attachment(buffer.getvalue().encode(), "text/csv", f"comparison-{session_id}.csv")


@router.get("/sessions/{session_id}/sweep.csv")
def sweep_csv(session_id: str, app: StateDep, user: User) -> Response:
    _session_out(app, session_id, user.caller)  # ownership
    sweep = _latest_sweep(app, session_id, user.caller)
    if sweep is None or not sweep.result:
        raise HTTPException(409, "no finished sweep in this session yet")
    buffer = io.StringIO()
    neutralised(pd.DataFrame(sweep.result)).to_csv(buffer, index=False)
    return attachment(buffer.getvalue().encode(), "text/csv", f"pareto-{session_id}.csv")
