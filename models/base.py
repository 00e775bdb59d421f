"""Shared pydantic base and small vocabularies (confidence, phases, bounds)."""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


@functools.cache
def attribute_docstrings(cls: type) -> dict[str, str]:
    """{field: docstring} for each ``name: type [= default]`` in ``cls``'s own body that is
    followed by a string literal (the attribute-docstring convention)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (built in a REPL or from a zip)
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for statement, following in itertools.pairwise(body):
        documented = (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        )
        if documented:
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def describe_fields(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """``json_schema_extra``: each property's description from its attribute docstring (own or
    inherited). Read only when a schema is generated (the REST API's OpenAPI document):
    pydantic's ``use_attribute_docstrings`` would parse every model's source at import,
    ~50 ms of each command's start."""
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if isinstance(base, type) and issubclass(base, BaseModel) and base is not BaseModel:
            docs.update(attribute_docstrings(base))
    properties = schema.get("properties", {})
    for name, field in cls.model_fields.items():
        prop = properties.get(field.alias or name)
        if prop is not None and name in docs and "description" not in prop:
            prop["description"] = docs[name]


class Frozen(BaseModel):
    """Immutable, strict-schema base: unknown fields are errors, infinities and NaN are refused,
    instances are hashable. Field docstrings become schema descriptions (``describe_fields``)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, json_schema_extra=describe_fields
    )


class Confidence(StrEnum):
    """How much a catalog number can be trusted, best first."""

    measured = "measured"
    vendor = "vendor"
    analyst_estimate = "analyst estimate"
    assumption = "assumption"


class Phase(StrEnum):
    """Inference phase: prefill reads the prompt, decode writes tokens one at a time."""

    prefill = "prefill"
    decode = "decode"


class Bound(StrEnum):
    """Which physical limit sets an operating point's speed."""

    compute = "compute"
    memory_bandwidth = "memory_bandwidth"
    capacity = "capacity"
    communication = "communication"
