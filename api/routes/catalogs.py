"""Catalogs: the shipped rack types and LLMs, and named user catalogs that extend them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from rackplan.api.db import CatalogEntryRow, now
from rackplan.api.deps import Reader, StateDep, Writer
from rackplan.api.schemas import CatalogEntryOut
from rackplan.catalogs.loader import Catalog, load_catalog
from rackplan.models.hardware import RackType
from rackplan.models.llm import LLM

router = APIRouter(tags=["catalogs"])
Kind = Literal["racks", "llms"]
MODELS = {"racks": RackType, "llms": LLM}


@lru_cache(maxsize=1)
def shipped_catalog() -> Catalog:
    """The shipped catalog, read once per process (its files do not change while it runs)."""
    return load_catalog()


def _shipped(kind: str) -> dict[str, Any]:
    catalog = shipped_catalog()
    return catalog.racks if kind == "racks" else catalog.llms


@router.get("/v1/catalogs/{kind}", operation_id="list_catalog")
def list_catalog(kind: Kind, _key: Reader) -> list[dict[str, Any]]:
    """Every shipped entry of one kind, with specs, sources and confidence."""
    return [entry.model_dump(mode="json") for entry in _shipped(kind).values()]


@router.get("/v1/catalogs/{kind}/{entry_id}", operation_id="show_catalog_entry")
def show_entry(kind: Kind, entry_id: str, _key: Reader) -> dict[str, Any]:
    entries = _shipped(kind)
    if entry_id not in entries:
        raise HTTPException(
            404, f"no {kind[:-1]} '{entry_id}'; known: {', '.join(sorted(entries))}"
        )
    return entries[entry_id].model_dump(mode="json")


@router.get("/v1/user-catalogs/{catalog}", operation_id="list_user_catalog")
def list_user_catalog(catalog: str, app: StateDep, _key: Reader) -> list[CatalogEntryOut]:
    with app.db.read() as session:
        rows = session.scalars(
            select(CatalogEntryRow).where(CatalogEntryRow.catalog == catalog)
        ).all()
        return [
            CatalogEntryOut(catalog=r.catalog, kind=r.kind, id=r.entry_id, entry=r.body)
            for r in rows
        ]


@router.put("/v1/user-catalogs/{catalog}/{kind}/{entry_id}", operation_id="put_user_catalog_entry")
def put_entry(
    catalog: str, kind: Kind, entry_id: str, entry: dict[str, Any], app: StateDep, _key: Writer
) -> CatalogEntryOut:
    """Create or replace one entry of a named user catalog (the shape of a shipped entry)."""
    validated = MODELS[kind].model_validate(entry)  # ValidationError → 422 naming the field
    if validated.id != entry_id:
        raise HTTPException(
            422, f"the entry's id '{validated.id}' differs from the path's '{entry_id}'"
        )
    body = validated.model_dump(mode="json")
    with app.db.transaction() as session:
        row = session.scalars(
            select(CatalogEntryRow).where(
                CatalogEntryRow.catalog == catalog,
                CatalogEntryRow.kind == kind,
                CatalogEntryRow.entry_id == entry_id,
            )
        ).first()
        if row is None:
            row = CatalogEntryRow(catalog=catalog, kind=kind, entry_id=entry_id, body=body)
            session.add(row)
        else:
            row.body = body
            row.updated_at = now()
    return CatalogEntryOut(catalog=catalog, kind=kind, id=entry_id, entry=body)


def user_entries(app, catalog: str | None) -> dict[str, list[dict]]:
    """A user catalog's entries as the worker expects them ({"racks": [...], "llms": [...]})."""
    if catalog is None:
        return {}
    with app.db.read() as session:
        rows = session.scalars(
            select(CatalogEntryRow).where(CatalogEntryRow.catalog == catalog)
        ).all()
    if not rows:
        raise HTTPException(404, f"no user catalog '{catalog}'")
    return {kind: [r.body for r in rows if r.kind == kind] for kind in ("racks", "llms")}
