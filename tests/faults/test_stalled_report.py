"""What the bench reports of a deal that did not end in time: here one the pipeline never ran."""

from __future__ import annotations

from pathlib import Path

from chain.session import ChainSession
from pipeline.service import Services
from tests.faults.conftest import Campaign


def test_a_stalled_deal_is_reported_with_its_state_wait_and_books(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    services = Services.build(chain, tmp_path, poll_interval=0.02)  # never started: nothing moves
    campaign = Campaign(chain, services)
    deal = campaign.open()
    report = campaign.bench.stalled(deal.id)
    assert report["deal"] == deal.id and report["state"] == "signed"
    assert report["waiting"]  # what it waits for, by whom
    steps = [step for step, _block in report["last_events"]]
    assert steps == ["DealOpened", "TermsAccepted", "TermsAccepted"]
    assert report["effects"] == {}  # no oracle acted on it: nothing started them
    assert f"deal_id={deal.id}" in report["indexed"] and "ended_block=None" in report["indexed"]
