"""From a scenario and the catalog to the numbers the MIP needs.

``prepare`` resolves catalog entries (with scenario overrides), derives the rate columns
— one per (rack, class, mode, operating point) — prunes those that cannot be optimal,
turns the forecast into per-phase demand, and runs the pre-solve diagnostics.

Column pruning is exact for continuous allocation: a column uses one rack's capacity, its
cost is its power above idle, so any point below the upper concave hull of
(power above idle, rate) — with the idle point (0, 0) — is a mix of hull points that does
at least as well. With integer replicas it is a heuristic (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rackplan.catalogs.errors import InputError, Problem
from rackplan.catalogs.loader import Catalog
from rackplan.models.base import Phase
from rackplan.models.hardware import EfficiencyFactors, RackType
from rackplan.models.operating_points import ReplicaSet, operating_points
from rackplan.models.scenario import (
    HOURS_PER_YEAR,
    AllocationMode,
    MeasuredRate,
    RackOption,
    Scenario,
    ServingMode,
    WorkloadClass,
)
from rackplan.models.serving import aggregated_sla_points, best_point
from rackplan.models.workload import PRECISIONS


@dataclass(frozen=True)
class Column:
    """One way to use a rack for a class: a mode at one operating point."""

    rack: str
    workload_class: str
    mode: AllocationMode
    decode_rate: float
    """Output tokens/s one rack delivers (decode, aggregated); 0 for prefill."""
    prefill_rate: float
    """Prompt tokens/s one rack delivers (prefill; aggregated: output rate · L/O); 0 for decode."""
    power_kw: float
    """IT power of one rack at this point, kW."""
    racks_per_replica: float
    integer: bool
    """Allocated in whole replicas (alloc = racks_per_replica · integer)."""
    batch_size: int | None = None
    chips_per_replica: int | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    source: str = "roofline"
    rate_band_low_pct: float = 0.0
    """The rate may be this much lower in reality, % (rack family's held-out validation band;
    0 for measured rates): rate_low = rate·(1 − low/100)."""
    rate_band_high_pct: float = 0.0
    """… or this much higher, %: rate_high = rate·(1 + high/100)."""

    def rate_bounds(self, rate: float) -> tuple[float, float]:
        """(low, high) of ``rate`` (this column's decode or prefill rate) from its band."""
        return (
            rate * (1 - self.rate_band_low_pct / 100),
            rate * (1 + self.rate_band_high_pct / 100),
        )

    @property
    def key(self) -> str:
        point = f"b{self.batch_size}|n{self.chips_per_replica}"
        return f"{self.rack}|{self.workload_class}|{self.mode.value}|{point}"


@dataclass(frozen=True)
class RackData:
    """A rack type in play, catalog values with scenario overrides applied."""

    spec: RackType
    option: RackOption
    first_period: int
    retire_existing_at: int | None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def capex_usd(self) -> float:
        return self.spec.capex_usd

    @property
    def power_kw_at_load(self) -> float:
        return self.spec.power_kw_at_load

    @property
    def power_kw_idle(self) -> float:
        return self.spec.power_kw_idle


@dataclass(frozen=True)
class Diagnostic:
    """A pre-solve finding in user terms. ``fatal`` ones make the scenario infeasible."""

    kind: str
    message: str
    fatal: bool
    workload_class: str | None = None
    period: str | None = None


@dataclass(frozen=True)
class PlanData:
    scenario: Scenario
    racks: dict[str, RackData]
    columns: list[Column]
    demand_decode: dict[tuple[str, str], float]
    """(class, period) → output tokens/s to provision: forecast / max utilisation."""
    demand_prefill: dict[tuple[str, str], float]
    """(class, period) → prompt tokens/s to provision: forecast / max utilisation."""
    forecast_output: dict[tuple[str, str], float]
    """(class, period) → forecast output tokens/s (before the utilisation head-room)."""
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def periods(self) -> list[str]:
        return [p.name for p in self.scenario.periods]

    @property
    def classes(self) -> list[str]:
        return [c.name for c in self.scenario.classes]

    def discount_factor(self, t: int) -> float:
        """1/(1 + d)^y with y the years from the plan start to the start of period t."""
        years = sum(p.hours for p in self.scenario.periods[:t]) / HOURS_PER_YEAR
        return (1.0 + self.scenario.economics.discount_rate_per_year) ** (-years)

    def end_discount_factor(self) -> float:
        years = sum(p.hours for p in self.scenario.periods) / HOURS_PER_YEAR
        return (1.0 + self.scenario.economics.discount_rate_per_year) ** (-years)

    def available(self, rack: str, t: int) -> bool:
        """Whether racks of this type can be bought in period t."""
        return t >= self.racks[rack].first_period

    def retiring_purchase_period(self, rack: str, t: int) -> int | None:
        """Period whose purchases retire at the start of t (t − lifetime), if any."""
        life = self.racks[rack].option.lifetime_periods
        return t - life if life is not None and t - life >= 0 else None

    def salvage_fraction(self, rack: str, t: int) -> float:
        """Straight-line residual value share, at horizon end, of racks bought in period t."""
        if self.scenario.economics.salvage != "linear":
            return 0.0
        life = self.racks[rack].option.lifetime_periods
        if life is None:
            return 0.0
        remaining = t + life - len(self.scenario.periods)
        return max(0.0, remaining / life)

    def fatal(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.fatal]


def _apply_overrides(spec: RackType, option: RackOption) -> RackType:
    update = {
        name: getattr(option, name)
        for name in ("capex_usd", "power_kw_at_load", "power_kw_idle")
        if getattr(option, name) is not None
    }
    if not update:
        return spec
    merged = spec.model_dump() | update
    return RackType.model_validate(merged)


def _resolve(scenario: Scenario, catalog: Catalog) -> dict[str, RackData]:
    problems = []
    for option in scenario.racks:
        if option.rack not in catalog.racks:
            problems.append(
                Problem(
                    "scenario",
                    None,
                    "racks",
                    f"unknown rack id; known: {', '.join(sorted(catalog.racks))}",
                    option.rack,
                )
            )
    for cls in scenario.classes:
        if cls.llm not in catalog.llms:
            problems.append(
                Problem(
                    "scenario",
                    None,
                    "classes.llm",
                    f"class '{cls.name}': unknown LLM id; known: {', '.join(sorted(catalog.llms))}",
                    cls.llm,
                )
            )
    for option in scenario.racks:
        spec = catalog.racks.get(option.rack)
        if spec is not None and spec.family not in catalog.efficiency:
            problems.append(
                Problem(
                    "scenario",
                    None,
                    "racks",
                    f"rack family '{spec.family}' has no efficiency factors",
                    option.rack,
                )
            )
    if problems:
        raise InputError(problems)
    racks = {}
    for option in scenario.racks:
        spec = _apply_overrides(catalog.racks[option.rack], option)
        first = scenario.period_index(option.first_period) if option.first_period else 0
        retire = (
            scenario.period_index(option.existing_retire_period)
            if option.existing_retire_period
            else None
        )
        racks[option.rack] = RackData(spec, option, first, retire)
    return racks


def upper_hull(points: list[tuple[float, float, int]]) -> list[int]:
    """Indices of points on the upper concave hull of (x, y) that rises from (0, 0).

    x = extra power (kW), y = rate. Points below the hull are convex mixes of hull points
    with no more power and no less rate. Only the rising part is kept.
    """
    ordered = sorted(points, key=lambda p: (p[0], -p[1]))
    hull: list[tuple[float, float, int]] = [(0.0, 0.0, -1)]
    for x, y, index in ordered:
        if y <= hull[-1][1]:
            continue  # no more rate for more power
        while len(hull) >= 2:
            (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:
                hull.pop()  # the middle point lies on or under the chord
            else:
                break
        hull.append((x, y, index))
    return [index for _, _, index in hull[1:]]


def _phase_columns(
    replicas: ReplicaSet, cls: WorkloadClass, phase: Phase, integer_all: bool, catalog: Catalog
) -> list[Column]:
    rack = replicas.rack
    target = cls.ttft_ms if phase is Phase.prefill else cls.tpot_ms
    points = operating_points(
        rack,
        replicas.llm,
        replicas.precision,
        replicas.workload,
        catalog.efficiency_for(rack),
        phases=(phase,),
    )
    rows = [
        r
        for r in points.records()
        if target is None or r.get("ttft_ms", r.get("tpot_ms")) <= target
    ]
    candidates = [
        (r["power_kw"] - rack.power_kw_idle, r["tokens_per_s_per_rack"], i)
        for i, r in enumerate(rows)
    ]
    columns = []
    for i in upper_hull(candidates):
        r = rows[i]
        decode = phase is Phase.decode
        columns.append(
            Column(
                rack=rack.id,
                workload_class=cls.name,
                mode=AllocationMode(phase.value),
                decode_rate=r["tokens_per_s_per_rack"] if decode else 0.0,
                prefill_rate=0.0 if decode else r["tokens_per_s_per_rack"],
                power_kw=r["power_kw"],
                racks_per_replica=r["racks_per_replica"],
                integer=integer_all or r["racks_per_replica"] > 1,
                batch_size=r["batch_size"],
                chips_per_replica=r["chips_per_replica"],
                ttft_ms=r.get("ttft_ms"),
                tpot_ms=r.get("tpot_ms"),
            )
        )
    return columns


def _aggregated_columns(
    replicas: ReplicaSet, cls: WorkloadClass, integer_all: bool
) -> list[Column]:
    rack = replicas.rack
    points = aggregated_sla_points(replicas)
    candidates = [
        (p["power_kw"] - rack.power_kw_idle, p["output_tokens_per_s_per_rack"], i)
        for i, p in enumerate(points)
    ]
    ratio = cls.input_tokens / cls.output_tokens
    return [
        Column(
            rack=rack.id,
            workload_class=cls.name,
            mode=AllocationMode.aggregated,
            decode_rate=points[i]["output_tokens_per_s_per_rack"],
            prefill_rate=points[i]["output_tokens_per_s_per_rack"] * ratio,
            power_kw=points[i]["power_kw"],
            racks_per_replica=points[i]["racks_per_replica"],
            integer=integer_all or points[i]["racks_per_replica"] > 1,
            batch_size=points[i]["batch_size"],
            chips_per_replica=points[i]["chips_per_replica"],
            ttft_ms=points[i]["ttft_ms"],
            tpot_ms=points[i]["tpot_ms"],
        )
        for i in upper_hull(candidates)
    ]


def _measured_column(m: MeasuredRate, cls: WorkloadClass, integer_all: bool) -> Column:
    output = m.tokens_per_s_per_rack if m.mode is not AllocationMode.prefill else 0.0
    prompt = {
        AllocationMode.prefill: m.tokens_per_s_per_rack,
        AllocationMode.decode: 0.0,
        AllocationMode.aggregated: m.tokens_per_s_per_rack * cls.input_tokens / cls.output_tokens,
    }[m.mode]
    return Column(
        rack=m.rack,
        workload_class=cls.name,
        mode=m.mode,
        decode_rate=output,
        prefill_rate=prompt,
        power_kw=m.power_kw,
        racks_per_replica=m.racks_per_replica,
        integer=integer_all or m.racks_per_replica > 1,
        ttft_ms=m.ttft_ms,
        tpot_ms=m.tpot_ms,
        source=f"measured: {m.source}",
    )


def _meets_sla(column: Column, cls: WorkloadClass) -> bool:
    ttft_ok = cls.ttft_ms is None or column.ttft_ms is None or column.ttft_ms <= cls.ttft_ms
    tpot_ok = cls.tpot_ms is None or column.tpot_ms is None or column.tpot_ms <= cls.tpot_ms
    return ttft_ok and tpot_ok


def build_columns(
    scenario: Scenario, catalog: Catalog, racks: dict[str, RackData]
) -> tuple[list[Column], list[Diagnostic]]:
    """All pruned columns, and diagnostics for (class, phase) pairs no rack can serve."""
    columns: list[Column] = []
    diagnostics: list[Diagnostic] = []
    integer_all = scenario.policy.integer_replicas
    measured = {(m.rack, m.workload_class, m.mode): m for m in scenario.measured_rates}
    for cls in scenario.classes:
        llm = catalog.llm(cls.llm)
        precision = PRECISIONS[cls.precision]
        unreachable: dict[str, list[str]] = {"prefill": [], "decode": [], "aggregated": []}
        fits_any = False
        for rack_id, rack in racks.items():
            replicas = ReplicaSet.build(
                rack.spec, llm, precision, cls.workload(), catalog.efficiency_for(rack.spec)
            )
            fits_any = fits_any or len(replicas) > 0
            modes: list[AllocationMode] = []
            if ServingMode.disaggregated in cls.modes:
                modes += [
                    AllocationMode(p.value)
                    for p in (Phase.prefill, Phase.decode)
                    if rack.spec.can_serve(p)
                ]
            if ServingMode.aggregated in cls.modes and rack.spec.roles >= {
                Phase.prefill,
                Phase.decode,
            }:
                modes.append(AllocationMode.aggregated)
            for mode in modes:
                if (rack_id, cls.name, mode) in measured:
                    column = _measured_column(measured[(rack_id, cls.name, mode)], cls, integer_all)
                    found = [column] if _meets_sla(column, cls) else []
                elif mode is AllocationMode.aggregated:
                    found = _aggregated_columns(replicas, cls, integer_all)
                else:
                    found = _phase_columns(replicas, cls, Phase(mode.value), integer_all, catalog)
                if (rack_id, cls.name, mode) not in measured:
                    found = _with_rate_band(found, catalog.efficiency_for(rack.spec))
                if not found and mode is not AllocationMode.aggregated:
                    phase = Phase(mode.value)
                    target = cls.ttft_ms if phase is Phase.prefill else cls.tpot_ms
                    reason = best_point(replicas, phase, target).reason
                    unreachable[mode.value].append(reason or f"no {mode.value} point on {rack_id}")
                columns.extend(found)
        if not fits_any:
            diagnostics.append(
                Diagnostic(
                    "llm_fits_no_rack",
                    f"class '{cls.name}': {cls.llm} fits no rack type in the scenario "
                    f"(weights {llm.params_total_b * PRECISIONS[cls.precision].weight_bytes:.0f} "
                    f"GB at {cls.precision})",
                    True,
                    cls.name,
                )
            )
            continue
        own = [c for c in columns if c.workload_class == cls.name]
        decode_ok = any(c.decode_rate > 0 for c in own)
        prefill_ok = any(c.prefill_rate > 0 for c in own)
        for phase_name, ok, target in (
            ("decode", decode_ok, cls.tpot_ms),
            ("prefill", prefill_ok, cls.ttft_ms),
        ):
            if not ok:
                label = "TPOT" if phase_name == "decode" else "TTFT"
                detail = "; ".join(unreachable[phase_name]) or "no rack type serves this phase"
                diagnostics.append(
                    Diagnostic(
                        "sla_unreachable",
                        f"class '{cls.name}': {label} {target} ms unreachable for {phase_name} — "
                        f"{detail}",
                        True,
                        cls.name,
                    )
                )
    return columns, diagnostics


def _with_rate_band(columns: list[Column], efficiency: EfficiencyFactors) -> list[Column]:
    """Roofline columns carry their rack family's validation band (efficiency.csv)."""
    return [
        replace(
            c,
            rate_band_low_pct=efficiency.rate_error_low_pct,
            rate_band_high_pct=efficiency.rate_error_high_pct,
        )
        for c in columns
    ]


def _demand(scenario: Scenario) -> tuple[dict, dict, dict]:
    decode, prefill, output = {}, {}, {}
    for cls in scenario.classes:
        for period in scenario.periods:
            decode[(cls.name, period.name)] = 0.0
            prefill[(cls.name, period.name)] = 0.0
            output[(cls.name, period.name)] = 0.0
    for d in scenario.demand:
        cls = scenario.workload_class(d.workload_class)
        prompt, out = d.token_rates(cls)
        key = (cls.name, d.period)
        output[key] = out
        decode[key] = out / cls.max_utilisation
        prefill[key] = prompt / cls.max_utilisation
    return decode, prefill, output


def _availability_diagnostics(data: PlanData) -> list[Diagnostic]:
    """Demand in a period before any rack type able to serve the class exists."""
    found = []
    for cls in data.classes:
        serving_racks = {c.rack for c in data.columns if c.workload_class == cls}
        for t, period in enumerate(data.periods):
            if data.demand_decode[(cls, period)] <= 0 and data.demand_prefill[(cls, period)] <= 0:
                continue
            ready = [
                r
                for r in serving_racks
                if data.racks[r].first_period <= t
                or (
                    data.racks[r].option.installed > 0
                    and (
                        data.racks[r].retire_existing_at is None
                        or data.racks[r].retire_existing_at > t
                    )
                )
            ]
            if serving_racks and not ready:
                firsts = ", ".join(
                    f"{r} from {data.periods[data.racks[r].first_period]}"
                    for r in sorted(serving_racks)
                )
                found.append(
                    Diagnostic(
                        "demand_before_availability",
                        f"class '{cls}' has demand in {period} but no rack type that serves it is "
                        f"available yet ({firsts})",
                        True,
                        cls,
                        period,
                    )
                )
    return found


def _measured_fallbacks(columns: list[Column]) -> list[Diagnostic]:
    """A warning per (rack, class) with measured rates for some modes and roofline columns for
    others: the unlisted modes fall back to the roofline, and the plan says which."""
    measured: dict[tuple[str, str], set[str]] = {}
    derived: dict[tuple[str, str], set[str]] = {}
    for col in columns:
        kind = measured if col.source.startswith("measured") else derived
        kind.setdefault((col.rack, col.workload_class), set()).add(col.mode.value)
    found = []
    for (rack, cls), modes in sorted(derived.items()):
        if (rack, cls) not in measured:
            continue
        fallback = ", ".join(sorted(modes))
        found.append(
            Diagnostic(
                "measured_rate_fallback",
                f"class '{cls}' on {rack}: measured rates cover "
                f"{', '.join(sorted(measured[(rack, cls)]))} only; {fallback} use the roofline",
                False,
                cls,
            )
        )
    return found


def prepare(scenario: Scenario, catalog: Catalog) -> PlanData:
    """Resolve, derive and prune everything the model needs; collect pre-solve diagnostics."""
    racks = _resolve(scenario, catalog)
    columns, diagnostics = build_columns(scenario, catalog, racks)
    diagnostics += _measured_fallbacks(columns)
    decode, prefill, output = _demand(scenario)
    data = PlanData(scenario, racks, columns, decode, prefill, output, diagnostics)
    data.diagnostics.extend(_availability_diagnostics(data))
    return data
