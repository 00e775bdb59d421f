"""The ``rackplan`` console script: the planner's commands plus ``serve`` and ``keys``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rackplan.planner.cli import app, main, out

keys_app = typer.Typer(help="Manage API keys for the REST service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@app.command()
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
    )


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="read and/or write (default both).")
    ] = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from rackplan.api.db import Database
    from rackplan.api.security import create_key
    from rackplan.api.settings import Settings

    db = Database(Settings().url)
    try:
        key_id, key = create_key(db, name, tuple(scope or ("read", "write")))
    except ValueError as exc:
        from rackplan.catalogs.errors import InputError, Problem

        raise InputError([Problem("command line", None, "--scope", str(exc))]) from exc
    out.print(f"key id {key_id} ({', '.join(scope or ['read', 'write'])}); the key (shown once):")
    out.print(key, markup=False, highlight=False)


def run() -> None:
    sys.exit(main())
