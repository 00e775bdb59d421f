"""Calibrate efficiency factors against measured points, and validate the catalog's factors."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.calibration import (
    ErrorSummary,
    MeasuredPoint,
    PointError,
    PointKey,
    Resolver,
    evaluate,
    fit_family,
    median_abs_error_pct,
    point_key,
    ratio_errors_pct,
    summarise,
    summarise_by,
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
    fit_keys: set[PointKey]
    """The (rack, LLM, scenario) points the factors were fitted to."""

    def median_error_pct(self, fitted: bool) -> float | None:
        return median_abs_error_pct([e for e in self.errors if e.fitted == fitted])

    def as_json(self) -> dict:
        return {
            "factors": {family: f.model_dump() for family, f in self.factors.items()},
            "points": [_point_json(e) for e in self.errors],
            "median_abs_error_pct_fitted": self.median_error_pct(True),
            "median_abs_error_pct_held_out": self.median_error_pct(False),
            **breakdown_json([e for e in self.errors if not e.fitted], "held_out"),
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


def breakdown_json(errors: Sequence[PointError], label: str) -> dict:
    """Error per family, per model and per scenario type, plus the ratio error across systems
    and the overall summary, under keys prefixed by ``label``."""
    ratios = ratio_errors_pct(errors)
    return {
        f"{label}_overall": summarise(errors).as_json(),
        f"{label}_by_family": {
            k: v.as_json() for k, v in summarise_by(errors, lambda e: e.family).items()
        },
        f"{label}_by_model": {
            k: v.as_json() for k, v in summarise_by(errors, lambda e: e.point.llm).items()
        },
        f"{label}_by_scenario": {
            k: v.as_json() for k, v in summarise_by(errors, lambda e: e.point.scenario).items()
        },
        f"{label}_ratio_error_median_pct": float(np.median(ratios)) if ratios else None,
        f"{label}_ratio_pairs": len(ratios),
    }


def _resolver(catalog: Catalog) -> Resolver:
    def resolve(point: MeasuredPoint) -> tuple[RackType, LLM]:
        return catalog.rack(point.rack), catalog.llm(point.llm)

    return resolve


def fit_factors(
    catalog: Catalog, points: Sequence[MeasuredPoint], fit_keys: set[PointKey]
) -> dict[str, EfficiencyFactors]:
    """Per rack family, factors fitted to its points in ``fit_keys``, starting from the
    catalog's factors for that family; families with no such point keep the catalog's."""
    resolve = _resolver(catalog)
    factors = dict(catalog.efficiency)
    fitting = [p for p in points if point_key(p) in fit_keys]
    for family in sorted({catalog.rack(p.rack).family for p in fitting}):
        family_points = [p for p in fitting if catalog.rack(p.rack).family == family]
        factors[family] = fit_family(family_points, resolve, catalog.efficiency.get(family))
    return factors


def calibrate(
    catalog: Catalog,
    points: Sequence[MeasuredPoint],
    source: str,
    fit_on: Sequence[str] = (),
    fit_keys: set[PointKey] | None = None,
) -> CalibrationReport:
    """Fit η_F, η_B, τ_layer and the overlap exponent per rack family; report errors on fitted
    and held-out points.

    The fitting points are ``fit_keys`` when given (the shipped split: ``load_fit_points``),
    else every point of the ``fit_on`` racks (all racks if empty)."""
    check_points(catalog, points, source)
    unknown = set(fit_on) - set(catalog.racks)
    if unknown:
        raise InputError(
            [Problem("--fit-on", None, None, f"unknown rack id(s): {', '.join(sorted(unknown))}")]
        )
    if fit_keys is None:
        racks = set(fit_on) or {p.rack for p in points}
        fit_keys = {point_key(p) for p in points if p.rack in racks}
    factors = fit_factors(catalog, points, fit_keys)
    errors = evaluate(points, _resolver(catalog), lambda rack: factors[rack.family], fit_keys)
    families = sorted({catalog.rack(k[0]).family for k in fit_keys if k[0] in catalog.racks})
    return CalibrationReport(
        {f: factors[f] for f in families}, _with_family(catalog, errors), fit_keys
    )


def _with_family(catalog: Catalog, errors: list[PointError]) -> list[PointError]:
    return [
        PointError(e.point, e.predicted, e.fitted, catalog.rack(e.point.rack).family)
        for e in errors
    ]


def leave_one_out(
    catalog: Catalog,
    points: Sequence[MeasuredPoint],
    fit_keys: set[PointKey],
    group: Callable[[MeasuredPoint], str],
    pooled: bool,
) -> list[PointError]:
    """Predictions for each group's points from factors fitted without that group.

    Leave-one-model-out (``pooled=False``): for each model M, fit every family on its fitting
    points that are not M's, predict M's points. Leave-one-family-out (``pooled=True``): for
    each family F, fit one set of factors on the fitting points of all other families
    pooled, starting from F's prior, and predict F's points: does the calibration transfer?
    """
    resolve = _resolver(catalog)
    out: list[PointError] = []
    for name in sorted({group(p) for p in points}):
        held = [p for p in points if group(p) == name]
        keys = {k for k in fit_keys if not any(point_key(p) == k for p in held)}
        if pooled:
            family = catalog.rack(held[0].rack).family
            others = [p for p in points if point_key(p) in keys]
            fitted = fit_family(others, resolve, catalog.efficiency.get(family))
            errors = evaluate(held, resolve, lambda rack, f=fitted: f)
        else:
            factors = fit_factors(catalog, points, keys)
            errors = evaluate(held, resolve, lambda rack, f=factors: f[rack.family])
        out += _with_family(catalog, errors)
    return out


RATE_BAND_QUANTILES = (0.1, 0.9)
"""The rate band covers the central 80 % of held-out pred/meas ratios."""
MIN_BAND_PCT = 5.0
"""No side of a band is narrower than this: a handful of held-out points all on one side
does not make the rate exact on the other."""
MIN_POINTS_FOR_BAND = 3


def rate_band_pct(errors: Sequence[PointError]) -> tuple[float, float] | None:
    """(low %, high %) such that the true rate lies in [rate·(1 − low), rate·(1 + high)] for the
    central 80 % of ``errors``: with q10, q90 the quantiles of pred/meas, true = rate/ratio, so
    low = 1 − 1/q90 and high = 1/q10 − 1 (each at least ``MIN_BAND_PCT``). None with fewer
    than 3 points."""
    ratios = [
        e.predicted / e.point.measured_output_tokens_per_s_per_chip for e in errors if e.predicted
    ]
    if len(ratios) < MIN_POINTS_FOR_BAND:
        return None
    q_low, q_high = np.quantile(ratios, RATE_BAND_QUANTILES)
    return (
        max(MIN_BAND_PCT, (1 - 1 / q_high) * 100),
        max(MIN_BAND_PCT, (1 / q_low - 1) * 100),
    )


def with_rate_bands(report: CalibrationReport) -> dict[str, EfficiencyFactors]:
    """The fitted factors, each with the rate band of its family's held-out points."""
    out = {}
    for family, factors in report.factors.items():
        held = [e for e in report.errors if e.family == family and not e.fitted]
        band = rate_band_pct(held)
        if band is None:
            out[family] = factors
            continue
        out[family] = factors.model_copy(
            update={
                "rate_error_low_pct": round(band[0], 1),
                "rate_error_high_pct": round(band[1], 1),
                "source": f"{factors.source}; rate band: central 80 % of {len(held)} held-out "
                "points",
            }
        )
    return out


