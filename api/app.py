"""The FastAPI application: ``create_app(settings)``; routes per resource under /v1.

Errors are JSON ``{"code", "message", "field", "problems"}`` — never a stack trace.
"""

from __future__ import annotations

import logging
import math
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from rackplan.api.db import Database
from rackplan.api.deps import State
from rackplan.api.jobs import JobRunner
from rackplan.api.routes import catalogs, health, jobs, plans, rates, scenarios, sessions
from rackplan.api.settings import Settings
from rackplan.catalogs.errors import InputError

log = logging.getLogger("rackplan.api")
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    422: "invalid_input",
    429: "busy",
}


def _error(
    status: int, message: str, field: str | None = None, problems: list | None = None, headers=None
) -> JSONResponse:
    body = {
        "code": CODES.get(status, "error"),
        "message": message,
        "field": field,
        "problems": problems or [],
    }
    return JSONResponse(status_code=status, content=body, headers=headers)


def _shown(value: object) -> object:
    """A value safe to echo in a JSON error (containers omitted, non-finite numbers as text)."""
    if isinstance(value, dict | list):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


MAX_PROBLEMS_SHOWN = 200
"""An error lists at most this many problems (a broken 100,000-row sheet gives one page)."""


class BodyLimit:
    """ASGI middleware: read a request body up to its limit before the app sees it, counting
    the bytes as they arrive (chunked requests announce no Content-Length), and answer 413
    past the limit; otherwise replay the body to the app."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = (
            self.settings.max_upload_bytes
            if path.endswith("/upload")
            else self.settings.max_body_bytes
        )
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > limit:
                response = _error(413, f"the request body exceeds {limit} bytes")
                return await response(scope, receive, send)
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay():
            return next(pending, None) or await receive()

        return await self.app(scope, replay, send)


def _install_error_handlers(app: FastAPI) -> None:

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        shown = exc.problems[:MAX_PROBLEMS_SHOWN]
        problems = [
            {
                "file": p.file,
                "row": p.row,
                "field": p.column,
                "message": p.message,
                "value": p.value,
            }
            for p in shown
        ]
        first = exc.problems[0] if exc.problems else None
        message = str(InputError(shown))
        if len(exc.problems) > len(shown):
            message += f"\n  … and {len(exc.problems) - len(shown)} more"
        return _error(422, message, first.column if first else None, problems)

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(x) for x in e["loc"]),
                "message": e["msg"],
                "value": _shown(e.get("input")),
            }
            for e in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return _error(422, message, problems[0]["field"] if problems else None, problems)

    @app.exception_handler(ValidationError)
    async def validation_error(_request: Request, exc: ValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(x) for x in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return _error(
            422,
            "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5]),
            problems[0]["field"] if problems else None,
            problems,
        )

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error ({type(exc).__name__}); it has been logged")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        db = Database(settings.url)
        runner = JobRunner(db, settings.url, settings.solve_workers, settings.queue_limit)
        app.state.rackplan = State(settings=settings, db=db, runner=runner)
        recovered = runner.recover()
        if any(recovered.values()):
            log.warning("jobs left by a previous run: %s", recovered)
        yield
        runner.shutdown()
        db.engine.dispose()

    app = FastAPI(
        title="rackplan",
        version="1.0.0",
        description="Capacity planning for LLM inference fleets: scenarios, plans, what-if "
        "sessions, roofline rates.",
        lifespan=lifespan,
    )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BodyLimit, settings=settings)
    _install_error_handlers(app)
    for module in (health, catalogs, scenarios, plans, jobs, sessions, rates):
        app.include_router(module.router)
    return app
