"""Calibrate efficiency factors against measured points, and validate the catalog's factors."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.calibration import (
    MeasuredPoint,
    PointError,
    evaluate,
    fit_family,
    median_abs_error_pct,
)
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.llm import LLM


def check_points(catalog: Catalog, points: Sequence[MeasuredPoint], source: str) -> None:
    """Every point must name a known rack and LLM (all unknown ids reported at once)."""
    problems = []
    for row, point in enumerate(points, start=2):
        if point.rack not in catalog.racks:
            problems.append(
                Problem(
                    source,
                    row,
                    "rack",
                    "unknown rack id; see `rackplan catalog list racks`",
                    point.rack,
                )
            )
        if point.llm not in catalog.llms:
            problems.append(
                Problem(
                    source,
                    row,
                    "llm",
                    "unknown LLM id; see `rackplan catalog list llms`",
                    point.llm,
                )
            )
    if problems:
        raise InputError(problems)


@dataclass(frozen=True)
class CalibrationReport:
    factors: dict[str, EfficiencyFactors]
    """Fitted factors per family (families with no fitting point keep the catalog's)."""
    errors: list[PointError]

    def median_error_pct(self, fitted: bool) -> float | None:
        return median_abs_error_pct([e for e in self.errors if e.fitted == fitted])

    def as_json(self) -> dict:
        return {
            "factors": {family: f.model_dump() for family, f in self.factors.items()},
            "points": [_point_json(e) for e in self.errors],
            "median_abs_error_pct_fitted": self.median_error_pct(True),
            "median_abs_error_pct_held_out": self.median_error_pct(False),
        }


def _point_json(error: PointError) -> dict:
    point = error.point
    return {
        "rack": point.rack,
        "llm": point.llm,
        "scenario": point.scenario,
        "precision": point.precision,
        "measured_output_tokens_per_s_per_chip": point.measured_output_tokens_per_s_per_chip,
        "predicted_output_tokens_per_s_per_chip": error.predicted,
        "error_pct": error.error_pct,
        "fitted": error.fitted,
    }


def calibrate(
    catalog: Catalog,
    points: Sequence[MeasuredPoint],
    source: str,
    fit_on: Sequence[str] = (),
) -> CalibrationReport:
    """Fit η_F, η_B per rack family on the points of ``fit_on`` racks (all if empty);
    report errors on fitted and held-out points."""
    check_points(catalog, points, source)
    fit_racks = set(fit_on) or {p.rack for p in points}
    unknown = fit_racks - set(catalog.racks)
    if unknown:
        raise InputError(
            [Problem("--fit-on", None, None, f"unknown rack id(s): {', '.join(sorted(unknown))}")]
        )

    def resolve(point: MeasuredPoint) -> tuple[RackType, LLM]:
        return catalog.rack(point.rack), catalog.llm(point.llm)

    factors = dict(catalog.efficiency)
    families = sorted({catalog.rack(p.rack).family for p in points if p.rack in fit_racks})
    for family in families:
        family_points = [
            p for p in points if p.rack in fit_racks and catalog.rack(p.rack).family == family
        ]
        factors[family] = fit_family(family_points, resolve, catalog.efficiency.get(family))
    errors = evaluate(points, resolve, lambda rack: factors[rack.family], fit_racks)
    return CalibrationReport({f: factors[f] for f in families}, errors)


def validate(catalog: Catalog, points: Sequence[MeasuredPoint], source: str) -> list[PointError]:
    """Predicted vs measured with the catalog's current efficiency factors (none fitted)."""
    check_points(catalog, points, source)

    def resolve(point: MeasuredPoint) -> tuple[RackType, LLM]:
        return catalog.rack(point.rack), catalog.llm(point.llm)

    return evaluate(points, resolve, catalog.efficiency_for, fitted_racks=set())


def efficiency_csv(factors: dict[str, EfficiencyFactors]) -> str:
    """Factors as an efficiency.csv text (every column; usable with ``--efficiency``)."""
    columns = ["family", *EfficiencyFactors.model_fields]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for family, f in sorted(factors.items()):
        values = f.model_dump(mode="json")
        writer.writerow([family, *(values[name] for name in columns[1:])])
    return buffer.getvalue()