def cross_validation(
    catalog: Catalog, points: Sequence[MeasuredPoint], fit_keys: set[PointKey]
) -> dict[str, list[PointError]]:
    """Leave-one-model-out and leave-one-family-out predictions (``leave_one_out``)."""
    return {
        "leave_one_model_out": leave_one_out(
            catalog, points, fit_keys, lambda p: p.llm, pooled=False
        ),
        "leave_one_family_out": leave_one_out(
            catalog, points, fit_keys, lambda p: catalog.rack(p.rack).family, pooled=True
        ),
    }


def _summary_rows(summaries: dict[str, ErrorSummary]) -> list[str]:
    rows = ["| group | points | median abs error % | bias (geo-mean pred/meas) | infeasible |"]
    rows.append("|---|---|---|---|---|")
    for name, s in summaries.items():
        median = "—" if s.median_abs_error_pct is None else f"{s.median_abs_error_pct:.1f}"
        bias = "—" if s.bias is None else f"{s.bias:.3f}"
        rows.append(f"| {name} | {s.count} | {median} | {bias} | {s.infeasible} |")
    return rows


def _breakdown_markdown(errors: Sequence[PointError], title: str) -> list[str]:
    lines = [f"### {title}", ""]
    lines += _summary_rows({"all": summarise(errors)})
    for label, group in (
        ("family", lambda e: e.family),
        ("model", lambda e: e.point.llm),
        ("scenario type", lambda e: e.point.scenario),
    ):
        lines += ["", f"By {label}:", "", *_summary_rows(summarise_by(errors, group))]
    ratios = ratio_errors_pct(errors)
    if ratios:
        lines += [
            "",
            f"Median error of the ratio between two systems on the same benchmark: "
            f"**{float(np.median(ratios)):.1f} %** over {len(ratios)} pairs.",
        ]
    return [*lines, ""]


