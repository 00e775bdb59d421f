"""Liveness and readiness, at ``/v1/health`` and ``/v1/ready`` (and the older ``/health``,
``/ready``).

Liveness is also answered by ``app.FastHealth`` before any other middleware, so it stays
cheap under load; the routes here document it in the OpenAPI schema.
"""

from __future__ import annotations

import shutil
import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from rackplan.api.db import SCHEMA_VERSION
from rackplan.api.deps import State, StateDep
from rackplan.api.errors import PROBLEM_MEDIA_TYPE, RETRY_AFTER_S, problem_body

router = APIRouter(tags=["health"])
DB_ERROR_GRACE_S = 10.0
"""After a database error the service reports not ready for this long."""
MIN_FREE_BYTES = 50_000_000
"""Below this much free disk space under the data folder, the service is not ready."""


@router.get("/health", operation_id="health")
@router.get("/v1/health", operation_id="health_v1")
async def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


def _problems(app: State) -> list[str]:
    """Why the service is not ready (empty when it is)."""
    reasons = []
    since = app.health.get("db_error_at")
    if since is not None and time.monotonic() - since < DB_ERROR_GRACE_S:
        reasons.append(f"a database error {time.monotonic() - since:.0f} s ago")
    try:
        with app.db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        reasons.append(f"the database does not answer ({type(exc).__name__})")
    if not app.settings.database_url:
        free = shutil.disk_usage(app.settings.data_dir).free
        if free < MIN_FREE_BYTES:
            reasons.append(f"only {free} bytes free in the data folder")
    return reasons


@router.get("/ready", operation_id="ready")
@router.get("/v1/ready", operation_id="ready_v1")
async def ready(app: StateDep) -> dict[str, object]:
    """The database answers, its schema is current and the disk has room (else 503)."""
    reasons = await run_in_threadpool(_problems, app)
    if reasons:
        body = problem_body(503, "not ready: " + "; ".join(reasons)) | {"ready": False}
        return JSONResponse(
            body,
            status_code=503,
            media_type=PROBLEM_MEDIA_TYPE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    return {
        "status": "ready",
        "ready": True,
        "schema_version": app.db.version,
        "schema_current": app.db.version == SCHEMA_VERSION,
        "active_jobs": app.runner.active(),
        "queue_limit": app.settings.queue_limit,
    }
