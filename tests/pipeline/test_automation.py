"""After both signatures the pipeline drives the deal to settlement with no broker calls."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from sqlalchemy import text

from chain.eip712 import sign_typed_data
from pipeline.brokerage import Brokerage
from pipeline.domain import Party, State
from pipeline.service import Services
from tests.pipeline.harness import issue_credentials


@pytest.fixture
def services(world, tmp_path):
    s = Services.build(world.chain, tmp_path, poll_interval=0.02).start()
    yield s
    s.stop()


def wait_for(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the pipeline did not get there in time"
        time.sleep(0.02)


def test_signed_deal_runs_itself_to_settlement(world, services: Services, monkeypatch: pytest.MonkeyPatch):
    w, b = world, services.brokerage
    broker = w.addr("broker")
    parcel = services.institutions.parcels["eunma"]
    terms = w.terms(parcel)
    deal, _ = b.open_deal(broker, terms)
    expiry = w.now() + 86_400
    for party, who in ((Party.BUYER, "buyer"), (Party.SELLER, "seller")):
        data = b.acceptance_typed_data(deal, party, expiry)
        b.submit_acceptance(broker, deal, party, expiry, sign_typed_data(w.key(who), data))
    assert b.deal(deal)["waiting"]["reason"].startswith("waiting for the buyer's funds")

    # the buyer's wallet: e-certificates, money paid in at the bank, one permit for the escrow
    issue_credentials(w, b.wallet)
    own = terms.deposit + terms.interim + terms.balance - terms.loanAmount
    cash = b.record_cash_deposit("cash-1", deal, Party.BUYER, own)
    assert cash["status"] == "mined"
    assert b.record_cash_deposit("cash-1", deal, Party.BUYER, own)["txs"] == cash["txs"]  # once only
    deadline = w.now() + 90 * 86_400
    permit = b.permit_typed_data(deal, own, deadline)
    b.submit_permit(broker, deal, own, deadline, sign_typed_data(w.key("buyer"), permit))

    wait_for(lambda: b.deal(deal)["state"] == "settled")
    steps = [s["step"] for s in b.timeline(deal)]
    for step in ("TermsAccepted", "TransactionReported", "PaymentReceived", "LoanRequested", "LoanApproved",
                 "LoanDisbursed", "RegistrationRequested", "PayoffStated", "DealSettled"):  # fmt: skip
        assert step in steps, step
    assert steps.count("PaymentReceived") == 4  # deposit, interim, the buyer's balance part, the loan
    assert w.land.call("ownerOf", parcel) == w.addr("buyer")
    assert int(w.token.call("balanceOf", w.addr("buyer"))) == 0  # every won it paid in went to escrow
    assert State(w.escrow.call("dealState", deal)) == State.SETTLED

    # the deal index has the whole deal, and the timeline reads logs over the deal's blocks only
    opened_at = next(s["block"] for s in b.timeline(deal) if s["step"] == "DealOpened")
    settled_at = next(s["block"] for s in b.timeline(deal) if s["step"] == "DealSettled")
    indexed = b.index.get(deal)
    assert indexed is not None
    assert (indexed.state, indexed.broker, indexed.buyer, indexed.parcel_id) == (
        State.SETTLED, broker, terms.buyer, parcel,
    )  # fmt: skip
    assert (indexed.opened_block, indexed.ended_block) == (opened_at, settled_at)
    assert b.deals_of(broker, state="settled")["total"] == 1
    ranges = log_ranges(b, monkeypatch)
    assert [s["step"] for s in b.timeline(deal)] == steps
    assert ranges == [(opened_at, settled_at)]
    # a deal the index does not know (yet) is read over the whole chain, with the same steps
    with b.index.engine.begin() as conn:
        conn.execute(text("DELETE FROM deal_index WHERE deal_id = :d"), {"d": deal})
    ranges.clear()
    assert [s["step"] for s in b.timeline(deal)] == steps
    assert ranges == [(b.start_block, None)]


def log_ranges(b: Brokerage, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int | None]]:
    """From now on, the block range of every eth_getLogs for one deal (None: up to latest)."""
    ranges: list[tuple[int, int | None]] = []
    call = b.session.rpc.call

    def recording(method: str, params: list[Any] | None = None) -> Any:
        if method == "eth_getLogs" and params and params[0].get("topics", [None])[0] is None:
            q = params[0]
            ranges.append(
                (int(q["fromBlock"], 16), None if q["toBlock"] == "latest" else int(q["toBlock"], 16))
            )
        return call(method, params)

    monkeypatch.setattr(b.session.rpc, "call", recording)
    return ranges


def ticks_until(services: Services, steps: int, timeout: float = 30.0) -> int:
    """Tick until `steps` steps are confirmed: a tick sends what is due and confirms what is
    mined, and a receipt may come a tick later. Returns the steps confirmed."""
    deadline = time.monotonic() + timeout
    taken = services.driver.tick()
    while taken < steps and time.monotonic() < deadline:
        time.sleep(0.01)
        taken += services.driver.tick()
    return taken


def test_a_ticks_due_payments_go_out_in_one_batch_and_a_refused_item_stays_due(
    world, tmp_path, caplog: pytest.LogCaptureFixture
):
    """Three deals' deposits are due in one tick: one payMany transaction of the broker carries
    them. The buyer's money covers two: the third item fails alone (ItemFailed, logged with
    its custom error) and is paid by a later tick once the money is there."""
    w = world
    services = Services.build(w.chain, tmp_path, poll_interval=0.02)  # not started: the test ticks
    try:
        deals = [w.signed_deal(w.terms(w.register_parcel(), loan=0)) for _ in range(3)]
        deposit = 100_000_000
        w.mint("buyer", 2 * deposit)
        w.approve("buyer", w.escrow, 3 * deposit)
        broker = w.addr("broker")
        nonce = int(w.chain.rpc.call("eth_getTransactionCount", [broker, "latest"]), 16)
        caplog.set_level(logging.INFO, logger="deedchain.automation")
        assert ticks_until(services, 2) == 2 and not services.driver.sent
        assert int(w.chain.rpc.call("eth_getTransactionCount", [broker, "latest"]), 16) == nonce + 1
        states = [w.state(d) for d in deals]
        assert states.count(State.DEPOSIT_PAID) == 2 and states.count(State.SIGNED) == 1
        refused = deals[states.index(State.SIGNED)]
        logged = [json.loads(r.getMessage()) for r in caplog.records]
        assert {"event": "not_yet", "deal_id": refused, "kind": "deposit",
                "error": "ERC20InsufficientBalance"} in logged  # fmt: skip
        w.mint("buyer", deposit)
        wait_for(lambda: services.driver.tick() == 1 or w.state(refused) == State.DEPOSIT_PAID)
        assert w.state(refused) == State.DEPOSIT_PAID
    finally:
        services.stop()
