"""The oracles' persistence: cursors, processed events, effects (an outbox), metrics.

Exactly-once comes from one rule: the processed-event key, the cursor and the effect's
record (with its signed transactions) are written in ONE database transaction. After a crash
the event is either not processed (it is read again from the cursor and handled again; the
adapters answer a repeated request id with the same answer) or it is, and its signed
transactions are in the outbox to be broadcast again (a repeat of a mined tx is a no-op).
Effects are keyed by what they do ("decision:7"), not by the event, so a re-included event
after a reorg, or an event delivered twice, cannot cause a second effect. Keys are per oracle:
two banks may each state a payoff for the same deal. Effects an oracle merged into one batch
transaction are recorded in one database transaction, each row holding that transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import Connection, Engine, inspect

from chain.events import Cursor
from chain.sender import SignedTx
from pipeline.db import sql

_EFFECTS = """CREATE TABLE IF NOT EXISTS {table} (
        oracle VARCHAR(64) NOT NULL, effect_key VARCHAR(200) NOT NULL, deal_id BIGINT,
        kind VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, source_event VARCHAR(200) NOT NULL,
        source_block BIGINT NOT NULL, answer TEXT NOT NULL, txs TEXT NOT NULL, error TEXT,
        seen_at DOUBLE PRECISION NOT NULL, done_at DOUBLE PRECISION, latency_ms DOUBLE PRECISION,
        mined_block BIGINT, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (oracle, effect_key))"""
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS oracle_cursors (
        oracle VARCHAR(64) PRIMARY KEY, cursor TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oracle_events (
        oracle VARCHAR(64) NOT NULL, event_key VARCHAR(200) NOT NULL, block_number BIGINT NOT NULL,
        effect_key VARCHAR(200), seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (oracle, event_key))""",
    _EFFECTS.format(table="oracle_effects"),
    "CREATE INDEX IF NOT EXISTS oracle_effects_status ON oracle_effects (oracle, status)",
    "CREATE INDEX IF NOT EXISTS oracle_effects_mined ON oracle_effects (oracle, mined_block)",
    "CREATE INDEX IF NOT EXISTS oracle_effects_deal ON oracle_effects (deal_id)",
    """CREATE TABLE IF NOT EXISTS oracle_orphans (
        effect_key VARCHAR(200) NOT NULL, oracle VARCHAR(64) NOT NULL, source_event VARCHAR(200) NOT NULL,
        txs TEXT NOT NULL, orphaned_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS oracle_counters (
        oracle VARCHAR(64) NOT NULL, name VARCHAR(64) NOT NULL, value BIGINT NOT NULL,
        PRIMARY KEY (oracle, name))""",
    """CREATE TABLE IF NOT EXISTS wallet_credentials (
        hash VARCHAR(66) PRIMARY KEY, subject VARCHAR(42) NOT NULL, document TEXT NOT NULL,
        signature VARCHAR(132) NOT NULL, stored_at DOUBLE PRECISION NOT NULL)""",
]

OPEN_STATUSES = ("signed",)


def create_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        _upgrade_effects(conn)
        for statement in SCHEMA:
            conn.execute(sql(statement))


def _upgrade_effects(conn: Connection) -> None:
    """Books written before effects were keyed per oracle and knew their block are rebuilt
    under the new key (their effects keep their status; mined_block stays unknown)."""
    found = inspect(conn)
    if not found.has_table("oracle_effects"):
        return
    columns = [c["name"] for c in found.get_columns("oracle_effects")]
    if "mined_block" in columns:
        return
    names = ", ".join(columns)
    conn.execute(sql(_EFFECTS.format(table="oracle_effects_v2")))
    conn.execute(sql(f"INSERT INTO oracle_effects_v2 ({names}) SELECT {names} FROM oracle_effects"))
    conn.execute(sql("DROP TABLE oracle_effects"))  # with its indexes: SCHEMA makes them anew
    conn.execute(sql("ALTER TABLE oracle_effects_v2 RENAME TO oracle_effects"))


@dataclass(frozen=True)
class Effect:
    key: str
    oracle: str
    deal_id: int | None
    kind: str
    status: str  # signed -> mined | reverted | failed; parked; (orphaned effects move to oracle_orphans)
    source_event: str
    source_block: int
    answer: dict[str, Any]
    txs: list[SignedTx]
    error: str | None
    seen_at: float
    latency_ms: float | None
    mined_block: int | None  # the block of its last transaction, once mined


