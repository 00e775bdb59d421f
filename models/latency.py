"""Latency statistics: from the model's mean step times to the percentile an SLA states.

Users and MLPerf state TTFT and TPOT limits as percentiles (p99, p90); the roofline gives
mean times. ``Workload.sla_percentile`` says which statistic a target bounds, and this
module converts:

- **TTFT** = S + W_p, with S the service time of a prompt (its prefill pass, or its share
  of aggregated steps) and W_p the p-quantile of the wait in an M/D/1 queue at
  utilisation ρ. The mean wait is ρ·S / (2·(1 − ρ)) (Pollaczek–Khinchine); the quantile
  uses the Cramér–Lundberg tail of the M/G/1 wait, exact in its exponential decay:

      P(W > t) ≈ C·e^(−θ·t),  θ·S = x solving ρ·(e^x − 1) = x,  C = (1 − ρ) / (ρ·e^x − 1)
      W_p = S·ln(C / (1 − p)) / x   if C > 1 − p, else 0.

- **TPOT**: a request's mean TPOT varies with its context length and with the prefill
  chunks that share its steps. It is taken as lognormal around the mean with log-standard
  deviation σ = ``TPOT_LOG_SD``: TPOT_p = mean·exp(z_p·σ − σ²/2) (p99: ×1.31, p90: ×1.16).
  σ is an assumption (documented in docs/physics.md), not fitted.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from rackplan.models.workload import SlaPercentile, Workload

TPOT_LOG_SD = 0.12
"""σ of ln(per-request mean TPOT) around its mean (assumption: ±12 % request to request)."""

PERCENTILE_PROBABILITY: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def queueing_factor(utilisation: float) -> float:
    """Mean sojourn time / service time of an M/D/1 queue at utilisation ρ.

    Poisson arrivals, deterministic service S: mean wait W_q = ρ·S / (2·(1 − ρ)), so
    TTFT = S·(1 + ρ / (2·(1 − ρ))). At ρ = 0.8 this is 3·S; at ρ = 0.5, 1.5·S.
    """
    if not 0 <= utilisation < 1:
        raise ValueError("utilisation must be in [0, 1)")
    return 1.0 + utilisation / (2.0 * (1.0 - utilisation))


def md1_decay_rate(utilisation: float) -> float:
    """x = θ·S > 0 solving ρ·(e^x − 1) = x (Newton from a point right of the root)."""
    rho = utilisation
    if not 0 < rho < 1:
        raise ValueError("utilisation must be in (0, 1)")
    x = max(2.0 * (1.0 - rho) / rho, -math.log(rho)) + 1.0
    for _ in range(60):
        f = rho * math.expm1(x) - x
        step = f / (rho * math.exp(x) - 1.0)
        x -= step
        if abs(step) < 1e-12 * x:
            break
    return x


def md1_wait_quantile_factor(utilisation: float, probability: float) -> float:
    """W_p / S: the p-quantile of the M/D/1 wait in units of the service time (see module)."""
    if utilisation <= 0:
        return 0.0
    x = md1_decay_rate(utilisation)
    constant = (1.0 - utilisation) / (utilisation * math.exp(x) - 1.0)
    tail = 1.0 - probability
    return math.log(constant / tail) / x if constant > tail else 0.0


def ttft_factor(workload: Workload) -> float:
    """TTFT / service time at the workload's SLA statistic (1 + wait/S; mean: M/D/1 mean)."""
    return ttft_factor_for(workload.sla_percentile, workload.max_utilisation)


def ttft_factor_for(percentile: SlaPercentile, utilisation: float) -> float:
    if percentile == "mean":
        return queueing_factor(utilisation)
    return 1.0 + md1_wait_quantile_factor(utilisation, PERCENTILE_PROBABILITY[percentile])


def tpot_factor(percentile: SlaPercentile) -> float:
    """TPOT at ``percentile`` / mean TPOT: exp(z_p·σ − σ²/2) (1 for the mean)."""
    if percentile == "mean":
        return 1.0
    z = NormalDist().inv_cdf(PERCENTILE_PROBABILITY[percentile])
    return math.exp(z * TPOT_LOG_SD - TPOT_LOG_SD**2 / 2.0)
