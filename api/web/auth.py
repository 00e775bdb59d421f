"""Browser sign-in: an API key is exchanged for a server-side session.

The cookie holds a random token (HttpOnly, SameSite=Strict, Secure over https); the database
holds its SHA-256, the key's id (never the key), the tenant, an expiry and the session's CSRF
token. Every request re-checks the key (a revoked or expired key ends the session) and builds
the same ``Caller`` the REST routes use, so the pages go through the API's own tenant checks.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import delete

from rackplan.api.db import WebSessionRow, now
from rackplan.api.deps import State, resolve_caller
from rackplan.api.security import Caller, caller_of_key

COOKIE = "rackplan_session"
SIGN_IN_COOKIE = "rackplan_sign_in"
"""Double-submit token of the sign-in form (there is no session yet to hold one)."""


@dataclass(frozen=True)
class WebUser:
    """A signed-in browser: the API caller it acts as, and its session's CSRF token."""

    caller: Caller
    csrf_token: str
    session_id: str


class SignInRequired(Exception):
    """No usable session: the page answers with a redirect to the sign-in form."""

    def __init__(self, expired: bool = False):
        super().__init__("sign in")
        self.expired = expired


class CsrfRefused(Exception):
    """A state-changing form without this session's CSRF token."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def open_session(state: State, key: str) -> str:
    """Check ``key`` exactly as the API does (401 unless usable) and store a session for it;
    returns the cookie's token."""
    caller = resolve_caller(state, key.strip() or None, "read")
    if caller.key_id is None:
        raise SignInRequired()
    token = secrets.token_urlsafe(32)
    ttl = timedelta(seconds=state.settings.web_session_ttl_s)
    with state.db.transaction() as session:
        session.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < now()))
        session.add(
            WebSessionRow(
                id=_digest(token),
                key_id=caller.key_id,
                csrf_token=secrets.token_urlsafe(32),
                expires_at=now() + ttl,
                tenant=caller.tenant,
            )
        )
    return token


def close_session(state: State, token: str | None) -> None:
    if token:
        with state.db.transaction() as session:
            session.execute(delete(WebSessionRow).where(WebSessionRow.id == _digest(token)))


def user_of(state: State, token: str | None) -> WebUser:
    """The signed-in user behind a cookie token; SignInRequired (expired or not) otherwise."""
    if not token:
        raise SignInRequired()
    with state.db.read() as session:
        row = session.get(WebSessionRow, _digest(token))
    if row is None:
        raise SignInRequired()
    if _aware(row.expires_at) <= now():
        close_session(state, token)
        raise SignInRequired(expired=True)
    caller = caller_of_key(state.db, row.key_id)
    if caller is None or caller.tenant != row.tenant:
        close_session(state, token)
        raise SignInRequired(expired=True)
    return WebUser(caller=caller, csrf_token=row.csrf_token, session_id=row.id)


def check_csrf(expected: str, presented: str | None) -> None:
    if not presented or not secrets.compare_digest(expected, presented):
        raise CsrfRefused()


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, Secure when the page was served over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
