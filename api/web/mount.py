"""Registering the pages on the app, and the check of a posted form's session before its body
is read (called by the app's BodyLimit middleware)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from rackplan.api.web.auth import COOKIE, SignInRequired, user_of

OPEN_FORMS = frozenset({"/sign-in"})
"""Web paths a browser may post to without a session."""


def install(app: FastAPI) -> None:
    """Register the pages and the static files on ``app``."""
    from rackplan.api.web import plans, scenarios, sessions, signin

    for module in (signin, scenarios, plans, sessions):
        app.include_router(module.router)
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")


def _cookie(scope, name: str) -> str | None:
    from http.cookies import SimpleCookie

    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if name in jar:
                return jar[name].value
    return None


async def refused(scope) -> Response | None:
    """A form posted without a usable session is sent to the sign-in page before its body
    is read (like the API checks keys first)."""
    from rackplan.api.web.common import redirect, sign_in_url

    if scope.get("path") in OPEN_FORMS:
        return None
    state = scope["app"].state.rackplan
    try:
        await run_in_threadpool(user_of, state, _cookie(scope, COOKIE))
    except SignInRequired as exc:
        return redirect(sign_in_url(exc.expired))
    return None
