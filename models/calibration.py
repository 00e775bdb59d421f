"""Calibration: fit a rack family's efficiency factors to measured throughput, within
physical bounds.

A measured point gives output tokens/s per chip for (rack, LLM, precision, input and
output lengths, optional TTFT/TPOT limits at a percentile). rackplan predicts the same
quantity with aggregated serving (both phases on one system, as MLPerf runs are), meeting
the limits when given, and compares.

Fitted parameters and their bounds (``FIT_BOUNDS``; docs/calibration.md gives the reasons):

    η_F ∈ [0.30, 0.85]    achieved share of dense FLOP/s
    η_B ∈ [0.50, 0.95]    achieved share of memory bandwidth
    τ_layer ∈ [2, 40] µs  fixed cost per layer per step
    p ∈ [1, 16]           math/memory overlap of a kernel (1: none, ∞: the roofline's max)

Everything else (κ, τ_step, τ_req, engine caps, c_act, MoE router skew) stays at the
family's catalog value. The fit is a maximum a-posteriori estimate: with at most four points per
family, a weak Gaussian prior around ``PRIOR_CENTRE`` keeps it well posed:

    minimise  Σ_i ln²(pred_i / meas_i) + PRIOR_WEIGHT · Σ_j ((θ_j − θ_j⁰) / σ_j)²

by bounded Powell search from the prior (the objective is piecewise smooth because batch
sizes are integers). Log errors weigh a 2× over- and under-prediction alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from rackplan.models.base import Confidence, Frozen
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.llm import LLM
from rackplan.models.operating_points import ReplicaSet
from rackplan.models.serving import aggregated, disaggregated
from rackplan.models.workload import PRECISIONS, PrecisionName, SlaPercentile, Workload

FIT_BOUNDS: dict[str, tuple[float, float]] = {
    "flops_fraction": (0.30, 0.85),
    "bandwidth_fraction": (0.50, 0.95),
    "layer_overhead_us": (2.0, 40.0),
    "overlap_exponent": (1.0, 16.0),
}
"""Physical bounds of the fitted parameters (docs/calibration.md)."""
PRIOR_CENTRE: dict[str, float] = {
    "flops_fraction": 0.55,
    "bandwidth_fraction": 0.71,
    "layer_overhead_us": 12.0,
    "overlap_exponent": 4.0,
}
"""Where the fit starts and what the prior pulls toward, whatever the catalog holds, so a
re-run of ``rackplan calibrate`` reproduces the shipped factors (docs/calibration.md)."""
PRIOR_SD: dict[str, float] = {
    "flops_fraction": 0.15,
    "bandwidth_fraction": 0.12,
    "layer_overhead_us": 10.0,
    "overlap_exponent": 3.0,
}
"""Prior standard deviations, in each parameter's unit."""
PRIOR_WEIGHT = 0.01
"""Weight of the prior term against the squared log errors (weak: 0.01 per σ² away)."""
INFEASIBLE_LOG_ERROR = 5.0
"""Log error charged when the model finds no feasible point (e^5 ≈ 150× off)."""


class MeasuredPoint(Frozen):
    """One measured throughput figure, as in a calibration CSV row."""

    rack: str
    llm: str
    precision: PrecisionName = "fp8"
    input_tokens: float = Field(gt=0)
    output_tokens: float = Field(ge=1)
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    measured_output_tokens_per_s_per_chip: float = Field(gt=0)
    scenario: str = ""
    serving: Literal["aggregated", "disaggregated"] = "aggregated"
    """How the submission served: both phases on the same GPUs, or prefill and decode on
    separate GPUs of the system (NVIDIA's disaggregated NVL72 submissions)."""
    sla_percentile: SlaPercentile = "p99"
    """Statistic the TTFT/TPOT limits bound (MLPerf Server and Interactive: p99)."""
    speculative_draft_tokens: int = Field(default=0, ge=0, le=16)
    speculative_acceptance: float = Field(default=0.0, ge=0, lt=1)
    round: str = ""
    """Benchmark round the figure comes from (e.g. MLPerf Inference v5.1)."""
    chips: int | None = Field(default=None, ge=1)
    """Accelerators in the measured system (the divisor of the system's tokens/s)."""
    confidence: str = ""
    """vendor / measured / assumption: how far the figure can be trusted."""
    source: str = ""
    notes: str = ""

    def workload(self, utilisation: float = 0.8) -> Workload:
        """The workload the measurement ran, its limits at ``sla_percentile``, queued at
        ``utilisation``."""
        return Workload(
            max_utilisation=utilisation,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            ttft_ms=self.ttft_ms,
            tpot_ms=self.tpot_ms,
            sla_percentile=self.sla_percentile,
            speculative_draft_tokens=self.speculative_draft_tokens,
            speculative_acceptance=self.speculative_acceptance,
        )


