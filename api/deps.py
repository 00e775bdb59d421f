"""Shared dependencies: the app's state, API-key checks by scope, and tenant ownership."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from rackplan.api.db import DEFAULT_TENANT, Database
from rackplan.api.errors import WWW_AUTHENTICATE
from rackplan.api.jobs import JobRunner
from rackplan.api.security import Caller, authenticate
from rackplan.api.settings import Settings


@dataclass
class State:
    settings: Settings
    db: Database
    runner: JobRunner
    health: dict[str, Any] = field(default_factory=dict)
    """``db_error_at`` (monotonic time of the last database error) feeds /ready."""
    waiting: dict[str, int] = field(default_factory=dict)
    """Requests waiting for a job, per key id."""
    lock: threading.Lock = field(default_factory=threading.Lock)


def state(request: Request) -> State:
    return request.app.state.rackplan


StateDep = Annotated[State, Depends(state)]


BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
HEADER_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The API key in X-API-Key"
)
"""Both ways of presenting a key, declared so the OpenAPI schema lists them."""
ANONYMOUS = Caller(key_id=None, tenant=DEFAULT_TENANT, scopes=frozenset({"read"}))


def presented_key(authorization: str | None, header_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer …`` or ``X-API-Key``, spaces around it removed."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    if header_key and header_key.strip():
        return header_key.strip()
    return None


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def resolve_caller(app_state: State, key: str | None, scope: str) -> Caller:
    """The caller behind ``key`` if it may use ``scope``: 401 without a usable key (anonymous
    reads only when the service opts in), 403 without the scope."""
    if not key:
        if scope == "read" and app_state.settings.anonymous_reads:
            return ANONYMOUS
        raise unauthorized(
            "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    caller = authenticate(app_state.db, key)
    if caller is None:
        raise unauthorized("unknown API key")
    if not caller.can(scope):
        raise HTTPException(403, f"this key lacks the '{scope}' scope")
    return caller


def require(scope: str):
    """A dependency: the caller, if its key has ``scope``."""

    def check(
        request: Request,
        app_state: StateDep,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
        _header_key: Annotated[str | None, Security(HEADER_KEY)] = None,
    ) -> Caller:
        key = presented_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        return resolve_caller(app_state, key, scope)

    return check


Reader = Annotated[Caller, Depends(require("read"))]
Writer = Annotated[Caller, Depends(require("write"))]
Admin = Annotated[Caller, Depends(require("admin"))]
IdempotencyKey = Annotated[str | None, Header(max_length=200, pattern=r"^[\x21-\x7e][\x20-\x7e]*$")]
"""The Idempotency-Key header of every route that starts a job: printable ASCII, ≤ 200."""

Row = TypeVar("Row")


def owned(session: Session, model: type[Row], object_id: str, caller: Caller, label: str) -> Row:
    """The row with ``object_id`` if the caller's tenant owns it; otherwise 404 — the same
    answer as for an id that does not exist, so ids of other tenants leak nothing."""
    row = session.get(model, object_id)
    if row is None or row.tenant != caller.tenant:
        raise HTTPException(404, f"no {label} '{object_id}'")
    return row
