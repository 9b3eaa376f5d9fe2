"""The deal index: each deal's broker, parcel, buyer, state and block span, kept in the pipeline's
database from the escrow's events, so that listing a broker's deals or reading a deal's events
costs the same with ten prior deals on chain as with ten thousand.

One EventStream feeds it; the rows a batch changes and the stream's cursor are written in one
transaction, so a restart resumes where the last batch ended instead of replaying from the
deployment. Listeners (the automation) get every batch too: one poll serves both.

Reorgs: each state change the stream could still rewind past keeps the state it replaced
(deal_index_undo). A rewind to block B puts back, per deal, the state before its first change
after B and forgets the deals opened after B; the stream then reads the new blocks after B.
Undo rows older than the stream's oldest recorded block are pruned: a rewind past that block
goes back to the stream's start (a reorg deeper than the record, a node whose state was rolled
back), which forgets every deal, and the index is rebuilt from the deployment on.

The contracts accept nothing for an ended deal, so its events all lie between the block that
opened it and the block that ended it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam

from chain.contract import Contract
from chain.events import Batch, ChainEvent, Cursor, EventStream, LogHub
from chain.rpc import Rpc
from pipeline.db import sql
from pipeline.domain import State

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS deal_index (
        deal_id BIGINT PRIMARY KEY, broker VARCHAR(42) NOT NULL, parcel_id VARCHAR(66) NOT NULL,
        buyer VARCHAR(42) NOT NULL, state SMALLINT NOT NULL, opened_block BIGINT NOT NULL,
        ended_block BIGINT, state_block BIGINT NOT NULL, state_log INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS deal_index_broker ON deal_index (broker, deal_id)",
    "CREATE INDEX IF NOT EXISTS deal_index_broker_state ON deal_index (broker, state, deal_id)",
    "CREATE INDEX IF NOT EXISTS deal_index_live ON deal_index (ended_block, broker)",
    """CREATE TABLE IF NOT EXISTS deal_index_undo (
        deal_id BIGINT NOT NULL, block_number BIGINT NOT NULL, log_index INTEGER NOT NULL,
        prev_state SMALLINT NOT NULL, prev_block BIGINT NOT NULL, prev_log INTEGER NOT NULL,
        PRIMARY KEY (deal_id, block_number, log_index))""",
    "CREATE INDEX IF NOT EXISTS deal_index_undo_block ON deal_index_undo (block_number)",
    """CREATE TABLE IF NOT EXISTS deal_index_cursor (
        stream VARCHAR(64) PRIMARY KEY, cursor TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
]
STREAM = "deals"
# The escrow's events that set a deal's state: those that carry the new state, and the rest.
CARRIES_STATE = {"TermsAccepted", "PaymentReceived", "LoanDecisionRecorded", "DealDefaulted"}
SETS_STATE = {
    "RegistrationRequested": State.REGISTRATION_REQUESTED,
    "DealCancelled": State.CANCELLED,
    "DealRefunded": State.REFUNDED,
    "DealSettled": State.SETTLED,
}
EVENTS = {"DealOpened", *CARRIES_STATE, *SETS_STATE}
CHUNK = 500  # deal ids per IN (...) when loading a batch's rows

Listener = Callable[[Batch], None]


@dataclass(frozen=True)
class IndexedDeal:
    deal_id: int
    broker: str
    parcel_id: str
    buyer: str
    state: State
    opened_block: int
    ended_block: int | None  # the block of its terminal event, None while live


@dataclass
class _Row:
    state: State
    block: int  # the position of the event that set `state`
    log: int


def create_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.execute(sql(statement))


def _deal(row: Any) -> IndexedDeal:
    return IndexedDeal(
        int(row.deal_id), row.broker, row.parcel_id, row.buyer, State(row.state),
        int(row.opened_block), None if row.ended_block is None else int(row.ended_block),
    )  # fmt: skip


