"""The installed distribution is one import package, ``rackplan``, and ships its data and types."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info/ next to the sources.
    source = tmp_path_factory.mktemp("source") / "rackplan"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "out", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=source,
    )
    (built,) = out.glob("rackplan-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_installs_exactly_one_top_level_package(wheel_names: list[str]) -> None:
    top_level = {name.split("/", 1)[0] for name in wheel_names}
    metadata = {name for name in top_level if name.endswith(".dist-info")}
    assert top_level - metadata == {"rackplan"}


def test_wheel_ships_subpackages_catalog_data_and_type_marker(wheel_names: list[str]) -> None:
    names = set(wheel_names)
    for required in (
        "rackplan/__init__.py",
        "rackplan/py.typed",
        "rackplan/models/roofline.py",
        "rackplan/catalogs/data/racks.csv",
        "rackplan/planner/core/model.py",
        "rackplan/api/routes/plans.py",
        "rackplan/api/web/templates/plan.html",
        "rackplan/api/web/static/rackplan.js",
    ):
        assert required in names, required
    assert not any(name.startswith("rackplan/tests/") for name in names)


def test_console_script_points_into_the_package(wheel: Path, wheel_names: list[str]) -> None:
    (entry_points,) = [name for name in wheel_names if name.endswith("entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "rackplan = rackplan.planner.cli.main:run" in text
    assert "service = rackplan.api.commands:register" in text  # serve, keys


def test_field_docstrings_become_schema_descriptions():
    """Descriptions are read from attribute docstrings when a schema is made, own and
    inherited, never at import (the planner's start pays nothing for them)."""
    from rackplan.models.base import attribute_docstrings
    from rackplan.models.scenario import Scenario

    schema = Scenario.model_json_schema()
    documented = attribute_docstrings(Scenario)
    assert documented, "Scenario documents its fields"
    for name, text in documented.items():
        assert schema["properties"][name]["description"] == text
    assert all(f.description is None for f in Scenario.model_fields.values())
