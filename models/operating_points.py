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
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from operator import attrgetter
from typing import NamedTuple

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
    phase_coefficients,
    phase_pass,
    prefill_pass,
    replica_hardware,
    speculative_tokens_per_step,
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
        return PointTable(*[column[mask_or_index] for column in _point_columns(self)])

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
_point_columns = attrgetter(*_POINT_FIELDS)
"""All of a ``PointTable``'s columns, in field order, in one call."""


class PointTerms(NamedTuple):
    """What a point takes from its pass (``PassTimes`` has the same attributes), one array
    each. The SLA search keeps them stacked as the rows of one matrix (``stack``), so joining
    two passes and selecting the points are one call each."""

    batch: np.ndarray
    total_s: np.ndarray
    busy_fraction: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    communication_s: np.ndarray
    memory_used_bytes: np.ndarray
    tokens_per_sequence: np.ndarray

    @classmethod
    def stack(cls, times: PassTimes, *extra: np.ndarray) -> np.ndarray:
        """The terms of ``times`` as rows of one matrix, ``extra`` rows after them."""
        per_sequence = times.tokens_per_sequence
        if np.ndim(per_sequence) == 0:
            per_sequence = np.full(times.batch.shape, per_sequence)
        columns = [getattr(times, name) for name in cls._fields[:-1]]
        return np.array([*columns, per_sequence, *extra], dtype=float)


def _bounds(
    times: PassTimes | PointTerms, capacity_bytes: np.ndarray, handoff_binds: np.ndarray
) -> np.ndarray:
    """Label each point with the limit that sets its speed (see ``Bound``).

    capacity if it uses ≥ CAPACITY_BOUND_SHARE of usable memory (no larger batch fits);
    communication if the fabric time exceeds the busy time or the KV hand-off caps the rate;
    else compute or memory bandwidth, whichever term of the roofline is larger.
    """
    compute, memory = times.compute_s, times.memory_s
    communication = (times.communication_s > np.maximum(compute, memory)) | handoff_binds
    capacity = times.memory_used_bytes >= CAPACITY_BOUND_SHARE * capacity_bytes
    code = np.where(capacity, 3, np.where(communication, 2, compute < memory))
    return _BOUND_LABELS[code]


_BOUND_LABELS = np.array(
    [
        Bound.compute.value,
        Bound.memory_bandwidth.value,
        Bound.communication.value,
        Bound.capacity.value,
    ],
    dtype=object,
)


def power_of_two_grid(limit: float) -> np.ndarray:
    """1, 2, 4, … up to ``limit`` (inclusive if a power of two)."""
    if limit < 1:
        return np.zeros(0)
    return 2.0 ** np.arange(0, int(math.log2(limit)) + 1)


KNEE_OFFSETS = 2.0 ** np.array([-0.5, -0.25, 0.0, 0.25, 0.5])
"""The finer grid near the knee: b*·2^(±1/2, ±1/4, 0)."""


COARSE_CANDIDATES = 64
"""Batches per row tested in the first round of ``largest_feasible`` (every integer below)."""

_KEY_STRIDE = (MAX_DECODE_BATCH + 1.0) * 4
"""(size index, batch) pairs are packed as size·stride + batch to sort and deduplicate them."""


def _pack(size: np.ndarray, batch: np.ndarray) -> np.ndarray:
    return size * _KEY_STRIDE + batch


def _split_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_unpack`` (the same values) for rows < 2^30, with a multiplication for the division:
    key·(1/stride) = row + batch/stride within row·2^-51 < 5e-7 of it, and batch/stride lies in
    [1/stride, 1/4] (1 ≤ batch ≤ MAX_DECODE_BATCH), so its floor is exactly the row."""
    row = np.floor(keys * (1.0 / _KEY_STRIDE))
    return row.astype(int), keys - row * _KEY_STRIDE


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = (keys // _KEY_STRIDE).astype(int)
    return size, keys - size * _KEY_STRIDE


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct ``keys`` (``np.unique`` without its overhead; none stay none)."""
    keys = np.sort(keys)
    if keys.size == 0:
        return keys
    return keys[np.concatenate(([True], keys[1:] != keys[:-1]))]


