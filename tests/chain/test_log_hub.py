"""Streams sharing one LogHub: one eth_getLogs per poll round whatever their number, and each
stream gets exactly what its twin, a lone stream with the same settings, reads by itself:
the same batches (events in order, cursors, rewinds, safe heads), across reorgs too."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account

from chain.events import Batch, EventStream, LogHub
from chain.rpc import Rpc
from chain.session import ChainSession
from chain.subscribe import HeadFeed, ws_url

ROUND = 0.5  # the hub's max_age in the round tests: every poll of a round is served by one read
# Streams that differ in every way a stream can: contracts, topics, confirmations, range.
BOTH = ("DepositToken", "CredentialRegistry")
KINDS: list[dict[str, Any]] = [
    {"watch": BOTH},
    {"watch": ("DepositToken",), "events": {"Issued"}},
    {"watch": BOTH, "confirmations": 2},
    {"watch": BOTH, "block_range": 2, "events": {"Transfer", "CredentialAnchored"}},
]


@dataclass
class Twin:
    """A stream on the shared hub, and the same stream reading alone."""

    shared: EventStream
    alone: EventStream
    events: int = 0

    def poll(self) -> Batch:
        batch = self.shared.poll()
        assert batch == self.alone.poll()
        assert self.shared.cursor == self.alone.cursor
        self.events += len(batch.events)
        return batch


class Chain:
    def __init__(self, chain: ChainSession, deployed: dict[str, str]) -> None:
        self.chain = chain
        self.token = chain.contract("DepositToken", deployed["DepositToken"])
        self.creds = chain.contract("CredentialRegistry", deployed["CredentialRegistry"])
        self.buyer = Account.create().address
        self.rpc = Rpc(chain.rpc.urls)  # the hub's own client: its counts are the hub's alone

    def head(self) -> int:
        return int(self.chain.rpc.call("eth_blockNumber"), 16)

    def twin(self, hub: LogHub, *, start: int, kind: dict[str, Any], **extra: Any) -> Twin:
        settings = {k: v for k, v in kind.items() if k != "watch"} | extra
        watched = {c.address: (c.name, c.abi) for c in (self.token, self.creds) if c.name in kind["watch"]}
        return Twin(
            EventStream(hub, watched, start_block=start, **settings),
            EventStream(self.chain.rpc, watched, start_block=start, **settings),
        )

    def activity(self, n: int = 3) -> None:
        """n blocks, each with a mint (Transfer + Issued) or an anchored credential."""
        for i in range(n):
            if i % 2:
                expiry = int(time.time()) + 86_400
                self.creds.transact(
                    self.chain.sender("issuer"), "anchor", os.urandom(32), 0, self.buyer, expiry
                )
            else:
                self.token.transact(self.chain.sender("bank"), "mint", self.buyer, i + 1)

    def round(self, twins: list[Twin]) -> tuple[list[Batch], dict[str, int]]:
        """Every stream polls once; what its hub asked the node meanwhile."""
        requests, methods = self.rpc.requests, dict(self.rpc.methods)
        batches = [t.poll() for t in twins]
        asked = {m: n - methods.get(m, 0) for m, n in self.rpc.methods.items() if n > methods.get(m, 0)}
        return batches, asked | {"requests": self.rpc.requests - requests}

    def rounds(self, twins: list[Twin], *, settle: float = ROUND) -> list[dict[str, int]]:
        """Rounds until every stream caught up (a read stays fresh for one round only)."""
        asked = []
        for _ in range(20):
            time.sleep(settle)
            batches, counts = self.round(twins)
            asked.append(counts)
            if all(b.caught_up and not b.events for b in batches):
                return asked
        raise AssertionError("the streams did not catch up")


@pytest.fixture
def c(chain: ChainSession, deployed: dict[str, str]) -> Chain:
    return Chain(chain, deployed)


def test_n_streams_make_one_get_logs_per_round_and_read_what_they_would_alone(c: Chain):
    hub = LogHub(c.rpc, max_age=ROUND)
    start = c.head() + 1
    twins = [c.twin(hub, start=start, kind=kind) for kind in KINDS]
    for _ in range(3):
        c.activity(5)
        for counts in c.rounds(twins):
            # the head (with the confirmed stream's newest recorded block) in one request, the
            # logs of all in one eth_getLogs, after the block hashes the streams need (if any)
            assert counts.get("eth_getLogs", 0) <= 1
            assert counts["requests"] <= 3
    assert all(t.events for t in twins)
    lone = sum(t.alone.rpc.methods["eth_getLogs"] for t in twins)  # the twins' client, for scale
    assert c.rpc.methods["eth_getLogs"] < lone


def test_a_reorg_and_a_chain_that_came_back_shorter_rewind_each_stream_as_alone(c: Chain, anvil_only: None):
    hub = LogHub(c.rpc, max_age=ROUND)
    start = c.head() + 1
    twins = [c.twin(hub, start=start, kind=kind) for kind in KINDS]
    c.activity(2)
    snapshot = c.chain.rpc.call("evm_snapshot")
    kept = c.head()
    c.activity(4)
    c.rounds(twins)

    # a reorg: the last four blocks replaced by five others
    c.chain.rpc.call("evm_revert", [snapshot])
    c.chain.resync()
    snapshot = c.chain.rpc.call("evm_snapshot")
    # first an empty block: a replay of the same mint within the same second would make the
    # same block again, and a fork one block later than `kept`
    c.chain.rpc.call("evm_mine")
    c.activity(4)
    time.sleep(ROUND)
    batches, _counts = c.round(twins)
    # each rewinds as far as its own record says (the confirmed stream read less, so it may
    # have less to undo); never past the fork
    assert all(b.rewound_to is not None and start - 1 <= b.rewound_to <= kept for b in batches[:2])
    c.rounds(twins)

    # the node comes back shorter than every stream's cursor: each rewinds, none waits
    replaced = c.chain.rpc.call("eth_getBlockByNumber", [hex(kept + 1), False])
    c.chain.rpc.call("evm_revert", [snapshot])
    c.chain.resync()
    # empty like the block it replaces, so a later timestamp makes it another one
    c.chain.rpc.call("evm_mine", [int(replaced["timestamp"], 16) + 1])
    time.sleep(ROUND)
    batches, _counts = c.round(twins)
    assert all(b.rewound_to is not None and b.rewound_to <= kept for b in batches)
    for counts in c.rounds(twins):
        assert counts.get("eth_getLogs", 0) <= 1


def test_concurrent_polls_from_threads_share_one_read(c: Chain):
    hub = LogHub(c.rpc, max_age=ROUND)
    start = c.head() + 1
    twins = [c.twin(hub, start=start, kind=kind) for kind in KINDS * 3]
    c.activity(3)
    before = dict(c.rpc.methods)
    requests = c.rpc.requests
    gate = threading.Barrier(len(twins))
    got: dict[int, Batch] = {}

    def poll(i: int) -> None:
        gate.wait()
        got[i] = twins[i].shared.poll()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(twins))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == len(twins)
    assert c.rpc.methods["eth_getLogs"] - before.get("eth_getLogs", 0) == 1
    assert c.rpc.requests - requests == 3  # the head, the hashes fresh streams record, the logs
    for i, twin in enumerate(twins):
        assert got[i] == twin.alone.poll()
        assert twin.shared.cursor == twin.alone.cursor
        assert got[i].events or twin.shared.confirmations


def test_a_poll_with_max_age_zero_sees_what_happened_before_it(c: Chain):
    """Fresh reads serve the streams that accept them; one that asks for read-your-writes
    (the deal index behind the API) gets a read begun after it asked."""
    hub = LogHub(c.rpc, max_age=60.0)
    start = c.head() + 1
    first, sharing = (c.twin(hub, start=start, kind=KINDS[0]) for _ in range(2))
    fresh = c.twin(hub, start=start, kind=KINDS[0], max_age=0.0)
    c.activity(1)
    before = first.poll()
    assert before.events
    c.activity(1)  # after the hub's read
    assert sharing.shared.poll() == before  # that read served it: the second block is not in
    batch = fresh.poll()  # and equals its twin's read
    assert batch.cursor.next_block == c.head() + 1
    assert len(batch.events) == 2 * len(before.events)  # both blocks (a mint each)


def test_a_stream_added_later_catches_up_without_holding_the_others_back(c: Chain):
    hub = LogHub(c.rpc, max_age=ROUND)
    origin = c.head() + 1
    c.activity(12)
    start = c.head() + 1
    twins = [c.twin(hub, start=start, kind=kind) for kind in KINDS[:2]]
    late = c.twin(hub, start=origin, kind=KINDS[0], block_range=3)
    rounds = 0
    while True:
        c.activity(1)
        time.sleep(ROUND)
        batches, counts = c.round([*twins, late])
        rounds += 1
        assert all(b.caught_up and b.events for b in batches[:2])  # never behind by a block
        # the late stream's own range, and the others' (far apart, each within its bounds)
        assert counts["eth_getLogs"] <= 2 and counts["requests"] <= 5
        if batches[2].caught_up:
            break
    assert rounds > 3  # it read its own way, three blocks a poll
    assert late.shared.cursor.next_block == twins[0].shared.cursor.next_block


def test_a_fresh_read_never_hides_a_write_made_through_the_hubs_own_client(c: Chain):
    """The process's own transactions go through the client its hub reads with: a read begun
    before one of them serves no poll, however young (oracles see each other's effects at once)."""
    hub = LogHub(c.chain.rpc, max_age=60.0)
    start = c.head() + 1
    first, second = (c.twin(hub, start=start, kind=KINDS[0]) for _ in range(2))
    c.activity(1)
    assert first.poll().events
    c.activity(1)  # sent through the hub's client
    batch = second.poll()
    assert batch.cursor.next_block == c.head() + 1 and len(batch.events) == 4  # both mints


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.01)


