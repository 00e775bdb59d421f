"""Cross-references of a scenario (periods, classes, rack and LLM ids) checked with their
location and a "did you mean", and warnings for silent defaults.

``validate_references(scenario, catalog)`` is the call for callers that hold a parsed
``Scenario`` (the REST API at scenario creation); the spreadsheet importer checks the same
references on its rows so each problem names its file, row and column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rackplan.catalogs.errors import Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.core.suggest import did_you_mean

TEMPLATE_RATE_SOURCE = "our benchmark 2026-10"
"""The ``source`` of the template's example ``rates`` row: never a real measurement."""


@dataclass(frozen=True)
class Reference:
    """One id used somewhere: where (source, row, column), what kind, which value."""

    source: str
    row: int | None
    column: str
    kind: str
    value: str


NOUNS = {
    "period": "period (not in the periods table)",
    "class": "class (not in the classes table)",
    "rack": "rack id (not in the rack catalog)",
    "llm": "LLM id (not in the LLM catalog)",
}


def reference_problems(
    references: Iterable[Reference], known: Mapping[str, Sequence[str]]
) -> list[Problem]:
    """A problem for every reference whose value is not among ``known[kind]`` (kinds missing
    from ``known`` are not checked), each with a "did you mean" when one is close."""
    problems = []
    for ref in references:
        names = known.get(ref.kind)
        if names is None or ref.value in names:
            continue
        message = did_you_mean(ref.value, names, NOUNS.get(ref.kind, ref.kind))
        problems.append(Problem(ref.source, ref.row, ref.column, message, ref.value))
    return problems


def duplicate_problems(
    source: str, column: str, rows: Iterable[tuple[int | None, str]], what: str
) -> list[Problem]:
    """A problem for every row repeating a name (or key) given on an earlier row."""
    first: dict[str, int | None] = {}
    problems = []
    for row, name in rows:
        if name in first:
            earlier = f" (first on row {first[name]})" if first[name] is not None else ""
            problems.append(Problem(source, row, column, f"{what} given twice{earlier}", name))
        else:
            first[name] = row
    return problems


def scenario_references(scenario: Scenario, source: str = "scenario") -> list[Reference]:
    """Every id a parsed scenario uses, located by JSON path (row = position from 1)."""
    refs = []
    for i, d in enumerate(scenario.demand, start=1):
        refs.append(Reference(source, i, "demand.period", "period", d.period))
        refs.append(Reference(source, i, "demand.workload_class", "class", d.workload_class))
    for i, option in enumerate(scenario.racks, start=1):
        refs.append(Reference(source, i, "racks.rack", "rack", option.rack))
        for field in ("first_period", "existing_retire_period"):
            value = getattr(option, field)
            if value is not None:
                refs.append(Reference(source, i, f"racks.{field}", "period", value))
    for i, cls in enumerate(scenario.classes, start=1):
        refs.append(Reference(source, i, "classes.llm", "llm", cls.llm))
    for i, m in enumerate(scenario.measured_rates, start=1):
        refs.append(
            Reference(source, i, "measured_rates.workload_class", "class", m.workload_class)
        )
        refs.append(Reference(source, i, "measured_rates.rack", "rack", m.rack))
    return refs


def known_ids(
    periods: Iterable[str], classes: Iterable[str], catalog: Catalog | None
) -> dict[str, list[str]]:
    """The names references may use (rack and LLM ids only when a catalog is given)."""
    known = {"period": list(periods), "class": list(classes)}
    if catalog is not None:
        known["rack"] = list(catalog.racks)
        known["llm"] = list(catalog.llms)
    return known


def validate_references(scenario: Scenario, catalog: Catalog | None) -> list[Problem]:
    """Every unknown period, class, rack or LLM id in ``scenario`` (racks and LLMs against
    ``catalog``), each once with its location and a "did you mean"; [] when all resolve."""
    known = known_ids(
        (p.name for p in scenario.periods), (c.name for c in scenario.classes), catalog
    )
    problems = reference_problems(scenario_references(scenario), known)
    return list(dict.fromkeys(problems))


def scenario_warnings(scenario: Scenario, source: str = "forecast") -> list[str]:
    """Silent defaults worth a word: class × period pairs without a forecast row (zero
    demand there), and the template's example measurement left in the rates table."""
    given = {(d.workload_class, d.period) for d in scenario.demand}
    warnings = []
    for cls in scenario.classes:
        missing = [p.name for p in scenario.periods if (cls.name, p.name) not in given]
        if missing:
            warnings.append(
                f"{source}: class '{cls.name}' has no forecast row for {', '.join(missing)}: "
                "its demand there is taken as zero (add rows with 0 to say so)"
            )
    for m in scenario.measured_rates:
        if m.source.strip() == TEMPLATE_RATE_SOURCE:
            warnings.append(
                f"rates: the row for {m.rack} × {m.workload_class} ({m.mode}) is the template's "
                f"example (source '{TEMPLATE_RATE_SOURCE}'), used as a real measurement: delete "
                "it or give its real source"
            )
    return warnings