def coarse_candidates(upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round 1 of the search: (row, batch) with, per row r of u = ⌊upper[r]⌋ ≥ 1, the batches
    1, 1 + s, 1 + 2s, …, u with s = ⌈(u − 1)/COARSE_CANDIDATES⌉ (every integer if u ≤ 65).

    Sorted by row, then batch, all distinct; a bracket between two neighbours holds < s
    integers, so round 2 tests at most s − 1 batches per row.
    """
    return _unpack(_distinct(_coarse_keys(upper)))


def _coarse_keys(upper: np.ndarray) -> np.ndarray:
    """``coarse_candidates`` as packed keys, sorted but with repeats (u ≤ 65 clips to u)."""
    upper = np.floor(np.asarray(upper, dtype=float))
    rows = np.flatnonzero(upper >= 1)
    u = upper[rows, None]
    step = np.maximum(1.0, np.ceil((u - 1.0) / COARSE_CANDIDATES))
    return _pack(rows[:, None], np.minimum(1.0 + _COARSE_STEPS * step, u)).ravel()


_COARSE_STEPS = np.arange(COARSE_CANDIDATES + 1.0)[None, :]


def initial_run(
    row: np.ndarray, batch: np.ndarray, ok: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a search round, (index of its last passing batch, its first failing batch).

    (row, batch) are sorted by row, then batch. The last passing batch is the largest b with
    ``ok`` true at every tested batch ≤ b (index −1 if ``ok`` fails at the smallest, so a
    non-monotone ``ok`` from round-off keeps its initial run); the first failing batch is
    the smallest b with ``ok`` false (inf if none). Rows not tested: (−1, inf).
    """
    index = np.empty(n_rows, dtype=int)
    index.fill(-1)
    first_fail = np.empty(n_rows)
    first_fail.fill(np.inf)
    if row.size == 0:
        return index, first_fail
    starts = np.concatenate(([True], row[1:] != row[:-1])).nonzero()[0]
    present = row[starts]
    first_fail[present] = np.minimum.reduceat(np.where(ok, np.inf, batch), starts)
    passing = ok & (batch < first_fail[row])
    index[present] = np.maximum.reduceat(np.where(passing, np.arange(row.size), -1), starts)
    return index, first_fail


def bracket(
    batch: np.ndarray, index: np.ndarray, first_fail: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Round 2 of the search: (row, batch) of every integer strictly between each row's last
    passing and first failing batch of round 1 (``initial_run``; none if b = 1 fails).

    Sorted by row, then batch."""
    last = batch[index] if batch.size else np.zeros(index.size)
    gap = np.where((index >= 0) & (first_fail < np.inf), first_fail - last - 1, 0.0)
    rows = (gap > 0).nonzero()[0]
    if rows.size == 0:
        return rows, np.zeros(0)
    inside = last[rows, None] + np.arange(1.0, gap[rows].max() + 1.0)[None, :]
    keep = inside < first_fail[rows, None]
    return rows[np.nonzero(keep)[0]], inside[keep]


def largest_feasible(
    predicate: Callable[[np.ndarray, np.ndarray], np.ndarray], upper: np.ndarray
) -> np.ndarray:
    """Per row r, the largest integer b in [1, upper[r]] with ``predicate(r, b)`` true.

    ``predicate`` takes aligned arrays (row index, batch) and must be true on an initial
    interval of b for each row (monotone); the result is 0 where it is false at b = 1.
    Two vectorised rounds: ``coarse_candidates`` bracket the answer, then every integer
    inside the bracket is tested (``bracket``).
    """
    n_rows = np.size(upper)
    row, batch = coarse_candidates(upper)
    index, first_fail = initial_run(row, batch, predicate(row, batch), n_rows)
    best = np.where(index >= 0, batch[np.maximum(index, 0)] if batch.size else 0.0, 0.0)
    fine_row, fine_batch = bracket(batch, index, first_fail)
    if fine_row.size:
        ok = predicate(fine_row, fine_batch)
        fine_index, _ = initial_run(fine_row, fine_batch, ok, n_rows)
        best = np.where(fine_index >= 0, fine_batch[np.maximum(fine_index, 0)], best)
    return best.astype(int)


LAYOUT_CACHE_SIZE = 1024
"""Replica layouts kept by ``replica_layout`` (one per rack × LLM × precision × efficiency)."""


@dataclass(frozen=True)
class ReplicaLayout:
    """The replica sizes of one (rack, LLM, precision, efficiency) and their hardware: the part
    of a ``ReplicaSet`` that does not depend on the workload. Arrays are read-only (shared)."""

    chips: np.ndarray
    racks_per_replica: np.ndarray
    chips_used_share: np.ndarray
    hw: ReplicaHardware
    hardware_rows: np.ndarray
    """The array fields of ``hw`` stacked, one row each (``ReplicaHardware`` field order), so
    aligning them with points is one fancy index (``take_hardware``)."""
    kv_room_bytes: np.ndarray
    """Usable memory left beside the weights: capacity − W."""
    decode_allowed: np.ndarray
    """Whether the weights fit ``max_weight_share`` of usable memory (decode replicas)."""
    size_columns: np.ndarray
    """Rows chips, racks_per_replica, chips_used_share, capacity_bytes: what a point takes
    from its replica size, in one index (``ReplicaSet._points``)."""
    gemm_s_per_token: np.ndarray
    """2·N_act / F: GEMM seconds per token at full efficiency (``ReplicaSet.knee_batch``)."""
    weights_s: np.ndarray
    """W / B: seconds to stream all weights once (``ReplicaSet.knee_batch``)."""

    def take_hardware(self, size: np.ndarray) -> ReplicaHardware:
        """``hw.take(size)`` — the same values — from one index of ``hardware_rows``."""
        return ReplicaHardware(
            *self.hardware_rows.take(size, axis=1), overlap_exponent=self.hw.overlap_exponent
        )


def replica_layout(
    rack: RackType, llm: LLM, precision: Precision, efficiency: EfficiencyFactors
) -> ReplicaLayout:
    """``_replica_layout``, found first by the inputs' identity (the same catalog objects again:
    no hashing or comparing of pydantic models), then by their value. The identity table holds
    the inputs themselves, so their ids cannot be reused while it has them."""
    inputs = (rack, llm, precision, efficiency)
    key = (id(rack), id(llm), id(precision), id(efficiency))
    known = _LAYOUTS_BY_IDENTITY.get(key)
    if known is not None and all(a is b for a, b in zip(known[0], inputs, strict=True)):
        return known[1]
    layout = _replica_layout(*inputs)
    if len(_LAYOUTS_BY_IDENTITY) >= LAYOUT_CACHE_SIZE:
        _LAYOUTS_BY_IDENTITY.clear()
    _LAYOUTS_BY_IDENTITY[key] = (inputs, layout)
    return layout


_LAYOUTS_BY_IDENTITY: dict[tuple[int, ...], tuple[tuple[object, ...], ReplicaLayout]] = {}


@lru_cache(maxsize=LAYOUT_CACHE_SIZE)
def _replica_layout(
    rack: RackType, llm: LLM, precision: Precision, efficiency: EfficiencyFactors
) -> ReplicaLayout:
    """Candidate replica sizes (prefill: ``replica_sizes``; decode: within ``max_weight_share``
    of memory), racks per replica, the share of rack chips in replicas (n / (racks·C)) and the
    pooled hardware (``roofline.replica_hardware``).

    Cached on the four inputs, all frozen pydantic models compared by value: an edited or
    overridden catalog entry is a different key, so a stale layout cannot be returned.
    """
    # Prefill replicas only hold the prompts in flight, so they may fill memory with
    # weights; decode replicas keep the weights to max_weight_share of it (KV room).
    sizes = set(replica_sizes(rack, llm, precision))
    sizes |= set(replica_sizes(rack, llm, precision, efficiency.max_weight_share))
    chips = np.array(sorted(sizes), dtype=float)
    racks = racks_per_replica(rack.chips_per_rack, chips)
    share = chips / (racks * rack.chips_per_rack)
    hw = replica_hardware(rack, chips, precision, efficiency)
    hw_arrays = [getattr(hw, name) for name in _HARDWARE_ARRAYS]
    weights = weight_bytes_total(llm, precision)
    layout = ReplicaLayout(
        chips=chips,
        racks_per_replica=racks,
        chips_used_share=share,
        hw=hw,
        hardware_rows=np.array(hw_arrays, dtype=float),
        kv_room_bytes=hw.capacity_bytes - weights,
        decode_allowed=weights <= efficiency.max_weight_share * hw.capacity_bytes * (1 + 1e-9),
        size_columns=np.array([chips, racks, share, hw.capacity_bytes]),
        gemm_s_per_token=2.0 * llm.params_active_b * 1e9 / hw.linear_flops_per_s,
        weights_s=weights / hw.bandwidth_bytes_per_s,
    )
    for array in (*hw_arrays, *(getattr(layout, f.name) for f in fields(layout))):
        if isinstance(array, np.ndarray):
            array.flags.writeable = False
    return layout


_HARDWARE_ARRAYS = tuple(f.name for f in fields(ReplicaHardware))[:-1]
"""``ReplicaHardware``'s array fields, in order: all but the last, the scalar exponent."""
assert fields(ReplicaHardware)[-1].name == "overlap_exponent", "the array fields come first"


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
    layout: ReplicaLayout = field(repr=False, compare=False)

    @classmethod
    def build(
        cls,
        rack: RackType,
        llm: LLM,
        precision: Precision,
        workload: Workload,
        efficiency: EfficiencyFactors,
    ) -> ReplicaSet:
        """The replica sizes of ``replica_layout`` (cached) for ``workload``."""
        layout = replica_layout(rack, llm, precision, efficiency)
        return cls(
            rack=rack,
            llm=llm,
            precision=precision,
            workload=workload,
            chips=layout.chips,
            racks_per_replica=layout.racks_per_replica,
            chips_used_share=layout.chips_used_share,
            hw=layout.hw,
            efficiency=efficiency,
            layout=layout,
        )

    def __len__(self) -> int:
        return int(self.chips.size)

    def _batch_limit(self, context_tokens: float | np.ndarray, cap: int | np.ndarray) -> np.ndarray:
        """min(cap, ⌊(usable − W) / kv(context)⌋), at least 0, per replica size; for a column
        of contexts and caps, one row each."""
        per_sequence = kv_bytes_per_sequence(self.llm, self.precision, context_tokens)
        room = self.layout.kv_room_bytes
        return np.minimum(cap, np.maximum(0.0, np.floor(room / per_sequence)))

    def decode_batch_limits(self) -> np.ndarray:
        """⌊(usable − W) / kv(ctx)⌋ per replica size, capped by the engine: at most
        ``max_batch_per_replica`` sequences and ``max_tokens_per_step`` tokens per step
        (b·(d + 1) with d drafted tokens); 0 where the weights exceed ``max_weight_share`` of
        the usable memory (deployments give a decode replica room for its KV cache)."""
        return self._phase_limits((Phase.decode,))[0]

    def _decode_allowed(self) -> np.ndarray:
        """W ≤ ``max_weight_share`` · usable memory, per replica size (``ReplicaLayout``)."""
        return self.layout.decode_allowed

    def _decode_cap(self) -> int:
        engine = self.efficiency
        per_sequence = self.workload.speculative_draft_tokens + 1
        by_tokens = max(1, engine.max_tokens_per_step // per_sequence)
        return min(MAX_DECODE_BATCH, engine.max_batch_per_replica, by_tokens)

    def aggregated_batch_limits(self) -> np.ndarray:
        """Decode limits, further capped so that a step's decode tokens b·(d + 1) plus its
        chunked-prefill tokens b·E·(1 − h)·L/O fit ``max_tokens_per_step``."""
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
        return self._phase_limits((Phase.prefill,))[0]

    def _prefill_cap(self) -> int:
        by_tokens = self.efficiency.max_tokens_per_step // max(
            1.0, self.workload.computed_input_tokens
        )
        return int(max(1, min(MAX_PREFILL_BATCH, by_tokens)))

    def _phase_limits(self, phases: tuple[Phase, ...]) -> np.ndarray:
        """``batch_limits`` of each of ``phases``, one row each, in one vectorised step:
        decode at context ctx = L + O/2 with ``_decode_cap`` and only where
        ``_decode_allowed``, prefill at context L with ``_prefill_cap``."""
        decode = np.array([phase is Phase.decode for phase in phases])
        workload = self.workload
        contexts = np.where(decode, workload.mean_decode_context, workload.input_tokens)
        caps = [self._decode_cap() if d else self._prefill_cap() for d in decode]
        limits = self._batch_limit(contexts[:, None], np.array(caps)[:, None])
        return np.where(decode[:, None] & ~self._decode_allowed(), 0.0, limits)

    def decode_times(self, size: np.ndarray, batch: np.ndarray) -> PassTimes:
        return decode_step(self.hw.take(size), self.llm, self.precision, self.workload, batch)

    def prefill_times(self, size: np.ndarray, batch: np.ndarray) -> PassTimes:
        return prefill_pass(self.hw.take(size), self.llm, self.precision, self.workload, batch)

    def times(self, phase: Phase, size: np.ndarray, batch: np.ndarray) -> PassTimes:
        """The pass of ``phase`` (a decode step or a prefill batch) at each (size, batch)."""
        if phase is Phase.decode:
            return self.decode_times(size, batch)
        return self.prefill_times(size, batch)

    def knee_batch(self) -> np.ndarray:
        """Decode batch b* where compute time equals memory time, per replica size.

        Solves b·c = (W_read(b) + b·kv)/B with c the compute seconds per token: for a dense
        model b* = (W/B) / (c − kv/B); for MoE, W_read(b) is iterated from the full expert set
        (three fixed-point steps). inf when decode is memory-bound at every batch.
        """
        ctx = self.workload.mean_decode_context
        per_token_compute = (
            self.layout.gemm_s_per_token
            + decode_attention_flops_per_token(self.llm, ctx) / self.hw.attention_flops_per_s
        )
        kv_time = (
            kv_bytes_per_sequence(self.llm, self.precision, ctx)
            / self.hw.attention_bandwidth_bytes_per_s
        )
        slope = per_token_compute - kv_time
        rising = slope > 0
        if rising.all():  # the usual case: the same values without the masking
            knee = self.layout.weights_s / slope
            for _ in range(2 if self.llm.is_moe else 0):
                weights = weight_bytes_read(self.llm, self.precision, knee)
                knee = weights / self.hw.bandwidth_bytes_per_s / slope
            return knee
        safe_slope = np.where(rising, slope, 1.0)
        knee = np.where(rising, self.layout.weights_s / safe_slope, np.inf)
        for _ in range(2 if self.llm.is_moe else 0):  # dense: W_read(b) = W, exact at once
            weights = weight_bytes_read(self.llm, self.precision, np.where(rising, knee, 1.0))
            knee = np.where(rising, weights / self.hw.bandwidth_bytes_per_s / safe_slope, np.inf)
        return knee

    def _points(
        self,
        phase: Phase | np.ndarray,
        size: np.ndarray,
        times: PassTimes | PointTerms,
        tokens_per_s_per_replica: np.ndarray,
        latency_ms: np.ndarray,
        handoff_s: np.ndarray,
        activity: np.ndarray,
    ) -> PointTable:
        """The points of passes ``times`` on replica sizes ``size`` (module docstring: rate per
        rack and chip, power); ``activity`` scales the busy share (prefill capped by the NICs)."""
        rack = self.rack
        chips, racks, share, capacity = self.layout.size_columns.take(size, axis=1)
        per_rack = tokens_per_s_per_replica / racks
        power = rack.power_kw_idle + (rack.power_kw_at_load - rack.power_kw_idle) * (
            share * times.busy_fraction * activity
        )
        return PointTable(
            phase=np.full(size.size, phase.value, dtype=object)
            if isinstance(phase, Phase)
            else phase,
            batch_size=times.batch,
            chips_per_replica=chips,
            racks_per_replica=racks,
            tokens_per_s_per_rack=per_rack,
            tokens_per_s_per_chip=per_rack / rack.chips_per_rack,
            latency_ms=latency_ms,
            memory_used_gb=times.memory_used_bytes / 1e9,
            power_kw=power,
            bound=_bounds(times, capacity, activity < 1.0 - 1e-12),
            compute_ms=times.compute_s * 1e3,
            memory_ms=times.memory_s * 1e3,
            communication_ms=times.communication_s * 1e3,
            handoff_ms=handoff_s * 1e3,
        )

    def _tpot_s(self, times: PassTimes) -> np.ndarray:
        """TPOT at the SLA statistic: t_step/E · ``latency.tpot_factor``."""
        per_token = times.total_s / times.tokens_per_sequence
        return per_token * tpot_factor(self.workload.sla_percentile)

    def _handoff_s(self, size: np.ndarray, times: PassTimes) -> np.ndarray:
        """KV hand-off time of a prefill batch: t_h = b·kv((1−h)L) / (n·NIC)."""
        return times.batch * self._handoff_bytes / self.hw.scaleout_bytes_per_s[size]

    @cached_property
    def _handoff_bytes(self) -> float:
        """kv((1 − h)·L), at least one byte (the rate cap below divides by it)."""
        return max(kv_handoff_bytes_per_request(self.llm, self.precision, self.workload), 1.0)

    def _ttft_s(self, size: np.ndarray, times: PassTimes) -> np.ndarray:
        """TTFT at the SLA statistic: S·q + t_h (``latency.ttft_factor``, ``_handoff_s``)."""
        return times.total_s * ttft_factor(self.workload) + self._handoff_s(size, times)

    def _decode_table(self, size: np.ndarray, times: PassTimes) -> PointTable:
        step = times.total_s
        per_token = step / times.tokens_per_sequence
        return self._points(
            Phase.decode,
            size,
            times,
            times.batch / per_token,
            self._tpot_s(times) * 1e3,
            np.zeros_like(step),
            np.ones_like(step),
        )

    def _prefill_table(self, size: np.ndarray, times: PassTimes) -> PointTable:
        service = times.total_s
        handoff_s = self._handoff_s(size, times)
        ttft = service * ttft_factor(self.workload) + handoff_s
        compute_rate = times.batch * self.workload.input_tokens / service
        scaleout = self.hw.scaleout_bytes_per_s[size]
        rate = np.minimum(compute_rate, scaleout * self.workload.input_tokens / self._handoff_bytes)
        activity = rate / compute_rate
        return self._points(Phase.prefill, size, times, rate, ttft * 1e3, handoff_s, activity)

    def _table(self, phase: Phase, size: np.ndarray, times: PassTimes) -> PointTable:
        """The points of ``phase`` from their pass ``times`` (see the two methods below)."""
        if phase is Phase.decode:
            return self._decode_table(size, times)
        return self._prefill_table(size, times)

    def decode_points(self, size: np.ndarray, batch: np.ndarray) -> PointTable:
        """Decode points: tokens/s per replica = b·E / t_step(b) and TPOT = t_step(b)/E at the
        SLA statistic (``latency.tpot_factor``); E = tokens accepted per step (1 without
        speculative decoding)."""
        return self._decode_table(size, self.decode_times(size, batch))

    def prefill_points(self, size: np.ndarray, batch: np.ndarray) -> PointTable:
        """Prefill points for disaggregated serving (the KV leaves for a decode rack).

        S = t_pass(b); hand-off t_h = b·kv((1−h)L) / (n·NIC); TTFT = S·q + t_h, with q the
        M/D/1 factor at the SLA statistic (``latency.ttft_factor``: mean or percentile).
        Prompt tokens/s per replica (cached tokens included, since demand counts them)
        = min(b·L/S, n·NIC·L/kv((1−h)L)): the NICs cap the request rate.
        """
        return self._prefill_table(size, self.prefill_times(size, batch))

    def _latency_ms(self, phase: Phase, size: np.ndarray, times: PassTimes) -> np.ndarray:
        """TPOT (decode) or TTFT (prefill) in ms of points whose pass ``times`` are known."""
        if phase is Phase.decode:
            return self._tpot_s(times) * 1e3
        return self._ttft_s(size, times) * 1e3

    def latency_ms(self, phase: Phase, size: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """TPOT (decode) or TTFT (prefill) in ms, as in ``decode_points`` / ``prefill_points``,
        without building the rest of the point (the SLA search calls this often)."""
        return self._latency_ms(phase, size, self.times(phase, size, batch))

    def evaluate(self, phase: Phase, size: np.ndarray, batch: np.ndarray) -> PointTable:
        return self._table(phase, size, self.times(phase, size, batch))

    def batch_limits(self, phase: Phase) -> np.ndarray:
        return self.decode_batch_limits() if phase is Phase.decode else self.prefill_batch_limits()

    def grid(self, phase: Phase) -> tuple[np.ndarray, np.ndarray]:
        """(size index, batch) of the grid: powers of two up to each size's limit, the limit
        itself, and (decode) the knee neighbourhood b*·2^(±1/2, ±1/4, 0); sorted by size, then
        batch, without repeats."""
        return _unpack(_distinct(self._grid_keys(phase, self.batch_limits(phase))))

    def _grid_keys(self, phase: Phase, limits: np.ndarray) -> np.ndarray:
        """``grid`` for given per-size batch ``limits`` as packed keys, with repeats."""
        powers = power_of_two_grid(float(limits.max(initial=0.0)))
        columns = [powers + np.zeros((len(self), 1)), limits[:, None]]
        if phase is Phase.decode:
            columns.append(self._knee_neighbourhood())
        batches = np.concatenate(columns, axis=1)
        keep = (batches >= 1) & (batches <= limits[:, None])
        return _pack(np.arange(len(self))[:, None], batches)[keep]

    def _knee_neighbourhood(self) -> np.ndarray:
        """Decode grid batches near the knee per replica size, one row each:
        round(b*·2^(±1/2, ±1/4, 0)), or 1 where there is no knee (``knee_batch``)."""
        knee = self.knee_batch()
        return np.where(np.isfinite(knee)[:, None], np.round(knee[:, None] * KNEE_OFFSETS), 1.0)

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

    def _row_times(
        self, size: np.ndarray, decode: np.ndarray | bool, batch: np.ndarray
    ) -> PassTimes:
        """The pass (``phase_pass``) of each (size, phase, batch), all phases at once
        (``decode`` True: all are decode steps)."""
        hw = self.layout.take_hardware(size)
        return phase_pass(hw, self.llm, self.precision, self.workload, batch, decode, self._coef)

    @cached_property
    def _coef(self) -> np.ndarray:
        """``roofline.phase_coefficients`` of this LLM, precision and workload."""
        return phase_coefficients(self.llm, self.precision, self.workload)

    def _row_latency_ms(
        self, size: np.ndarray, decode: np.ndarray | bool, times: PassTimes
    ) -> tuple[np.ndarray, np.ndarray]:
        """``_latency_ms`` of each point (TPOT for decode points, TTFT for prefill points) and
        its KV hand-off time t_h in s (``_handoff_s``; 0 for decode points).

        One expression for both, (t/E·f + t_h)·1e3, with decode rows f = ``tpot_factor`` and
        t_h = 0, prefill rows E = 1 (``phase_pass``) and f = ``ttft_factor``: the same
        operations as ``_tpot_s`` and ``_ttft_s``, so the same values (adding t_h = 0 to a
        decode row changes nothing, so ``decode`` True, all decode rows, skips it).
        """
        if decode is True:
            tpot_ms = times.total_s / times.tokens_per_sequence * self._tpot_factor * 1e3
            return tpot_ms, np.zeros_like(tpot_ms)
        factor = np.where(decode, self._tpot_factor, self._ttft_factor)
        handoff_s = np.where(decode, 0.0, self._handoff_s(size, times))
        latency_ms = (times.total_s / times.tokens_per_sequence * factor + handoff_s) * 1e3
        return latency_ms, handoff_s

    @cached_property
    def _tpot_factor(self) -> float:
        return tpot_factor(self.workload.sla_percentile)

    @cached_property
    def _ttft_factor(self) -> float:
        return ttft_factor(self.workload)

    def _row_table(
        self,
        size: np.ndarray,
        decode: np.ndarray,
        label: np.ndarray,
        terms: PointTerms,
        latency_ms: np.ndarray,
        handoff_s: np.ndarray,
    ) -> PointTable:
        """``decode_points`` / ``prefill_points`` of each search row, all phases at once, from
        its pass ``terms``, ``latency_ms`` and ``handoff_s`` (``_row_latency_ms``).

        Decode rows: rate = b/(t/E), no hand-off, activity 1. Prefill rows:
        rate = min(b·L/S, n·NIC·L/kv((1−h)L)), activity = rate / (b·L/S).
        """
        step = terms.total_s
        per_token = step / terms.tokens_per_sequence
        input_tokens = self.workload.input_tokens
        compute_rate = np.where(decode, terms.batch / per_token, terms.batch * input_tokens / step)
        nic_cap = self.hw.scaleout_bytes_per_s[size] * input_tokens / self._handoff_bytes
        rate = np.where(decode, compute_rate, np.minimum(compute_rate, nic_cap))
        activity = np.where(decode, 1.0, rate / compute_rate)
        return self._points(label, size, terms, rate, latency_ms, handoff_s, activity)

    def _candidate_keys(
        self, decode: np.ndarray, limits: np.ndarray, searched: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Packed (row, batch) keys of every search row's grid and, where ``searched``, its
        ``coarse_candidates``: sorted, distinct, with a mask of those in a grid.

        Phase k (a decode phase if ``decode[k]``) has rows k·S + size with batch limits
        ``limits[k]``. Keys are tagged, key·2 + 1 for a coarse-only batch and key·2 for a grid
        batch, so that sorted, a batch in both comes first as a grid batch: each phase's
        batches but the knee's come from ``_block_candidates`` (shared by phases of equal
        limits), the knee neighbourhood of decode rows (``_grid_keys``) is added here.
        """
        n = len(self)
        stride = 2.0 * n * _KEY_STRIDE  # one phase's rows in tagged keys
        parts = []
        for k, (phase_limits, phase_searched) in enumerate(zip(limits, searched, strict=True)):
            block = _block_candidates(tuple(phase_limits.tolist()), bool(phase_searched))
            parts.append(block + k * stride if k else block)
            if decode[k]:
                near = self._knee_neighbourhood()
                keep = (near >= 1) & (near <= phase_limits[:, None])
                parts.append((near * 2.0 + _row_starts(k * n, n))[keep])
        tagged = np.concatenate(parts)
        tagged.sort()
        keys = np.floor(tagged * 0.5)
        first = np.concatenate(([True], keys[1:] != keys[:-1]))
        keys = keys[first]
        return keys, tagged[first] == keys * 2.0

    def grid_and_sla_points(
        self, targets: dict[Phase, float | None]
    ) -> tuple[PointTable, np.ndarray]:
        """Per phase of ``targets`` (in its order), the points of ``grid(phase)`` followed by
        those of ``best_meeting(phase, target)`` (none for a None target), as ``evaluate``
        gives them, all in one table from at most two passes; and each point's phase position.

        Search rows are (phase, replica size) pairs, row = k·S + size for the k-th phase. One
        pass evaluates every grid with the SLA search's first round (``coarse_candidates``;
        grid batches bracket the answer too), a second the integers inside each bracket
        (``largest_feasible``'s two rounds); the points reuse both passes' times.

        Numpy calls, not arithmetic, set the cost of these small arrays, so the work is done
        in few of them: the candidates of all phases as one sorted key array
        (``_candidate_keys``), each pass's point terms, latency and search row as the rows of
        one matrix (``PointTerms.stack``: joining the passes and selecting the table's points
        are one call each), the bracket pass through the all-decode path of
        ``_row_times`` / ``_row_latency_ms``.
        """
        phases = tuple(targets)
        n = len(self)
        is_decode, labels = _phase_arrays(phases)
        target = np.array([np.inf if targets[p] is None else targets[p] for p in phases])
        searched = target < np.inf
        limits = self._phase_limits(phases)
        if not (limits >= 1).any():  # not one request fits any replica (its KV cache)
            return PointTable.concat([]), np.zeros(0, dtype=int)
        keys, is_grid = self._candidate_keys(is_decode, limits, searched)
        row, batch = _split_keys(keys)
        phase, size = np.divmod(row, n)
        decode = is_decode[phase]
        times = self._row_times(size, decode, batch)
        latency, handoff_s = self._row_latency_ms(size, decode, times)
        terms = PointTerms.stack(times, latency, handoff_s, row)
        index = np.full(len(phases) * n, -1)
        if searched.any():
            index, first_fail = initial_run(row, batch, latency <= target[phase], index.size)
            fine_row, fine_batch = bracket(batch, index, first_fail)
            if fine_row.size:
                fine_phase, fine_size = np.divmod(fine_row, n)
                fine_decode = is_decode[fine_phase]
                # Brackets need a coarse step > 1, a limit > 65: decode rows, in practice all.
                fine_decode = True if fine_decode.all() else fine_decode
                fine = self._row_times(fine_size, fine_decode, fine_batch)
                latency, handoff_s = self._row_latency_ms(fine_size, fine_decode, fine)
                ok = latency <= target[fine_phase]
                fine_index, _ = initial_run(fine_row, fine_batch, ok, index.size)
                index = np.where(fine_index >= 0, fine_index + row.size, index)
                fine_terms = PointTerms.stack(fine, latency, handoff_s, fine_row)
                terms = np.concatenate([terms, fine_terms], axis=1)
            if not searched.all():
                index[np.repeat(~searched, n)] = -1
        rows = _grid_then_sla(is_grid, phase, index, len(phases))
        *point_terms, latency_ms, handoff_s, point_row = terms.take(rows, axis=1)
        phase, size = np.divmod(point_row.astype(int), n)
        table = self._row_table(
            size, is_decode[phase], labels[phase], PointTerms(*point_terms), latency_ms, handoff_s
        )
        return table, phase


@lru_cache(maxsize=1024)
def _block_candidates(limits: tuple[float, ...], searched: bool) -> np.ndarray:
    """Rows 0, 1, … with batch ``limits`` as tagged keys 2·(row·stride + b) + tag
    (``_row_candidates``), concatenated. Read-only (shared)."""
    rows = [_row_candidates(limit, searched) for limit in limits]
    tagged = np.concatenate(rows) + np.repeat(_row_starts(0, len(limits)), [r.size for r in rows])
    tagged.flags.writeable = False
    return tagged


@lru_cache(maxsize=64)
def _row_starts(first: int, count: int) -> np.ndarray:
    """2·row·stride of rows first … first + count − 1, as a column: a row's tagged keys start.
    Read-only (shared)."""
    starts = (np.arange(first, first + count) * (2.0 * _KEY_STRIDE))[:, None]
    starts.flags.writeable = False
    return starts


@lru_cache(maxsize=1024)
def _row_candidates(limit: float, searched: bool) -> np.ndarray:
    """One search row's batches b as sorted distinct 2·b + tag: the grid's powers of two up to
    ``limit`` and the limit itself (tag 0), and if ``searched`` the ``coarse_candidates`` of
    ``limit`` (tag 1 unless also in the grid). Read-only (shared)."""
    limits = np.array([limit])
    grid = np.concatenate([power_of_two_grid(limit), limits])
    batches = [grid[(grid >= 1) & (grid <= limit)] * 2.0]
    if searched:
        _, coarse = _unpack(_coarse_keys(limits))
        batches.append(coarse * 2.0 + 1.0)
    tagged = np.sort(np.concatenate(batches))
    batch = tagged // 2.0
    tagged = tagged[np.concatenate(([True], batch[1:] != batch[:-1]))[: tagged.size]]
    tagged.flags.writeable = False
    return tagged


@lru_cache(maxsize=16)
def _phase_arrays(phases: tuple[Phase, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per phase, whether it is decode and its label (read-only, shared)."""
    is_decode = np.array([phase is Phase.decode for phase in phases])
    labels = np.array([phase.value for phase in phases], dtype=object)
    is_decode.flags.writeable = labels.flags.writeable = False
    return is_decode, labels


def _grid_then_sla(
    is_grid: np.ndarray, phase: np.ndarray, sla: np.ndarray, n_phases: int
) -> np.ndarray:
    """Point indices in table order: per phase, its grid points (by size, then batch), then
    its SLA points by size. ``is_grid`` marks the candidate keys (sorted, so by phase) in a
    grid, ``phase`` is each point's phase, ``sla`` per search row (phase-major) its SLA
    point's index, −1 if none."""
    grid = is_grid.nonzero()[0]
    if n_phases == 1:
        return np.concatenate([grid, sla[sla >= 0]])
    starts = np.searchsorted(phase[grid], np.arange(n_phases + 1))
    per_phase = sla.reshape(n_phases, -1)
    parts = []
    for k in range(n_phases):
        parts.append(grid[starts[k] : starts[k + 1]])
        parts.append(per_phase[k][per_phase[k] >= 0])
    return np.concatenate(parts)


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
    will use; ``ReplicaSet.grid_and_sla_points`` finds it sharing the grid's pass). Pruning:
    see ``pareto_mask`` (applied phase by phase, the same as on the whole table).
    """
    replicas = ReplicaSet.build(rack, llm, precision, workload, efficiency)
    if len(replicas) == 0:
        return PointTable.concat([])
    targets = {
        phase: (workload.tpot_ms if phase is Phase.decode else workload.ttft_ms)
        if sla_points
        else None
        for phase in phases
    }
    table, phase_index = replicas.grid_and_sla_points(targets)
    if not (prune and len(table)):
        return table
    return table.take(_pareto_by_block(table, phase_index).nonzero()[0])  # indices: faster


def pareto_mask(table: PointTable) -> np.ndarray:
    """True for points no other point of the same phase dominates (exact duplicates: first kept).

    j dominates i if, in the same phase, rate_j ≥ rate_i, latency_j ≤ latency_i and energy per
    token e = power / rate satisfies e_j ≤ e_i, with one of them strict. A dominated point can
    never be the better buy: it needs more racks (capex) and more energy for the same tokens
    at no better latency.
    """
    _, group = np.unique(table.phase, return_inverse=True)
    return _pareto_within(table, group)


def _pareto_within(table: PointTable, group: np.ndarray | None) -> np.ndarray:
    """``pareto_mask`` with the phase given as ``group`` labels (points compete within a group;
    None: one group)."""
    rate = table.tokens_per_s_per_rack
    group = None if group is None else np.asarray(group)
    return _nondominated(rate, table.latency_ms, table.power_kw / np.maximum(rate, 1e-30), group)


def _pareto_by_block(table: PointTable, block: np.ndarray) -> np.ndarray:
    """``pareto_mask`` for a table whose phases are contiguous blocks (``block`` sorted): one
    matrix for all blocks, points competing only within their own block."""
    several = block.size and block[0] != block[-1]
    return _pareto_within(table, block) if several else _pareto_within(table, None)


def _nondominated(
    rate: np.ndarray, latency: np.ndarray, energy: np.ndarray, group: np.ndarray | None = None
) -> np.ndarray:
    """Pareto mask for maximising ``rate`` and minimising ``latency`` and ``energy`` among
    points of the same ``group``.

    With N[i, j] = "j is in i's group (if given) and no worse than i in all three", j
    dominates i iff N[i, j] and not N[j, i]; i and j are duplicates iff both (the later one
    is dropped). So i is dropped iff some j has N[i, j] and (not N[j, i] or j < i).
    """
    costs = np.array([-rate, latency, energy])  # all three to minimise
    no_worse = (costs[:, None, :] <= costs[:, :, None]).all(axis=0)
    if group is not None:
        no_worse &= group[None, :] == group[:, None]
    beaten = no_worse & (~no_worse.T | _earlier(rate.size))
    return ~beaten.any(axis=1)


@lru_cache(maxsize=64)
def _earlier(n: int) -> np.ndarray:
    """E[i, j] = j < i for n points (read-only, shared)."""
    earlier = np.tri(n, k=-1, dtype=bool)
    earlier.flags.writeable = False
    return earlier
