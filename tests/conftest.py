"""Shared fixtures: the shipped catalog and small helpers for building hardware."""

from __future__ import annotations

import os

import pytest

from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.hardware import EfficiencyFactors

# The CLI sizes piped output from COLUMNS (read when rackplan.planner.cli is imported): tests
# see the default 200 columns whatever the developer's terminal exports; tests of narrow
# output set COLUMNS for their own subprocess.
os.environ.pop("COLUMNS", None)

PERFECT = EfficiencyFactors(flops_fraction=1.0, bandwidth_fraction=1.0)
"""η_F = η_B = 1: the pure roofline, for hand-computed answers."""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()
