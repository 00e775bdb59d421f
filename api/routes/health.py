"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from rackplan.api.db import SCHEMA_VERSION
from rackplan.api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health")
def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready", operation_id="ready")
def ready(app: StateDep) -> dict[str, object]:
    """The database answers and its schema is current; the solver pool's load."""
    with app.db.read() as session:
        session.execute(text("SELECT 1"))
    return {
        "status": "ready",
        "schema_version": app.db.version,
        "schema_current": app.db.version == SCHEMA_VERSION,
        "active_jobs": app.runner.active(),
        "queue_limit": app.settings.queue_limit,
    }
