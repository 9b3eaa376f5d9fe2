"""The deal index on a real chain and a real database: rows from the escrow's events, undone when
a reorg drops their blocks, and resumed from the persisted cursor after a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from chain.events import ChainEvent
from pipeline.db import make_engine, sqlite_url
from pipeline.deal_index import DealIndex
from pipeline.domain import Party, State
from pipeline.runtime import deployed_contracts
from tests.contracts.conftest import World
from tests.faults.test_reorgs import reorg


def make_index(world: World, url: str) -> DealIndex:
    _contracts, start = deployed_contracts(world.chain)
    return DealIndex(make_engine(url), world.chain.rpc, world.escrow, start_block=start)


def head(world: World) -> int:
    return int(world.chain.rpc.call("eth_blockNumber"), 16)


def test_reorgs_undo_the_deals_and_states_of_dropped_blocks(world: World, db_url: str, anvil_only: None):
    index = make_index(world, db_url)
    rpc, broker = world.chain.rpc, world.addr("broker")
    parcel = world.register_parcel()
    terms = world.terms(parcel)
    deal = world.open_deal(terms)
    opened_at = head(world)
    world.accept(deal, terms, Party.BUYER, "buyer")
    seller = world.accept(deal, terms, Party.SELLER, "seller")
    index.sync()
    row = index.get(deal)
    assert row is not None
    assert (row.state, row.broker, row.buyer, row.parcel_id) == (State.SIGNED, broker, terms.buyer, parcel)
    assert (row.opened_block, row.ended_block) == (opened_at, None)

    # the seller's acceptance is dropped: the deal is open again, in the index as on chain
    reorg(rpc, 1, keep=lambda tx: tx["hash"] != seller.tx_hash)
    world.chain.resync()
    index.sync()
    assert world.state(deal) == State.OPEN
    assert index.get(deal) == replace(row, state=State.OPEN)
    world.accept(deal, terms, Party.SELLER, "seller")
    index.sync()
    assert index.page(broker, state=State.SIGNED) == (1, [row])

    # every block since the deal was opened is replaced by empty ones: the deal is gone
    reorg(rpc, head(world) - opened_at + 1, keep=lambda _tx: False)
    world.chain.resync()
    index.sync()
    assert world.state(deal) == State.NONE
    assert index.get(deal) is None and index.page(broker) == (0, [])
    assert index.live([broker]) == []


def test_undo_is_kept_only_as_deep_as_a_reorg_can_reach(world: World, tmp_path: Path, anvil_only: None):
    index = make_index(world, sqlite_url(tmp_path / "index.db"))
    terms = world.terms(world.register_parcel())
    deal = world.signed_deal(terms)
    index.sync()

    def undo_rows() -> int:
        with index.engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM deal_index_undo")).scalar_one())

    assert undo_rows() == 2  # both acceptances can still be rewound
    oldest = min(index.stream.cursor.hashes)
    while min(index.stream.cursor.hashes) <= opened_block(index, deal) + 2:
        world.chain.rpc.call("evm_mine")
        index.sync()
    assert min(index.stream.cursor.hashes) > oldest
    assert undo_rows() == 0
    indexed = index.get(deal)
    assert indexed is not None and indexed.state == State.SIGNED


def opened_block(index: DealIndex, deal: int) -> int:
    indexed = index.get(deal)
    assert indexed is not None
    return indexed.opened_block


def test_a_restarted_index_resumes_from_its_cursor(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = sqlite_url(tmp_path / "index.db")
    broker = world.addr("broker")
    first = make_index(world, url)
    seen: list[ChainEvent] = []
    first.listen(lambda batch: seen.extend(batch.events))
    deal = world.signed_deal(world.terms(world.register_parcel()))
    first.sync()
    assert ("DealOpened", deal) in {(e.event, e.args["dealId"]) for e in seen}

    # a restart: the same database, a new index (as a new process would build it)
    rpc = world.chain.rpc
    queries: list[dict[str, Any]] = []
    call = rpc.call

    def recording(method: str, params: list[Any] | None = None) -> Any:
        if method == "eth_getLogs":
            queries.append(params[0] if params else {})
        return call(method, params)

    monkeypatch.setattr(rpc, "call", recording)
    second = make_index(world, url)
    assert second.stream.cursor == first.stream.cursor
    again: list[ChainEvent] = []
    second.listen(lambda batch: again.extend(batch.events))
    another = world.open_deal(world.terms(world.register_parcel()))
    second.sync()
    # only what came after the restart was read and handed over
    assert [(e.event, e.args["dealId"]) for e in again] == [("DealOpened", another)]
    assert queries and min(int(q["fromBlock"], 16) for q in queries) == first.stream.cursor.next_block
    # and what came before is there, from the rows
    assert [(d.deal_id, d.state) for d in second.live([broker])] == [
        (deal, State.SIGNED),
        (another, State.OPEN),
    ]
