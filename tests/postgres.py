"""A throw-away PostgreSQL server for the API tests: ``initdb`` and ``pg_ctl`` under a
temporary folder, a Unix socket only (no TCP port), stopped at the end of the session.

``RACKPLAN_TEST_DATABASE_URL`` names an existing scratch server instead. Without either (no
PostgreSQL binaries and no URL), the PostgreSQL variants of the tests are skipped;
``make test`` installs the Debian ``postgresql`` package first when it is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORT = 5432


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, if PostgreSQL is installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: run as the ``postgres`` user then."""
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def server() -> Iterator[str]:
    """Start a cluster; yield the SQLAlchemy URL of its ``postgres`` database."""
    folder = Path(tempfile.mkdtemp(prefix="rackplan-pg-"))
    owner = "postgres" if os.geteuid() == 0 else None
    if owner:
        shutil.chown(folder, owner)
    bin_dir = binaries()
    assert bin_dir is not None
    data = folder / "data"
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(
        _as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            owner,
        ),
        **run,
    )
    options = f"-k {folder} -p {PORT} -c listen_addresses='' -c fsync=off"
    subprocess.run(
        _as_owner(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(folder / "log"),
                "-w",
                "start",
            ],
            owner,
        ),
        **run,
    )
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={folder}&port={PORT}"
    finally:
        subprocess.run(
            _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(url: str) -> str:
    """A new empty database on the server of ``url``; its URL."""
    from sqlalchemy import create_engine, text

    name = f"rackplan_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base, _, query = url.partition("?")
    return (
        f"{base.rsplit('/', 1)[0]}/{name}?{query}" if query else f"{base.rsplit('/', 1)[0]}/{name}"
    )
