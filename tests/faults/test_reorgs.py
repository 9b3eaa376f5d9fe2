"""(b) Reorganisations of depth 1 to 5 at different moments of a run of several deals. Nothing may
be repeated or lost: each deal settles, each institution's effect is on the canonical chain
exactly once, and every transaction an institution sent since the reorgs began is one its books
hold, and it succeeded (a repeated attempt, even a reverted one, would show).

The pipeline's own pieces (the automation's tick, each oracle's step: what their threads loop
on) are stepped here, so that each reorg falls between steps and replaces exactly the blocks
read before it. anvil_reorg puts the chosen transactions back raw (same hash), in their order
and relative block: either all of them, as nodes do when they return a dropped block's
transactions to the pool, or all but the institutions' own, whose effects must then be redone.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chain.rpc import Rpc, raise_errors
from chain.session import ChainSession
from pipeline.service import Services
from tests.faults.conftest import Campaign

DEALS = 4
INSTITUTIONS = ("registrar", "lender", "bank")
STALLED = 30  # rounds without any progress: the run is stuck


def reorg(rpc: Rpc, depth: int, keep: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Replace the newest `depth` blocks by as many new ones. The transactions `keep` accepts come
    back in their order and relative block; the others are gone. Returns the dropped hashes."""
    head = int(rpc.call("eth_blockNumber"), 16)
    numbers = range(head - depth + 1, head + 1)
    blocks = raise_errors(rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers]))
    pairs: list[list[Any]] = []
    dropped: list[str] = []
    for offset, block in enumerate(blocks):
        for tx in block["transactions"]:
            if keep(tx):
                pairs.append([rpc.call("eth_getRawTransactionByHash", [tx["hash"]]), offset])
            else:
                dropped.append(tx["hash"])
    # Another miner for the new blocks: while the chain's clock stands still (tests set it), a block
    # rebuilt with the same transactions would be the very same block, and nothing would reorganise.
    miner = rpc.call("eth_coinbase")
    rpc.call("anvil_setCoinbase", ["0x" + secrets.token_hex(20)])
    rpc.call("anvil_reorg", [depth, pairs])
    rpc.call("anvil_setCoinbase", [miner])
    assert int(rpc.call("eth_blockNumber"), 16) == head  # a reorg, not a rollback
    return dropped


def institution_txs(campaign: Campaign, since: int) -> dict[str, int]:
    """Every transaction an institution's key sent in blocks after `since`: hash -> status."""
    rpc = campaign.s.rpc
    keys = {campaign.s.signers[n].address.lower() for n in INSTITUTIONS}
    head = int(rpc.call("eth_blockNumber"), 16)
    calls = [("eth_getBlockByNumber", [hex(n), True]) for n in range(since + 1, head + 1)]
    blocks = raise_errors(rpc.batch(calls))
    hashes = [tx["hash"] for b in blocks for tx in b["transactions"] if tx["from"].lower() in keys]
    receipts = raise_errors(rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes]))
    return {h: int(r["status"], 16) for h, r in zip(hashes, receipts, strict=True)}


@pytest.mark.parametrize(
    ("confirmations", "institutions_txs_return"),
    [
        # acting at once, every dropped transaction comes back (what a node's pool does)
        pytest.param(0, True, id="at-once-every-tx-returns"),
        # acting at once, the institutions' transactions are lost: their effects must be redone
        pytest.param(0, False, id="at-once-institutions-txs-lost"),
        # five confirmations: a reorg of up to 5 blocks never reaches an event the oracles acted on
        pytest.param(5, True, id="5-confirmations-every-tx-returns"),
    ],
)  # fmt: skip
def test_reorgs_of_depth_1_to_5_during_a_campaign(
    chain: ChainSession,
    deployed: dict[str, str],
    tmp_path: Path,
    confirmations: int,
    institutions_txs_return: bool,
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    oracles = services.institutions.oracles
    for oracle in oracles:  # Services.build takes the network's confirmations (0 on development)
        oracle.stream.confirmations = confirmations
    rpc = chain.rpc

    def step() -> None:
        services.driver.tick()
        for oracle in oracles:
            oracle.step()
        if confirmations:
            rpc.call("evm_mine")  # blocks keep coming, so events get their confirmations

    campaign = Campaign(chain, services)
    for _ in range(DEALS):
        campaign.open()
        for _ in range(3):  # the deals are at different steps when the reorgs begin
            step()
    floor = int(rpc.call("eth_blockNumber"), 16)  # the set-up stays out of reach of the reorgs
    assert not all(s.terminal for s in campaign.states().values())

    keys = {chain.signers[n].address.lower() for n in INSTITUTIONS}

    def keep(tx: dict[str, Any]) -> bool:
        return institutions_txs_return or tx["from"].lower() not in keys

    def off_chain() -> list[str]:
        return [
            e.key
            for o in oracles
            for e in o.store.effects()
            if any(rpc.call("eth_getTransactionReceipt", [t.hash]) is None for t in e.txs)
        ]

    depths = itertools.cycle(range(1, 6))
    done: list[int] = []
    dropped: list[str] = []
    last, still = campaign.progress(), 0
    # Until each depth has been done: acting at once, the oracles may finish the deals before that,
    # and the reorgs after it replay the deals' events, which must not be acted on twice.
    for round_ in itertools.count():
        step()
        finished = campaign.books_complete() and all(s.terminal for s in campaign.states().values())
        if finished and set(done) == {1, 2, 3, 4, 5}:
            break
        now = campaign.progress()
        still = still + 1 if now == last else 0
        last = now
        assert still < STALLED, f"the run is stuck: {campaign.states()}; booked, not on chain: {off_chain()}"
        if round_ % 2 == 0:
            depth = min(next(depths), int(rpc.call("eth_blockNumber"), 16) - floor)
            if depth >= 1:
                dropped += reorg(rpc, depth, keep)
                done.append(depth)
    for _ in range(3):  # a few quiet rounds: nothing more may happen
        step()

    orphaned = sum(o.store.counters().get("orphaned", 0) for o in oracles)
    if confirmations >= 5:
        assert orphaned == 0  # the reorgs stayed inside the confirmation window
    else:
        assert orphaned >= 1  # some effects were orphaned by a reorg and had to be looked at again
    if not institutions_txs_return:
        assert dropped  # some of the institutions' transactions really were lost
    campaign.assert_each_effect_once()
    sent = institution_txs(campaign, floor)
    booked = {t.hash for o in oracles for e in o.store.effects() for t in e.txs}
    assert set(sent) <= booked, set(sent) - booked
    assert set(sent.values()) == {1}, sent
    for deal in campaign.deals:
        for effect in (e for o in oracles for e in o.store.effects(deal_id=deal.id)):
            for tx in effect.txs:
                receipt = rpc.call("eth_getTransactionReceipt", [tx.hash])
                assert receipt is not None and int(receipt["status"], 16) == 1, (effect.key, tx.hash)
