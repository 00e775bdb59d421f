"""A planning scenario: periods, workload classes, demand forecast, rack options, money, policy.

Pure data with shape checks; cross-checks against the catalog (unknown rack or LLM ids)
happen in ``planner.data``, which knows the catalog.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from rackplan.models.base import Frozen
from rackplan.models.workload import PrecisionName, SlaPercentile, Workload

HOURS_PER_YEAR = 8760.0
Name = str


class ServingMode(StrEnum):
    """How a class may be served: split prefill/decode racks, or both phases on one replica."""

    disaggregated = "disaggregated"
    aggregated = "aggregated"


class AllocationMode(StrEnum):
    """What a rack allocation does: a phase of disaggregated serving, or aggregated serving."""

    prefill = "prefill"
    decode = "decode"
    aggregated = "aggregated"


class WorkloadClass(Frozen):
    """A stream of requests to one LLM with one shape and one SLA."""

    name: Name = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")
    llm: str
    input_tokens: float = Field(gt=0)
    output_tokens: float = Field(ge=1)
    prefix_hit_rate: float = Field(default=0.0, ge=0, lt=1)
    ttft_ms: float | None = Field(default=None, gt=0)
    """TTFT target at ``sla_percentile``, ms."""
    tpot_ms: float | None = Field(default=None, gt=0)
    """TPOT target at ``sla_percentile``, ms."""
    sla_percentile: SlaPercentile = "mean"
    """Statistic the targets bound (mean, p50 … p99); see ``models.latency``."""
    speculative_draft_tokens: int = Field(default=0, ge=0, le=16)
    speculative_acceptance: float = Field(default=0.0, ge=0, lt=1)
    max_utilisation: float = Field(default=0.8, gt=0, lt=1)
    modes: frozenset[ServingMode] = frozenset({ServingMode.disaggregated, ServingMode.aggregated})
    precision: PrecisionName = "fp8"

    @model_validator(mode="after")
    def _check_speculation(self) -> WorkloadClass:
        if self.speculative_acceptance > 0 and self.speculative_draft_tokens == 0:
            raise ValueError("speculative_acceptance needs speculative_draft_tokens > 0")
        return self

    def workload(self) -> Workload:
        return Workload(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            prefix_hit_rate=self.prefix_hit_rate,
            ttft_ms=self.ttft_ms,
            tpot_ms=self.tpot_ms,
            sla_percentile=self.sla_percentile,
            speculative_draft_tokens=self.speculative_draft_tokens,
            speculative_acceptance=self.speculative_acceptance,
            max_utilisation=self.max_utilisation,
        )


class Period(Frozen):
    """One planning period (e.g. a quarter) with its site limits and prices."""

    name: Name
    hours: float = Field(gt=0)
    power_cap_mw: float | None = Field(default=None, gt=0)
    """Site power cap at the meter (IT power × PUE), MW. None: no cap."""
    capex_budget_usd: float | None = Field(default=None, ge=0)
    """Capital spend allowed in this period, USD. None: no per-period limit."""
    electricity_usd_per_kwh: float = Field(ge=0)
    pue: float = Field(default=1.2, ge=1)


class Demand(Frozen):
    """Forecast demand of one class in one period, in one of two forms.

    - ``requests_per_s``: output = rps·O and input = rps·L tokens/s (the class's lengths);
    - ``output_tokens_per_s`` with ``prefill_decode_ratio`` (input tokens per output token;
      default the class's L/O): input = ratio · output.
    """

    period: Name
    workload_class: Name
    requests_per_s: float | None = Field(default=None, ge=0)
    output_tokens_per_s: float | None = Field(default=None, ge=0)
    prefill_decode_ratio: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> Demand:
        if (self.requests_per_s is None) == (self.output_tokens_per_s is None):
            raise ValueError("give exactly one of requests_per_s or output_tokens_per_s")
        if self.prefill_decode_ratio is not None and self.output_tokens_per_s is None:
            raise ValueError("prefill_decode_ratio goes with output_tokens_per_s")
        return self

    def token_rates(self, cls: WorkloadClass) -> tuple[float, float]:
        """(input tokens/s, output tokens/s) this forecast asks for."""
        if self.requests_per_s is not None:
            return self.requests_per_s * cls.input_tokens, self.requests_per_s * cls.output_tokens
        assert self.output_tokens_per_s is not None
        ratio = (
            self.prefill_decode_ratio
            if self.prefill_decode_ratio is not None
            else cls.input_tokens / cls.output_tokens
        )
        return ratio * self.output_tokens_per_s, self.output_tokens_per_s


class RackOption(Frozen):
    """A rack type in play, with its purchase rules and optional price/power overrides."""

    rack: str
    first_period: Name | None = None
    """First period it can be bought (None: from the first period)."""
    supply_limit_per_period: int | None = Field(default=None, ge=0)
    lot_size: int = Field(default=1, ge=1)
    """Racks are bought in multiples of this (vendors sell pods)."""
    lifetime_periods: int | None = Field(default=None, ge=1)
    """Racks retire this many periods after purchase (None: they outlive the horizon)."""
    installed: int = Field(default=0, ge=0)
    """Existing fleet at the start of the first period."""
    existing_retire_period: Name | None = None
    """Period in which the existing fleet retires (None: it stays)."""
    capex_usd: float | None = Field(default=None, gt=0)
    power_kw_at_load: float | None = Field(default=None, gt=0)
    power_kw_idle: float | None = Field(default=None, ge=0)


class Economics(Frozen):
    discount_rate_per_year: float = Field(default=0.08, ge=0, lt=1)
    maintenance_fraction_per_year: float = Field(default=0.03, ge=0, lt=1)
    """Maintenance per year as a share of the capex of the installed racks."""
    salvage: Literal["none", "linear"] = "none"
    """``linear``: racks with a lifetime are credited their straight-line residual value at the
    end of the horizon (discounted)."""


class Objective(StrEnum):
    min_tco = "min_tco"
    max_served = "max_served"
    min_power = "min_power"


class Policy(Frozen):
    spare_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of installed racks kept as spares (N+k): allocation ≤ (1 − spare)·installed."""
    max_rack_types: int | None = Field(default=None, ge=1)
    objective: Objective = Objective.min_tco
    integer_replicas: bool = False
    """Allocate whole replicas (multi-rack replicas are always whole)."""
    power_cap_basis: Literal["nameplate", "expected"] = "nameplate"
    """What the site power cap limits (docs/cost-model.md): ``nameplate`` — every installed rack
    at its at-load power × PUE; ``expected`` — the expected draw: idle power of every installed
    rack plus (operating-point power − idle) × allocated racks, × PUE."""


class MeasuredRate(Frozen):
    """A measured operating point that replaces derived ones for (rack, class, mode)."""

    rack: str
    workload_class: Name
    mode: AllocationMode
    tokens_per_s_per_rack: float = Field(gt=0)
    """Output tokens/s for decode and aggregated; prompt tokens/s for prefill."""
    ttft_ms: float | None = Field(default=None, gt=0)
    tpot_ms: float | None = Field(default=None, gt=0)
    power_kw: float = Field(gt=0)
    racks_per_replica: float = Field(default=1.0, gt=0)
    source: str = Field(min_length=1)


FutureParameter = Literal["demand", "capex", "electricity", "rate"]
SampledParameter = Literal["demand_growth", "capex", "electricity", "rate"]
DistributionName = Literal["lognormal", "triangular", "uniform", "band"]


class FutureScale(Frozen):
    """One multiplier of a named future: ``parameter`` × ``scale`` for ``target`` in ``period``.

    - ``demand``: a class's forecast (target: class; blank: every class), per period or all;
    - ``capex``: a rack type's price per rack (target: rack; blank: every rack);
    - ``electricity``: the price per kWh (per period or all);
    - ``rate``: every throughput of a rack type (target: rack; blank: every rack).
    """

    parameter: FutureParameter
    target: Name | None = None
    period: Name | None = None
    scale: float = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> FutureScale:
        if self.parameter in ("capex", "rate") and self.period is not None:
            raise ValueError(f"{self.parameter} scales apply to every period: leave period blank")
        if self.parameter == "electricity" and self.target is not None:
            raise ValueError("electricity scales take no target")
        if self.parameter != "demand" and self.scale <= 0:
            raise ValueError(f"a {self.parameter} scale must be positive")
        return self


class NamedFuture(Frozen):
    """A named future with its probability and multipliers (1 where none is given)."""

    name: Name = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")
    probability: float = Field(gt=0, le=1)
    scales: tuple[FutureScale, ...] = ()


class SampledQuantity(Frozen):
    """A distribution to sample futures from (docs/scenario-files.md, table futures).

    - ``demand_growth``: a per-period growth multiplier g_t of a class's forecast (target:
      class; blank: one draw shared by every class), compounding: demand_t × Π_{s≤t} g_s.
      ``lognormal``: ln g ~ N(ln ``mode``, ``sigma``²) (mode: the median, default 1);
      ``triangular``: g ~ Tri(``low``, ``mode``, ``high``); ``uniform``: g ~ U(``low``, ``high``);
    - ``capex``, ``electricity``: one multiplier per future (capex target: rack; blank: all)
      from the same distributions;
    - ``rate``: ``band`` draws a rack's rates uniformly within each rate's validation band
      (``Column.rate_bounds``), one quantile per rack (target: rack; blank: every rack); or a
      multiplier from lognormal, triangular or uniform.
    """

    parameter: SampledParameter
    target: Name | None = None
    distribution: DistributionName
    low: float | None = Field(default=None, gt=0)
    mode: float | None = Field(default=None, gt=0)
    high: float | None = Field(default=None, gt=0)
    sigma: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SampledQuantity:
        d = self.distribution
        if d == "band" and self.parameter != "rate":
            raise ValueError("the band distribution applies to rate only")
        if d == "lognormal" and self.sigma is None:
            raise ValueError("lognormal needs sigma (and optionally mode, the median)")
        if d in ("triangular", "uniform") and (self.low is None or self.high is None):
            raise ValueError(f"{d} needs low and high")
        if d in ("triangular", "uniform") and self.low > self.high:
            raise ValueError("low must not exceed high")
        if d == "triangular" and not (self.mode is not None and self.low <= self.mode <= self.high):
            raise ValueError("triangular needs low ≤ mode ≤ high")
        if self.parameter == "electricity" and self.target is not None:
            raise ValueError("electricity takes no target")
        return self


class Futures(Frozen):
    """Uncertainty in a scenario: named futures with probabilities, or distributions to sample."""

    named: tuple[NamedFuture, ...] = ()
    sampled: tuple[SampledQuantity, ...] = ()

    @model_validator(mode="after")
    def _one_form(self) -> Futures:
        if bool(self.named) == bool(self.sampled):
            raise ValueError("give named futures or distributions to sample, not both (or none)")
        if self.named:
            names = [f.name for f in self.named]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"duplicate future name(s): {', '.join(duplicates)}")
            total = sum(f.probability for f in self.named)
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"future probabilities must add up to 1, not {total:g}")
        return self

    def references(self) -> list[tuple[str, str | None, str | None]]:
        """(parameter, target, period) of every entry, for cross-checks against the scenario."""
        found = [(s.parameter, s.target, s.period) for f in self.named for s in f.scales]
        return found + [(q.parameter, q.target, None) for q in self.sampled]


