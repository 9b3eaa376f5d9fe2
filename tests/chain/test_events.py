from __future__ import annotations

import pytest
from eth_account import Account

from chain.events import Cursor, EventStream, SqliteCursorStore
from chain.rpc import Rpc


@pytest.fixture
def token(chain, deployed):
    return chain.contract("DepositToken", deployed["DepositToken"])


def stream_for(chain, token, **kwargs):
    start = int(chain.rpc.call("eth_blockNumber"), 16) + 1
    kwargs.setdefault("start_block", start)
    return EventStream(chain.rpc, {token.address: ("DepositToken", token.abi)}, **kwargs)


def mint(chain, token, to, amount):
    return token.transact(chain.sender("bank"), "mint", to, amount)


def issued(events):
    return [e.args["amount"] for e in events if e.event == "Issued"]


def drain(stream):
    events = []
    while True:
        batch = stream.poll()
        events += batch.events
        if batch.caught_up and not batch.events:
            return events


def test_decodes_in_bounded_ranges(chain, token):
    stream = stream_for(chain, token, block_range=2)
    buyer = Account.create().address
    receipts = [mint(chain, token, buyer, n) for n in (10, 20, 30, 40, 50)]
    seen = []
    polls = 0
    while True:
        batch = stream.poll()
        polls += 1
        seen += batch.events
        if batch.caught_up:
            break
    assert polls >= 3  # five blocks in windows of two
    issued = [e for e in seen if e.event == "Issued"]
    assert [e.args["amount"] for e in issued] == [10, 20, 30, 40, 50]
    assert [e.id.tx_hash for e in issued] == [r.tx_hash for r in receipts]
    assert all(e.contract == "DepositToken" and e.args["to"] == buyer for e in issued)
    assert len({e.id for e in seen}) == len(seen) == 10  # Transfer + Issued per mint


def test_an_idle_poll_costs_one_call_and_one_with_new_blocks_two_or_three(chain, token):
    rpc = Rpc(chain.rpc.urls)  # its own client: the counts are this stream's alone
    stream = EventStream(
        rpc,
        {token.address: ("DepositToken", token.abi)},
        start_block=int(chain.rpc.call("eth_blockNumber"), 16) + 1,
    )
    buyer = Account.create().address

    def cost(blocks: int) -> tuple[int, int]:
        for i in range(blocks):
            mint(chain, token, buyer, i + 1)
        requests, calls = rpc.requests, rpc.calls
        batch = stream.poll()
        assert batch.caught_up and len(issued(batch.events)) == blocks
        return rpc.requests - requests, rpc.calls - calls

    assert cost(3)[0] == 3  # the head; the older blocks a fresh stream records; the logs
    assert cost(0) == (1, 1)  # the head block answers the reorg check: it is the newest recorded
    assert cost(1) == (2, 2)  # ... or its parent
    assert cost(3) == (3, 3)  # an older newest recorded block is read before the logs


def test_confirmations_hold_back_recent_blocks(chain, token):
    stream = stream_for(chain, token, confirmations=2)
    buyer = Account.create().address
    mint(chain, token, buyer, 1)
    assert drain(stream) == []
    chain.rpc.call("evm_mine")
    assert drain(stream) == []
    chain.rpc.call("evm_mine")
    assert [e.args["amount"] for e in drain(stream) if e.event == "Issued"] == [1]


def test_resumes_from_persisted_cursor(chain, token, tmp_path):
    store = SqliteCursorStore(tmp_path / "cursor.db")
    stream = stream_for(chain, token)
    buyer = Account.create().address
    mint(chain, token, buyer, 1)
    first = drain(stream)
    store.save("token", stream.cursor)
    store.close()

    mint(chain, token, buyer, 2)
    reopened = SqliteCursorStore(tmp_path / "cursor.db")
    resumed = EventStream(
        chain.rpc, {token.address: ("DepositToken", token.abi)}, cursor=reopened.load("token")
    )
    second = drain(resumed)
    assert [e.args["amount"] for e in first if e.event == "Issued"] == [1]
    assert [e.args["amount"] for e in second if e.event == "Issued"] == [2]
    assert reopened.load("missing") is None


