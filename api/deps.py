"""Shared dependencies: the app's state, and API-key checks by scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rackplan.api.db import Database
from rackplan.api.jobs import JobRunner
from rackplan.api.security import find_key
from rackplan.api.settings import Settings


@dataclass
class State:
    settings: Settings
    db: Database
    runner: JobRunner


def state(request: Request) -> State:
    return request.app.state.rackplan


StateDep = Annotated[State, Depends(state)]


BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
HEADER_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key in X-API-Key"
)
"""Both ways of presenting a key, declared so the OpenAPI schema lists them."""


def _presented_key(
    bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials.strip()
    return header_key


def require(scope: str):
    """A dependency: the caller's key id, if its key has ``scope`` (reads may be open)."""

    def check(
        app_state: StateDep,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
        header_key: Annotated[str | None, Security(HEADER_KEY)] = None,
    ) -> str | None:
        key = _presented_key(bearer, header_key)
        if scope == "read" and not app_state.settings.keys_for_reads:
            row = find_key(app_state.db, key) if key else None
            return row.id if row else None
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
