"""A reorg-safe event stream over eth_getLogs, and a hub that serves many streams with one poll.

Polls bounded block ranges up to head - confirmations, decodes logs with the ABIs given,
remembers the hashes of recent blocks, and when one of them changes (a reorg) rewinds to the
last block still on the canonical chain. Nothing relies on node-side filters, so a node
restart or a failover to another endpoint loses nothing. The cursor is plain JSON: persist it
(with `SqliteCursorStore`, or in the consumer's own DB transaction) and resume from it.

Every stream reads the chain through a `LogHub`. A lone stream has one of its own; the streams
of a process (each oracle's, the deal index's) share one, so that a poll round asks the node
once for the head and once for the logs of all of them (after the block hashes they need, if
any), whichever stream asks first, from whichever thread. Each stream still keeps its own
cursor and gets exactly what it would have read alone.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from chain.abi import ContractABI
from chain.rpc import Rpc, raise_errors
from chain.subscribe import HeadFeed

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
        source: Rpc | LogHub,
        contracts: dict[str, tuple[str, ContractABI]],
        *,
        start_block: int = 0,
        cursor: Cursor | None = None,
        confirmations: int = 0,
        block_range: int = 2000,
        poll_interval: float = 0.2,
        events: Iterable[str] | None = None,
        max_age: float | None = None,
    ) -> None:
        """`source`: the node, or the hub this stream shares with the others of its process.
        `events`: only these event names (any of the contracts); the node filters by topic,
        so logs nobody here reads are neither sent nor decoded. `max_age`: how old a read of
        the chain (by any stream of the hub) may be to serve a poll; None: the hub's, 0: only
        a read begun during the poll, so that the poll sees what happened before it began."""
        self.hub = source if isinstance(source, LogHub) else LogHub(source)
        self.rpc = self.hub.rpc
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
        self.max_age = max_age
        self.hub.add(self)

    def _rewind_point(self) -> int:
        """The block to rewind to now that the newest recorded block left the canonical chain:
        the newest recorded one still on it. A chain that lost every recorded block (a reorg
        deeper than the record, a node whose state was rolled back) is read again from the
        stream's start: its consumers dedupe what they had already seen."""
        recorded = sorted(self.cursor.hashes, reverse=True)
        canonical = self.hub.block_hashes(recorded)
        for number in recorded:
            if canonical.get(number) == self.cursor.hashes[number]:
                return number
        self.cursor = Cursor(self.cursor.next_block)  # none of the record holds: forget it all
        return self.start_block - 1

    def _rewind(self, ancestor: int) -> Batch:
        self.cursor = Cursor(ancestor + 1, {n: h for n, h in self.cursor.hashes.items() if n <= ancestor})
        return Batch([], Cursor(self.cursor.next_block, dict(self.cursor.hashes)), ancestor)

    def _want(self, heads: _HeadRead) -> _Want | None:
        """What the next poll reads after the head read `heads`: its range of confirmed
        blocks, and the blocks whose hashes it reads beside the logs. None: nothing new.
        The hub asks this of every stream it serves, from any thread: one cursor read."""
        head = heads.number
        cursor = self.cursor
        start = cursor.next_block
        end = min(head - self.confirmations, start + self.block_range - 1)
        if start > end:
            return None
        # Every hash recorded is read before or with the logs: if the chain moves after it was
        # read, it disagrees with the chain at the next poll, which rewinds past it. So the
        # logs' own block hashes serve, and no block is fetched per log. Only a stream with no
        # recorded block a few blocks deep (fresh, or after a long jump) also reads some older
        # blocks, so that a reorg of several blocks still finds an ancestor.
        wanted = set() if end == head else {end}
        if not any(n <= end - ANCHOR_AFTER for n in cursor.hashes):
            wanted |= {end - d for d in ANCHOR_DEPTHS if end - d >= 0}
        newest = max(cursor.hashes, default=head)
        if not heads.knows(newest):
            wanted.add(newest)  # the reorg check the head read could not answer (see poll)
        return _Want(self, start, end, frozenset(wanted))

    def newest_recorded(self) -> int | None:
        return max(self.cursor.hashes, default=None)

    def poll(self) -> Batch:
        """Read the next bounded range of confirmed blocks (possibly empty)."""
        since = time.monotonic() - (self.hub.max_age if self.max_age is None else self.max_age)
        # a read begun before this process last wrote to the chain would hide that write
        since = max(since, self.hub.rpc.changed_at)
        recorded = self.cursor.hashes
        newest = max(recorded, default=None)
        # The reorg check: the newest recorded block must still be on the chain. The head block
        # answers it for itself and its parent. A stream that waits for confirmations reads its
        # newest with the head (it is rarely either), any other reads an older one with the
        # logs (alone if there are none to read); a chain that now ends before it has lost it.
        heads = self.hub.head(since, newest if self.confirmations > 1 else None)
        head = heads.number
        if newest is None:
            # nothing recorded: a chain that ends before the cursor is read again from the start
            if self.cursor.next_block > head + 1:
                return self._rewind(self.start_block - 1)
        elif newest > head or heads.hash_of(newest) not in (None, recorded[newest]):
            return self._rewind(self._rewind_point())
        safe = head - self.confirmations
        want = self._want(heads)
        if want is None:
            older = None if newest is None or heads.knows(newest) else newest
            if older is not None and self.hub.block_hashes([older]).get(older) != recorded[older]:
                return self._rewind(self._rewind_point())
            return Batch([], Cursor(self.cursor.next_block, dict(recorded)), safe_head=safe)
        start, end = want.start, want.end
        # logs read after the head it was planned on: the hashes it records are no older
        logs, canonical = self.hub.logs(want, heads, max(since, heads.started))
        if newest in want.hashes and canonical.get(newest) != recorded[newest]:
            return self._rewind(self._rewind_point())
        end_hash = heads.head["hash"] if end == head else canonical.get(end)
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
            named = self.contracts[log["address"].lower()]
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


