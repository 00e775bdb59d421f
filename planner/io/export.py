"""Plan exports: a folder of CSV files (one table each) or one XLSX workbook, written
atomically (a crash never leaves a half-written export)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rackplan.planner.core.plan import COST_SCOPE
from rackplan.planner.core.run import PlanResult
from rackplan.planner.io.files import atomic_path, atomic_write_text, replace_folder

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
            ("cost_per_token_scope", COST_SCOPE),
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
    from rackplan.planner.core.matrices import buy_matrix, fleet_matrix
    from rackplan.planner.io.spreadsheets import INPUT_PREFIX, scenario_frames

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
    from rackplan.planner.io.spreadsheets import write_workbook

    with atomic_path(Path(path)) as temporary:
        write_workbook(workbook_frames(result), temporary)
    return Path(path)


def write_json(result: PlanResult, path: Path) -> Path:
    atomic_write_text(Path(path), json.dumps(result.as_json(), indent=2, default=str) + "\n")
    return Path(path)


def write_frames(frames: dict[str, pd.DataFrame], folder: Path, stem: str) -> list[Path]:
    """``<stem>.csv`` (first frame) and ``<stem>.xlsx`` (all frames) into ``folder``."""
    from rackplan.planner.io.spreadsheets import write_workbook

    folder = Path(folder)
    first = next(iter(frames.values()))
    atomic_write_text(folder / f"{stem}.csv", first.to_csv(index=False))
    with atomic_path(folder / f"{stem}.xlsx") as temporary:
        write_workbook(frames, temporary)
    return [folder / f"{stem}.csv", folder / f"{stem}.xlsx"]


PER_MW_PARAMETERS = ("power_cap_mw",)
"""Sweeps whose value is in MW, so a TCO difference over a value difference is $ per MW."""


def _solved(tco: object) -> bool:
    """Whether a sweep point has a TCO (``None`` and NaN are unsolved or infeasible)."""
    return tco is not None and not pd.isna(tco)


def _point_note(row: dict, per_mw: bool, after_infeasible: bool) -> str:
    """One line saying what a sweep point means: infeasible, the first feasible value, or the
    TCO per unit between it and the previous feasible point (for a power cap: whether the cap
    binds there and what each extra MW saves)."""
    if not _solved(row["tco_usd"]):
        status = str(row["status"])
        return (
            "infeasible: no plan meets demand and SLAs here" if status == "infeasible" else status
        )
    slope = row["tco_change_per_unit_usd"]
    if not _solved(slope):
        if after_infeasible:
            return "first feasible point: below it no plan exists at any price"
        return "first point swept"
    start = row["interval_from"]
    if row["difference_within_gap"]:
        what = "the cap does not bind" if per_mw else "no proven change"
        return f"from {start:g}: {what} (TCO equal within the solver's gap)"
    if per_mw:
        return f"from {start:g}: the cap binds; each extra MW saves ${-slope / 1e6:,.2f}M"
    return f"from {start:g}: TCO changes by ${slope / 1e6:+,.2f}M per unit"


def price_sweep(frame: pd.DataFrame) -> pd.DataFrame:
    """A Pareto sweep with the value of each unit of the parameter, by finite differences
    between neighbouring feasible points (in increasing value):

    - ``tco_change_per_unit_usd``: (TCO here − TCO at the previous feasible point) / (value
      here − value there), the sweep's slope over that interval;
    - ``usd_per_mw`` (power-cap sweeps in MW): − that slope, the discounted TCO each extra MW
      of cap saves over the interval (about 0 where the cap does not bind);
    - ``interval_from``: the previous feasible value;
    - ``difference_within_gap``: the TCO difference is within the two solves' proven gaps, so
      it is not proven (the limit may not bind there);
    - ``infeasible``: no plan at this value; ``note``: the point in words.

    Adds columns only; the sweep's own columns are unchanged."""
    result = frame.copy()
    parameter = str(frame["parameter"].iloc[0]) if len(frame) else ""
    per_mw = parameter in PER_MW_PARAMETERS
    columns = {"tco_change_per_unit_usd": None, "interval_from": None}
    for name, default in columns.items():
        result[name] = pd.Series([default] * len(result), index=result.index, dtype=object)
    result["difference_within_gap"] = False
    previous = None
    for i in result.sort_values("value").index:
        tco = result.at[i, "tco_usd"]
        if not _solved(tco):
            continue
        if previous is not None:
            p_value, p_tco, p_gap = previous
            slope = (tco - p_tco) / (result.at[i, "value"] - p_value)
            tolerance = (_gap(p_gap) + _gap(result.at[i, "gap"])) * max(abs(tco), abs(p_tco))
            result.at[i, "tco_change_per_unit_usd"] = float(slope)
            result.at[i, "interval_from"] = float(p_value)
            result.at[i, "difference_within_gap"] = bool(abs(tco - p_tco) <= tolerance)
        previous = (result.at[i, "value"], tco, result.at[i, "gap"])
    if per_mw:
        result["usd_per_mw"] = [
            -float(s) if _solved(s) else None for s in result["tco_change_per_unit_usd"]
        ]
    result["infeasible"] = [str(s) == "infeasible" for s in result["status"]]
    lowest_feasible = result.loc[[_solved(t) for t in result["tco_usd"]], "value"].min()
    after = bool((result["infeasible"] & (result["value"] < lowest_feasible)).any())
    result["note"] = [_point_note(row, per_mw, after) for row in result.to_dict("records")]
    return result


def _gap(gap: object) -> float:
    """A solve's relative gap (0 when unknown)."""
    return float(gap) if gap is not None and not pd.isna(gap) else 0.0
