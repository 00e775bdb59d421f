"""Import: a folder with eight distinct mistakes reports all eight at once, each once with
file, row and column; ids get a "did you mean"; silent defaults are warned about; the
template never overwrites a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rackplan.catalogs.errors import InputError, Problem
from rackplan.planner.io.references import scenario_warnings, validate_references
from rackplan.planner.io.scenario_io import load_scenario
from rackplan.planner.io.spreadsheets import normalise_period, read_scenario, write_template

EXAMPLE = Path(__file__).parents[1] / "examples" / "frontier-2027"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture()
def broken(tmp_path: Path) -> Path:
    """frontier-2027 with eight mistakes a planner makes."""
    folder = tmp_path / "broken"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.md"))
    _edit(folder / "fleet.csv", "gb200-nvl72,2027Q1", "gb200-nvl27,2027Q1")  # 1 rack typo
    _edit(folder / "classes.csv", "chat,llama-3.1-70b", "chat,llama-3.1-70")  # 2 LLM typo
    _edit(folder / "forecast.csv", "2027Q1,coding-agent", "2027Q1,coding-agnet")  # 3 class typo
    _edit(folder / "forecast.csv", "2027Q1,chat", "2027/Q1,chat")  # 4 ambiguous period
    _edit(folder / "periods.csv", "2027Q2,2190.0", "2027Q2,lots")  # 5 not a number
    _edit(folder / "fleet.csv", "vr-nvl72,2027Q1", "vr-nvl72,2027Q5")  # 6 first_period
    periods = (folder / "periods.csv").read_text(encoding="utf-8").splitlines()
    periods.append(periods[1])  # 7 duplicate period
    (folder / "periods.csv").write_text("\n".join(periods) + "\n", encoding="utf-8")
    lines = (folder / "classes.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    drop = header.index("output_tokens")  # 8 a required column missing
    lines = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines]
    (folder / "classes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_eight_mistakes_are_reported_at_once(broken, catalog):
    with pytest.raises(InputError) as info:
        read_scenario(broken, catalog)
    problems = info.value.problems
    text = "\n".join(map(str, problems))
    assert len(problems) == 8, text
    assert len(set(problems)) == len(problems)
    assert all(p.file.endswith(".csv") and p.column for p in problems), text
    by = {(p.file, p.column): p for p in problems}
    assert "did you mean 'gb200-nvl72'" in by["fleet.csv", "rack"].message
    assert by["fleet.csv", "rack"].row == 2
    assert "did you mean 'llama-3.1-70b'" in by["classes.csv", "llm"].message
    assert "did you mean 'coding-agent'" in by["forecast.csv", "class"].message
    assert "write 2027Q1" in by["forecast.csv", "period"].message
    assert by["periods.csv", "hours"].row == 3
    assert "did you mean" in by["fleet.csv", "first_period"].message
    assert "given twice (first on row 2)" in by["periods.csv", "period"].message
    assert by["classes.csv", "output_tokens"].row == 1


def test_the_same_folder_without_a_catalog_still_reports_the_rest(broken):
    with pytest.raises(InputError) as info:
        read_scenario(broken)
    assert len(info.value.problems) == 6  # rack and LLM ids need the catalog


@pytest.mark.parametrize("label", ["2027/Q3", "2027.Q3", "Q3'2027", "FY2027 Q3"])
def test_ambiguous_quarters_are_refused(label):
    with pytest.raises(ValueError, match="2027Q3"):
        normalise_period(label)


@pytest.mark.parametrize("label", ["2027Q3", "2027-Q3", "Q3 2027", "H1", "year-1"])
def test_clear_labels_are_kept(label):
    assert normalise_period(label) in ("2027Q3", "H1", "year-1")


def test_missing_forecast_row_is_a_warning(tmp_path, catalog):
    folder = tmp_path / "plan"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.md"))
    lines = (folder / "forecast.csv").read_text(encoding="utf-8").splitlines()
    dropped = [line for line in lines if not line.startswith("2027Q3,chat,")]
    assert len(dropped) == len(lines) - 1
    (folder / "forecast.csv").write_text("\n".join(dropped) + "\n", encoding="utf-8")
    scenario = read_scenario(folder, catalog)
    warnings = scenario_warnings(scenario, "forecast.csv")
    assert warnings == [
        "forecast.csv: class 'chat' has no forecast row for 2027Q3: its demand there is taken "
        "as zero (add rows with 0 to say so)"
    ]
    assert scenario_warnings(read_scenario(EXAMPLE, catalog)) == []


def test_validate_references_for_a_parsed_scenario(catalog):
    scenario = load_scenario(EXAMPLE)
    assert validate_references(scenario, catalog) == []
    racks = (scenario.racks[0].model_copy(update={"rack": "vr-nvl27"}), *scenario.racks[1:])
    classes = (
        scenario.classes[0].model_copy(update={"llm": "qwen3-235b"}),
        *scenario.classes[1:],
    )
    bad = scenario.model_copy(update={"racks": racks, "classes": classes})
    problems = validate_references(bad, catalog)
    assert [(p.row, p.column, p.value) for p in problems] == [
        (1, "racks.rack", "vr-nvl27"),
        (1, "classes.llm", "qwen3-235b"),
    ]
    assert "did you mean 'vr-nvl72'" in problems[0].message
    assert all(isinstance(p, Problem) for p in problems)


def test_template_rate_example_is_warned_about(tmp_path, catalog):
    write_template(tmp_path / "t")
    warnings = scenario_warnings(read_scenario(tmp_path / "t", catalog))
    assert any("the template's example" in w for w in warnings)


def test_template_never_overwrites_without_force(tmp_path):
    from rackplan.planner.cli.main import main

    filled = tmp_path / "filled.xlsx"
    filled.write_bytes(b"my work")
    assert main(["template", str(filled)]) == 2
    assert filled.read_bytes() == b"my work"
    folder = tmp_path / "tables"
    write_template(folder)
    (folder / "forecast.csv").write_text("mine\n", encoding="utf-8")
    with pytest.raises(InputError, match="--force"):
        write_template(folder)
    assert (folder / "forecast.csv").read_text(encoding="utf-8") == "mine\n"
    assert main(["template", str(filled), "--force"]) == 0
    assert filled.read_bytes()[:2] == b"PK"
