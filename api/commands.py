"""The REST service's commands for the ``rackplan`` console script: ``serve`` and ``keys``.

The console script is defined in ``planner/cli/main.py``; the planner cannot import the API
(models ← catalogs ← planner ← api), so the API plugs these commands in through the
``rackplan.commands`` entry-point group (pyproject.toml), loaded by ``planner.cli.main``
when a command line needs them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import typer

from rackplan.planner.cli.main import out

keys_app = typer.Typer(help="Manage API keys for the REST service.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``serve`` and the ``keys`` group to the ``rackplan`` app (the entry point)."""
    app.command()(serve)
    app.add_typer(keys_app, name="keys")


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="HTTP worker processes (solver processes: RACKPLAN_SOLVE_WORKERS).")
    ] = 1,
) -> None:
    """Run the REST API (uvicorn). Data: RACKPLAN_DATA_DIR or RACKPLAN_DATABASE_URL."""
    import uvicorn

    uvicorn.run(
        "rackplan.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_graceful_shutdown=5,  # SIGTERM: waiting requests end, running jobs re-queue
    )


def _database():
    from rackplan.api.db import Database
    from rackplan.api.settings import Settings

    return Database(Settings().url)


def _refuse(option: str, message: str) -> NoReturn:
    """Exit 2 with the problem named, as every invalid input does (through ``main``)."""
    from rackplan.catalogs.errors import InputError, Problem

    raise InputError([Problem("command line", None, option, message)])


def _expiry(days: float | None) -> datetime | None:
    """An expiry ``days`` from now (None: never)."""
    if days is None:
        return None
    if not 0 < days <= 3650:
        _refuse("--expires-in-days", "give a number of days between 0 and 3650")
    return datetime.now(UTC) + timedelta(days=days)


ExpiresOption = Annotated[
    float | None,
    typer.Option("--expires-in-days", help="The key stops working after this many days."),
]


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="read, write and/or admin (default read and write)."),
    ] = None,
    tenant: Annotated[
        str, typer.Option(help="The tenant the key belongs to (it sees only its objects).")
    ] = "default",
    expires_in_days: ExpiresOption = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from rackplan.api.security import create_key

    scopes = tuple(scope or ("read", "write"))
    try:
        key_id, key = create_key(_database(), name, scopes, tenant, _expiry(expires_in_days))
    except ValueError as exc:
        _refuse("--scope/--tenant", str(exc))
    out.print(
        f"key id {key_id} (tenant {tenant}; {', '.join(scopes)}); the key (shown once):",
        markup=False,
    )
    out.print(key, markup=False, highlight=False)


@keys_app.command("list")
def list_command(
    tenant: Annotated[str | None, typer.Option(help="Only the keys of this tenant.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Every key: id, name, tenant, scopes, created, expires, revoked (never the secrets)."""
    from rackplan.api.security import list_keys

    rows = [
        {
            "id": k.id,
            "name": k.name,
            "tenant": k.tenant,
            "scopes": k.scopes,
            "created_at": str(k.created_at),
            "expires_at": str(k.expires_at) if k.expires_at else None,
            "revoked_at": str(k.revoked_at) if k.revoked_at else None,
        }
        for k in list_keys(_database(), tenant)
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else f"expires {row['expires_at'] or 'never'}"
        out.print(
            f"{row['id']}  {row['tenant']}  {row['scopes']}  {row['name']}  ({state})",
            markup=False,
            highlight=False,
        )


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (rackplan keys list).")]):
    """Revoke a key: it stops working (within seconds in running servers)."""
    from rackplan.api.security import revoke_key

    if not revoke_key(_database(), key_id):
        _refuse("KEY_ID", f"no key with id '{key_id}' (see rackplan keys list)")
    out.print(f"key {key_id} revoked", markup=False)


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (rackplan keys list).")],
    expires_in_days: ExpiresOption = None,
) -> None:
    """Give a key a new secret (same id, tenant and scopes); the old secret stops working."""
    from rackplan.api.security import rotate_key

    key = rotate_key(_database(), key_id, _expiry(expires_in_days))
    if key is None:
        _refuse("KEY_ID", f"no usable key with id '{key_id}' (revoked or expired keys cannot)")
    out.print(f"key {key_id} rotated; the new key (shown once):", markup=False)
    out.print(key, markup=False, highlight=False)
