"""The API's own tables: brokers, their API keys (stored hashed), idempotency records, and deal
drafts (terms the parties sign before the deal is opened with both acceptances).

SQLAlchemy Core with plain SQL that runs on SQLite and PostgreSQL (see pipeline/db.py).
A key is `dc_<key_id>_<secret>`; it is shown once, when issued, and only its SHA-256 is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from api.errors import ApiValueError
from pipeline.db import make_engine, sql

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS brokers (
        id VARCHAR(32) PRIMARY KEY, name VARCHAR(200) NOT NULL, address VARCHAR(42) NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id VARCHAR(32) PRIMARY KEY, broker_id VARCHAR(32) NOT NULL REFERENCES brokers (id),
        key_hash VARCHAR(64) NOT NULL, created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS idempotency (
        broker_id VARCHAR(32) NOT NULL, key VARCHAR(200) NOT NULL, scope VARCHAR(300) NOT NULL,
        request_hash VARCHAR(64) NOT NULL, status INTEGER, response_json TEXT,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (broker_id, key))""",
    """CREATE TABLE IF NOT EXISTS drafts (
        id VARCHAR(32) PRIMARY KEY, broker_id VARCHAR(32) NOT NULL REFERENCES brokers (id),
        terms_json TEXT NOT NULL, buyer_expiry BIGINT, buyer_signature VARCHAR(200),
        seller_expiry BIGINT, seller_signature VARCHAR(200), deal_id BIGINT, tx VARCHAR(66),
        created_at DOUBLE PRECISION NOT NULL)""",
]
KEY_PREFIX = "dc_"


KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"([0-9a-f]+)_([A-Za-z0-9_-]+)")  # as issue_key makes them