def test_cursor_round_trips_as_json():
    cursor = Cursor(42, {40: "0xaa", 41: "0xbb"})
    assert Cursor.from_json(cursor.to_json()) == cursor


def test_reorg_rewinds_and_reincluded_event_gets_new_id(chain, token, anvil_only):
    stream = stream_for(chain, token)
    buyer = Account.create().address
    mint(chain, token, buyer, 1)
    kept_head = int(chain.rpc.call("eth_blockNumber"), 16)
    orphan = mint(chain, token, buyer, 2)
    mint(chain, token, buyer, 3)
    before = drain(stream)
    assert [e.args["amount"] for e in before if e.event == "Issued"] == [1, 2, 3]

    # Replace the last two blocks: the "2" mint comes back in a new block, the "3" is dropped.
    bank = chain.signers["bank"].address
    replay = {
        "from": bank,
        "to": token.address,
        "data": token.encode("mint", buyer, 2),
        "gas": hex(120_000),
    }
    chain.rpc.call("anvil_reorg", [2, [[replay, 0]]])
    chain.resync()

    batch = stream.poll()
    assert batch.rewound_to == kept_head
    assert batch.events == []
    after = drain(stream)
    issued = [e for e in after if e.event == "Issued"]
    assert [e.args["amount"] for e in issued] == [2]
    assert issued[0].id.block_hash != orphan.block_hash
    assert token.call("balanceOf", buyer) == 3


def test_reorg_deeper_than_memory_reads_again_from_the_start(chain, token, anvil_only):
    stream = stream_for(chain, token)
    buyer = Account.create().address
    mint(chain, token, buyer, 1)
    assert issued(drain(stream)) == [1]
    stream.cursor = Cursor(stream.cursor.next_block, {n: "0x" + "00" * 32 for n in stream.cursor.hashes})
    batch = stream.poll()
    assert batch.rewound_to == stream.start_block - 1
    assert issued(drain(stream)) == [1]  # the consumer dedupes by event id


def test_a_chain_that_came_back_shorter_is_a_rewind_not_a_wait(chain, token, anvil_only):
    """A node restarted from an older state ends before the cursor: the stream rewinds to the
    last block it still shares, with or without recorded hashes, and never waits past the head."""
    stream = stream_for(chain, token)
    buyer = Account.create().address
    mint(chain, token, buyer, 1)
    snapshot = chain.rpc.call("evm_snapshot")
    kept_head = int(chain.rpc.call("eth_blockNumber"), 16)
    mint(chain, token, buyer, 2)
    mint(chain, token, buyer, 3)
    assert issued(drain(stream)) == [1, 2, 3]
    bare = Cursor(stream.cursor.next_block)  # a cursor with no recorded hashes
    chain.rpc.call("evm_revert", [snapshot])  # the chain is now two blocks shorter
    chain.resync()
    mint(chain, token, buyer, 4)
    batch = stream.poll()
    assert batch.rewound_to == kept_head
    assert issued(drain(stream)) == [4]
    fresh = stream_for(chain, token, start_block=stream.start_block, cursor=bare)
    assert fresh.poll().rewound_to == stream.start_block - 1
    assert issued(drain(fresh)) == [1, 4]


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_a_fresh_filtered_stream_finds_the_ancestor_of_a_reorg(chain, token, anvil_only, depth):
    """A stream that caught up in one poll and saw none of its events still finds where the
    chains fork: it records a few older blocks when it has no deep enough record."""
    buyer = Account.create().address
    for i in range(8):
        mint(chain, token, buyer, i + 1)
    head = int(chain.rpc.call("eth_blockNumber"), 16)
    stream = stream_for(chain, token, start_block=head - 7, events={"Redeemed"})  # nothing matches
    assert drain(stream) == []
    chain.rpc.call("anvil_reorg", [depth, []])
    chain.resync()
    batch = stream.poll()
    # at or below the fork point (re-reading a few good blocks is harmless), never above it
    assert batch.rewound_to is not None and head - 2 * depth <= batch.rewound_to <= head - depth
    assert stream.cursor.next_block == batch.rewound_to + 1
