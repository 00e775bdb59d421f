"""Calibration recovers known efficiency factors; validation reports honest errors."""

from __future__ import annotations

import pytest

from rackplan.models.calibration import (
    MeasuredPoint,
    evaluate,
    fit_family,
    median_abs_error_pct,
    predict_per_chip,
)
from rackplan.models.hardware import EfficiencyFactors

TRUE_FACTORS = EfficiencyFactors(flops_fraction=0.45, bandwidth_fraction=0.7)


def _synthetic_points(catalog) -> list[MeasuredPoint]:
    """Points 'measured' on a model whose factors we know: the fit must find them again."""
    shapes = [
        ("llama-2-70b", 600, 300, None, None),
        ("llama-2-70b", 600, 300, 450, 40),
        ("mixtral-8x7b", 2000, 200, None, 20),
        ("llama-3.1-8b", 4000, 500, 1000, 15),
    ]
    points = []
    for llm_id, inp, outp, ttft, tpot in shapes:
        template = MeasuredPoint(
            rack="hgx-h100",
            llm=llm_id,
            input_tokens=inp,
            output_tokens=outp,
            ttft_ms=ttft,
            tpot_ms=tpot,
            measured_output_tokens_per_s_per_chip=1.0,
        )
        value = predict_per_chip(
            catalog.rack("hgx-h100"), catalog.llm(llm_id), template, TRUE_FACTORS
        )
        points.append(template.model_copy(update={"measured_output_tokens_per_s_per_chip": value}))
    return points


def test_fit_recovers_known_factors(catalog):
    points = _synthetic_points(catalog)

    def resolve(point):
        return catalog.rack(point.rack), catalog.llm(point.llm)

    fitted = fit_family(points, resolve)
    errors = evaluate(points, resolve, lambda rack: fitted)
    assert median_abs_error_pct(errors) < 1.0
    assert fitted.flops_fraction == pytest.approx(0.45, abs=0.05)
    assert fitted.bandwidth_fraction == pytest.approx(0.7, abs=0.1)
    assert fitted.confidence == "measured"


def test_error_percent_is_signed_relative_to_measured(catalog):
    point = _synthetic_points(catalog)[0]

    def resolve(p):
        return catalog.rack(p.rack), catalog.llm(p.llm)

    faster = EfficiencyFactors(flops_fraction=0.9, bandwidth_fraction=0.9)
    error = evaluate([point], resolve, lambda rack: faster)[0]
    assert error.predicted > point.measured_output_tokens_per_s_per_chip
    expected = (error.predicted / point.measured_output_tokens_per_s_per_chip - 1) * 100
    assert error.error_pct == pytest.approx(expected)