@dataclass(frozen=True, eq=False)
class _Want:
    stream: EventStream
    start: int
    end: int
    hashes: frozenset[int]


@dataclass(eq=False)
class _Read:
    started: float  # time.monotonic() when it was planned
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class _HeadRead(_Read):
    numbers: frozenset[int] = frozenset()  # the blocks read beside the head
    head: dict[str, Any] = field(default_factory=dict)
    blocks: dict[int, Any] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return int(self.head["number"], 16)

    def knows(self, number: int) -> bool:
        return number in self.blocks or number >= self.number - 1

    def hash_of(self, number: int) -> str | None:
        """Block `number`'s hash as read; "" for a block the chain does not have, None: not read."""
        if number in self.blocks:
            block = self.blocks[number]
            return block["hash"] if isinstance(block, dict) else ""
        if number == self.number:
            return str(self.head["hash"])
        if number == self.number - 1:
            return str(self.head["parentHash"])
        return "" if number > self.number else None


@dataclass(eq=False)
class _LogRead(_Read):
    start: int = 0
    end: int = 0
    addresses: frozenset[str] = frozenset()
    topics: frozenset[str] | None = None  # None: every topic
    wanted: frozenset[int] = frozenset()  # the blocks whose hashes are read with the logs
    logs: list[dict[str, Any]] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)

    def covers(self, want: _Want) -> bool:
        topics = want.stream.topics
        return (
            self.start <= want.start
            and want.end <= self.end
            and self.addresses.issuperset(want.stream.contracts)
            and (self.topics is None or (topics is not None and self.topics.issuperset(topics)))
            and self.wanted.issuperset(want.hashes)
        )

    def part(self, want: _Want) -> tuple[list[dict[str, Any]], dict[int, str]]:
        """The logs and hashes `want`'s stream would have read by itself, in the node's order."""
        stream = want.stream
        topics = None if stream.topics is None else set(stream.topics)
        logs = [
            log
            for log in self.logs
            if want.start <= int(log["blockNumber"], 16) <= want.end
            and log["address"].lower() in stream.contracts
            and (topics is None or (bool(log["topics"]) and log["topics"][0] in topics))
        ]
        return logs, {n: self.hashes[n] for n in want.hashes if n in self.hashes}


R = TypeVar("R", bound=_Read)


