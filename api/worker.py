"""Work done in the solver processes (spawned, so nothing of the server's state is shared).

Each function takes and returns plain JSON-able data and records its start in the database
itself, so the job shows ``running`` while it runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from rackplan.api.db import Database, JobRow, now
from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.hardware import RackType
from rackplan.models.llm import LLM
from rackplan.models.scenario import Scenario
from rackplan.planner.core.run import plan_scenario
from rackplan.planner.core.session import Variant, compare_variants
from rackplan.planner.core.solve import SolveOptions


def _mark_running(db_url: str, job_id: str) -> None:
    db = Database(db_url)
    with db.transaction() as session:
        job = session.get(JobRow, job_id)
        if job is not None and job.status == "queued":
            job.status = "running"
            job.progress = 0.1
            job.updated_at = now()
    db.engine.dispose()


class Progress:
    """Records a job's progress (0.1 at start, 1.0 at the end) after each of ``total`` steps,
    so a page polling the job shows how far it is."""

    def __init__(self, db_url: str, job_id: str, total: int):
        self.db_url, self.job_id, self.total, self.done = db_url, job_id, max(1, total), 0

    def __call__(self) -> None:
        self.done += 1
        db = Database(self.db_url)
        with db.transaction() as session:
            job = session.get(JobRow, self.job_id)
            if job is not None and job.status == "running":
                job.progress = min(0.95, 0.1 + 0.85 * self.done / self.total)
                job.updated_at = now()
        db.engine.dispose()


def catalog_with(entries: dict[str, list[dict]]) -> Catalog:
    """The shipped catalog plus user entries (JSON in the shape of RackType / LLM), by id."""
    base = load_catalog()
    racks = {
        **base.racks,
        **{r["id"]: RackType.model_validate(r) for r in entries.get("racks", [])},
    }
    llms = {**base.llms, **{m["id"]: LLM.model_validate(m) for m in entries.get("llms", [])}}
    return Catalog(racks=racks, llms=llms, efficiency=base.efficiency)


def _options(request: dict) -> SolveOptions:
    return SolveOptions(
        time_limit_s=float(request.get("time_limit_s", 60)),
        rel_gap=float(request.get("gap", 0.005)),
    )


def solve_job(db_url: str, job_id: str, request: dict) -> dict:
    """Plan one scenario; return the plan JSON and its audit record."""
    _mark_running(db_url, job_id)
    scenario = Scenario.model_validate(request["scenario"])
    catalog = catalog_with(request.get("catalog_entries", {}))
    options = _options(request)
    result = plan_scenario(
        scenario, catalog, options, with_baselines=bool(request.get("baselines", True))
    )
    columns = [asdict(c) | {"mode": c.mode.value} for c in result.data.columns]
    rate_hash = hashlib.sha256(
        json.dumps(columns, sort_keys=True, default=str).encode()
    ).hexdigest()
    used_racks = sorted({o.rack for o in scenario.racks})
    used_llms = sorted({c.llm for c in scenario.classes})
    outcome = result.plan.outcome if result.plan else None
    audit = {
        "scenario": request["scenario"],
        "catalog_entries": {
            "racks": [catalog.racks[r].model_dump(mode="json") for r in used_racks],
            "llms": [catalog.llms[m].model_dump(mode="json") for m in used_llms],
            "efficiency": {
                r: catalog.efficiency_for(catalog.racks[r]).model_dump(mode="json")
                for r in used_racks
            },
        },
        "rate_table_sha256": rate_hash,
        "solver": {"name": "HiGHS", "version": outcome.highs_version if outcome else None},
        "options": {"time_limit_s": options.time_limit_s, "gap": options.rel_gap},
        "timings": {"build_s": outcome.build_s, "solve_s": outcome.solve_s} if outcome else {},
        "requested_by": request.get("tenant"),
    }
    return {"status": result.status, "result": result.as_json(), "audit": audit}


def session_job(db_url: str, job_id: str, request: dict) -> dict:
    """Solve a session's base and variants; return the comparison rows."""
    _mark_running(db_url, job_id)
    scenario = Scenario.model_validate(request["scenario"])
    catalog = catalog_with(request.get("catalog_entries", {}))
    variants = [
        Variant(v["name"], tuple((c["key"], float(c["value"])) for c in v["changes"]))
        for v in request["variants"]
    ]
    progress = Progress(db_url, job_id, len(variants) + 1)
    frame = compare_variants(scenario, catalog, variants, _options(request), progress)
    from rackplan.planner.core.plan import json_records

    return {"status": "succeeded", "comparison": json_records(frame)}


def pareto_job(db_url: str, job_id: str, request: dict) -> dict:
    """A Pareto sweep of TCO against one parameter; return its rows (value, TCO, frontier)."""
    from rackplan.planner.core.plan import json_records
    from rackplan.planner.core.whatif import pareto

    _mark_running(db_url, job_id)
    scenario = Scenario.model_validate(request["scenario"])
    catalog = catalog_with(request.get("catalog_entries", {}))
    steps = int(request["steps"])
    frame = pareto(
        scenario,
        catalog,
        request["parameter"],
        float(request["start"]),
        float(request["stop"]),
        steps,
        _options(request),
        Progress(db_url, job_id, steps),
    )
    return {"status": "succeeded", "sweep": json_records(frame)}
