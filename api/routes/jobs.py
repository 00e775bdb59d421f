"""Jobs: a solve or a session run in the worker pool; status with progress, and cancel."""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from rackplan.api.db import JobRow
from rackplan.api.deps import Reader, State, StateDep, Writer, owned
from rackplan.api.jobs import QueueFull
from rackplan.api.schemas import JobOut
from rackplan.api.security import Caller

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_out(row: JobRow) -> JobOut:
    return JobOut(
        id=row.id,
        kind=row.kind,
        status=row.status,
        progress=row.progress,
        error=row.error,
        plan_id=row.plan_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


def _replayed(app: State, caller: Caller, idempotency_key: str, digest: str) -> JobOut | None:
    """The job an earlier request with this Idempotency-Key started, if it is to be replayed:
    a different request with the key is a 409; a failed or cancelled job releases the key (a
    retry starts a fresh job)."""
    with app.db.transaction() as session:
        existing = session.scalars(
            select(JobRow).where(
                JobRow.idempotency_key == idempotency_key, JobRow.created_by == caller.key_id
            )
        ).first()
        if existing is None:
            return None
        if existing.request_hash != digest:
            raise HTTPException(409, "this Idempotency-Key was used for a different request")
        if existing.status in {"failed", "cancelled"}:
            existing.idempotency_key = None
            return None
        return job_out(existing)


def _check_capacity(app: State, caller: Caller) -> None:
    """429 when the service's queue, or this tenant's share of it, is full."""
    if app.runner.active() >= app.settings.queue_limit:
        raise HTTPException(429, "the solver queue is full; retry later")
    with app.db.read() as session:
        mine = session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.tenant == caller.tenant, JobRow.status.in_(("queued", "running")))
        )
    if (mine or 0) >= app.settings.tenant_queue_limit:
        raise HTTPException(
            429,
            f"your tenant already has {mine} jobs queued or running (limit "
            f"{app.settings.tenant_queue_limit}); wait for one to finish",
        )


def start_job(
    app: State, kind: str, request: dict, caller: Caller, idempotency_key: str | None
) -> JobOut:
    """Store and submit a job. The same Idempotency-Key (same key, same request) replays the
    first job unless it failed or was cancelled; with a different request it is a 409."""
    digest = _hash(request)
    if idempotency_key:
        replay = _replayed(app, caller, idempotency_key, digest)
        if replay is not None:
            return replay
    _check_capacity(app, caller)
    try:
        with app.db.transaction() as session:
            row = JobRow(
                kind=kind,
                status="queued",
                request=request,
                idempotency_key=idempotency_key,
                request_hash=digest,
                created_by=caller.key_id,
                tenant=caller.tenant,
            )
            session.add(row)
            session.flush()
            job_id = row.id
    except IntegrityError:
        # another request with the same Idempotency-Key won the race: answer with its job
        return start_job(app, kind, request, caller, idempotency_key)
    try:
        app.runner.submit(job_id, kind, request)
    except Exception as exc:
        with app.db.transaction() as session:
            row = session.get(JobRow, job_id)
            row.status = "failed"
            row.idempotency_key = None  # a retry after 429/503 must start a new job
            row.error = (
                "the solver queue was full"
                if isinstance(exc, QueueFull)
                else f"could not start: {type(exc).__name__}"
            )
        if not isinstance(exc, QueueFull):
            raise HTTPException(503, "the solver pool could not take the job; retry later") from exc
        raise HTTPException(429, "the solver queue is full; retry later") from None
    return get_job_row(app, job_id, caller)


def get_job_row(app: State, job_id: str, caller: Caller) -> JobOut:
    with app.db.read() as session:
        return job_out(owned(session, JobRow, job_id, caller, "job"))


def _claim_waiter(app: State, caller: Caller) -> bool:
    """Whether this key may wait now (at most ``max_waiters_per_key`` at once)."""
    who = caller.key_id or "anonymous"
    with app.lock:
        if app.waiting.get(who, 0) >= app.settings.max_waiters_per_key:
            return False
        app.waiting[who] = app.waiting.get(who, 0) + 1
        return True


def _release_waiter(app: State, caller: Caller) -> None:
    who = caller.key_id or "anonymous"
    with app.lock:
        app.waiting[who] -= 1
        if not app.waiting[who]:
            del app.waiting[who]


async def wait_for(app: State, job_id: str, wait_s: float, caller: Caller) -> JobOut:
    """Wait until the job ends or ``wait_s`` passes, woken by the runner (no polling). A key
    that already has ``max_waiters_per_key`` requests waiting gets the job at once."""
    if wait_s > 0 and _claim_waiter(app, caller):
        try:
            await app.runner.wait(job_id, wait_s)
        finally:
            _release_waiter(app, caller)
    return await run_in_threadpool(get_job_row, app, job_id, caller)


@router.get("/{job_id}", operation_id="get_job")
def get_job(job_id: str, app: StateDep, caller: Reader) -> JobOut:
    return get_job_row(app, job_id, caller)


@router.post("/{job_id}/cancel", operation_id="cancel_job")
def cancel_job(job_id: str, app: StateDep, caller: Writer) -> JobOut:
    """Cancel a queued or running job of your tenant; only the key that started it may."""
    with app.db.read() as session:
        row = owned(session, JobRow, job_id, caller, "job")
        starter, status = row.created_by, row.status
    if starter is not None and starter != caller.key_id:
        raise HTTPException(403, "only the key that started this job can cancel it")
    if status not in {"queued", "running"}:
        raise HTTPException(409, f"the job is already {status}")
    app.runner.cancel(job_id)
    return get_job_row(app, job_id, caller)
