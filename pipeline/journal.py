"""The pipeline's record of every transaction it handed to the node, and its replay at start.

Once the API or an oracle answered success for a write, the write must survive a crash of any
process, the node's included. A node's own persistence lags it (anvil dumps its state every
second or so), so a node killed with its owner can come back without the last blocks, or a
state file can be rolled back to an older copy. The pipeline's database is therefore the
record: each Sender of the pipeline writes a transaction here right before the node sees it
(journal.record, one committed row), and at start `replay` sends again, in the order they were
first sent, every recorded transaction whose nonce the chain has not used yet. A signed
transaction keeps its nonce, so it can be applied at most once; one whose deadline or
precondition no longer holds reverts, and that outcome is kept and shown on its deal.

Oracles record a transaction only when they broadcast it, after their outbox committed it, so
the journal never holds a transaction that their books do not.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam

from chain.errors import ContractRevert, RpcError
from chain.revert import ErrorDecoder
from chain.rpc import Rpc, raise_errors
from chain.sender import KNOWN_TX, NONCE_USED, Receipt, SignedTx, explain_failure
from chain.session import ChainSession
from pipeline.db import sql

log = logging.getLogger("deedchain.journal")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS tx_journal (
        tx_hash VARCHAR(66) PRIMARY KEY, sender VARCHAR(42) NOT NULL, nonce BIGINT NOT NULL,
        raw TEXT NOT NULL, deal_id BIGINT, memo VARCHAR(200), recorded_at DOUBLE PRECISION NOT NULL,
        outcome VARCHAR(16), error TEXT, outcome_at DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS tx_journal_nonce ON tx_journal (sender, nonce)",
    "CREATE INDEX IF NOT EXISTS tx_journal_deal ON tx_journal (deal_id)",
]


def deal_memo(deal_id: int | None, what: str) -> str:
    """The memo a deal's transaction is journaled with; `notices` finds it by the deal id."""
    return what if deal_id is None else f"deal:{deal_id}:{what}"


def _deal_of(memo: str | None) -> int | None:
    if memo and memo.startswith("deal:"):
        return int(memo.split(":", 2)[1])
    return None


@dataclass(frozen=True)
class Entry:
    tx_hash: str
    sender: str
    nonce: int
    raw: str
    memo: str | None
    deal_id: int | None


@dataclass(frozen=True)
class Replayed:
    entry: Entry
    outcome: str  # mined | reverted | refused | superseded | pending
    error: str | None = None