def split_key(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a token in the form of a key, else None."""
    match = KEY_PATTERN.fullmatch(token)
    return None if match is None else (match[1], match[2])


@dataclass(frozen=True)
class Broker:
    id: str
    name: str
    address: str
    key_id: str = ""


@dataclass(frozen=True)
class IdempotencyRecord:
    scope: str
    request_hash: str
    status: int | None  # None while the first request is still running
    response_json: str | None


@dataclass(frozen=True)
class Draft:
    """A deal's terms before it is opened: each party's acceptance (party -> [expiry, signature])
    as it comes in, and the deal once opened with both."""

    id: str
    broker_id: str
    terms: dict[str, Any]
    acceptances: dict[str, list[Any]]
    deal_id: int | None
    tx: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiStore:
    def __init__(self, engine_or_url: Engine | str) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        with self.engine.begin() as conn:
            for statement in SCHEMA:
                conn.execute(sql(statement))

    # --- brokers and keys --------------------------------------------------------------------
    def create_broker(self, name: str, address: str) -> Broker:
        if not is_address(address):
            raise ApiValueError(f"broker address {address!r} is not a 0x address")
        broker = Broker(uuid.uuid4().hex, name, to_checksum_address(address))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sql("INSERT INTO brokers (id, name, address, created_at) VALUES (:i, :n, :a, :t)"),
                    {"i": broker.id, "n": name, "a": broker.address, "t": time.time()},
                )
        except IntegrityError:
            raise ApiValueError(f"a broker with address {broker.address} exists already") from None
        return broker

    def broker_by_address(self, address: str) -> Broker | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT id, name, address FROM brokers WHERE address = :a"),
                {"a": to_checksum_address(address)},
            ).first()
        return Broker(row.id, row.name, row.address) if row else None

    def issue_key(self, broker_id: str) -> str:
        """A new API key for the broker: returned once, kept only as a hash."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            if conn.execute(sql("SELECT 1 FROM brokers WHERE id = :i"), {"i": broker_id}).first() is None:
                raise ApiValueError(f"no broker {broker_id}")
            conn.execute(
                sql("INSERT INTO api_keys (key_id, broker_id, key_hash, created_at) VALUES (:k, :b, :h, :t)"),
                {"k": key_id, "b": broker_id, "h": hash_secret(secret), "t": time.time()},
            )
        return f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                sql("UPDATE api_keys SET revoked_at = :t WHERE key_id = :k AND revoked_at IS NULL"),
                {"t": time.time(), "k": key_id},
            )
        return bool(result.rowcount)

    def authenticate(self, token: str) -> Broker | None:
        """The broker holding this unrevoked key, or None."""
        parts = split_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        with self.engine.connect() as conn:
            row = conn.execute(
                sql(
                    "SELECT k.key_hash, k.revoked_at, b.id, b.name, b.address FROM api_keys k "
                    "JOIN brokers b ON b.id = k.broker_id WHERE k.key_id = :k"
                ),
                {"k": key_id},
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        if not hmac.compare_digest(row.key_hash, hash_secret(secret)):
            return None
        return Broker(row.id, row.name, row.address, key_id)

    @staticmethod
    def key_id_of(token: str) -> str:
        return token[len(KEY_PREFIX) :].split("_", 1)[0]

    # --- idempotency ---------------------------------------------------------------------------
    def claim(self, broker_id: str, key: str, scope: str, request_hash: str) -> IdempotencyRecord | None:
        """Claim `key` for this request; None when claimed now, else the existing record."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sql(
                        "INSERT INTO idempotency (broker_id, key, scope, request_hash, created_at) "
                        "VALUES (:b, :k, :s, :h, :t)"
                    ),
                    {"b": broker_id, "k": key, "s": scope, "h": request_hash, "t": time.time()},
                )
            return None
        except IntegrityError:
            pass
        with self.engine.connect() as conn:
            row = conn.execute(
                sql(
                    "SELECT scope, request_hash, status, response_json FROM idempotency "
                    "WHERE broker_id = :b AND key = :k"
                ),
                {"b": broker_id, "k": key},
            ).first()
        if row is None:  # released between our insert and our read: try once more
            return self.claim(broker_id, key, scope, request_hash)
        return IdempotencyRecord(row.scope, row.request_hash, row.status, row.response_json)

    def complete(self, broker_id: str, key: str, status: int, response_json: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sql(
                    "UPDATE idempotency SET status = :s, response_json = :r "
                    "WHERE broker_id = :b AND key = :k AND status IS NULL"
                ),
                {"s": status, "r": response_json, "b": broker_id, "k": key},
            )

    def release(self, broker_id: str, key: str) -> None:
        """Forget an unfinished claim (the request failed in a way worth retrying)."""
        with self.engine.begin() as conn:
            conn.execute(
                sql("DELETE FROM idempotency WHERE broker_id = :b AND key = :k AND status IS NULL"),
                {"b": broker_id, "k": key},
            )

    def ping(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            conn.execute(sql("SELECT 1"))
        return {"ok": True}

    # --- drafts ----------------------------------------------------------------------------------
    def create_draft(self, broker_id: str, terms: dict[str, Any]) -> Draft:
        draft = Draft(uuid.uuid4().hex, broker_id, terms, {}, None, None)
        with self.engine.begin() as conn:
            conn.execute(
                sql("INSERT INTO drafts (id, broker_id, terms_json, created_at) VALUES (:i, :b, :t, :c)"),
                {"i": draft.id, "b": broker_id, "t": json.dumps(terms), "c": time.time()},
            )
        return draft

    def draft(self, broker_id: str, draft_id: str) -> Draft | None:
        """The broker's draft; None for another broker's, as for one that does not exist."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sql(
                    "SELECT id, broker_id, terms_json, buyer_expiry, buyer_signature, seller_expiry, "
                    "seller_signature, deal_id, tx FROM drafts WHERE id = :i AND broker_id = :b"
                ),
                {"i": draft_id, "b": broker_id},
            ).first()
        if row is None:
            return None
        acceptances = {
            party: [expiry, signature]
            for party, expiry, signature in (
                ("buyer", row.buyer_expiry, row.buyer_signature),
                ("seller", row.seller_expiry, row.seller_signature),
            )
            if signature is not None
        }
        deal = None if not row.deal_id else int(row.deal_id)  # 0: being opened
        return Draft(row.id, row.broker_id, json.loads(row.terms_json), acceptances, deal, row.tx)

    def accept_draft(self, draft: Draft, party: str, expiry: int, signature: str) -> None:
        """Keep a party's acceptance (a newer one replaces it) while the draft is not opened.
        Each party's columns are its own: two parties' acceptances at once both stay."""
        assert party in ("buyer", "seller")
        with self.engine.begin() as conn:
            conn.execute(
                sql(
                    # `party` is one of the two names asserted above, never the caller's text
                    f"UPDATE drafts SET {party}_expiry = :e, {party}_signature = :s "
                    "WHERE id = :i AND deal_id IS NULL"
                ),
                {"e": expiry, "s": signature, "i": draft.id},
            )

    def claim_draft(self, draft: Draft) -> bool:
        """Claim the opening of the draft: True for exactly one caller until release_draft."""
        with self.engine.begin() as conn:
            claimed = conn.execute(
                sql("UPDATE drafts SET deal_id = 0 WHERE id = :i AND deal_id IS NULL"), {"i": draft.id}
            )
        return bool(claimed.rowcount)

    def release_draft(self, draft: Draft) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sql("UPDATE drafts SET deal_id = NULL WHERE id = :i AND deal_id = 0"), {"i": draft.id}
            )

    def draft_opened(self, draft: Draft, deal_id: int, tx: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sql("UPDATE drafts SET deal_id = :d, tx = :t WHERE id = :i"),
                {"d": deal_id, "t": tx, "i": draft.id},
            )
