"""Plan exports: a folder of CSV files (one table each) or one XLSX workbook, written
atomically (a crash never leaves a half-written export)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rackplan.planner.files import atomic_path, atomic_write_text, replace_folder
from rackplan.planner.run import PlanResult

TABLES = (
    "purchases",
    "fleet",
    "allocation",
    "service",
    "power",
    "costs",
    "cost_per_million_tokens",
    "shadow_prices",
    "baselines",
)


def summary_frame(result: PlanResult) -> pd.DataFrame:
    """Key facts, one per row: status, objective, bound, gap, TCO, timings, explanation."""
    rows = [("status", result.status), ("status_text", result.status_text)]
    if result.plan is not None:
        o = result.plan.outcome
        rows += [
            ("objective_usd", o.objective),
            ("best_bound_usd", o.best_bound),
            ("gap", o.gap),
            ("tco_usd", result.plan.tco_usd),
            ("build_s", o.build_s),
            ("solve_s", o.solve_s),
            ("variables", o.variables),
            ("integer_variables", o.integer_variables),
            ("constraints", o.constraints),
            ("solver", f"HiGHS {o.highs_version}"),
        ]
    rows += [(f"explanation_{i + 1}", line) for i, line in enumerate(result.explanation)]
    rows += [(f"verification_{i + 1}", str(v)) for i, v in enumerate(result.violations)]
    return pd.DataFrame(rows, columns=["key", "value"])


def tables(result: PlanResult) -> dict[str, pd.DataFrame]:
    frames = {"summary": summary_frame(result)}
    if result.plan is not None:
        for name in TABLES:
            frames[name] = getattr(result.plan, name)
    return frames


def write_csv_folder(result: PlanResult, folder: Path) -> Path:
    """Write every table as ``<name>.csv`` into ``folder``; the folder is replaced whole."""

    def fill(staging: Path) -> None:
        for name, frame in tables(result).items():
            frame.to_csv(staging / f"{name}.csv", index=False)

    return replace_folder(folder, fill)


def workbook_frames(result: PlanResult) -> dict[str, pd.DataFrame]:
    """The plan workbook's sheets: summary, buy schedule and fleet matrix (rack × period),
    the plan tables (full precision; formats round for reading), then the scenario's input
    tables as ``input <table>`` sheets."""
    from rackplan.planner.matrices import buy_matrix, fleet_matrix
    from rackplan.planner.spreadsheets import INPUT_PREFIX, scenario_frames

    frames = tables(result)
    ordered = {"summary": frames.pop("summary")}
    if result.plan is not None:
        periods = list(result.data.periods)
        ordered["buy_schedule_racks"] = buy_matrix(result.plan, periods)
        ordered["fleet_matrix_racks"] = fleet_matrix(result.plan, periods)
    ordered.update(frames)
    for name, frame in scenario_frames(result.data.scenario).items():
        ordered[f"{INPUT_PREFIX}{name}"] = frame
    return ordered


def write_xlsx(result: PlanResult, path: Path) -> Path:
    """One workbook, formatted for people (see planner.spreadsheets) and holding its inputs:
    ``rackplan solve plan.xlsx`` re-solves it (after edits to the ``input …`` sheets)."""
    from rackplan.planner.spreadsheets import write_workbook

    with atomic_path(Path(path)) as temporary:
        write_workbook(workbook_frames(result), temporary)
    return Path(path)


def write_json(result: PlanResult, path: Path) -> Path:
    atomic_write_text(Path(path), json.dumps(result.as_json(), indent=2, default=str) + "\n")
    return Path(path)


def write_frames(frames: dict[str, pd.DataFrame], folder: Path, stem: str) -> list[Path]:
    """``<stem>.csv`` (first frame) and ``<stem>.xlsx`` (all frames) into ``folder``."""
    from rackplan.planner.spreadsheets import write_workbook

    folder = Path(folder)
    first = next(iter(frames.values()))
    atomic_write_text(folder / f"{stem}.csv", first.to_csv(index=False))
    with atomic_path(folder / f"{stem}.xlsx") as temporary:
        write_workbook(frames, temporary)
    return [folder / f"{stem}.csv", folder / f"{stem}.xlsx"]
