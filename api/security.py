"""API keys: created by ``rackplan keys create``, stored as SHA-256 hashes, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Every key belongs to one tenant, and sees only that tenant's objects. Scopes: ``read``,
``write`` and ``admin`` (manage the keys of its tenant, write shared catalogs). A key may
expire (``expires_at``) and can be revoked or rotated (a new secret, same id and tenant).
Lookups are cached for ``CACHE_TTL_S`` seconds; a revocation in this process clears the cache
at once, other processes of the service notice within the TTL.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from rackplan.api.db import DEFAULT_TENANT, ApiKey, Database, now

SCOPES = ("read", "write", "admin")
DEFAULT_SCOPES = ("read", "write")
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's id (None when anonymous), its tenant and its scopes."""

    key_id: str | None
    tenant: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        """Whether the key has ``scope``."""
        return scope in self.scopes


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _checked(scopes: tuple[str, ...], tenant: str) -> None:
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; use {', '.join(SCOPES)}")
    if not TENANT_PATTERN.match(tenant):
        raise ValueError(
            f"tenant '{tenant}' is not a valid name: use 1-64 lower-case letters, digits, '-', '_'"
        )


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns times without a zone; they are stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def create_key(
    db: Database,
    name: str,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    tenant: str = DEFAULT_TENANT,
    expires_at: datetime | None = None,
) -> tuple[str, str]:
    """Store a new key; return (key id, the key itself — shown once, never stored)."""
    _checked(scopes, tenant)
    key = "rp_" + secrets.token_urlsafe(32)
    with db.transaction() as session:
        row = ApiKey(
            name=name,
            key_hash=hash_key(key),
            scopes=",".join(sorted(set(scopes))),
            tenant=tenant,
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        return row.id, key


def usable(row: ApiKey, at: datetime | None = None) -> bool:
    """Not revoked and not expired."""
    moment = at or now()
    expires = _aware(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > moment)


def find_key(db: Database, key: str) -> ApiKey | None:
    """The stored key for a presented one, if it is usable."""
    with db.read() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    return row if row is not None and usable(row) else None


class KeyCache:
    """hash → (Caller or None, expiry): repeated requests with a key skip the database."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Caller | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, Caller | None]:
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def put(self, digest: str, caller: Caller | None, ttl: float) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (caller, time.monotonic() + ttl)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHES: weakref.WeakKeyDictionary[Database, KeyCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_of(db: Database) -> KeyCache:
    """The key cache of one database (several apps in one process never share entries)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(db)
        if cache is None:
            cache = _CACHES[db] = KeyCache()
        return cache


def authenticate(db: Database, key: str) -> Caller | None:
    """The caller a presented key stands for, or None (unknown, revoked or expired)."""
    digest = hash_key(key)
    found, caller = cache_of(db).get(digest)
    if found:
        return caller
    row = find_key(db, key)
    caller = (
        Caller(key_id=row.id, tenant=row.tenant, scopes=frozenset(row.scopes.split(",")))
        if row is not None
        else None
    )
    ttl = CACHE_TTL_S
    if row is not None and row.expires_at is not None:
        ttl = min(ttl, max(0.0, (_aware(row.expires_at) - now()).total_seconds()))
    cache_of(db).put(digest, caller, ttl)
    return caller


def caller_of_key(db: Database, key_id: str) -> Caller | None:
    """The caller a stored key stands for, if it is still usable (a browser session signed in
    with a key ends when the key is revoked or expires)."""
    with db.read() as session:
        row = session.get(ApiKey, key_id)
    if row is None or not usable(row):
        return None
    return Caller(key_id=row.id, tenant=row.tenant, scopes=frozenset(row.scopes.split(",")))


def list_keys(db: Database, tenant: str | None = None) -> list[ApiKey]:
    """Every key (of one tenant when given), oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    with db.read() as session:
        return list(session.scalars(query).all())


def revoke_key(db: Database, key_id: str, tenant: str | None = None) -> bool:
    """Revoke a key (of ``tenant`` when given); False when there is no such key."""
    with db.transaction() as session:
        row = session.get(ApiKey, key_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return False
        if row.revoked_at is None:
            row.revoked_at = now()
    cache_of(db).clear()
    return True


def rotate_key(
    db: Database, key_id: str, expires_at: datetime | None = None, tenant: str | None = None
) -> str | None:
    """Give a key a new secret (same id, tenant and scopes); the old secret stops working.
    Returns the new key, or None when there is no usable key with that id."""
    key = "rp_" + secrets.token_urlsafe(32)
    with db.transaction() as session:
        row = session.get(ApiKey, key_id)
        if row is None or not usable(row) or (tenant is not None and row.tenant != tenant):
            return None
        row.key_hash = hash_key(key)
        row.expires_at = expires_at
    cache_of(db).clear()
    return key
