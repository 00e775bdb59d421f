"""What every page shares: templates (Jinja2, autoescaped), the signed-in user, CSRF checks,
security headers, and a route class that turns the API's errors into HTML pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from rackplan.api.deps import StateDep
from rackplan.api.limits import EdgeError
from rackplan.api.web import views
from rackplan.api.web.auth import (
    COOKIE,
    CsrfRefused,
    SignInRequired,
    WebUser,
    check_csrf,
    user_of,
)
from rackplan.catalogs.errors import InputError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.autoescape = True
templates.env.filters.update(
    money=views.money, signed_money=views.signed_money, number=views.number
)
templates.env.globals.update(delta=views.delta)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
"""Scripts and styles from this server only (matplotlib's SVG needs inline style
attributes); no framing; pages with tenant data are not cached."""


def sign_in_url(expired: bool = False, then: str | None = None) -> str:
    query = []
    if expired:
        query.append("expired=1")
    if then and then.startswith("/") and not then.startswith("//"):
        query.append("next=" + quote(then, safe="/"))
    return "/sign-in" + ("?" + "&".join(query) if query else "")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    user: WebUser | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page: the template with the user (tenant, CSRF token) and the security headers."""
    context = {"request": request, "user": user, **context}
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        413: "Too large",
        422: "Invalid input",
        429: "Busy",
        503: "Unavailable",
    }
    title = titles.get(status, "Something went wrong")
    return render(
        request, "error.html", {"title": title, "message": message, "status": status}, None, status
    )


class WebRoute(APIRoute):
    """Page routes: sign-in problems redirect to the sign-in form (saying when a session
    expired); the API's HTTP errors (404 for another tenant's id, 403, 429 …) become pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                then = request.url.path if request.method == "GET" else None
                response = redirect(sign_in_url(exc.expired, then))
                if exc.expired:
                    response.delete_cookie(COOKIE, path="/")
                return response
            except CsrfRefused:
                message = (
                    "This form was refused: it did not carry this session's security token "
                    "(CSRF). Reload the page and send it again."
                )
                return error_page(request, 403, message)
            except HTTPException as exc:
                return error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                fields = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
                )
                return error_page(request, 422, fields)
            except (InputError, EdgeError, ValidationError) as exc:
                lines = "; ".join(
                    " ".join(str(x) for x in (p["file"], p["column"], p["message"]) if x)
                    for p in problem_rows(exc)[:10]
                )
                return error_page(request, 422, lines)

        return guarded


def web_user(request: Request, app: StateDep) -> WebUser:
    """The signed-in user (a dependency; SignInRequired otherwise)."""
    return user_of(app, request.cookies.get(COOKIE))


User = Annotated[WebUser, Depends(web_user)]


async def form_user(request: Request, user: User) -> WebUser:
    """The signed-in user of a state-changing form, if the form carries the session's CSRF
    token (checked before any other field of the form is looked at)."""
    form = await request.form()
    presented = form.get("csrf_token")
    check_csrf(user.csrf_token, presented if isinstance(presented, str) else None)
    return user


FormUser = Annotated[WebUser, Depends(form_user)]
"""The user of a posted form: signed in, with the session's CSRF token."""


def writer(user: WebUser) -> None:
    """403 unless the session's key may write (the API's scope, same words)."""
    if not user.caller.can("write"):
        raise HTTPException(403, "this key lacks the 'write' scope")


TABLE_FIELD = re.compile(r"^(?:body\.)?(?:scenario\.)?(\w+)\.(\d+)\.(.+)$")


def located(field: str, message: object, value: object) -> dict:
    """A problem in a scenario's table (``periods.0.power_cap_mw``) as table, row (from 1)
    and column, like an upload's problems; other fields as they are."""
    match = TABLE_FIELD.match(field)
    if match is None:
        return {"file": None, "row": None, "column": field, "message": message, "value": value}
    table, index, column = match.groups()
    name = views.TABLE_TITLES.get(table, table)
    return {"file": name, "row": int(index) + 1, "column": column, "message": message,
            "value": value}  # fmt: skip


def problem_rows(exc: Exception) -> list[dict]:
    """Problems of an upload or an edit with their file, row and column (or field)."""
    if isinstance(exc, InputError):
        return [
            {"file": p.file, "row": p.row, "column": p.column, "message": p.message,
             "value": p.value}
            for p in exc.problems[:200]
        ]  # fmt: skip
    if isinstance(exc, EdgeError):
        return [
            located(str(p.get("field")), p.get("message"), p.get("value"))
            for p in exc.problems[:200]
        ]
    if isinstance(exc, ValidationError):
        return [
            located(".".join(str(x) for x in e["loc"]), e["msg"], e.get("input"))
            for e in exc.errors()[:200]
        ]
    if isinstance(exc, HTTPException):
        return [{"file": None, "row": None, "column": None, "message": str(exc.detail)}]
    raise exc
