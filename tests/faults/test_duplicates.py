"""(c) Every event delivered twice, to every oracle and to the automation, for a whole run of
several deals in flight: no effect happens twice, and no institution sends one transaction more."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from chain.events import Batch, Cursor, EventStream
from chain.session import ChainSession
from pipeline.service import Services
from tests.faults.conftest import Campaign, wait_for

DEALS = 4


class Echo:
    """Stands in for an EventStream's poll: when a batch brings an event not yet delivered twice,
    the stream's cursor goes back to where that read began, so the next poll reads the same
    blocks from the node again and delivers those events a second time."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.read = stream.poll
        self.delivered: Counter[str] = Counter()
        self.deals: set[int] = set()  # the deals whose events came through

    def __call__(self) -> Batch:
        start = self.stream.cursor
        batch = self.read()
        for event in batch.events:
            self.delivered[event.id.key()] += 1
            if "dealId" in event.args:
                self.deals.add(int(event.args["dealId"]))
        if any(self.delivered[e.id.key()] < 2 for e in batch.events):
            self.stream.cursor = Cursor(start.next_block, dict(start.hashes))
        return batch

    def all_twice(self) -> bool:
        return bool(self.delivered) and min(self.delivered.values()) >= 2


def test_every_event_delivered_twice_across_a_campaign(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    campaign = Campaign(chain, services)
    for _ in range(DEALS):
        campaign.open()  # all funded before the pipeline starts: they run at once
    before = campaign.oracle_nonces()
    streams = [o.stream for o in services.institutions.oracles] + [services.driver.stream]
    echoes = [Echo(stream) for stream in streams]
    for stream, echo in zip(streams, echoes, strict=True):
        monkeypatch.setattr(stream, "poll", echo)
    services.start()
    try:
        campaign.wait_settled(timeout=60)
        # the banks book the settlement after it: wait for the books, then for the last echoes
        campaign.wait_books()
        wait_for(lambda: all(e.all_twice() for e in echoes), what="every event delivered twice")
        assert all(services.running().values())  # duplicates break no loop
    finally:
        services.stop()
    campaign.assert_each_effect_once()
    # every consumer really got the events of every deal, each at least twice, from the node
    for echo in echoes:
        assert echo.deals >= {d.id for d in campaign.deals}
        assert min(echo.delivered.values()) >= 2
    # not one transaction more than the books hold: a second reaction, even a reverted one,
    # would have used a nonce
    after = campaign.oracle_nonces()
    assert {n: after[n] - before[n] for n in after} == campaign.effect_txs()
