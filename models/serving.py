"""End-to-end serving of one workload on one rack type, meeting its SLAs.

- **Disaggregated**: prefill replicas and decode replicas on separate racks of the same
  type; the KV cache moves between them (``ReplicaSet.prefill_points``). For a
  prompt:output ratio ℓ = L/O, serving 1 output token/s needs 1/R_d decode racks and
  ℓ/R_p prefill racks, so output tokens/s per rack = 1 / (1/R_d + ℓ/R_p) and the
  prefill:decode rack ratio is ℓ·R_d / R_p.
- **Aggregated**: both phases on the same replicas with chunked prefill
  (``roofline.aggregated_step``): TPOT = t_step(b), which includes the prefill
  interference; a new prompt is spread over O/b steps, so
  TTFT = max(1, O/b)·t_step(b)·q(ρ), with q the M/D/1 factor.

Both pick, per replica size, the largest batch meeting the SLAs: throughput per rack
never falls with batch size, and the latencies only rise with it (for aggregated TTFT,
beyond b = O), so the largest feasible batch is the best one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rackplan.models.base import Phase
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.latency import tpot_factor, ttft_factor
from rackplan.models.llm import LLM
from rackplan.models.operating_points import ReplicaSet, largest_feasible
from rackplan.models.roofline import aggregated_step, speculative_tokens_per_step
from rackplan.models.workload import Precision, Workload


@dataclass(frozen=True)
class ServingResult:
    """End-to-end output throughput of one serving mode, or the reason it fails."""

    mode: str
    output_tokens_per_s_per_rack: float | None
    output_tokens_per_s_per_chip: float | None
    reason: str | None = None
    prefill_racks_per_decode_rack: float | None = None
    prefill: dict | None = None
    decode: dict | None = None
    aggregated: dict | None = None

    def as_dict(self) -> dict:
        """JSON shape: both rates (null when no configuration meets the SLAs) and ``reason``."""
        out: dict[str, object] = {
            "output_tokens_per_s_per_rack": self.output_tokens_per_s_per_rack,
            "output_tokens_per_s_per_chip": self.output_tokens_per_s_per_chip,
            "reason": self.reason,
        }
        for key in ("prefill_racks_per_decode_rack", "prefill", "decode", "aggregated"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class PhaseChoice:
    """The best point of one phase meeting its latency target, or why there is none."""

    point: dict | None
    reason: str | None


def unfit_reason(replicas: ReplicaSet, replica: str, phase: Phase = Phase.decode) -> str:
    """Why no request can be served on any ``replica`` ("prefill replica", "replica"): the
    weights do not fit at all, or they do but one request's context (KV cache: the prompt in
    prefill, prompt + output in decode) does not fit beside them."""
    llm, rack, workload = replicas.llm.id, replicas.rack.id, replicas.workload
    if len(replicas) == 0:
        return f"{llm} does not fit a {replica} on {rack}"
    tokens = workload.input_tokens
    if phase is Phase.decode:
        tokens += workload.output_tokens
    return (
        f"{llm} fits a {replica} on {rack}, but not one request's KV cache beside it "
        f"({tokens:,.0f} tokens of context)"
    )


def best_point(replicas: ReplicaSet, phase: Phase, target_ms: float | None) -> PhaseChoice:
    """Highest tokens/s per rack of ``phase`` with latency ≤ ``target_ms`` over replica sizes."""
    label = "TPOT" if phase is Phase.decode else "TTFT"
    limits = replicas.batch_limits(phase)
    if len(replicas) == 0 or not (limits >= 1).any():
        return PhaseChoice(None, unfit_reason(replicas, f"{phase.value} replica", phase))
    size, batch = replicas.best_meeting(phase, target_ms)
    if size.size == 0:
        fits = np.flatnonzero(limits >= 1)
        fastest = replicas.evaluate(phase, fits, np.ones(fits.size))
        i = int(np.argmin(fastest.latency_ms))
        return PhaseChoice(
            None,
            f"{label} target {target_ms:g} ms unreachable on {replicas.rack.id}: best "
            f"{fastest.latency_ms[i]:.3g} ms (batch 1, {int(fastest.chips_per_replica[i])} chips "
            "per replica)",
        )
    points = replicas.evaluate(phase, size, batch)
    return PhaseChoice(points.records()[int(np.argmax(points.tokens_per_s_per_rack))], None)


def disaggregated(replicas: ReplicaSet) -> ServingResult:
    """Prefill and decode on separate racks of one type (module docstring)."""
    mode = "disaggregated"
    rack, workload = replicas.rack, replicas.workload
    missing = [p.value for p in (Phase.prefill, Phase.decode) if not rack.can_serve(p)]
    if missing:
        return ServingResult(
            mode, None, None, f"rack {rack.id} does not serve {', '.join(missing)}"
        )
    prefill = best_point(replicas, Phase.prefill, workload.ttft_ms)
    decode = best_point(replicas, Phase.decode, workload.tpot_ms)
    if prefill.point is None or decode.point is None:
        reason = "; ".join(r for r in (prefill.reason, decode.reason) if r)
        return ServingResult(mode, None, None, reason)
    prefill_rate = float(prefill.point["tokens_per_s_per_rack"])
    decode_rate = float(decode.point["tokens_per_s_per_rack"])
    ratio = workload.input_tokens / workload.output_tokens
    per_rack = 1.0 / (1.0 / decode_rate + ratio / prefill_rate)
    return ServingResult(
        mode,
        per_rack,
        per_rack / rack.chips_per_rack,
        prefill_racks_per_decode_rack=ratio * decode_rate / prefill_rate,
        prefill=prefill.point,
        decode=decode.point,
    )


def aggregated_rates(
    replicas: ReplicaSet, size: np.ndarray, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(output tokens/s per rack, TPOT ms, TTFT ms) of aggregated serving at (size, batch).

    With E tokens accepted per sequence per step (1 without speculative decoding):
    TPOT = t_step(b)/E of ``aggregated_step``; a new prompt is spread over O/(b·E) steps, so
    TTFT = max(1, O/(b·E))·t_step(b)·q; rate = b·E/t_step. TPOT and TTFT are at the SLA
    statistic (``latency.tpot_factor``, ``latency.ttft_factor``).
    """
    workload = replicas.workload
    times = aggregated_step(
        replicas.hw.take(size), replicas.llm, replicas.precision, workload, batch
    )
    step = times.total_s
    tokens_per_step = times.batch * times.tokens_per_sequence
    steps_per_prompt = np.maximum(1.0, workload.output_tokens / tokens_per_step)
    ttft = steps_per_prompt * step * ttft_factor(workload)
    tpot = step / times.tokens_per_sequence * tpot_factor(workload.sla_percentile)
    rate = tokens_per_step / step / replicas.racks_per_replica[size]
    return rate, tpot * 1e3, ttft * 1e3


