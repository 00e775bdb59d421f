"""The FastAPI application: ``create_app(settings)``; routes per resource under /v1.

Errors are RFC 9457 problem details (``api/errors.py``) — never a stack trace.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException

from rackplan.api.db import Database
from rackplan.api.deps import State, presented_key, resolve_caller
from rackplan.api.errors import MAX_PROBLEMS_SHOWN, problem, shown
from rackplan.api.jobs import JobRunner
from rackplan.api.limits import EdgeError
from rackplan.api.routes import (
    catalogs,
    health,
    jobs,
    keys,
    plans,
    rates,
    scenarios,
    sessions,
    uncertainty,
)
from rackplan.api.settings import Settings
from rackplan.api.web import mount as web
from rackplan.catalogs.errors import InputError

log = logging.getLogger("rackplan.api")
HEALTH_PATHS = frozenset({"/health", "/v1/health"})
HEALTH_BODY = json.dumps({"status": "ok"}).encode()
OPEN_PATHS = frozenset({"/health", "/v1/health", "/ready", "/v1/ready", "/openapi.json", "/docs"})
"""Paths that need no key (everything else under the service needs one, or anonymous reads)."""


class FastHealth:
    """ASGI middleware, outermost: ``GET /health`` and ``/v1/health`` are answered here,
    before any other middleware, dependency or thread hop — liveness stays cheap under load."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope.get("path") in HEALTH_PATHS
            and scope.get("method") in {"GET", "HEAD"}
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(HEALTH_BODY)).encode()),
                    ],
                }
            )
            body = HEALTH_BODY if scope["method"] == "GET" else b""
            await send({"type": "http.response.body", "body": body})
            return None
        return await self.app(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class BodyLimit:
    """ASGI middleware: authenticate a write (POST/PUT/PATCH) before reading its body, then
    read the body up to its limit, counting the bytes as they arrive (chunked requests
    announce no Content-Length), and answer 413 past the limit; otherwise replay the body to
    the app. A path with control characters is refused at once."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings

    async def _refused(self, scope) -> Response | None:
        """401/403 for a write without a usable key, before a byte of its body is read; a
        browser page's form (outside /v1) needs a signed-in session instead."""
        if scope.get("path") in OPEN_PATHS:
            return None
        if not scope.get("path", "").startswith("/v1/"):
            return await web.refused(scope)
        key = presented_key(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
        if not key:
            return problem(401, "an API key is required: send 'Authorization: Bearer <key>'")
        state = scope["app"].state.rackplan
        try:
            await run_in_threadpool(resolve_caller, state, key, "read")
        except HTTPException as exc:
            if exc.status_code == 401:
                return problem(401, str(exc.detail))
        except DBAPIError:
            state.health["db_error_at"] = time.monotonic()
            return problem(503, "the database is unavailable (disk or connection); retry later")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if any(ord(c) < 32 or ord(c) == 127 for c in path):
            return await problem(404, "no such path (it has control characters)")(
                scope, receive, send
            )
        if scope.get("method") not in {"POST", "PUT", "PATCH"}:
            return await self.app(scope, receive, send)
        refused = await self._refused(scope)
        if refused is not None:
            return await refused(scope, receive, send)
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
                response = problem(413, f"the request body exceeds {limit} bytes")
                return await response(scope, receive, send)
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay():
            return next(pending, None) or await receive()

        return await self.app(scope, replay, send)


def _input_problems(exc: InputError) -> list[dict]:
    return [
        {
            "file": p.file,
            "row": p.row,
            "field": p.column,
            "message": p.message,
            "value": shown(p.value),
        }
        for p in exc.problems[:MAX_PROBLEMS_SHOWN]
    ]


def _pydantic_problems(errors: list[dict]) -> list[dict]:
    return [
        {
            "field": ".".join(str(x) for x in e["loc"]),
            "message": e["msg"],
            "value": shown(e.get("input")),
        }
        for e in errors
    ]


def _summary(problems: list[dict]) -> str:
    return "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])


def _install_error_handlers(app: FastAPI) -> None:

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(InputError)
    async def input_error(_request: Request, exc: InputError) -> JSONResponse:
        problems = _input_problems(exc)
        message = str(InputError(exc.problems[:MAX_PROBLEMS_SHOWN]))
        if len(exc.problems) > MAX_PROBLEMS_SHOWN:
            message += f"\n  … and {len(exc.problems) - MAX_PROBLEMS_SHOWN} more"
        message = message.encode("utf-8", "replace").decode("utf-8")
        return problem(422, message, problems[0]["field"] if problems else None, problems)

    @app.exception_handler(EdgeError)
    async def edge_error(_request: Request, exc: EdgeError) -> JSONResponse:
        problems = exc.problems[:MAX_PROBLEMS_SHOWN]
        return problem(422, str(exc), problems[0]["field"] if problems else None, problems)

    @app.exception_handler(RequestValidationError)
    async def request_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _pydantic_problems(list(exc.errors()))
        field = problems[0]["field"] if problems else None
        return problem(422, _summary(problems), field, problems)

    @app.exception_handler(ValidationError)
    async def validation_error(_request: Request, exc: ValidationError) -> JSONResponse:
        problems = _pydantic_problems(list(exc.errors()))
        field = problems[0]["field"] if problems else None
        return problem(422, _summary(problems), field, problems)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """Disk full, database gone, locked too long: 503 with Retry-After; /ready says no."""
        log.error("database error: %s", exc)
        request.app.state.rackplan.health["db_error_at"] = time.monotonic()
        return problem(503, "the database is unavailable (disk or connection); retry later")

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return problem(500, f"internal error ({type(exc).__name__}); it has been logged")


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that read their body themselves (to validate it off the event loop) name its
    schema by reference; put those schemas into the OpenAPI components."""
    from rackplan.api.schemas import ScenarioCreate

    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        extra = ScenarioCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in extra.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["ScenarioCreate"] = extra
        return schema

    app.openapi = openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        db = Database(settings.url)
        runner = JobRunner(
            db,
            settings.url,
            settings.solve_workers,
            settings.queue_limit,
            (settings.job_budget_factor, settings.job_budget_slack_s),
        )
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

    app.add_middleware(BodyLimit, settings=settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(FastHealth)
    _install_error_handlers(app)
    _document_raw_bodies(app)
    for module in (health, catalogs, scenarios, plans, jobs, sessions, rates, keys):
        app.include_router(module.router)
    app.include_router(uncertainty.router)  # robust plans and stress tests
    web.install(app)
    return app
