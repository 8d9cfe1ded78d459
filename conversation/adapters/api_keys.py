"""API keys: one tenant each (or admin), stored as SHA-256 hashes, revocable."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from conversation.adapters.postgres.schema import api_keys

KEY_PREFIX = "cs_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's key, or an admin key (tenant_id None)."""

    key_id: int
    tenant_id: str | None
    is_admin: bool

    def may_read(self, tenant_id: str) -> bool:
        return self.is_admin or self.tenant_id == tenant_id


def hash_key(key: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, tenant_id: str | None, *, admin: bool = False, label: str | None = None) -> str:
        if not admin and not tenant_id:
            raise ValueError("a key belongs to a tenant unless it is an admin key")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as connection:
            connection.execute(
                api_keys.insert().values(
                    key_hash=hash_key(key),
                    prefix=key[:10],
                    tenant_id=None if admin else tenant_id,
                    is_admin=admin,
                    label=label,
                    created_at=datetime.now(UTC),
                )
            )
        return key

    def authenticate(self, key: str) -> Principal | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(api_keys).where(
                    api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
                )
            ).first()
        if row is None:
            return None
        return Principal(key_id=row.id, tenant_id=row.tenant_id, is_admin=row.is_admin)

    def list(self, tenant_id: str | None = None) -> list[dict[str, object]]:
        query = select(api_keys).order_by(api_keys.c.id)
        if tenant_id:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.engine.connect() as connection:
            return [
                {
                    "id": r.id,
                    "prefix": r.prefix,
                    "tenant_id": r.tenant_id,
                    "admin": r.is_admin,
                    "label": r.label,
                    "created_at": r.created_at.isoformat(),
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                }
                for r in connection.execute(query)
            ]

    def revoke(self, key_id: int) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    api_keys.update()
                    .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=datetime.now(UTC))
                ).rowcount
            )
