"""Solving: HiGHS through Pyomo's persistent interface, so what-if changes update the model.

``PlanSolver`` owns one model and one persistent HiGHS instance. Parameter changes (caps,
budgets, demand, prices) are pushed as updates, not rebuilds. Option names are checked
against HiGHS's own list (Pyomo would pass a misspelled one on silently).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import highspy
import numpy as np
import pyomo.core as pyo  # not pyomo.environ: its plugins cost ~100 ms of every command's start
from pyomo.contrib.solver.common.results import TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs  # the persistent interface, no factory

from rackplan.catalogs.errors import InputError, Problem
from rackplan.planner.core.data import PlanData
from rackplan.planner.core.model import build_model, fleet_floor, fleet_upper_bounds
from rackplan.planner.core.reoptimise import (
    FEASIBILITY_TOLERANCE,
    Proof,
    Relaxation,
    WarmRelaxation,
    exact,
    free_integers,
    is_feasible,
    objective_value,
    proof_of,
)
from rackplan.planner.core.start import (
    START_GAP_SHARE,
    StartResult,
    lp_neighbourhood_start,
    start_columns,
)

_HIGHS_OPTION_NAMES: set[str] | None = None


def highs_option_names() -> set[str]:
    """Every option name HiGHS accepts (read from highspy itself)."""
    global _HIGHS_OPTION_NAMES
    if _HIGHS_OPTION_NAMES is None:
        h = highspy.Highs()
        names = set()
        for name in dir(h.getOptions()):
            if not name.startswith("_"):
                names.add(name)
        _HIGHS_OPTION_NAMES = names
    return _HIGHS_OPTION_NAMES


@dataclass(frozen=True)
class SolveOptions:
    time_limit_s: float = 60.0
    rel_gap: float = 0.005
    """Relative MIP gap to prove. 0.5 %: tighter gaps cost minutes on realistic fleets while
    moving the plan by less than the catalog's own uncertainty."""
    threads: int = 1
    """HiGHS MIP gained nothing from 2 threads on this 2-core machine (DESIGN §5)."""
    highs_options: dict[str, object] = field(default_factory=dict)
    start_heuristic: str = "auto"
    """The LP-neighbourhood start (``planner/core/start.py``) on the first solve: ``on``,
    ``off``, or ``auto`` — on when the model has at least ``START_HEURISTIC_MIN_INTEGERS``
    integers."""
    start_time_share: float = 0.5
    """At most this share of the solve's time limit goes to the start heuristic."""

    def checked_highs_options(self) -> dict[str, object]:
        unknown = sorted(set(self.highs_options) - highs_option_names())
        if unknown:
            raise InputError(
                [
                    Problem("solver options", None, name, "not a HiGHS option name")
                    for name in unknown
                ]
            )
        return dict(self.highs_options)


START_HEURISTIC_MIN_INTEGERS = 100
"""``auto``: below this many integer variables HiGHS finds good plans fast on its own (plan S,
25 integers, 40 ms); plan M has 185 (2–4 s without the start, 1–1.4 s with it), L 1,658."""

OPTIMAL_GAP = 1e-4
"""A plan is called optimal only when its proven relative gap is at most this."""

NO_UPDATES = {
    name: False
    for name in (
        "check_for_new_or_removed_constraints",
        "check_for_new_or_removed_vars",
        "check_for_new_or_removed_params",
        "check_for_new_objective",
        "update_constraints",
        "update_vars",
        "update_parameters",
        "update_named_expressions",
        "update_objective",
    )
}
"""Pyomo's per-solve model scan switched off: for a solve whose changes are already pushed."""

CUT_SHORT = {TerminationCondition.maxTimeLimit, TerminationCondition.iterationLimit}
INFEASIBLE = {TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded}