class Scenario(Frozen):
    """Everything a plan needs besides the catalog."""

    name: str = "scenario"
    periods: tuple[Period, ...] = Field(min_length=1)
    classes: tuple[WorkloadClass, ...] = Field(min_length=1)
    demand: tuple[Demand, ...]
    racks: tuple[RackOption, ...] = Field(min_length=1)
    economics: Economics = Economics()
    policy: Policy = Policy()
    total_budget_usd: float | None = Field(default=None, ge=0)
    floor_space_racks: int | None = Field(default=None, ge=0)
    measured_rates: tuple[MeasuredRate, ...] = ()
    futures: Futures | None = None
    """Uncertainty (named futures or distributions) for robust plans and stress tests; None:
    the forecast is taken as certain."""

    @model_validator(mode="after")
    def _cross_references(self) -> Scenario:
        problems = []
        for label, names in (
            ("period", [p.name for p in self.periods]),
            ("class", [c.name for c in self.classes]),
            ("rack", [r.rack for r in self.racks]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                problems.append(f"duplicate {label} name(s): {', '.join(duplicates)}")
        periods = {p.name for p in self.periods}
        classes = {c.name for c in self.classes}
        seen = set()
        for d in self.demand:
            if d.period not in periods:
                problems.append(f"demand names unknown period '{d.period}'")
            if d.workload_class not in classes:
                problems.append(f"demand names unknown class '{d.workload_class}'")
            key = (d.period, d.workload_class)
            if key in seen:
                problems.append(f"demand for class '{key[1]}' in period '{key[0]}' given twice")
            seen.add(key)
        for option in self.racks:
            for field in ("first_period", "existing_retire_period"):
                value = getattr(option, field)
                if value is not None and value not in periods:
                    problems.append(f"rack '{option.rack}' {field} '{value}' is not a period")
        for m in self.measured_rates:
            if m.workload_class not in classes:
                problems.append(f"measured rate names unknown class '{m.workload_class}'")
        problems += self._future_problems(periods, classes)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _future_problems(self, periods: set[str], classes: set[str]) -> list[str]:
        """Futures must name classes (demand), rack types (capex, rate) and periods of the
        scenario."""
        if self.futures is None:
            return []
        racks = {r.rack for r in self.racks}
        problems = []
        for parameter, target, period in self.futures.references():
            known = classes if parameter.startswith("demand") else racks
            if target is not None and target not in known:
                kind = "class" if parameter.startswith("demand") else "rack"
                problems.append(f"futures: {parameter} names unknown {kind} '{target}'")
            if period is not None and period not in periods:
                problems.append(f"futures: {parameter} names unknown period '{period}'")
        return problems

    def period_index(self, name: str) -> int:
        return [p.name for p in self.periods].index(name)

    def workload_class(self, name: str) -> WorkloadClass:
        return next(c for c in self.classes if c.name == name)
