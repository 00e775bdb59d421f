"""Shipped catalogs: provenance on every row, contested numbers documented, loaders strict."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rackplan.catalogs.errors import InputError
from rackplan.catalogs.loader import (
    EFFICIENCY_FILE,
    LLMS_FILE,
    MEASURED_FILE,
    RACKS_FILE,
    load_catalog,
    load_measured,
    load_racks,
    load_speed_records,
)
from rackplan.models.base import Confidence
from rackplan.models.hardware import MemoryTier, RackType
from rackplan.models.llm import LLM

CONFIDENCES = {c.value for c in Confidence}
REQUIRED_RACKS = {
    "vr-cpx-144",
    "vr-nvl72",
    "groq3-lpx",
    "groqrack-v1",
    "hgx-h100",
    "hgx-h200",
    "hgx-b200",
    "gb200-nvl72",
    "gb300-nvl72",
}
REQUIRED_LLMS = {
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "llama-2-70b",
    "mixtral-8x7b",
    "deepseek-v3",
    "deepseek-r1",
    "qwen3-235b-a22b",
    "gpt-oss-120b",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_catalog_has_every_required_entry(catalog):
    assert set(catalog.racks) >= REQUIRED_RACKS
    assert set(catalog.llms) >= REQUIRED_LLMS
    assert {r.family for r in catalog.racks.values()} <= set(catalog.efficiency)


@pytest.mark.parametrize("path", [RACKS_FILE, LLMS_FILE, EFFICIENCY_FILE, MEASURED_FILE])
def test_every_catalog_row_has_a_source(path):
    for row in _rows(path):
        assert row["source"].strip(), f"{path.name}: row without a source: {row}"


@pytest.mark.parametrize(
    ("path", "columns"),
    [
        (RACKS_FILE, ["confidence", "power_confidence", "capex_confidence"]),
        (LLMS_FILE, ["confidence"]),
        (EFFICIENCY_FILE, ["confidence"]),
    ],
)
def test_every_catalog_row_has_a_confidence(path, columns):
    for row in _rows(path):
        for column in columns:
            assert row[column] in CONFIDENCES, (
                f"{path.name} {row.get('id', row.get('family'))}: {column}"
            )


def test_assumed_numbers_are_explained_in_notes():
    """A rack whose power or price is an assumption or estimate says how it was derived."""
    for row in _rows(RACKS_FILE):
        if "assumption" in (row["power_confidence"], row["capex_confidence"]):
            assert "assumption" in row["notes"].lower(), row["id"]


def test_contested_rubin_numbers_record_their_alternatives(catalog):
    notes = catalog.rack("vr-nvl72").notes
    for alternative in ("50 PF", "25 PF", "13 TB/s", "230 kW"):
        assert alternative in notes
    assert "removed from roadmap" in catalog.rack("vr-cpx-144").status
    assert catalog.rack("vr-cpx-144").lifecycle == "withdrawn"
    assert catalog.rack("vr-cpx-144").availability_is_assumed
    assert catalog.rack("vr-nvl72").lifecycle == "announced"
    assert not catalog.rack("hgx-h100").availability_is_assumed


def test_units_are_in_every_numeric_field_name():
    unit_words = ("_per_chip", "_per_rack", "_kw", "_usd", "_us", "_gb", "_chips", "_b", "_tokens")
    for model in (RackType, MemoryTier, LLM):
        for name, field in model.model_fields.items():
            numeric = field.annotation in (int, float, int | None, float | None)
            counts = name in {
                "layers",
                "d_model",
                "n_heads",
                "n_kv_heads",
                "head_dim",
            } or name.startswith(("experts_", "mla_", "sliding_window_layers"))
            if numeric and not counts:
                assert any(word in name for word in unit_words), f"{model.__name__}.{name}"


def test_shipped_measured_points_load():
    points = load_measured()
    assert len(points) >= 10
    assert all(p.measured_output_tokens_per_s_per_chip > 0 for p in points)


def test_shipped_measured_points_carry_provenance():
    points = load_measured()
    assert len(points) >= 40
    for p in points:
        assert p.round.startswith("MLPerf Inference v"), p
        assert p.chips is not None and p.chips >= 1, p
        assert p.confidence in {"vendor", "measured", "assumption"}, p
        assert p.source, p
    keys = [(p.rack, p.llm, p.scenario) for p in points]
    assert len(keys) == len(set(keys)), "one row per (system, benchmark, scenario)"
    for p in points:
        if p.scenario != "Offline":
            assert p.ttft_ms and p.tpot_ms and "p99" in p.notes, p
        assert "input" in p.notes.lower(), f"input length provenance missing: {p}"


def test_measured_provenance_columns_are_optional_in_user_files(tmp_path):
    row = {
        "rack": "hgx-h100",
        "llm": "llama-2-70b",
        "precision": "fp8",
        "input_tokens": "300",
        "output_tokens": "290",
        "ttft_ms": "",
        "tpot_ms": "",
        "measured_output_tokens_per_s_per_chip": "3000",
        "scenario": "Offline",
        "source": "test",
        "notes": "",
    }
    (point,) = load_measured(_write(tmp_path, "m.csv", [row]))
    assert point.chips is None and point.round == "" and point.confidence == ""


def _write(tmp_path: Path, name: str, rows: list[dict[str, str]], header=None) -> Path:
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_user_rack_file_overrides_and_adds_by_id(tmp_path):
    shipped = _rows(RACKS_FILE)
    h100 = dict(next(r for r in shipped if r["id"] == "hgx-h100"), capex_usd="999000")
    custom = dict(h100, id="my-h100-pod", name="My H100 pod", capex_usd="750000")
    path = _write(tmp_path, "racks.csv", [h100, custom])
    catalog = load_catalog(user_racks=path)
    assert catalog.rack("hgx-h100").capex_usd == 999_000
    assert catalog.rack("my-h100-pod").capex_usd == 750_000
    assert catalog.rack("vr-nvl72").capex_usd == 7_800_000


def test_bad_rack_file_reports_every_problem_with_row_and_column(tmp_path):
    shipped = _rows(RACKS_FILE)
    bad_power = dict(shipped[0], power_kw_at_load="lots")
    bad_chips = dict(shipped[1], chips_per_rack="-4")
    bad_confidence = dict(shipped[2], confidence="pretty sure")
    duplicate = dict(shipped[3], id=shipped[0]["id"])
    path = _write(tmp_path, "racks.csv", [bad_power, bad_chips, bad_confidence, duplicate])
    with pytest.raises(InputError) as caught:
        load_racks(path)
    text = str(caught.value)
    problems = {(p.row, p.column) for p in caught.value.problems}
    assert (2, "power_kw_at_load") in problems
    assert (3, "chips_per_rack") in problems
    assert (4, "confidence") in problems
    assert "'lots'" in text and "racks.csv" in text


def test_missing_and_unknown_columns_are_named(tmp_path):
    shipped = _rows(RACKS_FILE)
    row = {k: v for k, v in shipped[0].items() if k != "capex_usd"}
    row["capex"] = "1"
    path = _write(tmp_path, "racks.csv", [row])
    with pytest.raises(InputError) as caught:
        load_racks(path)
    columns = {
        (p.column, "missing" in p.message or "unknown" in p.message) for p in caught.value.problems
    }
    assert ("capex_usd", True) in columns
    assert ("capex", True) in columns


def test_memory_tier_errors_point_at_the_csv_column(tmp_path):
    row = dict(_rows(RACKS_FILE)[0], mem_bw_tb_s_per_chip="0")
    path = _write(tmp_path, "racks.csv", [row])
    with pytest.raises(InputError) as caught:
        load_racks(path)
    assert caught.value.problems[0].column == "mem_bw_tb_s_per_chip"


def test_inconsistent_llm_is_rejected(tmp_path):
    row = dict(_rows(LLMS_FILE)[0], params_active_b="99")
    path = _write(tmp_path, "llms.csv", [row])
    with pytest.raises(InputError) as caught:
        load_catalog(user_llms=path)
    assert "params_active_b must not exceed params_total_b" in str(caught.value)


def test_utf8_bom_and_blank_rows_are_accepted(tmp_path):
    text = RACKS_FILE.read_text(encoding="utf-8")
    path = tmp_path / "racks.csv"
    path.write_text("\ufeff" + text + ",,,\n\n", encoding="utf-8")
    assert set(load_racks(path)) == set(load_racks())


def test_unknown_ids_name_the_known_ones(catalog):
    with pytest.raises(InputError) as caught:
        catalog.rack("h100")
    assert "hgx-h100" in str(caught.value)


def test_speed_records_name_catalog_racks_and_llms(catalog):
    records = load_speed_records()
    assert records
    for record in records:
        catalog.rack(record.rack)
        catalog.llm(record.llm)
        assert record.confidence in {"vendor", "measured", "analyst estimate", "assumption"}
        assert record.source and record.date
    families = {catalog.rack(r.rack).family for r in records}
    assert "groq-lpu" in families and "blackwell" in families


def test_speed_record_errors_name_the_column(tmp_path):
    row = {
        "rack": "groqrack-v1",
        "llm": "llama-2-70b",
        "precision": "int3",
        "tokens_per_s_per_user": "-1",
        "source": "x",
        "date": "2024",
        "confidence": "vendor",
        "notes": "",
    }
    with pytest.raises(InputError) as info:
        load_speed_records(_write(tmp_path, "s.csv", [row]))
    text = str(info.value)
    assert "precision" in text and "tokens_per_s_per_user" in text
