"""Solves run outside the event loop: one solver process per job, at most ``workers`` at once,
started by one long-lived dispatcher thread.

- ``submit`` refuses work beyond ``queue_limit`` queued + running jobs (the route answers
  429 with Retry-After). Queued jobs wait in one queue per tenant; the dispatcher takes the
  tenants in turn (round robin) and, within a tenant, the smallest job first, so one
  tenant's large solves never starve another's small ones.
- ``cancel`` drops a queued job, or kills the process of a running one. A cancel recorded
  by another server process is noticed within ``CANCEL_POLL_S``.
- Every job has one wall-clock budget (``budget_s``): past it the process is killed and the
  job fails with that reason.
- Solver processes die with the server: they are forked by multiprocessing's fork server
  (which exits when the server does) and ask Linux for SIGKILL when their parent dies
  (``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread checks the parent.
- ``shutdown`` (SIGTERM) kills running solves and puts their jobs back to ``queued``;
  ``recover`` at the next start submits queued jobs again and marks jobs left ``running``
  by a process that is gone (kill -9) failed with the reason. Jobs owned by another live
  process of the service on this host (``rackplan serve --workers N``) are left to it.
- Waiters are told when a job ends (``wait``): an in-process event, no polling of the
  database on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from sqlalchemy import select

from rackplan.api.db import Database, JobRow, PlanRow, SessionRow, SweepRow, VariantRow, now
from rackplan.api.uncertainty_jobs import ANALYSES, store_analysis

log = logging.getLogger("rackplan.api.jobs")
RESTART_REASON = "the service stopped while this job was running; submit it again"
OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This process, as recorded on the jobs it runs."""
SOLVER_NICENESS = 10
"""Solver processes run at a lower CPU priority, so the API stays responsive while they work."""
CANCEL_POLL_S = 1.0
TICK_S = 0.2
PR_SET_PDEATHSIG = 1
BUDGET_FACTOR = 3.0
BUDGET_SLACK_S = 30.0
"""A job's wall-clock budget: BUDGET_FACTOR × its solver time limit + BUDGET_SLACK_S (the
plan, its baselines and shadow prices together)."""
DIED = "the solver process died (out of memory?); submit the job again"


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


class QueueFull(Exception):
    """The runner already has ``queue_limit`` jobs queued or running."""


def _die_with_server(server_pid: int) -> None:
    """In a solver process: end when the server that asked for it ends.

    The process is a child of multiprocessing's fork server, which exits once every holder
    of its "alive" pipe is gone — the solver holds a copy, so it lets go of it first; then
    the fork server dies with the server, and ``PR_SET_PDEATHSIG`` kills the solver. A
    watchdog thread checking the server's pid covers other platforms and start methods."""
    from multiprocessing import forkserver

    with contextlib.suppress(AttributeError, OSError, TypeError):
        os.close(forkserver._forkserver._forkserver_alive_fd)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    def gone() -> bool:
        try:
            os.kill(server_pid, 0)
        except OSError:
            return True
        return False

    def watch() -> None:
        while not gone():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child(
    connection: Connection, server_pid: int, db_url: str, job_id: str, kind: str, request: dict
) -> None:
    """A solver process: run one job, send ("ok", outcome) or ("error", message) back."""
    _die_with_server(server_pid)
    with contextlib.suppress(OSError):
        os.nice(SOLVER_NICENESS)
    from rackplan.api.worker import pareto_job, session_job, solve_job

    work = {"solve": solve_job, "session": session_job, "pareto": pareto_job, **ANALYSES}[kind]
    try:
        connection.send(("ok", work(db_url, job_id, request)))
    except Exception as exc:  # reported as the job's error, in words the client can act on
        connection.send(("error", _public_error(exc)))
    finally:
        connection.close()


def _public_error(exc: Exception) -> str:
    """A failed job's message: the domain's own words for input problems, otherwise only the
    kind of failure (details stay in the server log)."""
    from pydantic import ValidationError

    from rackplan.catalogs.errors import InputError

    if isinstance(exc, InputError | ValidationError | ValueError):
        return f"{type(exc).__name__}: {exc}"[:2000]
    log.exception("solver job failed")
    return f"the solver failed ({type(exc).__name__}); it has been logged"


