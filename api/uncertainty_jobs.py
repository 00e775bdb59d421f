"""Robust plans and stress tests as jobs: the work done in a solver process, and how the
runner stores what it returns.

Each job takes plain JSON-able data (the scenario, user catalog entries, options; the plan's
JSON for a stress test), reports its progress in the job's row as it goes, and returns the
result with the same keys as the CLI's ``robust.json`` / ``stress.json``, the export tables
as records, and an audit record. The result is stored in the ``analyses`` table under the
job's id. Planner modules are imported in the solver process only. Dask is not used here:
the service already runs one process per job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from rackplan.api.db import AnalysisRow, Database, JobRow, now

PROGRESS_EVERY_S = 0.5
"""Progress is written to the database at most this often (and at the end)."""
PROGRESS_FLOOR = 0.1
"""A running job starts at this progress (the runner's mark) and ends at 1."""
STRESS_TASKS = 20
"""A stress test is evaluated in about this many batches (one progress step each)."""


class JobProgress:
    """Writes a job's progress (``PROGRESS_FLOOR`` .. 1) as steps of ``total`` complete."""

    def __init__(self, db_url: str, job_id: str, total: int):
        self.db = Database(db_url)
        self.job_id = job_id
        self.total = max(1, total)
        self.done = 0
        self.written_at = 0.0

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more as done; write the share unless written very recently."""
        self.done = min(self.total, self.done + steps)
        if time.monotonic() - self.written_at >= PROGRESS_EVERY_S or self.done == self.total:
            self.write()

    def write(self) -> None:
        """Store the progress of a job that is still running (a cancel is never overwritten)."""
        share = PROGRESS_FLOOR + (1 - PROGRESS_FLOOR) * self.done / self.total
        with self.db.transaction() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == self.job_id, JobRow.status == "running")
                .values(progress=min(share, 0.99), updated_at=now())
            )
        self.written_at = time.monotonic()

    def runner(self) -> Callable[[Callable, list], list]:
        """A sequential runner (``stochastic.Runner``) that advances once per item."""

        def run(function: Callable, items: list) -> list:
            results = []
            for item in items:
                results.append(function(item))
                self.advance()
            return results

        return run

    def close(self) -> None:
        self.db.engine.dispose()


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars made Python and non-finite floats made None (the service
    answers strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _tables(frames: dict) -> dict[str, list[dict]]:
    from rackplan.planner.core.plan import json_records

    return {name: json_safe(json_records(frame)) for name, frame in frames.items()}


def _plan_data(request: dict):
    """The scenario's PlanData with the request's catalog; fatal diagnostics are input errors."""
    from rackplan.api.worker import catalog_with
    from rackplan.models.scenario import Scenario
    from rackplan.planner.core.data import prepare

    scenario = Scenario.model_validate(request["scenario"])
    data = prepare(scenario, catalog_with(request.get("catalog_entries", {})))
    if data.fatal():
        raise ValueError("; ".join(d.message for d in data.fatal()))
    return data


def _audit(request: dict, **extra: Any) -> dict:
    return {
        "scenario": request["scenario"],
        "catalog_entries": request.get("catalog_entries", {}),
        "requested_by": request.get("tenant"),
        **extra,
    }


def robust_job(db_url: str, job_id: str, request: dict) -> dict:
    """A two-stage stochastic plan of the request's scenario (``rackplan robust``)."""
    from rackplan.api.worker import _mark_running
    from rackplan.planner.core.futures import scenario_draws
    from rackplan.planner.core.stochastic import StochasticOptions, robust_plan

    _mark_running(db_url, job_id)
    data = _plan_data(request)
    draws = scenario_draws(data, int(request["futures"]), int(request["seed"]))
    options = StochasticOptions(**request["options"])
    progress = JobProgress(db_url, job_id, 3 + len(draws))
    try:
        plan = robust_plan(
            data,
            draws,
            options,
            progress.runner(),
            lambda step: None if step == "hindsight plans" else progress.advance(),
        )
    finally:
        progress.close()
    return {
        "status": plan.rp.status,
        "result": json_safe(plan.as_json()),
        "tables": _tables(plan.frames()),
        "audit": _audit(request, options=request["options"], seed=request["seed"]),
    }


def stress_job(db_url: str, job_id: str, request: dict) -> dict:
    """A stress test of a stored plan's purchases (``rackplan stress``)."""
    from rackplan.api.worker import _mark_running
    from rackplan.planner.core.stress import FixedPlan, stress_test

    _mark_running(db_url, job_id)
    data = _plan_data(request)
    plan = FixedPlan.from_json(request["plan"])
    samples, seed = int(request["samples"]), int(request["seed"])
    batch = max(1, -(-samples // STRESS_TASKS))
    progress = JobProgress(db_url, job_id, -(-samples // batch))
    try:
        report = stress_test(data, plan, samples, seed, progress.runner(), batch)
    finally:
        progress.close()
    return {
        "status": "succeeded",
        "result": json_safe(report.as_json()),
        "tables": _tables(report.frames()),
        "audit": _audit(request, samples=samples, seed=seed),
    }


ANALYSES: dict[str, Callable[[str, str, dict], dict]] = {
    "robust": robust_job,
    "stress": stress_job,
}
"""Job kind -> the function a solver process runs for it."""


def store_analysis(session, job: JobRow, value: dict) -> None:
    """In the runner: store a finished robust plan or stress test under the job's id."""
    session.add(
        AnalysisRow(
            id=job.id,
            kind=job.kind,
            scenario_id=job.request["scenario_id"],
            plan_id=job.request.get("plan_id"),
            status=value["status"],
            result=value["result"],
            tables=value["tables"],
            audit=value["audit"],
            created_by=job.created_by,
            tenant=job.tenant,
        )
    )