SERVER_UTILISATIONS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
"""Loads tried for a point with a TTFT limit (MLPerf Server/Interactive report the highest
query rate whose p99 holds)."""


def predict_per_chip(
    rack: RackType, llm: LLM, point: MeasuredPoint, efficiency: EfficiencyFactors
) -> float | None:
    """Predicted output tokens/s per chip in the point's serving mode, or None if infeasible.

    Without a TTFT limit (Offline) this is the capacity. With one, the measurement is the
    delivered rate at the highest load whose TTFT percentile holds: max over ρ of
    ρ·capacity(ρ), ρ in ``SERVER_UTILISATIONS`` (queueing delay grows with ρ).
    """
    precision = PRECISIONS[point.precision]
    serve = disaggregated if point.serving == "disaggregated" else aggregated
    if point.ttft_ms is None:
        replicas = ReplicaSet.build(rack, llm, precision, point.workload(), efficiency)
        return serve(replicas).output_tokens_per_s_per_chip
    best = None
    for rho in SERVER_UTILISATIONS:
        replicas = ReplicaSet.build(rack, llm, precision, point.workload(rho), efficiency)
        capacity = serve(replicas).output_tokens_per_s_per_chip
        if capacity is not None and (best is None or rho * capacity > best):
            best = rho * capacity
    return best


@dataclass(frozen=True)
class PointError:
    point: MeasuredPoint
    predicted: float | None
    fitted: bool
    """True if the point was used to fit the factors; False if held out."""
    family: str = ""
    """The rack's efficiency family (filled in by the caller that knows the catalog)."""

    @property
    def error_pct(self) -> float | None:
        """(predicted − measured) / measured × 100."""
        if self.predicted is None:
            return None
        measured = self.point.measured_output_tokens_per_s_per_chip
        return (self.predicted - measured) / measured * 100.0


def median_abs_error_pct(errors: Sequence[PointError]) -> float | None:
    """Median of |error %| over points with a prediction (None if there are none)."""
    values = [abs(e.error_pct) for e in errors if e.error_pct is not None]
    return float(np.median(values)) if values else None


Resolver = Callable[[MeasuredPoint], tuple[RackType, LLM]]


def _log_error(predicted: float | None, measured: float) -> float:
    if predicted is None or predicted <= 0:
        return INFEASIBLE_LOG_ERROR
    return math.log(predicted / measured)


def fit_family(
    points: Sequence[MeasuredPoint],
    resolve: Resolver,
    prior: EfficiencyFactors | None = None,
) -> EfficiencyFactors:
    """Fit η_F, η_B, τ_layer and the overlap exponent p of one rack family to ``points`` within
    ``FIT_BOUNDS``,
    starting from and weakly pulled toward ``PRIOR_CENTRE`` (module docstring). Returns
    ``prior`` (the family's other engine terms) with the fitted values replaced."""
    prior = prior or EfficiencyFactors(flops_fraction=0.55, bandwidth_fraction=0.71)
    resolved = [(resolve(p), p) for p in points]
    names = list(FIT_BOUNDS)
    start = np.array([_clip_to_bounds(name, PRIOR_CENTRE[name]) for name in names])

    def factors_at(theta: np.ndarray) -> EfficiencyFactors:
        values = {n: float(np.clip(v, *FIT_BOUNDS[n])) for n, v in zip(names, theta, strict=True)}
        return prior.model_copy(update=values)

    def loss(theta: np.ndarray) -> float:
        factors = factors_at(theta)
        data = sum(
            _log_error(
                predict_per_chip(rack, llm, p, factors), p.measured_output_tokens_per_s_per_chip
            )
            ** 2
            for (rack, llm), p in resolved
        )
        penalty = sum(
            ((t - s0) / PRIOR_SD[n]) ** 2 for n, t, s0 in zip(names, theta, start, strict=True)
        )
        return data + PRIOR_WEIGHT * penalty

    from scipy.optimize import minimize  # lazy: scipy costs ~0.8 s of every CLI start

    result = minimize(
        loss,
        x0=start,
        method="Powell",
        bounds=[FIT_BOUNDS[n] for n in names],
        options={"xtol": 1e-3, "ftol": 1e-6, "maxfev": 600},
    )
    best = result.x if result.fun <= loss(start) else start
    fitted = factors_at(_snap_to_bounds(names, best))
    return fitted.model_copy(
        update={
            **{n: round(float(getattr(fitted, n)), 4) for n in names},
            "source": f"fitted by rackplan calibrate to {len(points)} measured point(s)",
            "confidence": Confidence.measured,
        }
    )


