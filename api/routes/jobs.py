"""Jobs: a solve or a session run in the worker pool; status with progress, and cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json

from fastapi import APIRouter, HTTPException
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rackplan.api.db import JobRow
from rackplan.api.deps import Reader, State, StateDep, Writer
from rackplan.api.jobs import QueueFull
from rackplan.api.schemas import JobOut

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
RETRY_AFTER_S = 10


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


def start_job(
    app: State, kind: str, request: dict, key_id: str | None, idempotency_key: str | None
) -> JobOut:
    """Store and submit a job; the same Idempotency-Key (same caller, same request) returns
    the first job; the same key with a different request is a 409."""
    digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
    if idempotency_key:
        with app.db.read() as session:
            existing = session.scalars(
                select(JobRow).where(
                    JobRow.idempotency_key == idempotency_key, JobRow.created_by == key_id
                )
            ).first()
        if existing is not None:
            if existing.request_hash != digest:
                raise HTTPException(409, "this Idempotency-Key was used for a different request")
            return job_out(existing)
    if app.runner.active() >= app.settings.queue_limit:
        raise HTTPException(
            429,
            "the solver queue is full; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    try:
        with app.db.transaction() as session:
            row = JobRow(
                kind=kind,
                status="queued",
                request=request,
                idempotency_key=idempotency_key,
                request_hash=digest,
                created_by=key_id,
            )
            session.add(row)
            session.flush()
            job_id = row.id
    except IntegrityError:
        # another request with the same Idempotency-Key won the race: answer with its job
        return start_job(app, kind, request, key_id, idempotency_key)
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
                else f"could not start: {exc}"
            )
        if not isinstance(exc, QueueFull):
            raise HTTPException(503, "the solver pool could not take the job; retry later") from exc
        raise HTTPException(
            429,
            "the solver queue is full; retry later",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    return get_job_row(app, job_id)


def get_job_row(app: State, job_id: str) -> JobOut:
    with app.db.read() as session:
        row = session.get(JobRow, job_id)
        if row is None:
            raise HTTPException(404, f"no job '{job_id}'")
        return job_out(row)


async def wait_for(app: State, job_id: str, wait_s: float) -> JobOut:
    """Poll the job until it ends or ``wait_s`` passes (without blocking the event loop)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    job = get_job_row(app, job_id)
    while job.status in {"queued", "running"} and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        job = get_job_row(app, job_id)
    return job


@router.get("/{job_id}", operation_id="get_job")
def get_job(job_id: str, app: StateDep, _key: Reader) -> JobOut:
    return get_job_row(app, job_id)


@router.post("/{job_id}/cancel", operation_id="cancel_job")
def cancel_job(job_id: str, app: StateDep, key_id: Writer) -> JobOut:
    """Cancel a queued or running job; only the key that started it may."""
    job = get_job_row(app, job_id)
    with app.db.read() as session:
        owner = session.get(JobRow, job_id).created_by
    if owner is not None and owner != key_id:
        raise HTTPException(403, "only the key that started this job can cancel it")
    if job.status not in {"queued", "running"}:
        raise HTTPException(409, f"the job is already {job.status}")
    app.runner.cancel(job_id)
    return get_job_row(app, job_id)