class LogHub:
    """Reads the chain for every EventStream built on it: per round one request for the head
    block, and one eth_getLogs over the addresses and the joined block ranges of all the
    streams whose ranges touch, after one request for the block hashes they need, if any
    (those they record, and the reorg checks that the head block cannot answer).

    A stream that polls while a read that serves it is in flight waits for that read; one that
    finds a read younger than its `max_age` takes it, unless this process wrote to the chain
    (through the hub's client) after that read began. Only one read of each kind is in flight
    at a time: who asks meanwhile waits for it and then shares the next. A stream far behind
    the others (added later, or rewound) reads its own range and holds none of them back.
    """

    def __init__(self, rpc: Rpc, *, max_age: float = 0.0, feed: HeadFeed | None = None) -> None:
        """`max_age`: how old a read may be to serve a stream's poll (a stream may ask for
        less). Up to a poll interval costs only latency that waiting to poll again costs.
        `feed`: the node's heads pushed over a subscription, which answer head reads while it
        is connected (see `head`)."""
        self.rpc = rpc
        self.max_age = max_age
        self.feed = feed
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._reads: dict[str, _Read] = {}

    def add(self, stream: EventStream) -> None:
        with self._cond:
            self._streams.add(stream)

    def block_hashes(self, numbers: list[int]) -> dict[int, str]:
        """The canonical hashes of these blocks, read now, in one request (none if no blocks)."""
        answers = raise_errors(self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers]))
        return {
            n: block["hash"] for n, block in zip(numbers, answers, strict=True) if isinstance(block, dict)
        }

    def head(self, since: float, number: int | None = None) -> _HeadRead:
        """The head block (and block `number` beside it), as read at or after `since`. Each
        read also reads the newest recorded block of every stream that waits for confirmations
        (the head block answers the others' reorg checks)."""

        fed = self._fed(number)
        if fed is not None:
            return fed

        def covers(read: _HeadRead) -> bool:
            return number is None or number in read.numbers or (read.done and read.knows(number))

        def plan(started: float) -> _HeadRead:
            numbers = {number} | {s.newest_recorded() for s in self._streams if s.confirmations > 1}
            return _HeadRead(started, numbers=frozenset(n for n in numbers if n is not None))

        def fetch(read: _HeadRead) -> None:
            order = sorted(read.numbers)
            if not order:
                read.head = self.rpc.call("eth_getBlockByNumber", ["latest", False])
                return
            calls = [("eth_getBlockByNumber", ["latest", False])]
            calls += [("eth_getBlockByNumber", [hex(n), False]) for n in order]
            answers = raise_errors(self.rpc.batch(calls))
            read.head = answers[0]
            read.blocks = dict(zip(order, answers[1:], strict=True))

        return self._share("head", since, covers, plan, fetch)

    def _fed(self, number: int | None) -> _HeadRead | None:
        """The head as the feed last pushed it, if that answers the read: the feed is connected,
        nothing rewrote history through this client since the header came, no receipt this
        client read is in a newer block, and the blocks wanted beside the head are the head or
        its parent. None: read the node."""
        got = self.feed.head() if self.feed is not None else None
        if got is None:
            return None
        header, received = got
        read = _HeadRead(time.monotonic(), head=header, done=True)
        if received < self.rpc.rewritten_at or read.number < self.rpc.seen_block:
            return None
        with self._cond:
            wanted = {number} | {s.newest_recorded() for s in self._streams if s.confirmations > 1}
        if any(n is not None and n < read.number - 1 for n in wanted):
            return None
        return read

    def close(self) -> None:
        if self.feed is not None:
            self.feed.close()

    def logs(
        self, want: _Want, heads: _HeadRead, since: float
    ) -> tuple[list[dict[str, Any]], dict[int, str]]:
        """The logs of `want`'s range for its stream, and the hashes it wants, read at or after
        `since` by a read that also reads for the other streams whose ranges touch it (their
        next reads planned on `heads`, the head read `want` was planned on)."""

        def plan(started: float) -> _LogRead:
            group = self._group(want, heads)
            streams = [w.stream for w in group]
            topics: set[str] | None = set()
            for s in streams:
                topics = None if topics is None or s.topics is None else topics | set(s.topics)
            return _LogRead(
                started,
                start=min(w.start for w in group),
                end=max(w.end for w in group),
                addresses=frozenset(a for s in streams for a in s.contracts),
                topics=None if topics is None else frozenset(topics),
                wanted=frozenset(n for w in group for n in w.hashes),
            )

        def fetch(read: _LogRead) -> None:
            query: dict[str, Any] = {
                "fromBlock": hex(read.start),
                "toBlock": hex(read.end),
                "address": sorted(read.addresses),
            }
            if read.topics is not None:
                query["topics"] = [sorted(read.topics)]
            # the hashes before the logs: no recorded hash is younger than the logs
            read.hashes = self.block_hashes(sorted(read.wanted))
            read.logs = self.rpc.call("eth_getLogs", [query])

        read = self._share("logs", since, lambda r: r.covers(want), plan, fetch)
        return read.part(want)

    def _group(self, want: _Want, heads: _HeadRead) -> list[_Want]:
        """`want` and the next reads of the other streams (planned on the same head) whose
        ranges overlap or adjoin it, joined while the whole stays within the longest range."""
        wants = [want]
        for stream in self._streams:
            other = None if stream is want.stream else stream._want(heads)
            if other is not None:
                wants.append(other)
        cap = max(w.stream.block_range for w in wants)
        groups: list[tuple[int, int, list[_Want]]] = []
        for w in sorted(wants, key=lambda w: (w.start, w.end)):
            if groups and w.start <= groups[-1][1] + 1 and max(w.end, groups[-1][1]) - groups[-1][0] < cap:
                start, end, members = groups[-1]
                groups[-1] = (start, max(end, w.end), [*members, w])
            else:
                groups.append((w.start, w.end, [w]))
        return next(members for _s, _e, members in groups if any(w is want for w in members))

    def _share(
        self,
        kind: str,
        since: float,
        covers: Callable[[R], bool],
        plan: Callable[[float], R],
        fetch: Callable[[R], None],
    ) -> R:
        """A read of `kind` begun at or after `since` that `covers` the caller: the one in flight
        or the newest done, or else a new one, read by the caller's thread."""
        with self._cond:
            while True:
                read = cast(R | None, self._reads.get(kind))
                if read is not None and read.started >= since and read.error is None and covers(read):
                    while not read.done:
                        self._cond.wait()
                    if read.error is not None:
                        raise read.error  # it failed for everyone who waited on it
                    return read
                if read is not None and not read.done:
                    self._cond.wait()  # one read of a kind at a time: wait, then share the next
                    continue
                mine = plan(time.monotonic())
                self._reads[kind] = mine
                break
        try:
            fetch(mine)
        except BaseException as exc:
            mine.error = exc
            raise
        finally:
            with self._cond:
                mine.done = True
                self._cond.notify_all()
        return mine


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
