"""Scale-out on Dask distributed: stress samples, sampled-future batches, Pareto sweeps and
what-if variant sets as tasks on a cluster.

A LocalCluster by default (one thread per worker process: HiGHS gains nothing from more on
these models), or an existing cluster by its scheduler address (``--scheduler
tcp://host:8786`` or ``RACKPLAN_DASK_SCHEDULER``). Tasks carry picklable data (the scenario,
its rates, a plan, sample indices), never a live Pyomo model, and each seeds itself from its
sample index, so results are the same on any number of workers. Tasks lost with a worker are
re-run on another (``RETRIES`` more times if they fail).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.core.data import PlanData, prepare
from rackplan.planner.core.solve import PlanSolver, SolveOptions

SCHEDULER_ENV = "RACKPLAN_DASK_SCHEDULER"
RETRIES = 2


def scheduler_address(explicit: str | None = None) -> str | None:
    """The scheduler to use: the explicit address, else ``RACKPLAN_DASK_SCHEDULER``, else None
    (start a LocalCluster)."""
    return explicit or os.environ.get(SCHEDULER_ENV) or None


@contextmanager
def dask_client(
    address: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    timeout_s: float = 60.0,
) -> Iterator:
    """A ``distributed.Client``: on the cluster at ``address``, or on a LocalCluster of
    ``workers`` single-threaded workers (default: the CPU count) that is closed afterwards."""
    from distributed import Client, LocalCluster

    address = scheduler_address(address)
    if address is not None:
        client = Client(address, timeout=timeout_s)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=":0",
        silence_logs=40,
    )
    client = Client(cluster, timeout=timeout_s)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@dataclass
class DaskRunner:
    """Maps a function over items on a Dask client, in order, with a progress callback per
    finished task; a task whose worker dies is re-run elsewhere, one that raises is retried
    ``retries`` times."""

    client: object
    progress: Callable[[], None] | None = None
    retries: int = RETRIES
    timeout_s: float | None = None
    """Give up (TimeoutError) when the tasks are not all done by then; None: wait."""

    def __call__(self, function: Callable, items: list) -> list:
        from distributed import as_completed

        futures = self.client.map(function, items, retries=self.retries, pure=False)
        for _ in as_completed(futures, timeout=self.timeout_s):
            if self.progress:
                self.progress()
        return self.client.gather(futures)


# ---------------------------------------------------------------------------- sweeps on Dask
@dataclass(frozen=True)
class ParetoStep:
    """One Pareto step as a task: the prepared data for an in-place parameter, or the scenario
    and catalog for one that rebuilds the model (SLA keys) — never a live model."""

    parameter: str
    value: float
    options: SolveOptions
    data: PlanData | None = None
    scenario: Scenario | None = None
    catalog: Catalog | None = None


def _solve_value(item: tuple[PlanData, str, float, SolveOptions]) -> dict:
    """One Pareto step on a fresh model of the data with one in-place parameter change."""
    data, parameter, value, options = item
    return _pareto_step(ParetoStep(parameter, value, options, data=data))


def _pareto_step(step: ParetoStep) -> dict:
    """Solve one Pareto step on a fresh model; its row of the frontier table."""
    import pyomo.core as pyo

    from rackplan.planner.core.whatif import Baseline, apply_change, rebuilt_scenario

    if step.data is not None:
        solver = PlanSolver(step.data, step.options)
        apply_change(solver, Baseline.of(solver), step.parameter, step.value)
    else:
        changed = rebuilt_scenario(step.scenario, step.parameter, step.value, step.catalog)
        data = prepare(changed, step.catalog)
        if data.fatal():
            return _step_row(step, "infeasible", None, None)
        solver = PlanSolver(data, step.options)
    outcome = solver.solve(f"pareto step {step.parameter}={step.value:g}")
    tco = pyo.value(solver.model.tco_usd) if outcome.has_solution else None
    return _step_row(step, outcome.status, tco, outcome.gap)


def _step_row(step: ParetoStep, status: str, tco: float | None, gap: float | None) -> dict:
    return {
        "parameter": step.parameter,
        "value": float(step.value),
        "status": status,
        "tco_usd": tco,
        "gap": gap,
    }


def pareto_distributed(
    scenario: Scenario,
    catalog: Catalog,
    parameter: str,
    start: float,
    stop: float,
    steps: int,
    runner: Callable[[Callable, list], list],
    options: SolveOptions | None = None,
) -> pd.DataFrame:
    """TCO at ``steps`` values of a what-if parameter, one task per value on a fresh model
    (the persistent-model sweep of ``whatif.pareto`` is the single-process alternative):
    in-place parameters (``whatif.IN_PLACE``) carry the prepared data, the others the scenario
    and catalog. Each step has the whole time limit (in ``whatif.pareto`` the sweep shares
    one); ``on_frontier`` as there. Rows come back in the order of the values, whatever the
    number of workers. Run it on process workers: Pyomo and HiGHS solves in threads of one
    process (``processes=False``) were seen to hang."""
    from rackplan.planner.core.whatif import IN_PLACE, REBUILD, _bad, _frontier, _split

    name, _ = _split(parameter)
    if name not in IN_PLACE + REBUILD:
        raise _bad(parameter, f"unknown parameter; use one of {', '.join(IN_PLACE + REBUILD)}")
    if steps < 2:
        raise _bad(parameter, "use at least 2 steps")
    values = [float(f"{v:.12g}") for v in np.linspace(start, stop, steps)]
    options = options or SolveOptions()
    if name in IN_PLACE:
        data = prepare(scenario, catalog)
        tasks = [ParetoStep(parameter, v, options, data=data) for v in values]
    else:
        tasks = [ParetoStep(parameter, v, options, None, scenario, catalog) for v in values]
    frame = pd.DataFrame(runner(_pareto_step, tasks))
    frame["on_frontier"] = _frontier(frame)
    frame.attrs["cut_short"] = []
    return frame


# ---------------------------------------------------------------------------- what-if on Dask
@dataclass(frozen=True)
class VariantTask:
    """One what-if variant (or the base: no changes) as a task: the scenario, catalog and
    changes, never a live model."""

    scenario: Scenario
    catalog: Catalog
    variant: object
    """A ``session.Variant``."""
    options: SolveOptions
    refined: bool = False


def _solve_variant(task: VariantTask):
    """Solve one variant on a model built from its changed scenario (``session.VariantResult``;
    an infeasible variant carries the planner's explanation)."""
    from rackplan.planner.core.run import plan_scenario
    from rackplan.planner.core.session import VariantResult, changed_scenario

    variant = task.variant
    changed = changed_scenario(task.scenario, task.catalog, variant)
    result = plan_scenario(
        changed, task.catalog, task.options, with_shadow_prices=False, with_baselines=False
    )
    outcome = result.plan.outcome if result.plan is not None else None
    explanation = () if result.plan is not None else tuple(result.explanation)
    return VariantResult(
        variant.name, variant.text, result.status, outcome, result.plan, explanation, task.refined
    )


def compare_distributed(
    scenario: Scenario,
    catalog: Catalog,
    variants: list,
    runner: Callable[[Callable, list], list],
    options: SolveOptions | None = None,
    refine_gap: float | None = None,
):
    """``session.run_comparison`` with the base and every variant as a task (each on its own
    model, built from the changed scenario): the same comparison table, in the order given,
    whatever the number of workers. Variants the solver's bounds cannot tell from the base are
    re-solved, with the base, to ``refine_gap`` when that is tighter than the options' gap."""
    from rackplan.planner.core.session import (
        Comparison,
        Variant,
        _frame,
        _overlaps,
        _unproven,
        check_variants,
    )

    check_variants(scenario, catalog, variants)
    options = options or SolveOptions()
    everything = [Variant("base", ()), *variants]
    solved = runner(
        _solve_variant, [VariantTask(scenario, catalog, v, options) for v in everything]
    )
    results = {r.name: r for r in solved}
    close = [v for v in variants if _unproven(results["base"], results[v.name])]
    if close and refine_gap is not None and refine_gap < options.rel_gap:
        tight = replace(options, rel_gap=refine_gap)
        base = runner(_solve_variant, [VariantTask(scenario, catalog, everything[0], tight, True)])
        results["base"] = base[0]
        again = [v for v in variants if _overlaps(results["base"], results[v.name])]
        for r in runner(
            _solve_variant, [VariantTask(scenario, catalog, v, tight, True) for v in again]
        ):
            results[r.name] = r
    ordered = {v.name: results[v.name] for v in everything}
    return Comparison(_frame(ordered), ordered)