def solve_status(condition: TerminationCondition, has_incumbent: bool, gap: float | None) -> str:
    """optimal (gap ≤ ``OPTIMAL_GAP``) | feasible (a plan whose gap is larger or unknown; the
    solver reached its own gap target) | time_limit (a plan, stopped by the time limit before
    proving ``OPTIMAL_GAP``) | infeasible | no_solution (no plan in the time) | error."""
    if has_incumbent:
        if gap is not None and gap <= OPTIMAL_GAP:
            return "optimal"
        return "time_limit" if condition in CUT_SHORT else "feasible"
    if condition in INFEASIBLE:
        return "infeasible"
    return "no_solution" if condition in CUT_SHORT else "error"


def status_text(status: str, gap: float | None) -> str:
    """The status in words: "optimal", "within 0.31 % of optimal", "time limit reached: within
    2.4 % of optimal", or the status itself."""
    within = "gap unknown" if gap is None else f"within {100 * gap:.2g} % of optimal"
    if status == "feasible":
        return within
    if status == "time_limit":
        return f"time limit reached: {within}"
    return {"no_solution": "no plan found within the time limit"}.get(status, status)


ABSOLUTE_GAP = 1e-6
"""A difference between plan and bound this small in *solver* units (HiGHS's own absolute gap
tolerance; user units ÷ ``objective_scale``) is no gap: an objective of 0 (nothing to serve)
has no relative gap."""


def relative_gap(objective: float, bound: float, scale: float = 1.0) -> float:
    """|objective − bound| / |objective| (user units), or 0 when they differ by at most
    ``ABSOLUTE_GAP`` · ``scale`` (``scale``: the model's objective scale)."""
    difference = abs(objective - bound)
    if difference <= ABSOLUTE_GAP * max(scale, 1.0):
        return 0.0
    return difference / max(abs(objective), 1e-9)


@dataclass(frozen=True)
class SolveOutcome:
    """Solver facts in user terms."""

    status: str
    """See ``solve_status``: optimal only when the gap is ≤ ``OPTIMAL_GAP``."""
    termination: str
    objective: float | None
    best_bound: float | None
    gap: float | None
    """Relative gap |incumbent − bound| / max(|incumbent|, 1e-9), 0 within ``ABSOLUTE_GAP``;
    computed here (Pyomo's legacy gap is absolute)."""
    build_s: float
    solve_s: float
    variables: int
    integer_variables: int
    constraints: int
    highs_version: str
    tiebreak: float | None = None
    """Value of the tie-break term (objective units) the solver added to the objective; the
    reported objective and bound exclude it. None without a tie-break (min_tco, elastic)."""
    start: str | None = None
    """What the start heuristic did on this solve, in words (None when it did not run)."""

    @property
    def has_solution(self) -> bool:
        return self.objective is not None and self.status in {"optimal", "feasible", "time_limit"}

    @property
    def status_text(self) -> str:
        return status_text(self.status, self.gap)


def model_size(model: pyo.ConcreteModel) -> tuple[int, int, int]:
    variables = integers = 0
    for v in model.component_data_objects(pyo.Var, active=True, descend_into=True):
        if v.fixed:
            continue
        variables += 1
        integers += int(v.is_integer() or v.is_binary())
    constraints = sum(
        1 for _ in model.component_data_objects(pyo.Constraint, active=True, descend_into=True)
    )
    return variables, integers, constraints


class TimeBudget:
    """One time budget for a whole plan (main solve, baselines, shadow prices, Pareto steps…).

    Each step gets what is left (``remaining``, seconds); a step stopped by the limit, or
    skipped because nothing was left, is recorded in ``cut_short`` by name.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.deadline = clock() + seconds
        self.cut_short: list[str] = []

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def spent(self) -> bool:
        return self.remaining() <= 0.0

    def cut(self, step: str) -> None:
        if step not in self.cut_short:
            self.cut_short.append(step)

    def skip_if_spent(self, step: str) -> bool:
        """True (and ``step`` recorded as cut short) when no time is left for it."""
        if self.spent():
            self.cut(step)
            return True
        return False


def _solution(values: np.ndarray) -> highspy.HighsSolution:
    """Column values as a HiGHS solution (for ``setSolution``)."""
    solution = highspy.HighsSolution()
    solution.col_value = [float(x) for x in values]
    solution.value_valid = True
    return solution


def _better(lp: highspy.HighsLp, first: np.ndarray, second: np.ndarray) -> bool:
    """``first`` has an objective at least as good as ``second``'s on ``lp``."""
    a, b = objective_value(lp, first), objective_value(lp, second)
    return a >= b if lp.sense_ == highspy.ObjSense.kMaximize else a <= b