class TxJournal:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            for statement in SCHEMA:
                conn.execute(sql(statement))

    def record(self, sender: str, tx: SignedTx, memo: str | None) -> None:
        """Committed before the node is asked: a crash right after loses nothing."""
        with self.engine.begin() as conn:
            conn.execute(
                sql(
                    "INSERT INTO tx_journal (tx_hash, sender, nonce, raw, deal_id, memo, recorded_at) "
                    "VALUES (:h, :s, :n, :r, :d, :m, :t) ON CONFLICT (tx_hash) DO NOTHING"
                ),
                {
                    "h": tx.hash,
                    "s": sender,
                    "n": tx.nonce,
                    "r": tx.raw,
                    "d": _deal_of(memo),
                    "m": memo,
                    "t": time.time(),
                },
            )

    def missing(self, rpc: Rpc) -> list[Entry]:
        """What the chain lacks, in the order it was first sent: per sender, the newest entry for
        each nonce from the account's next nonce on, up to the first gap (a later nonce could
        not be mined before it anyway)."""
        with self.engine.connect() as conn:
            senders = [r[0] for r in conn.execute(sql("SELECT DISTINCT sender FROM tx_journal"))]
        if not senders:
            return []
        nonces = raise_errors(rpc.batch([("eth_getTransactionCount", [s, "latest"]) for s in senders]))
        found: list[tuple[float, Entry]] = []
        with self.engine.connect() as conn:
            for sender, count in zip(senders, nonces, strict=True):
                rows = conn.execute(
                    sql(
                        "SELECT tx_hash, nonce, raw, memo, deal_id, recorded_at FROM tx_journal "
                        "WHERE sender = :s AND nonce >= :n ORDER BY nonce, recorded_at"
                    ),
                    {"s": sender, "n": int(count, 16)},
                ).all()
                newest = {int(r.nonce): r for r in rows}  # the last try at each nonce wins
                expected = int(count, 16)
                while expected in newest:
                    r = newest[expected]
                    entry = Entry(r.tx_hash, sender, expected, r.raw, r.memo, r.deal_id)
                    found.append((float(r.recorded_at), entry))
                    expected += 1
        return [e for _t, e in sorted(found, key=lambda pair: (pair[0], pair[1].nonce))]

    def replay(self, rpc: Rpc, errors: ErrorDecoder, *, timeout: float = 30.0) -> list[Replayed]:
        """Send again what the chain lacks, in order, each sender's run awaited before the next
        sender's (another account's transaction may depend on it); record each outcome."""
        todo = self.missing(rpc)
        if not todo:
            return []
        outcomes: dict[str, Replayed] = {}
        sent: list[Entry] = []
        for i, entry in enumerate(todo):
            problem = _send(rpc, entry)
            if problem is None:
                sent.append(entry)
            else:
                outcomes[entry.tx_hash] = problem
            last_of_run = i + 1 == len(todo) or todo[i + 1].sender != entry.sender
            if last_of_run and sent and sent[-1].sender == entry.sender:
                _await(rpc, sent[-1].tx_hash, timeout)
        receipts = raise_errors(rpc.batch([("eth_getTransactionReceipt", [e.tx_hash]) for e in sent]))
        for entry, raw in zip(sent, receipts, strict=True):
            if raw is None:
                outcomes[entry.tx_hash] = Replayed(entry, "pending")
                continue
            receipt = Receipt.from_rpc(raw)
            if receipt.status == 1:
                outcomes[entry.tx_hash] = Replayed(entry, "mined")
            else:
                failure = explain_failure(rpc, errors, entry.tx_hash, receipt)
                reason = (
                    f"{failure.name}({json.dumps(failure.args_by_name, default=str)})"
                    if isinstance(failure, ContractRevert)
                    else str(failure)
                )
                outcomes[entry.tx_hash] = Replayed(entry, "reverted", reason)
        results = [outcomes[e.tx_hash] for e in todo]
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                sql("UPDATE tx_journal SET outcome = :o, error = :e, outcome_at = :t WHERE tx_hash = :h"),
                [{"o": r.outcome, "e": r.error, "t": now, "h": r.entry.tx_hash} for r in results],
            )
        for r in results:
            log.info(json.dumps({"event": "replayed", "deal_id": r.entry.deal_id, "tx": r.entry.tx_hash,
                                 "memo": r.entry.memo, "outcome": r.outcome, "error": r.error}))  # fmt: skip
        return results

    def notices(self, deal_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """Per deal, its transactions that a replay after a crash could not make happen again
        (a deadline passed meanwhile, say): one query for a page of deals."""
        found: dict[int, list[dict[str, Any]]] = {d: [] for d in deal_ids}
        if not deal_ids:
            return found
        query = sql(
            "SELECT deal_id, tx_hash, memo, outcome, error, outcome_at FROM tx_journal "
            "WHERE deal_id IN :ids AND outcome IN ('reverted', 'refused', 'superseded') "
            "ORDER BY outcome_at, nonce"
        ).bindparams(bindparam("ids", expanding=True))
        with self.engine.connect() as conn:
            for r in conn.execute(query, {"ids": deal_ids}):
                found[int(r.deal_id)].append(
                    {
                        "tx": r.tx_hash,
                        "step": (r.memo or "").split(":", 2)[-1],
                        "outcome": r.outcome,
                        "error": r.error,
                        "at": r.outcome_at,
                    }
                )
        return found


def _send(rpc: Rpc, entry: Entry) -> Replayed | None:
    """Hand one recorded transaction to the node again; None when it took it (or has it)."""
    try:
        rpc.call("eth_sendRawTransaction", [entry.raw])
    except RpcError as exc:
        if exc.code is None:
            raise  # the node is not there: the start fails and is tried again
        message = str(exc).lower()
        if any(s in message for s in KNOWN_TX):
            return None
        if any(s in message for s in NONCE_USED):
            if rpc.call("eth_getTransactionReceipt", [entry.tx_hash]) is not None:
                return None
            return Replayed(entry, "superseded", f"nonce {entry.nonce} was used by another transaction")
        return Replayed(entry, "refused", str(exc))
    return None


def _await(rpc: Rpc, tx_hash: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.001
    while rpc.call("eth_getTransactionReceipt", [tx_hash]) is None and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def recover(session: ChainSession, engine: Engine) -> TxJournal:
    """Before anything of the pipeline acts: journal every transaction its senders send from
    now on, and send again what an earlier run sent and the chain lost."""
    journal = TxJournal(engine)
    session.attach_journal(journal)
    journal.replay(session.rpc, session.errors, timeout=session.network.timeout)
    session.resync()
    return journal
