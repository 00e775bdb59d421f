"""The Python API: every code block of docs/python-api.md runs, in order, as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_doc_has_examples_for_every_entry_point():
    text = "\n".join(_blocks())
    for name in (
        "rackplan.plan(",
        "rackplan.rates(",
        "rackplan.Session(",
        "load_scenario(",
        "save_scenario(",
    ):
        assert name in text, name


def test_every_example_in_the_doc_runs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    for block in _blocks():
        exec(compile(block, str(DOC), "exec"), namespace)  # our own documentation
    assert namespace["result"].plan is None  # the last plan example is the infeasible one


def test_import_is_cheap_and_lazy():
    """``import rackplan`` must not pull in the solver stack (the CLI's cold start)."""
    import subprocess
    import sys

    code = "import sys, rackplan; print(sorted(m for m in ('pyomo', 'pandas') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": ""},
    ).stdout.strip()
    assert out == "[]"


def test_plan_result_renders_in_jupyter():
    import rackplan

    result = rackplan.plan(
        ROOT / "examples" / "quickstart" / "scenario.json", shadow_prices=False, baselines=False
    )
    html = result._repr_html_()
    assert "Racks to buy" in html and "<table" in html
    assert result.status_text in html


def test_unknown_api_names_raise_attribute_error():
    import rackplan

    with pytest.raises(AttributeError):
        rackplan.no_such_thing  # noqa: B018