@dataclass(frozen=True)
class NewEffect:
    """An effect to record with the event it answers. Effects merged into one batch transaction
    each hold that same transaction: every row can be sent again on its own, and delivery sends
    each distinct transaction once."""

    event_key: str
    block: int
    effect_key: str
    deal_id: int | None
    kind: str
    answer: dict[str, Any]
    txs: list[SignedTx]
    seen_at: float
    status: str = "signed"
    error: str | None = None


def _effect(row: Any) -> Effect:
    return Effect(
        key=row.effect_key,
        oracle=row.oracle,
        deal_id=row.deal_id,
        kind=row.kind,
        status=row.status,
        source_event=row.source_event,
        source_block=row.source_block,
        answer=json.loads(row.answer),
        txs=[SignedTx(**t) for t in json.loads(row.txs)],
        error=row.error,
        seen_at=row.seen_at,
        latency_ms=row.latency_ms,
        mined_block=row.mined_block,
    )


class OracleStore:
    def __init__(self, engine: Engine, oracle: str) -> None:
        self.engine = engine
        self.oracle = oracle
        create_tables(engine)

    # --- reads -----------------------------------------------------------------------------
    def load_cursor(self) -> Cursor | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT cursor FROM oracle_cursors WHERE oracle = :o"), {"o": self.oracle}
            ).first()
        return Cursor.from_json(row[0]) if row else None

    def is_processed(self, event_key: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT 1 FROM oracle_events WHERE oracle = :o AND event_key = :k"),
                {"o": self.oracle, "k": event_key},
            ).first()
        return row is not None

    def effect(self, key: str) -> Effect | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT * FROM oracle_effects WHERE oracle = :o AND effect_key = :k"),
                {"o": self.oracle, "k": key},
            ).first()
        return _effect(row) if row else None

    def effects(self, status: str | None = None, deal_id: int | None = None) -> list[Effect]:
        query = "SELECT * FROM oracle_effects WHERE oracle = :o"
        params: dict[str, Any] = {"o": self.oracle}
        if status:
            query += " AND status = :s"
            params["s"] = status
        if deal_id is not None:
            query += " AND deal_id = :d"
            params["d"] = deal_id
        with self.engine.connect() as conn:
            rows = conn.execute(sql(query + " ORDER BY seen_at"), params).fetchall()
        return [_effect(r) for r in rows]

    def effects_after(self, block: int, *, sources: bool = False) -> list[Effect]:
        """Mined effects whose transactions are in blocks after `block` and, with `sources`, every
        effect whose source event is: what a reorg back to `block` may have undone."""
        query = "SELECT * FROM oracle_effects WHERE oracle = :o AND (status = 'mined' AND mined_block > :b"
        if sources:
            query += " OR source_block > :b"
        with self.engine.connect() as conn:
            rows = conn.execute(sql(query + ") ORDER BY seen_at"), {"o": self.oracle, "b": block}).fetchall()
        return [_effect(r) for r in rows]

    def counters(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sql("SELECT name, value FROM oracle_counters WHERE oracle = :o"),
                {"o": self.oracle},
            ).fetchall()
        return {r.name: int(r.value) for r in rows}

    # --- writes: each is one transaction -----------------------------------------------------
    def _event(self, conn: Connection, event_key: str, block: int, effect_key: str | None) -> None:
        conn.execute(
            sql(
                "INSERT INTO oracle_events (oracle, event_key, block_number, effect_key, seen_at) "
                "VALUES (:o, :k, :b, :e, :t)"
            ),
            {"o": self.oracle, "k": event_key, "b": block, "e": effect_key, "t": time.time()},
        )

    def _cursor(self, conn: Connection, cursor: Cursor) -> None:
        params = {"o": self.oracle, "c": cursor.to_json(), "t": time.time()}
        updated = conn.execute(
            sql("UPDATE oracle_cursors SET cursor = :c, updated_at = :t WHERE oracle = :o"), params
        ).rowcount
        if not updated:
            conn.execute(
                sql("INSERT INTO oracle_cursors (oracle, cursor, updated_at) VALUES (:o, :c, :t)"),
                params,
            )

    def save_cursor(self, cursor: Cursor) -> None:
        with self.engine.begin() as conn:
            self._cursor(conn, cursor)

    def record_skip(self, event_key: str, block: int, cursor: Cursor, effect_key: str | None = None) -> None:
        """The event needs nothing (not ours, not ready, or its effect already exists)."""
        with self.engine.begin() as conn:
            self._event(conn, event_key, block, effect_key)
            self._cursor(conn, cursor)

    def record_effect(
        self,
        *,
        event_key: str,
        block: int,
        cursor: Cursor,
        effect_key: str,
        deal_id: int | None,
        kind: str,
        answer: dict[str, Any],
        txs: list[SignedTx],
        seen_at: float,
        status: str = "signed",
        error: str | None = None,
    ) -> None:
        """Processed event + effect (with its signed transactions) + cursor, atomically."""
        effect = NewEffect(event_key, block, effect_key, deal_id, kind, answer, txs, seen_at, status, error)
        self.record_effects(cursor, [effect])

    def record_effects(self, cursor: Cursor, effects: list[NewEffect]) -> None:
        """Several effects, each with its processed event, and the cursor, atomically: the
        effects of one batch transaction are in the outbox together or not at all."""
        with self.engine.begin() as conn:
            for e in effects:
                self._event(conn, e.event_key, e.block, e.effect_key)
                conn.execute(
                    sql(
                        "INSERT INTO oracle_effects (effect_key, oracle, deal_id, kind, status, "
                        "source_event, source_block, answer, txs, error, seen_at, updated_at) VALUES "
                        "(:k, :o, :d, :kind, :s, :e, :b, :a, :txs, :err, :seen, :now)"
                    ),
                    {
                        "k": e.effect_key,
                        "o": self.oracle,
                        "d": e.deal_id,
                        "kind": e.kind,
                        "s": e.status,
                        "e": e.event_key,
                        "b": e.block,
                        "a": json.dumps(e.answer),
                        "txs": json.dumps([t.__dict__ for t in e.txs]),
                        "err": e.error,
                        "seen": e.seen_at,
                        "now": time.time(),
                    },
                )
            self._cursor(conn, cursor)
            self._bump(conn, "parked", sum(e.status == "parked" for e in effects))

    def record_direct(
        self, *, effect_key: str, deal_id: int | None, kind: str, answer: dict[str, Any], txs: list[SignedTx]
    ) -> bool:
        """An effect asked for directly (a cash deposit at the bank), not by a chain event.
        Returns False when an effect with this key already exists (a repeated request)."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                sql("SELECT 1 FROM oracle_effects WHERE oracle = :o AND effect_key = :k"),
                {"o": self.oracle, "k": effect_key},
            ).first()
            if exists:
                return False
            now = time.time()
            conn.execute(
                sql(
                    "INSERT INTO oracle_effects (effect_key, oracle, deal_id, kind, status, source_event, "
                    "source_block, answer, txs, seen_at, updated_at) VALUES "
                    "(:k, :o, :d, :kind, 'signed', :e, 0, :a, :txs, :now, :now)"
                ),
                {
                    "k": effect_key,
                    "o": self.oracle,
                    "d": deal_id,
                    "kind": kind,
                    "e": f"direct:{effect_key}",
                    "a": json.dumps(answer),
                    "txs": json.dumps([t.__dict__ for t in txs]),
                    "now": now,
                },
            )
        return True

    def finish(
        self, effect_key: str, status: str, error: str | None = None, *, block: int | None = None
    ) -> float | None:
        """Mark an effect mined (its last transaction in `block`), reverted or failed; returns its
        reaction latency in ms."""
        now = time.time()
        key = {"o": self.oracle, "k": effect_key}
        with self.engine.begin() as conn:
            row = conn.execute(
                sql("SELECT seen_at FROM oracle_effects WHERE oracle = :o AND effect_key = :k"), key
            ).first()
            latency = (now - row.seen_at) * 1000 if row else None
            conn.execute(
                sql(
                    "UPDATE oracle_effects SET status = :s, error = :e, done_at = :t, latency_ms = :l, "
                    "mined_block = :b, updated_at = :t WHERE oracle = :o AND effect_key = :k"
                ),
                {**key, "s": status, "e": error, "t": now, "l": latency, "b": block},
            )
            if status == "reverted":
                self._bump(conn, "reverted", 1)
        return latency

    def retry_parked(self, effect_key: str) -> bool:
        """Forget a parked effect and its source event, so re-reading that event tries again."""
        with self.engine.begin() as conn:
            gone = conn.execute(
                sql("DELETE FROM oracle_effects WHERE oracle = :o AND effect_key = :k AND status = 'parked'"),
                {"o": self.oracle, "k": effect_key},
            ).rowcount
            if gone:
                conn.execute(
                    sql("DELETE FROM oracle_events WHERE oracle = :o AND effect_key = :k"),
                    {"o": self.oracle, "k": effect_key},
                )
                self._bump(conn, "retried_parked", 1)
        return bool(gone)

    def reconcile(
        self,
        *,
        rewound_to: int | None,
        orphans: list[str],
        mined_at: dict[str, int],
        resend: dict[str, list[SignedTx]],
    ) -> None:
        """What checking effects against the chain found, in one transaction. After a reorg back
        to `rewound_to` the events after it are forgotten, and `orphans` (effects whose source
        event went, none of whose transactions is on chain) move to oracle_orphans, so that the
        re-included event acts afresh. `mined_at`: effects found on chain in another block than
        recorded. `resend`: effects whose transactions went, back in the outbox with the
        transactions to send now."""
        now = time.time()
        with self.engine.begin() as conn:
            if rewound_to is not None:
                # every effect whose source event the reorg dropped counts, whether it stands or not
                dropped = conn.execute(
                    sql("SELECT COUNT(*) FROM oracle_effects WHERE oracle = :o AND source_block > :b"),
                    {"o": self.oracle, "b": rewound_to},
                ).scalar_one()
                conn.execute(
                    sql("DELETE FROM oracle_events WHERE oracle = :o AND block_number > :b"),
                    {"o": self.oracle, "b": rewound_to},
                )
                self._bump(conn, "orphaned", int(dropped))
            for key in orphans:
                conn.execute(
                    sql(
                        "INSERT INTO oracle_orphans (effect_key, oracle, source_event, txs, orphaned_at) "
                        "SELECT effect_key, oracle, source_event, txs, :t FROM oracle_effects "
                        "WHERE oracle = :o AND effect_key = :k"
                    ),
                    {"o": self.oracle, "k": key, "t": now},
                )
                conn.execute(
                    sql("DELETE FROM oracle_effects WHERE oracle = :o AND effect_key = :k"),
                    {"o": self.oracle, "k": key},
                )
            for key, block in mined_at.items():
                conn.execute(
                    sql(
                        "UPDATE oracle_effects SET mined_block = :b, updated_at = :t "
                        "WHERE oracle = :o AND effect_key = :k"
                    ),
                    {"o": self.oracle, "k": key, "b": block, "t": now},
                )
            for key, txs in resend.items():
                conn.execute(
                    sql(
                        "UPDATE oracle_effects SET status = 'signed', txs = :txs, error = NULL, "
                        "done_at = NULL, mined_block = NULL, updated_at = :t "
                        "WHERE oracle = :o AND effect_key = :k"
                    ),
                    {"o": self.oracle, "k": key, "txs": json.dumps([t.__dict__ for t in txs]), "t": now},
                )
            self._bump(conn, "resent", len(resend))

    def _bump(self, conn: Connection, name: str, by: int) -> None:
        if not by:
            return
        params = {"o": self.oracle, "n": name, "v": by}
        updated = conn.execute(
            sql("UPDATE oracle_counters SET value = value + :v WHERE oracle = :o AND name = :n"),
            params,
        ).rowcount
        if not updated:
            conn.execute(
                sql("INSERT INTO oracle_counters (oracle, name, value) VALUES (:o, :n, :v)"),
                params,
            )

    def bump(self, name: str, by: int = 1) -> None:
        with self.engine.begin() as conn:
            self._bump(conn, name, by)


class WalletStore:
    """E-certificates the parties submitted online, by hash, for the bank oracle to present."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine)

    def put(self, hash_: str, subject: str, document: dict[str, Any], signature: str) -> None:
        subject = to_checksum_address(subject)
        with self.engine.begin() as conn:
            exists = conn.execute(
                sql("SELECT 1 FROM wallet_credentials WHERE hash = :h"), {"h": hash_}
            ).first()
            if not exists:
                conn.execute(
                    sql(
                        "INSERT INTO wallet_credentials (hash, subject, document, signature, stored_at) "
                        "VALUES (:h, :s, :d, :sig, :t)"
                    ),
                    {
                        "h": hash_,
                        "s": subject,
                        "d": json.dumps(document),
                        "sig": signature,
                        "t": time.time(),
                    },
                )

    def by_subject(self, subject: str) -> list[tuple[str, dict[str, Any]]]:
        """(hash, document) of every certificate about `subject`, newest first."""
        subject = to_checksum_address(subject)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sql(
                    "SELECT hash, document FROM wallet_credentials WHERE subject = :s ORDER BY stored_at DESC"
                ),
                {"s": subject},
            ).fetchall()
        return [(r.hash, json.loads(r.document)) for r in rows]

    def get(self, hash_: str) -> tuple[dict[str, Any], str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT document, signature FROM wallet_credentials WHERE hash = :h"),
                {"h": hash_},
            ).first()
        return (json.loads(row.document), row.signature) if row else None