class DealIndex:
    def __init__(
        self,
        engine: Engine,
        rpc: Rpc,
        escrow: Contract,
        *,
        start_block: int,
        block_range: int = 2000,
        forward: Iterable[tuple[Contract, str]] = (),
        hub: LogHub | None = None,
    ) -> None:
        """`forward`: other (contract, event) pairs the stream also reads, for the listeners;
        the index itself ignores them. `hub`: the log poller its stream shares with the
        process's other streams."""
        self.engine = engine
        self.escrow = escrow
        create_tables(engine)
        forward = list(forward)
        watched = {c.address: (c.name, c.abi) for c in (escrow, *(c for c, _e in forward))}
        self.stream = EventStream(
            hub or rpc,
            watched,
            start_block=start_block,
            cursor=self._load_cursor(),
            block_range=block_range,
            events=EVENTS | {e for _c, e in forward},
            max_age=0.0,  # read-your-writes: a sync sees every block mined before it began
        )
        self._saved = Cursor(self.stream.cursor.next_block, dict(self.stream.cursor.hashes))
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Call `listener` with every batch read from now on, right after the index applied it."""
        self._listeners.append(listener)

    # --- feeding ------------------------------------------------------------------------------
    def sync(self) -> None:
        """Read the chain up to its head into the index. Safe from any thread: the API calls it
        before each read, so what it answers is as new as the chain (read-your-writes)."""
        while True:
            with self._lock:
                before = self.stream.cursor
                batch = self.stream.poll()
                try:
                    self._apply(batch)
                except BaseException:
                    self.stream.cursor = before  # not applied: read it again next time
                    raise
                for listener in self._listeners:
                    listener(batch)
            if batch.caught_up:
                return

    def _apply(self, batch: Batch) -> None:
        if not batch.events and batch.rewound_to is None and batch.cursor == self._saved:
            return  # an idle poll: nothing to write
        with self.engine.begin() as conn:
            if batch.rewound_to is not None:
                self._rewind(conn, batch.rewound_to)
            # the stream cannot rewind past its oldest recorded block: older states need no undo
            horizon = min(batch.cursor.hashes, default=0)
            events = [e for e in batch.events if e.contract == self.escrow.name and e.event in EVENTS]
            if events:
                self._record(conn, events, horizon)
            conn.execute(sql("DELETE FROM deal_index_undo WHERE block_number < :h"), {"h": horizon})
            self._save_cursor(conn, batch.cursor)
        self._saved = batch.cursor

    def _record(self, conn: Connection, events: list[ChainEvent], horizon: int) -> None:
        rows = self._rows(conn, {int(e.args["dealId"]) for e in events})
        opened: dict[int, dict[str, Any]] = {}
        changed: set[int] = set()
        undo: list[dict[str, Any]] = []
        for e in events:
            deal_id, block, log = int(e.args["dealId"]), e.block_number, e.id.log_index
            if e.event == "DealOpened":
                if deal_id not in rows:  # else delivered before: the index has it
                    rows[deal_id] = _Row(State.OPEN, block, log)
                    opened[deal_id] = {"d": deal_id, "broker": e.args["broker"], "parcel": e.args["parcelId"],
                                       "buyer": e.args["terms"]["buyer"], "b": block}  # fmt: skip
                continue
            row = rows.get(deal_id)
            if row is None or (block, log) <= (row.block, row.log):
                continue  # not opened on this chain, or delivered before
            if block >= horizon:
                undo.append({"d": deal_id, "b": block, "l": log, "ps": int(row.state), "pb": row.block,
                             "pl": row.log})  # fmt: skip
            row.state = State(e.args["state"]) if e.event in CARRIES_STATE else SETS_STATE[e.event]
            row.block, row.log = block, log
            changed.add(deal_id)
        states = {d: _state_params(d, rows[d]) for d in changed | set(opened)}
        if opened:
            conn.execute(
                sql(
                    "INSERT INTO deal_index (deal_id, broker, parcel_id, buyer, state, opened_block, "
                    "ended_block, state_block, state_log) VALUES (:d, :broker, :parcel, :buyer, :s, :b, :e, "
                    ":sb, :sl)"
                ),
                [{**params, **states[d]} for d, params in opened.items()],
            )
        if changed - set(opened):
            conn.execute(sql(UPDATE_STATE), [states[d] for d in sorted(changed - set(opened))])
        if undo:
            conn.execute(
                sql(
                    "INSERT INTO deal_index_undo (deal_id, block_number, log_index, prev_state, prev_block, "
                    "prev_log) VALUES (:d, :b, :l, :ps, :pb, :pl)"
                ),
                undo,
            )

    @staticmethod
    def _rows(conn: Connection, deal_ids: set[int]) -> dict[int, _Row]:
        query = sql(
            "SELECT deal_id, state, state_block, state_log FROM deal_index WHERE deal_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        ordered = sorted(deal_ids)
        rows = {}
        for i in range(0, len(ordered), CHUNK):
            for r in conn.execute(query, {"ids": ordered[i : i + CHUNK]}):
                rows[int(r.deal_id)] = _Row(State(r.state), int(r.state_block), int(r.state_log))
        return rows

    @staticmethod
    def _rewind(conn: Connection, block: int) -> None:
        """Undo what the blocks after `block` did: the deals they opened, the states they set."""
        first: dict[int, _Row] = {}
        for r in conn.execute(
            sql(
                "SELECT deal_id, prev_state, prev_block, prev_log FROM deal_index_undo "
                "WHERE block_number > :b ORDER BY block_number, log_index"
            ),
            {"b": block},
        ):
            first.setdefault(int(r.deal_id), _Row(State(r.prev_state), int(r.prev_block), int(r.prev_log)))
        if first:
            conn.execute(sql(UPDATE_STATE), [_state_params(d, r) for d, r in sorted(first.items())])
        conn.execute(sql("DELETE FROM deal_index_undo WHERE block_number > :b"), {"b": block})
        conn.execute(sql("DELETE FROM deal_index WHERE opened_block > :b"), {"b": block})

    def _load_cursor(self) -> Cursor | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sql("SELECT cursor FROM deal_index_cursor WHERE stream = :s"), {"s": STREAM}
            ).first()
        return Cursor.from_json(row[0]) if row else None

    @staticmethod
    def _save_cursor(conn: Connection, cursor: Cursor) -> None:
        params = {"s": STREAM, "c": cursor.to_json(), "t": time.time()}
        updated = conn.execute(
            sql("UPDATE deal_index_cursor SET cursor = :c, updated_at = :t WHERE stream = :s"), params
        ).rowcount
        if not updated:
            conn.execute(
                sql("INSERT INTO deal_index_cursor (stream, cursor, updated_at) VALUES (:s, :c, :t)"), params
            )

    # --- reading ------------------------------------------------------------------------------
    def get(self, deal_id: int) -> IndexedDeal | None:
        with self.engine.connect() as conn:
            row = conn.execute(sql("SELECT * FROM deal_index WHERE deal_id = :d"), {"d": deal_id}).first()
        return _deal(row) if row else None

    def page(
        self, broker: str, *, state: State | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[int, list[IndexedDeal]]:
        """The broker's deals (in `state` only, if given): how many, and a page of them, newest first."""
        where = "broker = :b"
        params: dict[str, Any] = {"b": broker, "l": limit, "o": offset}
        if state is not None:
            where += " AND state = :s"
            params["s"] = int(state)
        with self.engine.connect() as conn:
            total = conn.execute(sql(f"SELECT COUNT(*) FROM deal_index WHERE {where}"), params).scalar_one()
            rows = conn.execute(
                sql(f"SELECT * FROM deal_index WHERE {where} ORDER BY deal_id DESC LIMIT :l OFFSET :o"),
                params,
            ).fetchall()
        return int(total), [_deal(r) for r in rows]

    def counts(self) -> dict[State, int]:
        """Every deal on chain (any broker's), by state."""
        with self.engine.connect() as conn:
            rows = conn.execute(sql("SELECT state, COUNT(*) AS n FROM deal_index GROUP BY state")).all()
        return {State(r.state): int(r.n) for r in rows}

    def live(self, brokers: Iterable[str]) -> list[IndexedDeal]:
        """The deals of these brokers that have not ended."""
        query = sql(
            "SELECT * FROM deal_index WHERE ended_block IS NULL AND broker IN :b ORDER BY deal_id"
        ).bindparams(bindparam("b", expanding=True))
        wanted = sorted(brokers)
        if not wanted:
            return []
        with self.engine.connect() as conn:
            return [_deal(r) for r in conn.execute(query, {"b": wanted})]


UPDATE_STATE = (
    "UPDATE deal_index SET state = :s, state_block = :sb, state_log = :sl, ended_block = :e "
    "WHERE deal_id = :d"
)


def _state_params(deal_id: int, row: _Row) -> dict[str, Any]:
    return {"d": deal_id, "s": int(row.state), "sb": row.block, "sl": row.log,
            "e": row.block if row.state.terminal else None}  # fmt: skip
