"""The Python API for notebooks and scripts: ``rackplan.plan``, ``rackplan.rates``,
``rackplan.Session``, ``rackplan.load_scenario`` and ``rackplan.save_scenario``.

Thin functions over the same code the CLI and the REST service run, so a notebook sees the
numbers a procurement script sees. Documented, with examples that run as tests, in
docs/python-api.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.scenario import Scenario
from rackplan.models.workload import Workload
from rackplan.planner.core.rates import RateReport, rate_report
from rackplan.planner.core.run import PlanResult, plan_scenario
from rackplan.planner.core.session import Variant, compare_variants
from rackplan.planner.core.solve import SolveOptions
from rackplan.planner.io.scenario_io import load_scenario as _load_scenario
from rackplan.planner.io.scenario_io import save_scenario_json

ScenarioSource = str | Path | Scenario


def load_scenario(path: str | Path) -> Scenario:
    """A scenario from a ``.json`` file, a folder of CSV tables or an ``.xlsx`` workbook
    (docs/scenario-files.md). Problems raise ``InputError`` listing every one with its file,
    row and column."""
    return _load_scenario(Path(path))


def save_scenario(scenario: Scenario, path: str | Path) -> Path:
    """Write ``scenario`` atomically: ``.json``, ``.xlsx``, or a CSV folder (no suffix)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        save_scenario_json(scenario, path)
        return path
    from rackplan.planner.io.spreadsheets import write_scenario

    return write_scenario(scenario, path)


def _scenario(source: ScenarioSource) -> Scenario:
    return source if isinstance(source, Scenario) else load_scenario(source)


def plan(
    source: ScenarioSource,
    *,
    time_limit_s: float = 60.0,
    gap: float = 0.005,
    shadow_prices: bool = True,
    baselines: bool = True,
    catalog: Catalog | None = None,
) -> PlanResult:
    """Plan a scenario (a path or a ``Scenario``) and return the checked ``PlanResult``.

    ``result.status`` is "optimal" only at a proven gap ≤ 1e-4 (``result.status_text`` says
    "within X % of optimal" otherwise); ``result.plan`` holds pandas tables (``purchases``,
    ``fleet``, ``allocation``, ``service``, ``power``, ``costs``, ``cost_per_million_tokens``,
    ``shadow_prices``, ``baselines``), or is None when the scenario is infeasible, with
    ``result.explanation`` naming the smallest relaxations. ``time_limit_s`` bounds the whole
    plan; ``gap`` is the relative MIP gap to prove.
    """
    options = SolveOptions(time_limit_s=time_limit_s, rel_gap=gap)
    return plan_scenario(
        _scenario(source),
        catalog or load_catalog(),
        options,
        with_shadow_prices=shadow_prices,
        with_baselines=baselines,
    )


def rates(
    rack: str,
    llm: str,
    *,
    input_tokens: float,
    output_tokens: float,
    ttft_ms: float | None = None,
    tpot_ms: float | None = None,
    sla_percentile: str = "mean",
    prefix_hit_rate: float = 0.0,
    max_utilisation: float = 0.8,
    precision: str = "fp8",
    catalog: Catalog | None = None,
) -> RateReport:
    """Operating points and both serving modes of one rack × LLM × workload, as
    ``rackplan rates`` shows them; ``.as_json()`` is the CLI's JSON contract and
    ``.points.to_frame()`` a DataFrame of the pruned operating points."""
    workload = Workload(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        sla_percentile=sla_percentile,
        prefix_hit_rate=prefix_hit_rate,
        max_utilisation=max_utilisation,
    )
    return rate_report(catalog or load_catalog(), rack, llm, workload, precision)


@dataclass
class Session:
    """A what-if session: a base scenario and named variants, solved on one persistent model
    where the change allows, compared side by side.

    >>> session = Session("examples/quickstart/scenario.json")   # doctest: +SKIP
    >>> session.add("tight-power", power_cap_scale=0.8)           # doctest: +SKIP
    >>> session.compare()                                         # doctest: +SKIP
    """

    base: ScenarioSource
    time_limit_s: float = 60.0
    gap: float = 0.005
    catalog: Catalog | None = None
    variants: list[Variant] = field(default_factory=list)

    def add(self, name: str, **changes: float) -> Session:
        """Add a variant. Keys are the CLI's what-if keys; a key with a target uses ``__`` for
        its ':' (``capex_scale__groq3_lpx=0.5`` is ``capex_scale:groq3-lpx=0.5``; ``_`` in the
        target becomes ``-``), or pass ``{"capex_scale:groq3-lpx": 0.5}`` with ``**``."""
        if any(v.name == name for v in self.variants):
            raise InputError([Problem("Session.add", None, "name", "variant already exists", name)])
        parsed = []
        for key, value in changes.items():
            if "__" in key:
                head, _, target = key.partition("__")
                key = f"{head}:{target.replace('_', '-')}"
            parsed.append((key, float(value)))
        from rackplan.planner.core.session import _check_key

        for key, _ in parsed:
            _check_key(key, "Session.add")
        self.variants.append(Variant(name, tuple(parsed)))
        return self

    def compare(self) -> pd.DataFrame:
        """Base and every variant: status, TCO, gap and deltas against the base, one row each."""
        options = SolveOptions(time_limit_s=self.time_limit_s, rel_gap=self.gap)
        return compare_variants(
            _scenario(self.base), self.catalog or load_catalog(), self.variants, options
        )
