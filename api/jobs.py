"""Solves run outside the event loop, in a bounded pool of spawned worker processes.

- ``submit`` refuses work beyond ``queue_limit`` queued + running jobs (the route answers
  429 with Retry-After);
- ``cancel`` drops a queued job, or marks a running one cancelled (its worker finishes its
  time-limited solve and the result is discarded);
- ``recover`` at start: jobs left ``queued`` are submitted again, jobs left ``running`` are
  marked failed with the reason — none silently vanish. Jobs owned by another live process
  of the service on this host (``rackplan serve --workers N``) are left to it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from sqlalchemy import select

from rackplan.api.db import Database, JobRow, PlanRow, SessionRow, VariantRow, now
from rackplan.api.worker import session_job, solve_job

RESTART_REASON = "the service stopped while this job was running; submit it again"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This process, as recorded on the jobs its pool runs."""


def owner_alive(owner: str | None) -> bool:
    """Whether another live process on this host owns a job (then it is not ours to recover)."""
    if not owner or owner == OWNER:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


SOLVER_NICENESS = 10
"""Solver processes run at a lower CPU priority, so the API stays responsive while they work."""


class QueueFull(Exception):
    """The pool already has ``queue_limit`` jobs queued or running."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.nice(SOLVER_NICENESS)


class JobRunner:
    def __init__(self, db: Database, db_url: str, workers: int, queue_limit: int):
        self.db = db
        self.db_url = db_url
        self.queue_limit = queue_limit
        self.workers = workers
        self.pool = self._new_pool(workers)
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def active(self) -> int:
        with self.lock:
            return sum(1 for f in self.futures.values() if not f.done())

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_lower_priority
        )

    def _replace_broken_pool(self) -> None:
        """A worker died (e.g. killed for memory): the executor is unusable, start a new one."""
        with self.lock:
            old = self.pool
            self.pool = self._new_pool(self.workers)
        old.shutdown(wait=False, cancel_futures=True)

    def submit(self, job_id: str, kind: str, request: dict) -> None:
        """Start a job already stored as ``queued``; QueueFull when the pool is saturated. A
        broken pool is replaced and the submission tried once more."""
        try:
            self._submit(job_id, kind, request)
        except BrokenProcessPool:
            self._replace_broken_pool()
            self._submit(job_id, kind, request)

    def _submit(self, job_id: str, kind: str, request: dict) -> None:
        work: Callable = solve_job if kind == "solve" else session_job
        with self.lock:
            if sum(1 for f in self.futures.values() if not f.done()) >= self.queue_limit:
                raise QueueFull
            with self.db.transaction() as session:
                job = session.get(JobRow, job_id)
                if job is not None:
                    job.owner = OWNER
            future = self.pool.submit(work, self.db_url, job_id, request)
            self.futures[job_id] = future
        future.add_done_callback(lambda f, job_id=job_id: self._finish(job_id, f))

    def _finish(self, job_id: str, future: Future) -> None:
        with self.db.transaction() as session:
            job = session.get(JobRow, job_id)
            if job is None or job.status == "cancelled":
                return
            job.updated_at = now()
            job.progress = 1.0
            if future.cancelled():
                job.status = "cancelled"
                return
            error = future.exception()
            if error is not None:
                job.status = "failed"
                job.error = f"{type(error).__name__}: {error}"
                if isinstance(error, BrokenProcessPool):
                    job.error = "the solver process died (out of memory?); submit the job again"
                    threading.Thread(target=self._replace_broken_pool, daemon=True).start()
                return
            outcome = future.result()
            if job.kind == "solve":
                plan = PlanRow(
                    scenario_id=job.request["scenario_id"],
                    status=outcome["status"],
                    result=outcome["result"],
                    audit=outcome["audit"],
                    created_by=job.created_by,
                    tenant=job.tenant,
                )
                session.add(plan)
                session.flush()
                job.plan_id = plan.id
            else:
                row = session.get(SessionRow, job.request["session_id"])
                current = session.scalars(
                    select(VariantRow)
                    .where(VariantRow.session_id == job.request["session_id"])
                    .order_by(VariantRow.created_at)
                ).all()
                solved = [(v["name"], v["changes"]) for v in job.request["variants"]]
                if row is not None and solved == [(v.name, v.changes) for v in current]:
                    row.comparison = outcome[
                        "comparison"
                    ]  # stale results (variants changed) are dropped
            job.status = "succeeded"

    def cancel(self, job_id: str) -> str:
        with self.lock:
            future = self.futures.get(job_id)
        dropped = future.cancel() if future is not None else False
        with self.db.transaction() as session:
            job = session.get(JobRow, job_id)
            if job is None:
                return "unknown"
            if job.status in {"queued", "running"}:
                job.status = "cancelled"
                job.updated_at = now()
                job.error = (
                    "cancelled before it ran"
                    if dropped
                    else "cancelled while running; its result is discarded"
                )
            return job.status

    def recover(self) -> dict[str, int]:
        """Account for jobs a previous run left behind (module docstring)."""
        requeued = failed = 0
        with self.db.transaction() as session:
            stale = session.scalars(
                select(JobRow).where(JobRow.status.in_(("queued", "running")))
            ).all()
            to_submit = []
            for job in stale:
                if owner_alive(job.owner):
                    continue  # another live worker process of this service runs it
                if job.status == "running":
                    job.status = "failed"
                    job.error = RESTART_REASON
                    job.updated_at = now()
                    failed += 1
                else:
                    to_submit.append((job.id, job.kind, job.request))
        for job_id, kind, request in to_submit:
            try:
                self.submit(job_id, kind, request)
                requeued += 1
            except QueueFull:
                with self.db.transaction() as session:
                    job = session.get(JobRow, job_id)
                    job.status = "failed"
                    job.error = "the queue was full when the service restarted; submit it again"
                failed += 1
        return {"requeued": requeued, "failed": failed}

    def shutdown(self) -> None:
        """Stop at once: drop queued work and end the worker processes (a running solve is
        lost; its job stays ``running`` and ``recover`` marks it failed at the next start)."""
        processes = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
