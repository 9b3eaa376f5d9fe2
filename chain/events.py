"""A reorg-safe event stream over eth_getLogs.

Polls bounded block ranges up to head - confirmations, decodes logs with the ABIs given,
remembers the hashes of recent blocks, and when one of them changes (a reorg) rewinds to the
last block still on the canonical chain. Nothing relies on node-side filters, so a node
restart or a failover to another endpoint loses nothing. The cursor is plain JSON: persist it
(with `SqliteCursorStore`, or in the consumer's own DB transaction) and resume from it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.abi import ContractABI
from chain.rpc import Rpc, raise_errors

KEEP_HASHES = 128  # a reorg deeper than the recorded blocks rewinds to the stream's start
ANCHOR_AFTER = 8  # a stream with no recorded block this deep below its range's end ...
ANCHOR_DEPTHS = (1, 2, 4, 8, 16, 32, 64)  # ... records these depths too


@dataclass(frozen=True)
class EventId:
    block_hash: str
    tx_hash: str
    log_index: int

    def key(self) -> str:
        return f"{self.block_hash}:{self.tx_hash}:{self.log_index}"


@dataclass(frozen=True)
class ChainEvent:
    id: EventId
    block_number: int
    contract: str
    address: str
    event: str
    args: dict[str, Any]


@dataclass
class Cursor:
    """The next block to read and the hashes of recently read blocks (for reorg checks)."""

    next_block: int
    hashes: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"next_block": self.next_block, "hashes": self.hashes})

    @classmethod
    def from_json(cls, text: str) -> Cursor:
        data = json.loads(text)
        return cls(int(data["next_block"]), {int(k): v for k, v in data["hashes"].items()})


@dataclass(frozen=True)
class Batch:
    events: list[ChainEvent]
    cursor: Cursor  # the position after this batch: persist it with the batch's effects
    rewound_to: int | None = None  # set on a reorg: blocks after this one were dropped
    safe_head: int = 0  # the newest block with enough confirmations at this poll

    @property
    def caught_up(self) -> bool:
        return self.rewound_to is None and self.cursor.next_block > self.safe_head


class EventStream:
    def __init__(
        self,
        rpc: Rpc,
        contracts: dict[str, tuple[str, ContractABI]],
        *,
        start_block: int = 0,
        cursor: Cursor | None = None,
        confirmations: int = 0,
        block_range: int = 2000,
        poll_interval: float = 0.2,
        events: Iterable[str] | None = None,
    ) -> None:
        """`events`: only these event names (any of the contracts); the node filters by topic,
        so logs nobody here reads are neither sent nor decoded."""
        self.rpc = rpc
        self.contracts = {addr.lower(): named for addr, named in contracts.items()}
        self.topics: list[str] | None = None
        if events is not None:
            wanted = set(events)
            self.topics = sorted(
                topic
                for _name, abi in contracts.values()
                for topic, e in abi.events.items()
                if e.name in wanted
            )
        self.start_block = start_block
        self.cursor = cursor or Cursor(start_block)
        self.confirmations = confirmations
        self.block_range = block_range
        self.poll_interval = poll_interval

    def _block_hashes(self, numbers: list[int]) -> dict[int, str]:
        answers = raise_errors(self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers]))
        return {
            n: block["hash"] for n, block in zip(numbers, answers, strict=True) if isinstance(block, dict)
        }

    def _check_reorg(self, newest_now: dict[str, Any] | None, head: int) -> int | None:
        """The block to rewind to if a recorded block left the canonical chain, else None.
        `newest_now` is the newest recorded block as the node has it now. A chain that lost
        every recorded block (a reorg deeper than the record, a node whose state was rolled
        back), or that ends before the cursor when nothing is recorded, is read again from the
        stream's start: its consumers dedupe what they had already seen."""
        if not self.cursor.hashes:
            return self.start_block - 1 if self.cursor.next_block > head + 1 else None
        recorded = sorted(self.cursor.hashes, reverse=True)
        if isinstance(newest_now, dict) and newest_now.get("hash") == self.cursor.hashes[recorded[0]]:
            return None
        canonical = self._block_hashes(recorded)
        for number in recorded:
            if canonical.get(number) == self.cursor.hashes[number]:
                return number
        self.cursor = Cursor(self.cursor.next_block)  # none of the record holds: forget it all
        return self.start_block - 1

    def poll(self) -> Batch:
        """Read the next bounded range of confirmed blocks (possibly empty)."""
        # The head block and the newest recorded block in one request: an idle poll costs one.
        calls: list[tuple[str, list[Any]]] = [("eth_getBlockByNumber", ["latest", False])]
        if self.cursor.hashes:
            calls.append(("eth_getBlockByNumber", [hex(max(self.cursor.hashes)), False]))
        answers = raise_errors(self.rpc.batch(calls))
        head = int(answers[0]["number"], 16)
        ancestor = self._check_reorg(answers[1] if len(answers) > 1 else None, head)
        if ancestor is not None:
            self.cursor = Cursor(ancestor + 1, {n: h for n, h in self.cursor.hashes.items() if n <= ancestor})
            return Batch([], Cursor(self.cursor.next_block, dict(self.cursor.hashes)), ancestor)
        safe = head - self.confirmations
        start = self.cursor.next_block
        if start > safe:
            return Batch([], Cursor(start, dict(self.cursor.hashes)), safe_head=safe)
        end = min(safe, start + self.block_range - 1)
        # Every hash recorded is read before or with the logs: if the chain moves after it was
        # read, it disagrees with the chain at the next poll, which rewinds past it. So the
        # logs' own block hashes serve, and no block is fetched per log. Only a stream with no
        # recorded block a few blocks deep (fresh, or after a long jump) also reads some older
        # blocks, so that a reorg of several blocks still finds an ancestor.
        wanted = [] if end == head else [end]
        if not any(n <= end - ANCHOR_AFTER for n in self.cursor.hashes):
            wanted += [end - d for d in ANCHOR_DEPTHS if end - d >= 0]
        canonical = self._block_hashes(wanted) if wanted else {}
        end_hash = answers[0]["hash"] if end == head else canonical.get(end)
        query: dict[str, Any] = {
            "fromBlock": hex(start),
            "toBlock": hex(end),
            "address": list(self.contracts),
        }
        if self.topics is not None:
            query["topics"] = [self.topics]
        logs = self.rpc.call("eth_getLogs", [query])
        canonical.update({int(log["blockNumber"], 16): log["blockHash"] for log in logs})
        if (
            end_hash is None
            or any(log.get("removed") for log in logs)
            or canonical.get(end, end_hash) != end_hash
        ):
            # the chain moved under this read: drop it and read again next poll
            return Batch([], Cursor(start, dict(self.cursor.hashes)), safe_head=safe)
        canonical[end] = end_hash
        events = []
        for log in logs:
            named = self.contracts.get(log["address"].lower())
            if named is None:
                continue
            decoded = named[1].decode_log(log)
            if decoded is None:
                continue
            events.append(
                ChainEvent(
                    id=EventId(decoded.block_hash, decoded.tx_hash, decoded.log_index),
                    block_number=decoded.block_number,
                    contract=named[0],
                    address=decoded.address,
                    event=decoded.event,
                    args=decoded.args,
                )
            )
        hashes = {**self.cursor.hashes, **canonical}
        for number in sorted(hashes)[:-KEEP_HASHES]:
            del hashes[number]
        self.cursor = Cursor(end + 1, hashes)
        return Batch(events, Cursor(end + 1, dict(hashes)), safe_head=safe)

    def follow(self, stop: threading.Event | None = None) -> Iterator[Batch]:
        """Poll forever (until `stop` is set), sleeping only when caught up."""
        while stop is None or not stop.is_set():
            batch = self.poll()
            yield batch
            if not batch.events and batch.caught_up:
                if stop is not None:
                    stop.wait(self.poll_interval)
                else:
                    time.sleep(self.poll_interval)


class SqliteCursorStore:
    """Cursors by stream name in a SQLite file; each save is one committed transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS cursors (stream TEXT PRIMARY KEY, cursor TEXT NOT NULL)")
        self._lock = threading.Lock()

    def load(self, stream: str) -> Cursor | None:
        with self._lock:
            row = self._db.execute("SELECT cursor FROM cursors WHERE stream = ?", (stream,)).fetchone()
        return Cursor.from_json(row[0]) if row else None

    def save(self, stream: str, cursor: Cursor) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors (stream, cursor) VALUES (?, ?) "
                "ON CONFLICT(stream) DO UPDATE SET cursor = excluded.cursor",
                (stream, cursor.to_json()),
            )

    def close(self) -> None:
        self._db.close()
