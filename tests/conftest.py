"""Shared fixtures: the shipped catalog and small helpers for building hardware."""

from __future__ import annotations

import pytest

from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.hardware import EfficiencyFactors

PERFECT = EfficiencyFactors(flops_fraction=1.0, bandwidth_fraction=1.0)
"""η_F = η_B = 1: the pure roofline, for hand-computed answers."""


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()
