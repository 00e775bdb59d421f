"""One error body everywhere: RFC 9457 problem details (``application/problem+json``).

Every error carries ``type``, ``title``, ``status`` and ``detail``, and ``errors`` (a list of
field problems, possibly empty). The keys of the service's first error shape (``code``,
``message``, ``field``, ``problems``) are kept as extension members, so older clients work.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_PROBLEMS_SHOWN = 200
"""An error lists at most this many problems (a broken 100,000-row sheet gives one page)."""
RETRY_AFTER_S = 10
"""Seconds a client should wait after a 429 or 503."""
WWW_AUTHENTICATE = 'Bearer realm="rackplan", charset="UTF-8"'

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid_input",
    429: "busy",
    500: "internal",
    503: "unavailable",
}


def code_for(status: int) -> str:
    """The short machine code of a status (``not_found``…)."""
    return CODES.get(status, "error")


def title_for(status: int) -> str:
    """The HTTP reason phrase, as the problem's ``title``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int, detail: str, field: str | None = None, errors: list[dict] | None = None
) -> dict[str, Any]:
    """The JSON of one problem (RFC 9457 members first, then the legacy keys)."""
    listed = list(errors or [])[:MAX_PROBLEMS_SHOWN]
    code = code_for(status)
    return {
        "type": f"urn:rackplan:problem:{code}",
        "title": title_for(status),
        "status": status,
        "detail": detail,
        "errors": listed,
        "code": code,
        "message": detail,
        "field": field,
        "problems": listed,
    }


def problem(
    status: int,
    detail: str,
    field: str | None = None,
    errors: list[dict] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details response; 401 gets ``WWW-Authenticate``, 429/503 ``Retry-After``."""
    extra = dict(headers or {})
    if status == 401:
        extra.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if status in {429, 503}:
        extra.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(
        status_code=status,
        content=problem_body(status, detail, field, errors),
        headers=extra,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def shown(value: object) -> object:
    """A value safe to echo in a JSON error (containers omitted, non-finite numbers as text,
    long text cut, lone surrogates replaced so the error itself can be encoded)."""
    if isinstance(value, dict | list):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value[:200].encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)[:200]