SNAP_SHARE = 1e-3
"""A fitted value within this share of its bound's width of a bound is reported at the bound
(the optimiser stops a hair inside it)."""


def _snap_to_bounds(names: list[str], theta: np.ndarray) -> np.ndarray:
    snapped = theta.copy()
    for i, name in enumerate(names):
        low, high = FIT_BOUNDS[name]
        tolerance = SNAP_SHARE * (high - low)
        if abs(theta[i] - low) <= tolerance:
            snapped[i] = low
        elif abs(theta[i] - high) <= tolerance:
            snapped[i] = high
    return snapped


def _clip_to_bounds(name: str, value: float) -> float:
    low, high = FIT_BOUNDS[name]
    return min(max(value, low), high)


PointKey = tuple[str, str, str]


def point_key(point: MeasuredPoint) -> PointKey:
    """(rack, LLM, scenario): what names one measured point in a fit split."""
    return point.rack, point.llm, point.scenario


def evaluate(
    points: Sequence[MeasuredPoint],
    resolve: Resolver,
    factors_for: Callable[[RackType], EfficiencyFactors],
    fitted_keys: set[PointKey] | None = None,
) -> list[PointError]:
    """Predicted vs measured for every point, with the factors ``factors_for`` gives; a point
    whose key is in ``fitted_keys`` is marked as used for fitting."""
    errors = []
    for point in points:
        rack, llm = resolve(point)
        predicted = predict_per_chip(rack, llm, point, factors_for(rack))
        fitted = fitted_keys is not None and point_key(point) in fitted_keys
        errors.append(PointError(point, predicted, fitted))
    return errors


@dataclass(frozen=True)
class ErrorSummary:
    """Error statistics of a group of points.

    ``median_abs_error_pct`` = median |pred/meas − 1|·100 over feasible predictions;
    ``bias`` = geometric mean of pred/meas (1: unbiased; 1.2: 20 % optimistic);
    ``infeasible`` counts points the model could not serve within their limits.
    """

    count: int
    median_abs_error_pct: float | None
    bias: float | None
    infeasible: int

    def as_json(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "median_abs_error_pct": self.median_abs_error_pct,
            "bias": self.bias,
            "infeasible": self.infeasible,
        }


def summarise(errors: Sequence[PointError]) -> ErrorSummary:
    """``ErrorSummary`` of ``errors`` (see its docstring for the formulas)."""
    ratios = [
        e.predicted / e.point.measured_output_tokens_per_s_per_chip for e in errors if e.predicted
    ]
    if not ratios:
        return ErrorSummary(len(errors), None, None, len(errors))
    logs = np.log(ratios)
    return ErrorSummary(
        count=len(errors),
        median_abs_error_pct=float(np.median(np.abs(np.asarray(ratios) - 1.0)) * 100.0),
        bias=float(np.exp(logs.mean())),
        infeasible=len(errors) - len(ratios),
    )


def summarise_by(
    errors: Sequence[PointError], group: Callable[[PointError], str]
) -> dict[str, ErrorSummary]:
    """``summarise`` per value of ``group`` (sorted by group name)."""
    groups: dict[str, list[PointError]] = {}
    for error in errors:
        groups.setdefault(group(error), []).append(error)
    return {name: summarise(groups[name]) for name in sorted(groups)}


def ratio_errors_pct(errors: Sequence[PointError]) -> list[float]:
    """Errors of the *ratio* between systems on the same benchmark, in %.

    For every benchmark (LLM, scenario) and every pair of systems a, b measured on it with a
    feasible prediction: |(pred_a / pred_b) / (meas_a / meas_b) − 1|·100. This is what a
    buyer comparing two racks relies on, whatever the absolute level.
    """
    by_benchmark: dict[tuple[str, str], list[PointError]] = {}
    for error in errors:
        if error.predicted:
            key = (error.point.llm, error.point.scenario)
            by_benchmark.setdefault(key, []).append(error)
    out = []
    for group in by_benchmark.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                predicted = a.predicted / b.predicted
                measured = (
                    a.point.measured_output_tokens_per_s_per_chip
                    / b.point.measured_output_tokens_per_s_per_chip
                )
                out.append(abs(predicted / measured - 1.0) * 100.0)
    return out
