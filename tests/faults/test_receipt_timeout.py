"""(f) The node stops mining while the oracles' transactions are in its pool: each oracle's wait
for a receipt times out, again and again. Nothing is written off as failed; once blocks come
again every effect is mined once and every deal settles, with no transaction sent twice."""

from __future__ import annotations

import time
from pathlib import Path

from chain.session import ChainSession
from pipeline.service import Services
from tests.faults.conftest import Campaign, wait_for

DEALS = 2
RECEIPT_TIMEOUT = 0.3  # seconds an oracle waits for a receipt before its loop tries again


def test_receipt_timeouts_while_the_node_mines_nothing_lose_and_repeat_nothing(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    campaign = Campaign(chain, services)
    for _ in range(DEALS):
        campaign.open()
    before = campaign.oracle_nonces()
    earlier = {e.key for o in services.institutions.oracles for e in o.store.effects()}  # cash in
    for oracle in services.institutions.oracles:
        oracle.sender.timeout = RECEIPT_TIMEOUT
    pool_before = int(chain.rpc.call("txpool_status")["pending"], 16)
    chain.rpc.call("evm_setAutomine", [False])
    services.start()
    try:
        # the registry reports each deal first: its transactions wait in the pool, unmined
        wait_for(
            lambda: int(chain.rpc.call("txpool_status")["pending"], 16) >= pool_before + DEALS,
            what="the oracles' first transactions in the pool",
        )
        time.sleep(6 * RECEIPT_TIMEOUT)  # several timeouts and retries
        books = {
            e.key: e.status
            for o in services.institutions.oracles
            for e in o.store.effects()
            if e.key not in earlier
        }
        assert books and set(books.values()) == {"signed"}, books  # waiting, none written off
        assert all(services.running().values())
        chain.rpc.call("evm_setAutomine", [True])
        chain.rpc.call("evm_mine", [])
        campaign.wait_settled(timeout=60)
        campaign.wait_books()
    finally:
        chain.rpc.call("evm_setAutomine", [True])
        services.stop()
    campaign.assert_each_effect_once()
    after = campaign.oracle_nonces()
    assert {n: after[n] - before[n] for n in after} == campaign.effect_txs()
