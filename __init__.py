"""rackplan: capacity planning for LLM inference fleets.

One import package. The repository's top-level folders install as its subpackages:
``rackplan.models`` (domain types and roofline physics), ``rackplan.catalogs`` (shipped data
and loaders), ``rackplan.planner`` (rates, MIP, plans, files, CLI) and ``rackplan.api`` (the
REST service). Dependencies run one way: models ← catalogs ← planner ← api.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rackplan")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
