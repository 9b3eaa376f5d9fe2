"""(g) Settlement lands while an oracle is between two reads of one decision. The lender reads
that a deal awaits registration, and before it reads the parcel's mortgages the deal settles,
which registers the lender's own new mortgage. That one is nobody's to pay off: the lender must
not state a payoff for it (a transaction that could only revert, and a failed effect in its books)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chain.session import ChainSession
from pipeline.domain import State
from pipeline.service import Services
from tests.faults.conftest import Campaign, wait_for


def test_settlement_between_two_reads_of_the_lender_brings_no_payoff_of_its_own_mortgage(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    campaign = Campaign(chain, services)
    deal = campaign.open()
    [lender] = [o for o in services.institutions.oracles if o.store.oracle == "bank:lender"]
    land = lender.land  # each oracle has its own contract objects
    read = land.call
    held: list[int] = []

    def settled_first(fn: str, *args: Any, **kwargs: Any) -> Any:
        if fn == "activeMortgages" and not held:
            # the lender has just read "registration requested": hold it until the deal settled
            held.append(deal.id)
            wait_for(lambda: campaign.states([deal])[deal.id] == State.SETTLED, what="settlement")
        return read(fn, *args, **kwargs)

    monkeypatch.setattr(land, "call", settled_first)
    services.start()
    try:
        campaign.wait_settled(timeout=60)
        campaign.wait_books()
        wait_for(lambda: lender.stream.cursor.next_block > int(chain.rpc.call("eth_blockNumber"), 16))
    finally:
        services.stop()
    assert held == [deal.id]  # the race really happened
    assert [e.key for e in lender.store.effects(deal_id=deal.id) if e.kind == "payoff"] == []
    campaign.assert_each_effect_once()
