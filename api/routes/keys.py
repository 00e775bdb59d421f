"""API keys of your tenant, managed with a key that has the ``admin`` scope.

Admin keys themselves are made by the operator (``rackplan keys create --scope admin``);
keys made here get ``read`` and/or ``write`` only, so no tenant can raise its own rights.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from rackplan.api.db import ApiKey
from rackplan.api.deps import Admin, StateDep
from rackplan.api.schemas import UtcDatetime
from rackplan.api.security import create_key, list_keys, revoke_key, rotate_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])


class KeyOut(BaseModel):
    id: str
    name: str
    tenant: str
    scopes: list[str]
    created_at: UtcDatetime
    expires_at: UtcDatetime | None
    revoked_at: UtcDatetime | None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["read", "write"]] = Field(default=["read", "write"], min_length=1)
    expires_at: datetime | None = None


class KeyIssued(KeyOut):
    key: str = Field(description="The secret, shown once (stored only as a hash).")


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires_at: datetime | None = None


def key_out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        tenant=row.tenant,
        scopes=row.scopes.split(","),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _one(app, key_id: str, tenant: str) -> ApiKey:
    row = next((k for k in list_keys(app.db, tenant) if k.id == key_id), None)
    if row is None:
        raise HTTPException(404, f"no key '{key_id}'")
    return row


@router.get("", operation_id="list_keys")
def get_keys(app: StateDep, caller: Admin) -> list[KeyOut]:
    """Every key of your tenant (never the secrets)."""
    return [key_out(k) for k in list_keys(app.db, caller.tenant)]


@router.post("", status_code=201, operation_id="create_key")
def post_key(body: KeyCreate, app: StateDep, caller: Admin) -> KeyIssued:
    """A new key of your tenant with ``read`` and/or ``write``; the secret is shown once."""
    key_id, secret = create_key(
        app.db, body.name, tuple(body.scopes), caller.tenant, body.expires_at
    )
    return KeyIssued(**key_out(_one(app, key_id, caller.tenant)).model_dump(), key=secret)


@router.post("/{key_id}/revoke", operation_id="revoke_key")
def post_revoke(key_id: str, app: StateDep, caller: Admin) -> KeyOut:
    """Revoke a key of your tenant: it stops working at once in this process."""
    if not revoke_key(app.db, key_id, caller.tenant):
        raise HTTPException(404, f"no key '{key_id}'")
    return key_out(_one(app, key_id, caller.tenant))


@router.post("/{key_id}/rotate", operation_id="rotate_key")
def post_rotate(key_id: str, body: RotateRequest, app: StateDep, caller: Admin) -> KeyIssued:
    """Give a key of your tenant a new secret (same id and scopes); the old one stops working."""
    _one(app, key_id, caller.tenant)
    secret = rotate_key(app.db, key_id, body.expires_at, caller.tenant)
    if secret is None:
        raise HTTPException(409, f"key '{key_id}' is revoked or expired: create a new one")
    return KeyIssued(**key_out(_one(app, key_id, caller.tenant)).model_dump(), key=secret)
