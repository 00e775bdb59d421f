"""Operating points: one (rack, LLM, phase, replica size, batch) with its rate and latency.

Points are produced column-wise (numpy arrays in a ``PointTable``) because the full
rate table has tens of thousands of them; ``PointTable.records()`` and ``to_frame()``
turn them into rows for people and JSON.

Replica layout. A replica of n chips on a rack of C chips (``racks_per_replica``):
- n ≤ C: ⌊C/n⌋ replicas per rack, racks_per_replica = 1/⌊C/n⌋ (left-over chips idle);
- n > C: racks_per_replica = ⌈n/C⌉ whole racks.
tokens/s per rack = tokens/s per replica / racks_per_replica; per chip = per rack / C.

Power per rack (kW) = P_idle + (P_load − P_idle) · u_chips · u_busy, with u_chips the
share of the rack's chips in replicas and u_busy the share of a pass the chips compute
or stream memory rather than wait on the fabric (an assumption: dynamic power follows
the busier of the two engines).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from rackplan.models.base import Bound, Phase
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.latency import tpot_factor, ttft_factor
from rackplan.models.llm import LLM
from rackplan.models.roofline import (
    PassTimes,
    ReplicaHardware,
    decode_attention_flops_per_token,
    decode_step,
    kv_bytes_per_sequence,
    kv_handoff_bytes_per_request,
    min_chips_for_weights,
    prefill_pass,
    replica_hardware,
    weight_bytes_read,
    weight_bytes_total,
)
from rackplan.models.workload import Precision, Workload

MAX_DECODE_BATCH = 16384
"""Largest decode batch per replica ever considered; the engine's own cap
(``EfficiencyFactors.max_batch_per_replica``) is usually far lower."""
MAX_PREFILL_BATCH = 64
"""Largest number of prompts prefilled together per replica."""
MAX_REPLICA_SIZES = 6
"""How many replica sizes are tried per rack × LLM (the smallest that fit, then larger)."""
MAX_RACKS_PER_REPLICA = 16
"""Widest replica considered, in racks (assumption: beyond this the cross-rack fabric and the
failure domain make a single model instance impractical)."""
CAPACITY_BOUND_SHARE = 0.98
"""A point using at least this share of usable memory is labelled capacity-bound."""


def replica_sizes(
    rack: RackType, llm: LLM, precision: Precision, max_weight_share: float = 1.0
) -> list[int]:
    """Candidate chips per replica: the smallest deployments practice allows, then larger ones.

    n_min = ⌈W / (s·usable memory per chip)⌉ with s = ``max_weight_share``: deployments keep
    the weights to a share s of memory so the KV cache has room (tensor parallelism grows
    until it does). Candidates at or above n_min: powers of two up to the
    rack, the rack and its halves and quarters (C, C/2, C/4: trays of an NVL72), and, when
    n_min > C, one and two times the whole racks needed (at most MAX_RACKS_PER_REPLICA racks).
    The MAX_REPLICA_SIZES smallest are kept: bigger replicas only buy latency.
    """
    n_min = min_chips_for_weights(rack, llm, precision, max_weight_share)
    per_rack = rack.chips_per_rack
    if n_min > per_rack:
        racks = math.ceil(n_min / per_rack)
        return [k * per_rack for k in (racks, 2 * racks) if k <= MAX_RACKS_PER_REPLICA]
    candidates = {2**i for i in range(int(math.log2(per_rack)) + 1)}
    candidates |= {per_rack // k for k in (1, 2, 4)}
    return sorted(c for c in candidates if c >= n_min)[:MAX_REPLICA_SIZES]


def racks_per_replica(chips_per_rack: int, chips: np.ndarray) -> np.ndarray:
    """1/⌊C/n⌋ for n ≤ C (several replicas share a rack), ⌈n/C⌉ for n > C (whole racks)."""
    chips = np.asarray(chips, dtype=float)
    shared = 1.0 / np.maximum(1.0, np.floor(chips_per_rack / chips))
    return np.where(chips <= chips_per_rack, shared, np.ceil(chips / chips_per_rack))


@dataclass(frozen=True)
class PointTable:
    """Operating points, column-wise. ``latency_ms`` is TTFT for prefill, TPOT for decode."""

    phase: np.ndarray
    batch_size: np.ndarray
    chips_per_replica: np.ndarray
    racks_per_replica: np.ndarray
    tokens_per_s_per_rack: np.ndarray
    tokens_per_s_per_chip: np.ndarray
    latency_ms: np.ndarray
    memory_used_gb: np.ndarray
    power_kw: np.ndarray
    bound: np.ndarray
    compute_ms: np.ndarray
    memory_ms: np.ndarray
    communication_ms: np.ndarray
    handoff_ms: np.ndarray

    def __len__(self) -> int:
        return int(self.batch_size.size)

    @classmethod
    def concat(cls, tables: list[PointTable]) -> PointTable:
        if not tables:
            return cls(*(np.zeros(0) for _ in _POINT_FIELDS))
        if len(tables) == 1:
            return tables[0]
        return cls(*(np.concatenate([getattr(t, name) for t in tables]) for name in _POINT_FIELDS))

    def take(self, mask_or_index: np.ndarray) -> PointTable:
        return PointTable(*(getattr(self, name)[mask_or_index] for name in _POINT_FIELDS))

    def records(self) -> list[dict[str, object]]:
        """One dict per point, with ``ttft_ms`` (prefill) or ``tpot_ms`` (decode)."""
        rows = []
        for i in range(len(self)):
            phase = str(self.phase[i])
            latency_key = "ttft_ms" if phase == Phase.prefill else "tpot_ms"
            rows.append(
                {
                    "phase": phase,
                    "batch_size": int(self.batch_size[i]),
                    "chips_per_replica": int(self.chips_per_replica[i]),
                    "racks_per_replica": float(self.racks_per_replica[i]),
                    "tokens_per_s_per_rack": float(self.tokens_per_s_per_rack[i]),
                    "tokens_per_s_per_chip": float(self.tokens_per_s_per_chip[i]),
                    latency_key: float(self.latency_ms[i]),
                    "memory_used_gb": float(self.memory_used_gb[i]),
                    "power_kw": float(self.power_kw[i]),
                    "bound": str(self.bound[i]),
                    "compute_ms": float(self.compute_ms[i]),
                    "memory_ms": float(self.memory_ms[i]),
                    "communication_ms": float(self.communication_ms[i]),
                    "handoff_ms": float(self.handoff_ms[i]),
                }
            )
        return rows

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({name: getattr(self, name) for name in _POINT_FIELDS})


_POINT_FIELDS = tuple(f.name for f in fields(PointTable))


def _bounds(times: PassTimes, capacity_bytes: np.ndarray, handoff_binds: np.ndarray) -> np.ndarray:
    """Label each point with the limit that sets its speed (see ``Bound``).

    capacity if it uses ≥ CAPACITY_BOUND_SHARE of usable memory (no larger batch fits);
    communication if the fabric time exceeds the busy time or the KV hand-off caps the rate;
    else compute or memory bandwidth, whichever term of the roofline is larger.
    """
    labels = np.where(
        times.compute_s >= times.memory_s, Bound.compute.value, Bound.memory_bandwidth.value
    ).astype(object)
    comm = times.communication_s > np.maximum(times.compute_s, times.memory_s)
    labels[comm | handoff_binds] = Bound.communication.value
    labels[times.memory_used_bytes >= CAPACITY_BOUND_SHARE * capacity_bytes] = Bound.capacity.value
    return labels


def power_of_two_grid(limit: float) -> np.ndarray:
    """1, 2, 4, … up to ``limit`` (inclusive if a power of two)."""
    if limit < 1:
        return np.zeros(0)
    return 2.0 ** np.arange(0, int(math.log2(limit)) + 1)


KNEE_OFFSETS = 2.0 ** np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
"""The finer grid near the knee: b*·2^(±1/2, ±1/4, 0)."""


COARSE_CANDIDATES = 256
"""Geometric candidates per row in the first pass of ``largest_feasible``."""


def largest_feasible(
    predicate: Callable[[np.ndarray, np.ndarray], np.ndarray], upper: np.ndarray
) -> np.ndarray:
    """Per row r, the largest integer b in [1, upper[r]] with ``predicate(r, b)`` true.

    ``predicate`` takes aligned arrays (row index, batch) and must be true on an initial
    interval of b for each row (monotone); the result is 0 where it is false at b = 1.
    Two vectorised passes: geometric candidates 1 … upper bracket the answer, then every
    integer inside the bracket is tested (a ratio of upper^(1/384) keeps brackets small).
    """
    upper = np.floor(np.asarray(upper, dtype=float))
    rows = np.flatnonzero(upper >= 1)
    best = np.zeros(upper.size)
    if rows.size == 0:
        return best.astype(int)
    exponents = np.linspace(0.0, 1.0, COARSE_CANDIDATES)
    coarse = np.floor(upper[rows, None] ** exponents[None, :])
    coarse[:, -1] = upper[rows]
    ok = _monotone(predicate(np.repeat(rows, exponents.size), coarse.ravel()), coarse.shape)
    count = ok.sum(axis=1)
    found = count > 0
    last_true = np.where(found, coarse[np.arange(rows.size), np.maximum(count - 1, 0)], 0.0)
    first_false = np.where(
        count < exponents.size,
        coarse[np.arange(rows.size), np.minimum(count, exponents.size - 1)],
        last_true,
    )
    gap = np.where(found, first_false - last_true - 1, 0).astype(int)
    width = int(gap.max(initial=0))
    best[rows] = last_true
    if width > 0:
        fine = last_true[:, None] + 1 + np.arange(width)[None, :]
        inside = fine < first_false[:, None]
        fine = np.where(inside, fine, np.maximum(last_true, 1.0)[:, None])
        fine_ok = _monotone(predicate(np.repeat(rows, width), fine.ravel()), fine.shape) & inside
        best[rows] = np.where(
            fine_ok.any(axis=1), np.where(fine_ok, fine, 0).max(axis=1), last_true
        )
    return best.astype(int)


def _monotone(ok: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape and keep only the initial run of True per row (guards against round-off)."""
    return np.cumprod(np.asarray(ok, dtype=bool).reshape(shape), axis=1).astype(bool)