def test_heads_pushed_over_websocket_answer_the_polls(c: Chain):
    """With the node's newHeads feed connected, polls of a still chain ask the node nothing, a
    new block is read without a head request, and a revert through the hub's client (history
    rewritten, nothing pushed) sends the polls back to asking until the next block is pushed."""
    feed = HeadFeed(ws_url(c.rpc.url))
    hub = LogHub(c.rpc, feed=feed)
    try:
        wait_until(lambda: feed.head() is not None)
        stream = c.twin(hub, start=0, kind=KINDS[0])
        c.rounds([stream], settle=0)  # caught up, with the old blocks it anchors its reorg checks on
        before = stream.events
        c.activity(1)
        wait_until(lambda: int(feed.head()[0]["number"], 16) == c.head())
        _, asked = c.round([stream])
        assert asked == {"eth_getLogs": 1, "requests": 1}, asked  # the logs; the head was pushed
        assert stream.events == before + 2  # the mint's Transfer and Issued
        for _ in range(3):  # standing still: nothing asked at all
            _, asked = c.round([stream])
            assert asked == {"requests": 0}, asked
        # a revert through the hub's client: the pushed head may be gone, so the node is asked
        snapshot = c.rpc.call("evm_snapshot")
        c.activity(1)
        wait_until(lambda: int(feed.head()[0]["number"], 16) == c.head())
        c.round([stream])
        c.rpc.call("evm_revert", [snapshot])
        c.chain.sender("bank").resync()
        _, asked = c.round([stream])
        assert asked.get("eth_getBlockByNumber", 0) >= 1, asked
        c.activity(1)  # the next block is pushed: the feed answers again
        wait_until(lambda: int(feed.head()[0]["number"], 16) == c.head())
        c.round([stream])
        _, asked = c.round([stream])
        assert asked == {"requests": 0}, asked
    finally:
        hub.close()


def test_without_a_websocket_the_hub_polls():
    """A node with no WebSocket endpoint (nothing listens there): no head from the feed, and the
    hub asks the node as before (the other tests here run that way)."""
    feed = HeadFeed("ws://127.0.0.1:9")  # discard port: refused
    try:
        time.sleep(0.5)
        assert feed.head() is None
    finally:
        feed.close()
