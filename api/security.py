"""API keys: created by ``rackplan keys create``, stored as SHA-256 hashes, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Scopes: ``read``, ``write``."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from rackplan.api.db import ApiKey, Database

SCOPES = ("read", "write")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(db: Database, name: str, scopes: tuple[str, ...] = SCOPES) -> tuple[str, str]:
    """Store a new key; return (key id, the key itself — shown once, never stored)."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; use {', '.join(SCOPES)}")
    key = "rp_" + secrets.token_urlsafe(32)
    with db.transaction() as session:
        row = ApiKey(name=name, key_hash=hash_key(key), scopes=",".join(sorted(set(scopes))))
        session.add(row)
        session.flush()
        return row.id, key


def find_key(db: Database, key: str) -> ApiKey | None:
    with db.read() as session:
        return session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
