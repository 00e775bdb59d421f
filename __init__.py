"""rackplan: capacity planning for LLM inference fleets.

One import package. The repository's top-level folders install as its subpackages:
``rackplan.models`` (domain types and roofline physics), ``rackplan.catalogs`` (shipped data
and loaders), ``rackplan.planner`` (rates, MIP, plans, files, CLI) and ``rackplan.api`` (the
REST service). Dependencies run one way: models ← catalogs ← planner ← api.

The Python API (docs/python-api.md) is imported lazily, so ``import rackplan`` stays cheap:

- ``rackplan.plan(path_or_scenario, **options)`` → a checked ``PlanResult`` with pandas tables;
- ``rackplan.rates(rack, llm, input_tokens=…, output_tokens=…, …)`` → a ``RateReport``;
- ``rackplan.Session(base)`` for what-ifs;
- ``rackplan.load_scenario(path)`` and ``rackplan.save_scenario(scenario, path)``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("rackplan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "plan": "rackplan.planner.library",
    "rates": "rackplan.planner.library",
    "Session": "rackplan.planner.library",
    "load_scenario": "rackplan.planner.library",
    "save_scenario": "rackplan.planner.library",
    "PlanResult": "rackplan.planner.core.run",
    "Scenario": "rackplan.models.scenario",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the Python API on first use (PEP 562)."""
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rackplan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
