"""Sign in with an API key, sign out; ``/`` sends you to the right one."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from rackplan.api.deps import StateDep
from rackplan.api.web.auth import (
    COOKIE,
    SIGN_IN_COOKIE,
    SignInRequired,
    check_csrf,
    clear_cookie,
    close_session,
    open_session,
    set_cookie,
    user_of,
)
from rackplan.api.web.common import FormUser, WebRoute, redirect, render

router = APIRouter(route_class=WebRoute, include_in_schema=False)
FORM_TTL_S = 3600


def _signed_in(app, request: Request) -> bool:
    try:
        user_of(app, request.cookies.get(COOKIE))
    except SignInRequired:
        return False
    return True


@router.get("/")
def home(request: Request, app: StateDep) -> Response:
    return redirect("/scenarios" if _signed_in(app, request) else "/sign-in")


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host): no open redirect."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/scenarios"


def _form(request: Request, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    notice = None
    if request.query_params.get("expired"):
        notice = "Your session expired. Sign in again to continue."
    elif request.query_params.get("signed_out"):
        notice = "You are signed out."
    context = {
        "title": "Sign in",
        "sign_in_token": token,
        "notice": notice,
        "error": error,
        "next": _safe_next(request.query_params.get("next")),
    }
    response = render(request, "sign_in.html", context, None, status)
    set_cookie(response, request, SIGN_IN_COOKIE, token, FORM_TTL_S)
    return response


@router.get("/sign-in")
def sign_in_form(request: Request, app: StateDep) -> Response:
    if _signed_in(app, request):
        return redirect("/scenarios")
    return _form(request)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    app: StateDep,
    api_key: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str | None, Form(max_length=500)] = None,
    csrf_token: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    check_csrf(request.cookies.get(SIGN_IN_COOKIE) or "", csrf_token)
    try:
        token = await run_in_threadpool(open_session, app, api_key)
    except (HTTPException, SignInRequired):
        return _form(request, "That key is unknown, revoked or expired.", 401)
    response = redirect(_safe_next(next))
    set_cookie(response, request, COOKIE, token, int(app.settings.web_session_ttl_s))
    clear_cookie(response, request, SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request,
    app: StateDep,
    user: FormUser,
) -> Response:
    await run_in_threadpool(close_session, app, request.cookies.get(COOKIE))
    response = redirect("/sign-in?signed_out=1")
    clear_cookie(response, request, COOKIE)
    return response