def calibration_markdown(
    report: CalibrationReport,
    factors: dict[str, EfficiencyFactors],
    folds: dict[str, list[PointError]],
) -> str:
    """The fit report (docs/calibration-report.md): factors, split, errors on held-out points
    per family / model / scenario, cross-validation folds and every point."""
    lines = [
        "# Calibration report",
        "",
        "Generated by `rackplan calibrate --cross-validate --report docs/calibration-report.md`;"
        " method and bounds in [calibration.md](calibration.md).",
        "",
        "## Fitted factors",
        "",
        "| family | η_F | η_B | τ_layer µs | overlap p | M½ tokens | rate band | fitted on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, f in factors.items():
        fitted = sum(1 for e in report.errors if e.family == family and e.fitted)
        lines.append(
            f"| {family} | {f.flops_fraction:.3f} | {f.bandwidth_fraction:.3f} | "
            f"{f.layer_overhead_us:.1f} | {f.overlap_exponent:.2f} | "
            f"{f.gemm_half_efficiency_tokens:.0f} | "
            f"−{f.rate_error_low_pct:.0f} % / +{f.rate_error_high_pct:.0f} % | {fitted} points |"
        )
    lines += ["", "## Held-out points (not fitted)", ""]
    lines += _breakdown_markdown([e for e in report.errors if not e.fitted], "Held out")
    titles = {
        "leave_one_model_out": "Leave one model out (each model predicted by factors fitted "
        "without it)",
        "leave_one_family_out": "Leave one family out (each family predicted by factors fitted "
        "on the other families only)",
    }
    if folds:
        lines += ["## Cross-validation", ""]
        for name, errors in folds.items():
            lines += _breakdown_markdown(errors, titles.get(name, name))
    lines += [
        "## Every point",
        "",
        "| rack | model | scenario | measured tok/s/chip | predicted | error % | fitted |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in report.errors:
        predicted = "infeasible" if e.predicted is None else f"{e.predicted:,.0f}"
        error = "—" if e.error_pct is None else f"{e.error_pct:+.1f}"
        lines.append(
            f"| {e.point.rack} | {e.point.llm} | {e.point.scenario} | "
            f"{e.point.measured_output_tokens_per_s_per_chip:,.0f} | {predicted} | {error} | "
            f"{'yes' if e.fitted else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def validate(catalog: Catalog, points: Sequence[MeasuredPoint], source: str) -> list[PointError]:
    """Predicted vs measured with the catalog's current efficiency factors (none fitted)."""
    check_points(catalog, points, source)
    errors = evaluate(points, _resolver(catalog), catalog.efficiency_for, fitted_keys=set())
    return _with_family(catalog, errors)


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
