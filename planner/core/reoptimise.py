"""Re-solving after a what-if change without a new branch and bound, when a proof is cheap.

After a parameter change (a power cap, a budget, demand, a price) the previous plan is often
still feasible, and still within the requested gap of the optimum. HiGHS would find that out
too — it accepts the plan as a MIP start — but only after presolving and solving its root LP
from scratch (plan M: 661 simplex iterations, ~60 ms of a ~90 ms re-solve).

The proof needs two numbers, both cheap when the previous solve is kept:

* the **incumbent** x (the previous plan) is feasible for the changed model: every column
  within its bounds and every row activity ``a_i · x`` within ``[L_i, U_i]``, up to
  ``FEASIBILITY_TOLERANCE``; its objective is ``c · x + offset``;
* a **bound**: the changed model's LP relaxation, re-solved by dual simplex from the previous
  relaxation's optimal basis — a parameter change moves right-hand sides and coefficients, not
  the shape, so the old basis is a few pivots from optimal.

If (objective − bound) / |objective| ≤ the requested relative gap (for a maximisation:
(bound − objective) / |objective|), the previous plan is returned with that proven gap — the
same stopping rule HiGHS applies at its root. Otherwise the caller runs the full MIP (with the
plan as its MIP start) and nothing was lost but a few milliseconds. The bound is the LP
relaxation's, never tighter than HiGHS's root bound after cuts, so the reported gap is honest
(at worst a little wider than HiGHS would have proved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np

from rackplan.planner.core.start import relative_gap

FEASIBILITY_TOLERANCE = 1e-6
"""Absolute tolerance on column bounds and row activities, HiGHS's own default for MIP
feasibility (``mip_feasibility_tolerance``)."""


@dataclass(frozen=True)
class Proof:
    """A plan and a bound that prove it within the requested gap (solver units)."""

    values: np.ndarray
    objective: float
    bound: float
    gap: float


def relaxed(lp: highspy.HighsLp) -> highspy.HighsLp:
    """``lp`` with every integrality requirement dropped (its LP relaxation)."""
    lp.integrality_ = []
    return lp


def row_activities(lp: highspy.HighsLp, x: np.ndarray) -> np.ndarray:
    """A · x for the constraint matrix of ``lp``, stored column-wise or row-wise.

    Only the first ``start_[-1]`` entries of ``index_``/``value_`` are the matrix: after a
    coefficient is set to 0 HiGHS drops it but may leave stale entries beyond that."""
    matrix = lp.a_matrix_
    starts = np.asarray(matrix.start_, dtype=np.int64)
    entries = int(starts[-1]) if len(starts) else 0
    index = np.asarray(matrix.index_, dtype=np.int64)[:entries]
    values = np.asarray(matrix.value_, dtype=float)[:entries]
    counts = np.diff(starts)
    if matrix.format_ == highspy.MatrixFormat.kColwise:
        products = values * np.repeat(x, counts)
        return np.bincount(index, weights=products, minlength=lp.num_row_)
    rows = np.repeat(np.arange(lp.num_row_), counts)  # row-wise: index_ holds columns
    return np.bincount(rows, weights=values * x[index], minlength=lp.num_row_)


def is_feasible(
    lp: highspy.HighsLp, x: np.ndarray, tolerance: float = FEASIBILITY_TOLERANCE
) -> bool:
    """x within every column bound and every row's [lower, upper], up to ``tolerance``."""
    if len(x) != lp.num_col_:
        return False
    lower, upper = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    if np.any(x < lower - tolerance) or np.any(x > upper + tolerance):
        return False
    activity = row_activities(lp, x)
    rows_lower, rows_upper = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    return bool(
        np.all(activity >= rows_lower - tolerance) and np.all(activity <= rows_upper + tolerance)
    )


def objective_value(lp: highspy.HighsLp, x: np.ndarray) -> float:
    """c · x + offset (solver units)."""
    return float(np.dot(np.asarray(lp.col_cost_), x) + lp.offset_)


def proven_gap(objective: float, bound: float, maximise: bool) -> float:
    """The relative gap HiGHS reports (``start.relative_gap``), never negative: a bound within
    rounding of the objective counts as 0."""
    return max(relative_gap(objective, bound, maximise), 0.0)


@dataclass(frozen=True)
class Relaxation:
    """An optimal solution of a model's LP relaxation (solver units)."""

    values: np.ndarray
    bound: float


class WarmRelaxation:
    """The LP relaxation of a model that changes by parameters only, re-solved by dual simplex
    from the previous optimal basis.

    Each solve uses a fresh HiGHS instance (≈0.05 ms) and carries only the basis over: one
    reused instance compares ``time_limit`` with its run time summed over every solve, and
    would refuse all solves once a session's LPs add up to the limit."""

    def __init__(self) -> None:
        self.basis: highspy.HighsBasis | None = None

    def solve(self, lp: highspy.HighsLp, time_limit_s: float) -> Relaxation | None:
        """The optimum of ``lp``'s relaxation, or None when it is not solved to optimality
        within ``time_limit_s`` (then the caller runs the full MIP)."""
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("time_limit", max(time_limit_s, 0.01))
        h.passModel(relaxed(lp))
        if self.basis is not None:
            h.setBasis(self.basis)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            self.basis = None
            return None
        self.basis = h.getBasis()
        value = h.getInfo().objective_function_value
        if not math.isfinite(value):
            return None
        return Relaxation(np.array(h.getSolution().col_value), value)


def free_integers(lp: highspy.HighsLp) -> int:
    """Integer columns whose bounds still leave a choice (lower < upper): with none, the model
    is an LP and its relaxation's optimum is exact."""
    if not len(lp.integrality_):
        return 0
    integer = np.array([t == highspy.HighsVarType.kInteger for t in lp.integrality_])
    free = np.asarray(lp.col_lower_) < np.asarray(lp.col_upper_)
    return int(np.count_nonzero(integer & free))


def exact(relaxation: Relaxation) -> Proof:
    """The relaxation's optimum as the answer of a model without free integers (gap 0)."""
    return Proof(relaxation.values, relaxation.bound, relaxation.bound, 0.0)


def proof_of(
    lp: highspy.HighsLp, incumbent: np.ndarray, relaxation: Relaxation, rel_gap: float
) -> Proof | None:
    """A ``Proof`` that ``incumbent`` (already checked feasible for ``lp``) is within
    ``rel_gap`` of the relaxation's bound, or None when the gap is wider."""
    objective = objective_value(lp, incumbent)
    maximise = lp.sense_ == highspy.ObjSense.kMaximize
    gap = proven_gap(objective, relaxation.bound, maximise)
    if gap > rel_gap:
        return None
    return Proof(incumbent, objective, relaxation.bound, gap)