def job_size(kind: str, request: dict) -> int:
    """A rough cost of a job, to run small ones first within a tenant."""
    scenario = request.get("scenario") or {}
    size = max(1, len(scenario.get("periods", [])))
    size *= max(1, len(scenario.get("classes", [])))
    size *= max(1, len(scenario.get("racks", [])))
    if kind != "solve":
        size *= 1 + len(request.get("variants", []))
    return size


@dataclass
class Pending:
    job_id: str
    kind: str
    request: dict
    tenant: str
    size: int
    order: int


@dataclass
class Running:
    job: Pending
    process: multiprocessing.process.BaseProcess
    connection: Connection
    deadline: float
    budget_s: float


@dataclass
class Waiters:
    """asyncio events of requests waiting for jobs, by job id."""

    events: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = field(
        default_factory=dict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self.lock:
            self.events.setdefault(job_id, []).append((asyncio.get_running_loop(), event))
        return event

    def remove(self, job_id: str, event: asyncio.Event) -> None:
        with self.lock:
            kept = [(lp, e) for lp, e in self.events.get(job_id, []) if e is not event]
            if kept:
                self.events[job_id] = kept
            else:
                self.events.pop(job_id, None)

    def notify(self, job_id: str | None = None) -> None:
        """Wake the waiters of one job (every job when None), from any thread."""
        with self.lock:
            targets = (
                [w for ws in self.events.values() for w in ws]
                if job_id is None
                else list(self.events.get(job_id, []))
            )
        for loop, event in targets:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(event.set)


class JobRunner:
    def __init__(
        self,
        db: Database,
        db_url: str,
        workers: int,
        queue_limit: int,
        budget: tuple[float, float] = (BUDGET_FACTOR, BUDGET_SLACK_S),
    ):
        self.db = db
        self.db_url = db_url
        self.workers = max(1, workers)
        self.queue_limit = queue_limit
        self.budget = budget
        self.context = multiprocessing.get_context(
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        if self.context.get_start_method() == "forkserver":
            self.context.set_forkserver_preload(["rackplan.api.worker"])
        self.pending: dict[str, deque[Pending]] = {}
        self.running: dict[str, Running] = {}
        self.turns: deque[str] = deque()
        self.waiters = Waiters()
        self.lock = threading.Lock()
        self.order = itertools.count()
        self.stopping = threading.Event()
        self.last_cancel_poll = 0.0
        self.thread = threading.Thread(target=self._dispatch, name="rackplan-jobs", daemon=True)
        self.thread.start()

    # --- the API side -------------------------------------------------------------------
    def active(self) -> int:
        """Jobs queued or running in this process."""
        with self.lock:
            return len(self.running) + sum(len(q) for q in self.pending.values())

    def submit(self, job_id: str, kind: str, request: dict) -> None:
        """Queue a job already stored as ``queued``; QueueFull when the runner is saturated."""
        tenant = request.get("tenant") or "default"
        with self.lock:
            if len(self.running) + sum(len(q) for q in self.pending.values()) >= (self.queue_limit):
                raise QueueFull
            with self.db.transaction() as session:
                job = session.get(JobRow, job_id)
                if job is not None:
                    job.owner = OWNER
            entry = Pending(job_id, kind, request, tenant, job_size(kind, request), 0)
            entry.order = next(self.order)
            self.pending.setdefault(tenant, deque()).append(entry)
            if tenant not in self.turns:
                self.turns.append(tenant)

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job, or kill the process of a running one; the job's status."""
        dropped = self._drop_pending(job_id)
        with self.lock:
            running = self.running.pop(job_id, None)
        if running is not None:
            self._kill(running)
        with self.db.transaction() as session:
            job = session.get(JobRow, job_id)
            if job is None:
                return "unknown"
            if job.status in {"queued", "running"}:
                was_running = running is not None or (job.status == "running" and not dropped)
                job.status = "cancelled"
                job.updated_at = now()
                job.error = (
                    "cancelled while running; its solver process was stopped"
                    if was_running
                    else "cancelled before it ran"
                )
            status = job.status
        self.waiters.notify(job_id)
        return status

    async def wait(self, job_id: str, timeout: float) -> None:
        """Return when the job ends or ``timeout`` passes. Jobs of this process wake the
        waiter directly; jobs run by another process are checked once a second."""
        if timeout <= 0:
            return
        event = self.waiters.add(job_id)
        try:
            with self.lock:
                ours = job_id in self.running or any(
                    p.job_id == job_id for q in self.pending.values() for p in q
                )
            if ours:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                return
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not event.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(1.0, deadline - time.monotonic()))
                if await asyncio.to_thread(self._ended, job_id):
                    return
        finally:
            self.waiters.remove(job_id, event)

    def _ended(self, job_id: str) -> bool:
        with self.db.read() as session:
            job = session.get(JobRow, job_id)
            return job is None or job.status not in {"queued", "running"}

    # --- the dispatcher thread ----------------------------------------------------------
    def _dispatch(self) -> None:
        if self.context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            with contextlib.suppress(Exception):  # started on first use otherwise
                forkserver.ensure_running()  # the first job need not wait for its imports
        while not self.stopping.is_set():
            try:
                self._start_ready()
                self._collect()
                self._poll_cancels()
            except Exception:  # the dispatcher must outlive any one failure
                log.exception("job dispatcher")
                time.sleep(TICK_S)

    def _next(self) -> Pending | None:
        """The next job: tenants in turn, the smallest job of the tenant first."""
        with self.lock:
            for _ in range(len(self.turns)):
                tenant = self.turns[0]
                self.turns.rotate(-1)
                queue = self.pending.get(tenant)
                if queue:
                    chosen = min(queue, key=lambda p: (p.size, p.order))
                    queue.remove(chosen)
                    if not queue:
                        self.pending.pop(tenant, None)
                        self.turns.remove(tenant)
                    return chosen
        return None

    def _start_ready(self) -> None:
        while len(self.running) < self.workers and not self.stopping.is_set():
            job = self._next()
            if job is None:
                return
            if not self._mark_running(job.job_id):
                continue  # cancelled meanwhile
            receive, send = self.context.Pipe(duplex=False)
            process = self.context.Process(
                target=_child,
                args=(send, os.getpid(), self.db_url, job.job_id, job.kind, job.request),
                name=f"rackplan-solve-{job.job_id[:8]}",
                daemon=True,
            )
            process.start()
            send.close()
            factor, slack = self.budget
            budget = factor * float(job.request.get("time_limit_s", 60)) + slack
            with self.lock:
                self.running[job.job_id] = Running(
                    job, process, receive, time.monotonic() + budget, budget
                )

    def _mark_running(self, job_id: str) -> bool:
        with self.db.transaction() as session:
            job = session.get(JobRow, job_id)
            if job is None or job.status != "queued":
                return False
            job.status = "running"
            job.progress = 0.1
            job.owner = OWNER
            job.updated_at = now()
            return True

    def _collect(self) -> None:
        with self.lock:
            running = list(self.running.values())
        if not running:
            time.sleep(TICK_S)
            return
        handles = [r.connection for r in running] + [r.process.sentinel for r in running]
        ready = set(wait(handles, timeout=TICK_S))
        for item in running:
            if item.connection in ready:
                try:
                    outcome = item.connection.recv()
                except (EOFError, OSError):
                    outcome = ("error", DIED)
                self._done(item, outcome)
            elif item.process.sentinel in ready:
                self._done(item, ("error", DIED))
            elif time.monotonic() > item.deadline:
                self._kill(item)
                message = f"the job exceeded its time budget ({item.budget_s:.0f} s); allow a "
                self._done(item, ("error", message + "larger gap or a shorter time_limit_s"))

    def _done(self, item: Running, outcome: tuple[str, object]) -> None:
        with self.lock:
            if self.running.pop(item.job.job_id, None) is None:
                return  # cancelled meanwhile
        item.connection.close()
        item.process.join(timeout=5)
        try:
            self._finish(item.job.job_id, outcome)
        finally:
            self.waiters.notify(item.job.job_id)

    def _kill(self, item: Running) -> None:
        with contextlib.suppress(Exception):
            item.process.kill()
            item.process.join(timeout=5)
            item.connection.close()

    def _poll_cancels(self) -> None:
        """Cancels recorded by another server process stop our solver processes too."""
        if time.monotonic() - self.last_cancel_poll < CANCEL_POLL_S:
            return
        self.last_cancel_poll = time.monotonic()
        with self.lock:
            ids = list(self.running)
        if not ids:
            return
        with self.db.read() as session:
            cancelled = session.scalars(
                select(JobRow.id).where(JobRow.id.in_(ids), JobRow.status == "cancelled")
            ).all()
        for job_id in cancelled:
            with self.lock:
                item = self.running.pop(job_id, None)
            if item is not None:
                self._kill(item)
                self.waiters.notify(job_id)

    def _finish(self, job_id: str, outcome: tuple[str, object]) -> None:
        kind, value = outcome
        with self.db.transaction() as session:
            job = session.get(JobRow, job_id)
            if job is None or job.status == "cancelled":
                return
            job.updated_at = now()
            job.progress = 1.0
            if kind != "ok":
                job.status = "failed"
                job.error = str(value)
                return
            assert isinstance(value, dict)
            if job.kind == "solve":
                plan = PlanRow(
                    scenario_id=job.request["scenario_id"],
                    status=value["status"],
                    result=value["result"],
                    audit=value["audit"],
                    created_by=job.created_by,
                    tenant=job.tenant,
                )
                session.add(plan)
                session.flush()
                job.plan_id = plan.id
            elif job.kind in ANALYSES:
                store_analysis(session, job, value)
            elif job.kind == "pareto":
                sweep = session.get(SweepRow, job.request["sweep_id"])
                if sweep is not None:
                    sweep.result = value["sweep"]
            else:
                self._store_comparison(session, job, value)
            job.status = "succeeded"

    @staticmethod
    def _store_comparison(session, job: JobRow, value: dict) -> None:
        """The session's comparison, unless its variants changed while it ran (stale)."""
        row = session.get(SessionRow, job.request["session_id"])
        current = session.scalars(
            select(VariantRow)
            .where(VariantRow.session_id == job.request["session_id"])
            .order_by(VariantRow.created_at)
        ).all()
        solved = [(v["name"], v["changes"]) for v in job.request["variants"]]
        if row is not None and solved == [(v.name, v.changes) for v in current]:
            row.comparison = value["comparison"]

    def _drop_pending(self, job_id: str) -> bool:
        with self.lock:
            for tenant, queue in list(self.pending.items()):
                for entry in list(queue):
                    if entry.job_id == job_id:
                        queue.remove(entry)
                        if not queue:
                            self.pending.pop(tenant, None)
                            self.turns.remove(tenant)
                        return True
        return False

    # --- start and stop -----------------------------------------------------------------
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
                    to_submit.append((job.id, job.kind, dict(job.request, tenant=job.tenant)))
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
        """Stop (SIGTERM): kill the solver processes and put their jobs back to ``queued``
        for the next start; wake every waiter."""
        self.stopping.set()
        self.thread.join(timeout=5)
        with self.lock:
            running = list(self.running.values())
            self.running.clear()
            self.pending.clear()
            self.turns.clear()
        for item in running:
            self._kill(item)
        ids = [item.job.job_id for item in running]
        if ids:
            with self.db.transaction() as session:
                for job in session.scalars(select(JobRow).where(JobRow.id.in_(ids))).all():
                    if job.status == "running":
                        job.status, job.progress, job.owner = "queued", 0.0, None
                        job.error = None
                        job.updated_at = now()
        self.waiters.notify()