class PlanSolver:
    """One model, one persistent HiGHS instance; ``solve`` may be called after updates.

    With a ``TimeBudget`` every solve gets at most what is left of it, and solves stopped by
    the limit are recorded there; without one each solve gets ``options.time_limit_s``.
    """

    def __init__(
        self,
        data: PlanData,
        options: SolveOptions | None = None,
        elastic: bool = False,
        budget: TimeBudget | None = None,
    ):
        self.data = data
        self.options = options or SolveOptions()
        self.options.checked_highs_options()
        self.budget = budget
        start = time.perf_counter()
        self.model = build_model(data, elastic=elastic)
        self.build_s = time.perf_counter() - start
        self.solver = Highs()
        self._size = model_size(self.model)
        self._loaded = False
        self._start: highspy.HighsSolution | None = None
        self._bounds_stale = False
        self._heuristic: StartResult | None = None
        self._relaxation = WarmRelaxation()
        self._mip_start: highspy.HighsSolution | None = None
        """The plan handed to HiGHS as its MIP start on the next run (set by ``solve``)."""
        self._heuristic_first = False
        """Run the LP-neighbourhood heuristic inside the next HiGHS run (a first solve: the
        model is loaded into HiGHS only then)."""
        self.quick_proofs = 0
        """Re-solves answered by ``_reoptimise`` without branch and bound."""
        self._install_warm_start()

    def _install_warm_start(self) -> None:
        """Start HiGHS from the best plan at hand.

        Pyomo's HiGHS interface has no warm-start hook, so its ``_solve`` (called after the
        parameter updates are pushed) is wrapped: a re-solve hands over the plan ``_reoptimise``
        chose (``Highs.setSolution``); a first solve of a big enough model runs the
        LP-neighbourhood heuristic there. Other callers (the LP duals) get neither.
        """
        inner = self.solver._solve

        def solve_from_best_start():
            start, self._mip_start = self._mip_start, None
            first, self._heuristic_first = self._heuristic_first, False
            if start is not None:
                self.solver._solver_model.setSolution(start)
            elif first:
                self._run_first_heuristic()
            return inner()

        self.solver._solve = solve_from_best_start

    def _wants_heuristic(self) -> bool:
        """A non-elastic model with enough integers, and the option allows it."""
        choice = self.options.start_heuristic
        if choice == "off" or self.model.elastic:
            return False
        integers = self._size[1]
        return integers > 0 and (choice == "on" or integers >= START_HEURISTIC_MIN_INTEGERS)

    def _heuristic_plan(
        self,
        time_limit_s: float,
        relaxation: Relaxation | None = None,
        rel_gap: float | None = None,
        gap_share: float = START_GAP_SHARE,
    ) -> StartResult:
        """The LP-neighbourhood heuristic on the loaded model, within ``start_time_share`` of
        ``time_limit_s``; ``relaxation`` saves it solving the LP when the caller has it. It
        stops within ``gap_share`` · ``rel_gap`` (default the options' gap) of the LP bound."""
        columns = start_columns(self.model, self.data, self.solver._pyomo_var_to_solver_var_map)
        result = lp_neighbourhood_start(
            self.solver._solver_model,
            columns,
            self.options.rel_gap if rel_gap is None else rel_gap,
            self.options.start_time_share * time_limit_s,
            None if relaxation is None else (relaxation.values, relaxation.bound),
            gap_share,
        )
        self._heuristic = result
        return result

    def _run_first_heuristic(self) -> None:
        """Inside a first HiGHS run: hand HiGHS the heuristic's plan as a MIP start and take its
        time off this run's time limit (one budget)."""
        config = self.solver._active_config
        limit = config.time_limit if config.time_limit is not None else self.options.time_limit_s
        result = self._heuristic_plan(limit)
        if result.values is not None:
            self.solver._solver_model.setSolution(_solution(np.asarray(result.values)))
        config.time_limit = max(limit - result.seconds, 0.01)

    def _reoptimise(self, rel_gap: float, time_limit_s: float) -> Proof | None:
        """A re-solve after parameter changes: push them, then try to prove a plan within
        ``rel_gap`` of the changed model's warm-started LP relaxation (``reoptimise.py``) —
        first the previous plan if it is still feasible, then (big models) the heuristic's plan
        built from that relaxation. Returns the proof, or None after choosing the best of those
        plans as the MIP start of the full solve that must follow. A model whose integers are
        all fixed is an LP: its relaxation's optimum is returned as exact."""
        clock = time.perf_counter()
        self.solver._active_config = self.solver.config
        self.solver.update()
        lp = self.solver._solver_model.getLp()
        if not free_integers(lp):  # every integer fixed (LP duals, some baselines): an LP
            relaxation = self._relaxation.solve(lp, time_limit_s)
            return None if relaxation is None else exact(relaxation)
        tolerance = self._feasibility_tolerance()
        previous = np.asarray(self._start.col_value, dtype=float)
        feasible = is_feasible(lp, previous, tolerance)
        heuristic = self._wants_heuristic()
        self._mip_start = self._start  # if nothing better: HiGHS may still repair it
        if not feasible and not heuristic:
            return None
        relaxation = self._relaxation.solve(lp, time_limit_s)
        if relaxation is None:
            return None
        if feasible:
            proof = proof_of(lp, previous, relaxation, rel_gap)
            if proof is not None or not heuristic:
                return proof
        # its plan is the answer if within the gap of the relaxation: no room needs leaving
        left = max(time_limit_s - (time.perf_counter() - clock), 0.0)
        result = self._heuristic_plan(left, relaxation, rel_gap, gap_share=1.0)
        if result.values is None:
            return None
        built = np.asarray(result.values, dtype=float)
        built_feasible = is_feasible(lp, built, tolerance)
        if built_feasible:
            proof = proof_of(lp, built, relaxation, rel_gap)
            if proof is not None:
                return proof
        keep_previous = feasible and (not built_feasible or _better(lp, previous, built))
        if not keep_previous:
            self._mip_start = _solution(built)  # HiGHS checks (and may repair) a start itself
        return None

    def _feasibility_tolerance(self) -> float:
        """HiGHS's MIP feasibility tolerance: the user's ``mip_feasibility_tolerance`` if set."""
        value = self.options.highs_options.get("mip_feasibility_tolerance")
        return FEASIBILITY_TOLERANCE if value is None else float(value)

    def _heuristic_text(self) -> str | None:
        result, self._heuristic = self._heuristic, None
        if result is None:
            return None
        if result.values is None:
            return f"LP-neighbourhood start: no plan found ({result.seconds:.2f} s)"
        scale = getattr(self.model, "objective_scale", 1.0)
        away = abs(result.objective - result.lp_bound) / max(abs(result.objective), 1e-9)
        return (
            f"LP-neighbourhood start: solver objective {result.objective * scale:.6g} "
            f"({100 * away:.2g} % from the LP bound) in {result.seconds:.2f} s"
        )

    def _remember_incumbent(self) -> None:
        highs = self.solver._solver_model
        if highs is None:
            return
        solution = highs.getSolution()
        if solution.value_valid:
            self._start = _solution(np.asarray(solution.col_value))

    def time_limit(self) -> float:
        """Seconds the next solve may take: the option, capped by what is left of the budget."""
        limit = self.options.time_limit_s
        return limit if self.budget is None else min(limit, self.budget.remaining())

    def solve(self, step: str = "main solve") -> SolveOutcome:
        """Solve (or re-solve after changes) and load the incumbent into the model.

        Re-solves start from the previous incumbent (``_install_warm_start``). ``step`` names
        the solve in the budget's ``cut_short`` list if the time limit stops it.
        """
        options = self.options
        if self._bounds_stale:
            self._refresh_fleet_floor()
        solver_options = {"mip_rel_gap": options.rel_gap, **options.checked_highs_options()}
        start = time.perf_counter()
        limit = self.time_limit()
        pushed: dict[str, bool] = {}
        if self._loaded and self._start is not None:
            proof = self._reoptimise(float(solver_options["mip_rel_gap"]), limit)
            if proof is not None:
                return self._proven_outcome(proof, time.perf_counter() - start)
            pushed = {"auto_updates": NO_UPDATES}  # _reoptimise pushed the changes already
        else:
            self._heuristic_first = self._wants_heuristic()
        results = self.solver.solve(
            self.model,
            time_limit=max(limit - (time.perf_counter() - start), 0.0),
            threads=options.threads,
            load_solutions=False,
            raise_exception_on_nonoptimal_result=False,
            solver_options=solver_options,
            **pushed,
        )
        if not self._loaded:
            self._loaded = True
            self._tune_updates()
        solve_s = time.perf_counter() - start
        outcome = self._outcome(results, solve_s)
        if self.budget is not None and results.termination_condition in CUT_SHORT:
            self.budget.cut(step)
        return outcome

    def _proven_outcome(self, proof: Proof, solve_s: float) -> SolveOutcome:
        """The outcome of a re-solve answered by a ``Proof``: the plan is loaded into the model,
        remembered as the next re-solve's start and reported with the proven gap."""
        self.quick_proofs += 1
        self._mip_start = None
        self._start = _solution(proof.values)
        solver = self.solver
        for var_id, column in solver._pyomo_var_to_solver_var_map.items():
            var = solver._vars[var_id][0]
            if not var.fixed:
                var.set_value(float(proof.values[column]), skip_validation=True)
        scale = getattr(self.model, "objective_scale", 1.0)
        incumbent, bound, tiebreak = self._pure(proof.objective * scale, proof.bound * scale)
        return self._outcome_of(
            TerminationCondition.convergenceCriteriaSatisfied, incumbent, bound, tiebreak, solve_s
        )

    def _tune_updates(self) -> None:
        """After the first solve, only parameter values change between what-ifs: skip the scans
        for new or removed components (large models: update 0.85 s → 0.15 s, DESIGN §5)."""
        updates = self.solver.config.auto_updates
        updates.check_for_new_or_removed_constraints = False
        updates.check_for_new_or_removed_vars = False
        updates.check_for_new_or_removed_params = False
        updates.check_for_new_objective = False
        updates.update_constraints = False
        updates.update_named_expressions = False
        updates.update_vars = False
        self._skip_unchanged_objective()

    def _objective_parameters(self) -> dict[str, dict]:
        """Current values of the mutable parameters the objective's coefficients depend on:
        capex, electricity prices and (max_served weights tokens by it) demand."""
        m = self.model
        names = ["capex_usd", "electricity_usd_per_kwh", "demand"]
        return {name: {k: v.value for k, v in getattr(m, name).items()} for name in names}

    def _skip_unchanged_objective(self) -> None:
        """Pyomo's HiGHS interface re-evaluates every objective coefficient that involves a
        mutable parameter on every update (plan M: ~16k coefficients, about half of a what-if
        re-solve). Wrap its parameter update so the objective is re-pushed only when one of its
        parameters changed since the last push (compared by value, whoever changed it)."""
        inner = self.solver.update_parameters
        pushed = [self._objective_parameters()]

        def update_parameters() -> None:
            objective = getattr(self.solver, "_mutable_objective", None)
            now = self._objective_parameters()
            if objective is None or now != pushed[0]:
                pushed[0] = now
                return inner()
            own = vars(objective).get("update")  # an instance-level override, if any
            objective.update = lambda: None
            try:
                return inner()
            finally:
                if own is None:
                    del objective.update
                else:
                    objective.update = own

        self.solver.update_parameters = update_parameters

    def enable_variable_updates(self, enabled: bool = True) -> None:
        """Fixing or unfixing variables (baselines, LP duals) needs variable updates on."""
        self.solver.config.auto_updates.update_vars = enabled

    def _outcome(self, results, solve_s: float) -> SolveOutcome:
        condition = results.termination_condition
        scale = getattr(self.model, "objective_scale", 1.0)
        incumbent = results.incumbent_objective
        bound = results.objective_bound
        incumbent = None if incumbent is None else incumbent * scale
        bound = None if bound is None else bound * scale
        tiebreak = None
        if incumbent is not None and math.isfinite(incumbent):
            results.solution_loader.load_vars()
            self._remember_incumbent()
            incumbent, bound, tiebreak = self._pure(incumbent, bound)
        return self._outcome_of(condition, incumbent, bound, tiebreak, solve_s)

    def _outcome_of(
        self,
        condition: TerminationCondition,
        incumbent: float | None,
        bound: float | None,
        tiebreak: float | None,
        solve_s: float,
    ) -> SolveOutcome:
        """Solver facts in user units: ``incumbent``/``bound`` already without the tie-break."""
        has_incumbent = incumbent is not None and math.isfinite(incumbent)
        gap = None
        if has_incumbent and bound is not None and math.isfinite(bound):
            gap = relative_gap(incumbent, bound, getattr(self.model, "objective_scale", 1.0))
        status = solve_status(condition, has_incumbent, gap)
        variables, integers, constraints = self._size
        return SolveOutcome(
            status=status,
            termination=condition.name,
            objective=incumbent if has_incumbent else None,
            best_bound=bound if bound is not None and math.isfinite(bound) else None,
            gap=gap,
            build_s=self.build_s,
            solve_s=solve_s,
            variables=variables,
            integer_variables=integers,
            constraints=constraints,
            highs_version=".".join(str(x) for x in self.solver.version()),
            tiebreak=tiebreak,
            start=self._heuristic_text(),
        )

    def _pure(
        self, combined: float, bound: float | None
    ) -> tuple[float, float | None, float | None]:
        """(objective, bound, tie-break) without the tie-break, in user units.

        The solver's objective is primary ± tie-break; the incumbent's primary is read from the
        model, and the bound is shifted by the same offset (primary − bound keeps the solver's
        absolute gap, which is what HiGHS proved)."""
        m = self.model
        if not hasattr(m, "primary_objective"):
            return combined, bound, None
        if not m.tiebreak_weight:
            return combined, bound, None  # the objective is the primary (min_tco)
        primary = pyo.value(m.primary_objective)
        offset = combined - primary
        shifted = None if bound is None else bound - offset
        return primary, shifted, pyo.value(m.tiebreak) if m.tiebreak_weight else None

    # ------------------------------------------------------------------ what-if updates
    def set_power_cap_mw(self, period: str, value: float) -> None:
        self.model.power_cap_mw[period] = value
        self._bounds_stale = True

    def set_capex_budget_usd(self, period: str, value: float) -> None:
        self.model.capex_budget_usd[period] = value

    def set_demand(self, workload_class: str, phase: str, period: str, value: float) -> None:
        self.model.demand[workload_class, phase, period] = value
        self._bounds_stale = True

    def _refresh_fleet_floor(self) -> None:
        """Recompute the bounds derived from demand and power caps (the fleet-size valid
        inequality and the K-types big-M) from the current parameter values."""
        m = self.model

        def demand(c: str, phase: str, p: str) -> float:
            return pyo.value(m.demand[c, phase, p])

        for p, value in fleet_floor(self.data, demand).items():
            m.fleet_floor[p] = value
        if hasattr(m, "fleet_bound"):
            caps = {p: pyo.value(v) for p, v in m.power_cap_mw.items()}
            bounds = fleet_upper_bounds(self.data, demand, caps, elastic=m.elastic)
            for r, value in bounds.items():
                m.fleet_bound[r] = value
        self._bounds_stale = False

    def set_capex_usd(self, rack: str, value: float) -> None:
        self.model.capex_usd[rack] = value

    def set_electricity_usd_per_kwh(self, period: str, value: float) -> None:
        self.model.electricity_usd_per_kwh[period] = value
