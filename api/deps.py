"""Shared dependencies: the app's state, and API-key checks by scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.db import Database
from api.jobs import JobRunner
from api.security import find_key
from api.settings import Settings


@dataclass
class State:
    settings: Settings
    db: Database
    runner: JobRunner


def state(request: Request) -> State:
    return request.app.state.rackplan


StateDep = Annotated[State, Depends(state)]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def require(scope: str):
    """A dependency: the caller's key id, if its key has ``scope`` (reads may be open)."""

    def check(request: Request, app_state: StateDep) -> str | None:
        if scope == "read" and not app_state.settings.keys_for_reads:
            key = _presented_key(request)
            row = find_key(app_state.db, key) if key else None
            return row.id if row else None
        key = _presented_key(request)
        if not key:
            raise HTTPException(401, "an API key is required: send 'Authorization: Bearer <key>'")
        row = find_key(app_state.db, key)
        if row is None:
            raise HTTPException(401, "unknown API key")
        if scope not in row.scopes.split(","):
            raise HTTPException(403, f"this key lacks the '{scope}' scope")
        return row.id

    return check


Reader = Annotated[str | None, Depends(require("read"))]
Writer = Annotated[str | None, Depends(require("write"))]