def aggregated_sla_points(replicas: ReplicaSet) -> list[dict]:
    """Per replica size, the largest batch meeting both SLAs with aggregated serving.

    Below b·E = O the TTFT falls as b grows (a prompt is spread over fewer steps; E tokens are
    accepted per sequence per step), above it rises, so the search for the largest batch treats
    b·E < O as TTFT-feasible and then checks the TTFT of the batch it finds. Each dict:
    batch_size, chips_per_replica, racks_per_replica, output_tokens_per_s_per_rack, tpot_ms,
    ttft_ms, power_kw.
    """
    workload = replicas.workload
    limits = replicas.aggregated_batch_limits()
    accepted = speculative_tokens_per_step(workload)
    if len(replicas) == 0:
        return []

    def meets(size: np.ndarray, batch: np.ndarray) -> np.ndarray:
        _, tpot, ttft = aggregated_rates(replicas, size, batch)
        ok = np.ones(size.size, dtype=bool)
        if workload.tpot_ms:
            ok &= tpot <= workload.tpot_ms
        if workload.ttft_ms:
            # TTFT falls with b while b·E < O (a prompt spreads over fewer steps), then rises
            ok &= (ttft <= workload.ttft_ms) | (batch * accepted < workload.output_tokens)
        return ok

    best = largest_feasible(meets, limits)
    size = np.flatnonzero(best >= 1)
    batch = best[size].astype(float)
    rate, tpot, ttft = aggregated_rates(replicas, size, batch)
    ok = ttft <= workload.ttft_ms if workload.ttft_ms else np.ones(size.size, dtype=bool)
    times = aggregated_step(
        replicas.hw.take(size), replicas.llm, replicas.precision, workload, batch
    )
    rack = replicas.rack
    power = rack.power_kw_idle + (rack.power_kw_at_load - rack.power_kw_idle) * (
        replicas.chips_used_share[size] * times.busy_fraction
    )
    return [
        {
            "batch_size": int(batch[i]),
            "chips_per_replica": int(replicas.chips[size[i]]),
            "racks_per_replica": float(replicas.racks_per_replica[size[i]]),
            "output_tokens_per_s_per_rack": float(rate[i]),
            "tpot_ms": float(tpot[i]),
            "ttft_ms": float(ttft[i]),
            "power_kw": float(power[i]),
        }
        for i in np.flatnonzero(ok)
    ]


def aggregated(replicas: ReplicaSet) -> ServingResult:
    """Both phases on the same replicas; the best replica size's largest batch meeting both SLAs
    (``aggregated_sla_points``)."""
    mode = "aggregated"
    rack, workload = replicas.rack, replicas.workload
    if not (rack.can_serve(Phase.prefill) and rack.can_serve(Phase.decode)):
        return ServingResult(mode, None, None, f"rack {rack.id} does not serve both phases")
    limits = replicas.decode_batch_limits()
    if len(replicas) == 0 or not (limits >= 1).any():
        return ServingResult(mode, None, None, unfit_reason(replicas, "replica"))
    points = aggregated_sla_points(replicas)
    if not points:
        fits = np.flatnonzero(limits >= 1)
        _, tpot_1, ttft_1 = aggregated_rates(replicas, fits, np.ones(fits.size))
        i = int(np.argmin(tpot_1))
        return ServingResult(
            mode,
            None,
            None,
            f"no batch on {rack.id} meets both targets (TTFT {workload.ttft_ms} ms, TPOT "
            f"{workload.tpot_ms} ms); fastest: TPOT {tpot_1[i]:.3g} ms with TTFT "
            f"{ttft_1[i]:.3g} ms at batch 1",
        )
    best = max(points, key=lambda p: p["output_tokens_per_s_per_rack"])
    detail = {
        k: best[k]
        for k in ("batch_size", "chips_per_replica", "racks_per_replica", "tpot_ms", "ttft_ms")
    }
    rate = best["output_tokens_per_s_per_rack"]
    return ServingResult(mode, rate, rate / rack.chips_per_rack, aggregated=detail)


@dataclass(frozen=True)
class EndToEnd:
    aggregated: ServingResult
    disaggregated: ServingResult


def end_to_end(
    rack: RackType,
    llm: LLM,
    precision: Precision,
    workload: Workload,
    efficiency: EfficiencyFactors,
) -> EndToEnd:
    """Aggregated and disaggregated serving of ``workload`` on ``rack``."""
    replicas = ReplicaSet.build(rack, llm, precision, workload, efficiency)
    return EndToEnd(aggregated=aggregated(replicas), disaggregated=disaggregated(replicas))
