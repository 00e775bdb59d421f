"""Calibration: fit a rack family's efficiency factors (η_F, η_B) to measured throughput.

A measured point gives output tokens/s per chip for (rack, LLM, precision, input and
output lengths, optional TTFT/TPOT limits). rackplan predicts the same quantity with
aggregated serving (both phases on one system, as MLPerf runs are), meeting the limits
when given, and compares.

Fit: minimise Σ_i (ln(pred_i / meas_i))² over η_F, η_B ∈ [0.05, 1]: a coarse grid, then
Nelder–Mead from the best grid cell (the objective is piecewise smooth because batch
sizes are integers). Log errors weigh a 2× over- and under-prediction alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy.optimize import minimize

from rackplan.models.base import Frozen
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.llm import LLM
from rackplan.models.operating_points import ReplicaSet
from rackplan.models.serving import aggregated
from rackplan.models.workload import PRECISIONS, PrecisionName, Workload

ETA_MIN, ETA_MAX = 0.05, 1.0
GRID_STEPS = 10
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
    round: str = ""
    """Benchmark round the figure comes from (e.g. MLPerf Inference v5.1)."""
    chips: int | None = Field(default=None, ge=1)
    """Accelerators in the measured system (the divisor of the system's tokens/s)."""
    confidence: str = ""
    """vendor / measured / assumption: how far the figure can be trusted."""
    source: str = ""
    notes: str = ""

    def workload(self) -> Workload:
        """The workload the measurement ran (limits treated as mean targets)."""
        return Workload(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            ttft_ms=self.ttft_ms,
            tpot_ms=self.tpot_ms,
        )


def predict_per_chip(
    rack: RackType, llm: LLM, point: MeasuredPoint, efficiency: EfficiencyFactors
) -> float | None:
    """Predicted output tokens/s per chip (aggregated serving), or None if infeasible."""
    workload = point.workload()
    precision = PRECISIONS[point.precision]
    replicas = ReplicaSet.build(rack, llm, precision, workload, efficiency)
    return aggregated(replicas).output_tokens_per_s_per_chip


@dataclass(frozen=True)
class PointError:
    point: MeasuredPoint
    predicted: float | None
    fitted: bool
    """True if the point was used to fit the factors; False if held out."""

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


def fit_family(points: Sequence[MeasuredPoint], resolve: Resolver) -> EfficiencyFactors:
    """Fit η_F, η_B of one rack family to ``points`` (module docstring)."""
    resolved = [(resolve(p), p) for p in points]

    def loss(eta: np.ndarray) -> float:
        eta_f, eta_b = np.clip(eta, ETA_MIN, ETA_MAX)
        factors = EfficiencyFactors(flops_fraction=float(eta_f), bandwidth_fraction=float(eta_b))
        return sum(
            _log_error(
                predict_per_chip(rack, llm, p, factors), p.measured_output_tokens_per_s_per_chip
            )
            ** 2
            for (rack, llm), p in resolved
        )

    grid = np.linspace(ETA_MIN + 0.05, ETA_MAX, GRID_STEPS)
    best = min(((loss(np.array([f, b])), f, b) for f in grid for b in grid), key=lambda t: t[0])
    result = minimize(
        loss, x0=np.array(best[1:]), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6}
    )
    eta_f, eta_b = np.clip(
        result.x if result.fun <= best[0] else np.array(best[1:]), ETA_MIN, ETA_MAX
    )
    return EfficiencyFactors(
        flops_fraction=round(float(eta_f), 4),
        bandwidth_fraction=round(float(eta_b), 4),
        source=f"fitted by rackplan calibrate to {len(points)} measured point(s)",
        confidence="measured",
    )


def evaluate(
    points: Sequence[MeasuredPoint],
    resolve: Resolver,
    factors_for: Callable[[RackType], EfficiencyFactors],
    fitted_racks: set[str] | None = None,
) -> list[PointError]:
    """Predicted vs measured for every point, with the factors ``factors_for`` gives."""
    errors = []
    for point in points:
        rack, llm = resolve(point)
        predicted = predict_per_chip(rack, llm, point, factors_for(rack))
        fitted = fitted_racks is not None and point.rack in fitted_racks
        errors.append(PointError(point, predicted, fitted))
    return errors
