"""Catalogs: the shipped rack types and LLMs, and named user catalogs that extend them."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path
from sqlalchemy import select

from rackplan.api.db import SHARED_TENANT, CatalogEntryRow, now
from rackplan.api.deps import Admin, Reader, StateDep, Writer
from rackplan.api.limits import EdgeError, check_json
from rackplan.api.schemas import CatalogEntryOut
from rackplan.api.security import Caller
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
def list_catalog(kind: Kind, _caller: Reader) -> list[dict[str, Any]]:
    """Every shipped entry of one kind, with specs, sources and confidence."""
    return [entry.model_dump(mode="json") for entry in _shipped(kind).values()]


@router.get("/v1/catalogs/{kind}/{entry_id}", operation_id="show_catalog_entry")
def show_entry(kind: Kind, entry_id: str, _caller: Reader) -> dict[str, Any]:
    entries = _shipped(kind)
    if entry_id not in entries:
        raise HTTPException(
            404, f"no {kind[:-1]} '{entry_id}'; known: {', '.join(sorted(entries))}"
        )
    return entries[entry_id].model_dump(mode="json")


CatalogName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="1-100 letters, digits, '_', '.', '-'",
    ),
]
EntryId = Annotated[str, Path(min_length=1, max_length=100)]


def _entries(app, tenant: str, catalog: str) -> list[CatalogEntryRow]:
    with app.db.read() as session:
        return list(
            session.scalars(
                select(CatalogEntryRow)
                .where(CatalogEntryRow.tenant == tenant, CatalogEntryRow.catalog == catalog)
                .order_by(CatalogEntryRow.kind, CatalogEntryRow.entry_id)
            ).all()
        )


def _listed(rows: list[CatalogEntryRow]) -> list[CatalogEntryOut]:
    return [
        CatalogEntryOut(catalog=r.catalog, kind=r.kind, id=r.entry_id, entry=r.body) for r in rows
    ]


def _upsert(app, tenant: str, catalog: str, kind: str, entry_id: str, entry: dict) -> dict:
    """Validate an entry (422 naming the field) and store it in ``tenant``'s catalog."""
    problems = check_json(entry, "body")
    if problems:
        raise EdgeError(problems)
    validated = MODELS[kind].model_validate(entry)  # ValidationError → 422 naming the field
    if validated.id != entry_id:
        raise HTTPException(
            422, f"the entry's id '{validated.id}' differs from the path's '{entry_id}'"
        )
    body = validated.model_dump(mode="json")
    with app.db.transaction() as session:
        row = session.scalars(
            select(CatalogEntryRow).where(
                CatalogEntryRow.tenant == tenant,
                CatalogEntryRow.catalog == catalog,
                CatalogEntryRow.kind == kind,
                CatalogEntryRow.entry_id == entry_id,
            )
        ).first()
        if row is None:
            session.add(
                CatalogEntryRow(
                    catalog=catalog, kind=kind, entry_id=entry_id, body=body, tenant=tenant
                )
            )
        else:
            row.body = body
            row.updated_at = now()
    return body


@router.get("/v1/user-catalogs/{catalog}", operation_id="list_user_catalog")
def list_user_catalog(catalog: CatalogName, app: StateDep, caller: Reader) -> list[CatalogEntryOut]:
    """Your tenant's entries of a named catalog (404 when it has none)."""
    rows = _entries(app, caller.tenant, catalog)
    if not rows:
        raise HTTPException(404, f"no user catalog '{catalog}'")
    return _listed(rows)


@router.put("/v1/user-catalogs/{catalog}/{kind}/{entry_id}", operation_id="put_user_catalog_entry")
def put_entry(
    catalog: CatalogName,
    kind: Kind,
    entry_id: EntryId,
    entry: dict[str, Any],
    app: StateDep,
    caller: Writer,
) -> CatalogEntryOut:
    """Create or replace one entry of your tenant's named catalog (the shape of a shipped
    entry). Other tenants' catalogs of the same name are separate."""
    body = _upsert(app, caller.tenant, catalog, kind, entry_id, entry)
    return CatalogEntryOut(catalog=catalog, kind=kind, id=entry_id, entry=body)


@router.get("/v1/shared-catalogs/{catalog}", operation_id="list_shared_catalog")
def list_shared_catalog(
    catalog: CatalogName, app: StateDep, _caller: Reader
) -> list[CatalogEntryOut]:
    """A shared catalog's entries: readable by every tenant, written by admin keys."""
    rows = _entries(app, SHARED_TENANT, catalog)
    if not rows:
        raise HTTPException(404, f"no shared catalog '{catalog}'")
    return _listed(rows)


@router.put(
    "/v1/shared-catalogs/{catalog}/{kind}/{entry_id}", operation_id="put_shared_catalog_entry"
)
def put_shared_entry(
    catalog: CatalogName,
    kind: Kind,
    entry_id: EntryId,
    entry: dict[str, Any],
    app: StateDep,
    _admin: Admin,
) -> CatalogEntryOut:
    """Create or replace one entry of a shared catalog (needs the ``admin`` scope)."""
    body = _upsert(app, SHARED_TENANT, catalog, kind, entry_id, entry)
    return CatalogEntryOut(catalog=catalog, kind=kind, id=entry_id, entry=body)


def user_entries(app, catalog: str | None, caller: Caller) -> dict[str, list[dict]]:
    """A catalog's entries as the worker expects them ({"racks": [...], "llms": [...]}): the
    caller's tenant's catalog of that name, else the shared one."""
    if catalog is None:
        return {}
    rows = _entries(app, caller.tenant, catalog) or _entries(app, SHARED_TENANT, catalog)
    if not rows:
        raise HTTPException(404, f"no user catalog '{catalog}'")
    return {kind: [r.body for r in rows if r.kind == kind] for kind in ("racks", "llms")}
