"""API keys: created with a random secret shown once, stored as its sha256, revocable."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from docvl.db.models import ApiKey, WebhookSecret
from docvl.errors import InvalidInput, NotFound, Unauthenticated

KEY_PREFIX = "dvl_"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the owner of the API key presented, and the key."""

    owner: str
    key_id: uuid.UUID


@dataclass(frozen=True)
class CreatedKey:
    secret: str  # give it to the caller once; it is not stored
    key: ApiKey


def hash_secret(secret: str) -> str:
    """Keys are 256 random bits, so a plain sha256 is enough (no slow hash needed against guessing)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, owner: str, name: str | None = None) -> CreatedKey:
    owner = owner.strip()
    if not owner:
        raise InvalidInput("an API key needs an owner")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(owner=owner, name=name, prefix=secret[:12], key_hash=hash_secret(secret))
    session.add(key)
    session.flush()
    webhook_secret(session, owner)
    return CreatedKey(secret=secret, key=key)


def webhook_secret(session: Session, owner: str) -> str:
    """The owner's webhook signing secret, made on first use."""
    session.execute(
        insert(WebhookSecret)
        .values(owner=owner, secret="whsec_" + secrets.token_urlsafe(32))
        .on_conflict_do_nothing(index_elements=[WebhookSecret.owner])
    )
    return session.execute(select(WebhookSecret.secret).where(WebhookSecret.owner == owner)).scalar_one()


def authenticate(session: Session, secret: str) -> Caller:
    """The caller behind a valid, unrevoked key; Unauthenticated otherwise (the message never says which)."""
    key = session.execute(
        select(ApiKey).where(ApiKey.key_hash == hash_secret(secret), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None:
        raise Unauthenticated("unknown or revoked API key: ask for a new one (docvl keys create)")
    # At most one write a minute per key: a busy key's every request would otherwise queue on its row lock.
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < func.now() - timedelta(seconds=60)),
        )
        .values(last_used_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return Caller(key.owner, key.id)


def live_key(session: Session, key_id: uuid.UUID) -> ApiKey | None:
    """The key, unless it is unknown or revoked."""
    key = session.get(ApiKey, key_id)
    return key if key is not None and key.revoked_at is None else None


def revoke(session: Session, key_id: uuid.UUID) -> ApiKey:
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = func.now()
        session.flush()
        session.refresh(key)
    return key


def list_keys(session: Session, owner: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if owner is not None:
        query = query.where(ApiKey.owner == owner)
    return list(session.execute(query).scalars())
