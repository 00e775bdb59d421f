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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rackplan.catalogs.loader import Catalog
from rackplan.models.scenario import Scenario
from rackplan.planner.data import PlanData, prepare
from rackplan.planner.solve import PlanSolver, SolveOptions

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

    def __call__(self, function: Callable, items: list) -> list:
        from distributed import as_completed

        futures = self.client.map(function, items, retries=self.retries, pure=False)
        for _ in as_completed(futures):
            if self.progress:
                self.progress()
        return self.client.gather(futures)


# ---------------------------------------------------------------------------- sweeps on Dask
def _solve_value(item: tuple[PlanData, str, float, SolveOptions]) -> dict:
    """One Pareto step or variant: a fresh model of the data with one parameter change."""
    import pyomo.environ as pyo

    from rackplan.planner.whatif import Baseline, apply_change

    data, parameter, value, options = item
    solver = PlanSolver(data, options)
    apply_change(solver, Baseline.of(solver), parameter, value)
    outcome = solver.solve()
    tco = pyo.value(solver.model.tco_usd) if outcome.has_solution else None
    return {
        "parameter": parameter,
        "value": float(value),
        "status": outcome.status,
        "tco_usd": tco,
        "gap": outcome.gap,
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
    """TCO at ``steps`` values of an in-place what-if parameter (``whatif.IN_PLACE``), one
    task per value (the persistent-model sweep of ``whatif.pareto`` is the single-process
    alternative); ``on_frontier`` as there. Run it on process workers: Pyomo and HiGHS solves
    in threads of one process (``processes=False``) were seen to hang."""
    from rackplan.planner.whatif import _frontier

    data = prepare(scenario, catalog)
    values = [float(f"{v:.12g}") for v in np.linspace(start, stop, steps)]
    options = options or SolveOptions()
    rows = runner(_solve_value, [(data, parameter, v, options) for v in values])
    frame = pd.DataFrame(rows)
    frame["on_frontier"] = _frontier(frame)
    return frame