@dataclass(frozen=True)
class ReplicaSet:
    """The candidate replica sizes of one (rack, LLM, precision, workload, efficiency).

    Arrays have one entry per replica size; point methods take aligned (size index, batch)
    arrays so every replica size is evaluated in one vectorised pass.
    """

    rack: RackType
    llm: LLM
    precision: Precision
    workload: Workload
    chips: np.ndarray
    racks_per_replica: np.ndarray
    chips_used_share: np.ndarray
    """Share of the rack's chips inside replicas (the rest idle)."""
    hw: ReplicaHardware
    efficiency: EfficiencyFactors

    @classmethod
    def build(
        cls,
        rack: RackType,
        llm: LLM,
        precision: Precision,
        workload: Workload,
        efficiency: EfficiencyFactors,
    ) -> ReplicaSet:
        # Prefill replicas only hold the prompts in flight, so they may fill memory with
        # weights; decode replicas keep the weights to max_weight_share of it (KV room).
        sizes = set(replica_sizes(rack, llm, precision))
        sizes |= set(replica_sizes(rack, llm, precision, efficiency.max_weight_share))
        chips = np.array(sorted(sizes), dtype=float)
        racks = racks_per_replica(rack.chips_per_rack, chips)
        return cls(
            rack=rack,
            llm=llm,
            precision=precision,
            workload=workload,
            chips=chips,
            racks_per_replica=racks,
            chips_used_share=chips / (racks * rack.chips_per_rack),
            hw=replica_hardware(rack, chips, precision, efficiency),
            efficiency=efficiency,
        )

    def __len__(self) -> int:
        return int(self.chips.size)

    def _batch_limit(self, context_tokens: float, cap: int) -> np.ndarray:
        room = self.hw.capacity_bytes - weight_bytes_total(self.llm, self.precision)
        per_sequence = float(kv_bytes_per_sequence(self.llm, self.precision, context_tokens))
        return np.minimum(cap, np.maximum(0.0, np.floor(room / per_sequence)))

    def decode_batch_limits(self) -> np.ndarray:
        """⌊(usable − W) / kv(ctx)⌋ per replica size, capped by the engine: at most
        ``max_batch_per_replica`` sequences and ``max_tokens_per_step`` tokens per step
        (b·(d + 1) with d drafted tokens); 0 where the weights exceed ``max_weight_share`` of
        the usable memory (deployments give a decode replica room for its KV cache)."""
        limits = self._batch_limit(self.workload.mean_decode_context, self._decode_cap())
        return np.where(self._decode_allowed(), limits, 0.0)

    def _decode_allowed(self) -> np.ndarray:
        weights = weight_bytes_total(self.llm, self.precision)
        share = self.efficiency.max_weight_share
        return weights <= share * self.hw.capacity_bytes * (1 + 1e-9)

    def _decode_cap(self) -> int:
        engine = self.efficiency
        per_sequence = self.workload.speculative_draft_tokens + 1
        by_tokens = max(1, engine.max_tokens_per_step // per_sequence)
        return min(MAX_DECODE_BATCH, engine.max_batch_per_replica, by_tokens)

    def aggregated_batch_limits(self) -> np.ndarray:
        """Decode limits, further capped so that a step's decode tokens b·(d + 1) plus its
        chunked-prefill tokens b·E·(1 − h)·L/O fit ``max_tokens_per_step``."""
        from rackplan.models.roofline import speculative_tokens_per_step

        workload = self.workload
        per_sequence = (
            workload.speculative_draft_tokens
            + 1
            + speculative_tokens_per_step(workload)
            * workload.computed_input_tokens
            / workload.output_tokens
        )
        by_tokens = max(1.0, np.floor(self.efficiency.max_tokens_per_step / per_sequence))
        return np.minimum(self.decode_batch_limits(), by_tokens)

    def prefill_batch_limits(self) -> np.ndarray:
        """⌊(usable − W) / kv(L)⌋ per replica size, capped at MAX_PREFILL_BATCH prompts and at
        ``max_tokens_per_step`` / ((1 − h)·L) (at least one prompt, chunked if longer)."""
        by_tokens = self.efficiency.max_tokens_per_step // max(
            1.0, self.workload.computed_input_tokens
        )
        return self._batch_limit(
            self.workload.input_tokens, int(max(1, min(MAX_PREFILL_BATCH, by_tokens)))
        )

    def decode_times(self, size: np.ndarray, batch: np.ndarray) -> PassTimes:
        return decode_step(self.hw.take(size), self.llm, self.precision, self.workload, batch)

    def prefill_times(self, size: np.ndarray, batch: np.ndarray) -> PassTimes:
        return prefill_pass(self.hw.take(size), self.llm, self.precision, self.workload, batch)

    def knee_batch(self) -> np.ndarray:
        """Decode batch b* where compute time equals memory time, per replica size.

        Solves b·c = (W_read(b) + b·kv)/B with c the compute seconds per token: for a dense
        model b* = (W/B) / (c − kv/B); for MoE, W_read(b) is iterated from the full expert set
        (three fixed-point steps). inf when decode is memory-bound at every batch.
        """
        ctx = self.workload.mean_decode_context
        per_token_compute = (
            2.0 * self.llm.params_active_b * 1e9 / self.hw.linear_flops_per_s
            + decode_attention_flops_per_token(self.llm, ctx) / self.hw.attention_flops_per_s
        )
        kv_time = (
            kv_bytes_per_sequence(self.llm, self.precision, ctx)
            / self.hw.attention_bandwidth_bytes_per_s
        )
        slope = per_token_compute - kv_time
        knee = np.full(len(self), np.inf)
        weights = np.full(len(self), weight_bytes_total(self.llm, self.precision))
        for _ in range(3):
            knee = np.where(
                slope > 0,
                weights / self.hw.bandwidth_bytes_per_s / np.where(slope > 0, slope, 1.0),
                np.inf,
            )
            weights = weight_bytes_read(
                self.llm, self.precision, np.where(np.isfinite(knee), knee, 1.0)
            )
        return knee

    def _points(
        self,
        phase: Phase,
        size: np.ndarray,
        times: PassTimes,
        tokens_per_s_per_replica: np.ndarray,
        latency_s: np.ndarray,
        handoff_s: np.ndarray,
        activity: np.ndarray,
    ) -> PointTable:
        rack = self.rack
        racks = self.racks_per_replica[size]
        per_rack = tokens_per_s_per_replica / racks
        power = rack.power_kw_idle + (rack.power_kw_at_load - rack.power_kw_idle) * (
            self.chips_used_share[size] * times.busy_fraction * activity
        )
        return PointTable(
            phase=np.full(size.size, phase.value, dtype=object),
            batch_size=times.batch,
            chips_per_replica=self.chips[size],
            racks_per_replica=racks,
            tokens_per_s_per_rack=per_rack,
            tokens_per_s_per_chip=per_rack / rack.chips_per_rack,
            latency_ms=latency_s * 1e3,
            memory_used_gb=times.memory_used_bytes / 1e9,
            power_kw=power,
            bound=_bounds(times, self.hw.capacity_bytes[size], activity < 1.0 - 1e-12),
            compute_ms=times.compute_s * 1e3,
            memory_ms=times.memory_s * 1e3,
            communication_ms=times.communication_s * 1e3,
            handoff_ms=handoff_s * 1e3,
        )

    def decode_points(self, size: np.ndarray, batch: np.ndarray) -> PointTable:
        """Decode points: tokens/s per replica = b·E / t_step(b) and TPOT = t_step(b)/E at the
        SLA statistic (``latency.tpot_factor``); E = tokens accepted per step (1 without
        speculative decoding)."""
        times = self.decode_times(size, batch)
        step = times.total_s
        per_token = step / times.tokens_per_sequence
        return self._points(
            Phase.decode,
            size,
            times,
            times.batch / per_token,
            per_token * tpot_factor(self.workload.sla_percentile),
            np.zeros_like(step),
            np.ones_like(step),
        )

    def prefill_points(self, size: np.ndarray, batch: np.ndarray) -> PointTable:
        """Prefill points for disaggregated serving (the KV leaves for a decode rack).

        S = t_pass(b); hand-off t_h = b·kv((1−h)L) / (n·NIC); TTFT = S·q + t_h, with q the
        M/D/1 factor at the SLA statistic (``latency.ttft_factor``: mean or percentile).
        Prompt tokens/s per replica (cached tokens included, since demand counts them)
        = min(b·L/S, n·NIC·L/kv((1−h)L)): the NICs cap the request rate.
        """
        times = self.prefill_times(size, batch)
        service = times.total_s
        handoff_bytes = max(
            kv_handoff_bytes_per_request(self.llm, self.precision, self.workload), 1.0
        )
        scaleout = self.hw.scaleout_bytes_per_s[size]
        handoff_s = times.batch * handoff_bytes / scaleout
        ttft = service * ttft_factor(self.workload) + handoff_s
        compute_rate = times.batch * self.workload.input_tokens / service
        rate = np.minimum(compute_rate, scaleout * self.workload.input_tokens / handoff_bytes)
        return self._points(Phase.prefill, size, times, rate, ttft, handoff_s, rate / compute_rate)

    def latency_ms(self, phase: Phase, size: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """TPOT (decode) or TTFT (prefill) in ms, as in ``decode_points`` / ``prefill_points``,
        without building the rest of the point (the SLA search calls this often)."""
        if phase is Phase.decode:
            times = self.decode_times(size, batch)
            per_token = times.total_s / times.tokens_per_sequence
            return per_token * tpot_factor(self.workload.sla_percentile) * 1e3
        times = self.prefill_times(size, batch)
        handoff_bytes = max(
            kv_handoff_bytes_per_request(self.llm, self.precision, self.workload), 1.0
        )
        handoff_s = times.batch * handoff_bytes / self.hw.scaleout_bytes_per_s[size]
        return (times.total_s * ttft_factor(self.workload) + handoff_s) * 1e3

    def evaluate(self, phase: Phase, size: np.ndarray, batch: np.ndarray) -> PointTable:
        if phase is Phase.decode:
            return self.decode_points(size, batch)
        return self.prefill_points(size, batch)

    def batch_limits(self, phase: Phase) -> np.ndarray:
        return self.decode_batch_limits() if phase is Phase.decode else self.prefill_batch_limits()

    def grid(self, phase: Phase) -> tuple[np.ndarray, np.ndarray]:
        """(size index, batch) of the grid: powers of two up to each size's limit, the limit
        itself, and (decode) the knee neighbourhood b*·2^(±1/2, ±1/4, 0)."""
        limits = self.batch_limits(phase)
        powers = power_of_two_grid(float(limits.max(initial=0.0)))
        columns = [np.broadcast_to(powers, (len(self), powers.size)), limits[:, None]]
        if phase is Phase.decode:
            knee = self.knee_batch()
            near = np.where(np.isfinite(knee)[:, None], np.round(knee[:, None] * KNEE_OFFSETS), 1.0)
            columns.append(near)
        batches = np.concatenate(columns, axis=1)
        sizes = np.broadcast_to(np.arange(len(self))[:, None], batches.shape)
        keep = (batches >= 1) & (batches <= limits[:, None])
        keys = np.unique(sizes[keep] * (MAX_DECODE_BATCH + 1.0) * 4 + batches[keep])
        size_index = (keys // ((MAX_DECODE_BATCH + 1.0) * 4)).astype(int)
        return size_index, keys - size_index * (MAX_DECODE_BATCH + 1.0) * 4

    def best_meeting(self, phase: Phase, target_ms: float | None) -> tuple[np.ndarray, np.ndarray]:
        """Per replica size, the largest batch whose latency ≤ ``target_ms`` (0: none).

        Returns (size index, batch) of the feasible ones. Throughput per rack never falls
        with batch while latency rises, so the largest feasible batch is the best.
        """
        limits = self.batch_limits(phase)

        def meets(size: np.ndarray, batch: np.ndarray) -> np.ndarray:
            if target_ms is None:
                return np.ones(size.size, dtype=bool)
            return self.latency_ms(phase, size, batch) <= target_ms

        best = largest_feasible(meets, limits)
        feasible = np.flatnonzero(best >= 1)
        return feasible, best[feasible].astype(float)


def operating_points(
    rack: RackType,
    llm: LLM,
    precision: Precision,
    workload: Workload,
    efficiency: EfficiencyFactors,
    phases: tuple[Phase, ...] = (Phase.prefill, Phase.decode),
    prune: bool = True,
    sla_points: bool = True,
) -> PointTable:
    """Operating points of ``rack`` × ``llm`` for ``workload``, dominated ones pruned.

    Per phase and replica size: the grid (``ReplicaSet.grid``) plus, with ``sla_points`` and
    a latency target for the phase, the largest batch meeting it (the SLA point the planner
    will use; the exact search costs about as much as the grid itself). Pruning: see
    ``pareto_mask``.
    """
    replicas = ReplicaSet.build(rack, llm, precision, workload, efficiency)
    if len(replicas) == 0:
        return PointTable.concat([])
    tables = []
    for phase in phases:
        size, batch = replicas.grid(phase)
        target = workload.tpot_ms if phase is Phase.decode else workload.ttft_ms
        if sla_points and target is not None:
            sla_size, sla_batch = replicas.best_meeting(phase, target)
            size, batch = np.concatenate([size, sla_size]), np.concatenate([batch, sla_batch])
        if size.size:
            tables.append(replicas.evaluate(phase, size, batch))
    table = PointTable.concat(tables)
    return table.take(pareto_mask(table)) if prune and len(table) else table


def pareto_mask(table: PointTable) -> np.ndarray:
    """True for points no other point of the same phase dominates (exact duplicates: first kept).

    j dominates i if, in the same phase, rate_j ≥ rate_i, latency_j ≤ latency_i and energy per
    token e = power / rate satisfies e_j ≤ e_i, with one of them strict. A dominated point can
    never be the better buy: it needs more racks (capex) and more energy for the same tokens
    at no better latency.
    """
    keep = np.zeros(len(table), dtype=bool)
    for phase in np.unique(table.phase):
        rows = np.flatnonzero(table.phase == phase)
        keep[rows] = _nondominated(
            table.tokens_per_s_per_rack[rows],
            table.latency_ms[rows],
            table.power_kw[rows] / np.maximum(table.tokens_per_s_per_rack[rows], 1e-30),
        )
    return keep


def _nondominated(rate: np.ndarray, latency: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Pareto mask for maximising ``rate`` and minimising ``latency`` and ``energy``."""
    no_worse = (
        (rate[None, :] >= rate[:, None])
        & (latency[None, :] <= latency[:, None])
        & (energy[None, :] <= energy[:, None])
    )
    same = (
        (rate[None, :] == rate[:, None])
        & (latency[None, :] == latency[:, None])
        & (energy[None, :] == energy[:, None])
    )
    index = np.arange(rate.size)
    dominated = (no_worse & ~same).any(axis=1)
    duplicate = (same & (index[None, :] < index[:, None])).any(axis=1)
    return ~(dominated | duplicate)
