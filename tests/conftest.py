"""Shared fixtures: the shipped catalog and small helpers for building hardware."""

from __future__ import annotations

import os

import pytest

from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.hardware import EfficiencyFactors

# The CLI sizes piped output from COLUMNS (read when rackplan.planner.cli.main is imported): tests
# see the default 200 columns whatever the developer's terminal exports; tests of narrow
# output set COLUMNS for their own subprocess.
os.environ.pop("COLUMNS", None)

PERFECT = EfficiencyFactors(flops_fraction=1.0, bandwidth_fraction=1.0)
"""η_F = η_B = 1: the pure roofline, for hand-computed answers."""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server for the session: RACKPLAN_TEST_DATABASE_URL, or a
    throw-away cluster started here (tests/postgres.py); skipped when neither is possible."""
    import os

    from tests import postgres

    url = os.environ.get("RACKPLAN_TEST_DATABASE_URL")
    if url:
        yield url
        return
    pytest.importorskip("psycopg", reason="pip install -e '.[postgres]' for the PostgreSQL runs")
    if postgres.binaries() is None:
        pytest.skip("PostgreSQL is not installed (make test installs it)")
    with postgres.server() as started:
        yield started


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    """Each API module runs on SQLite (None: the data folder) and on a fresh PostgreSQL
    database."""
    if request.param == "sqlite":
        return None
    from tests import postgres

    return postgres.fresh_database(request.getfixturevalue("postgres_server"))
