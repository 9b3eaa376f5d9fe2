"""The oracles against a real chain and real institutions: one complete closing, exactly once."""

from __future__ import annotations

import pytest

from pipeline.domain import State
from tests.pipeline.harness import Closing


@pytest.fixture
def closing(world, tmp_path):
    c = Closing(world, tmp_path)
    yield c
    c.close()


def test_full_closing_driven_by_oracles(closing: Closing):
    c, w = closing, closing.w
    parcel = c.parcels["eunma"]
    deal, terms = c.full_deal()

    assert w.state(deal) == State.SETTLED
    assert w.land.call("ownerOf", parcel) == w.addr("buyer")
    # the registry's own books moved too: buyer owns it, the old mortgage is discharged,
    # the lender's new mortgage stands
    record = c.registry.read_parcel(parcel)
    assert record is not None and record.owner == w.addr("buyer")
    mortgages = [e for e in record.entries if e.section == "eulgu" and e.kind == "mortgage" and e.active]
    assert [(m.holder, m.debtor) for m in mortgages] == [(w.addr("lender"), w.addr("buyer"))]
    # every effect happened once and is recorded as mined
    assert c.effects(deal) == {
        f"report:{deal}": "mined",
        f"decision:{deal}": "mined",
        f"disburse:{deal}": "mined",
        f"payoff:{deal}": "mined",
        f"settle:{deal}": "mined",
        f"secured:{deal}": "mined",  # the lender booked its new mortgage's 을구 entry
        f"repaid:{deal}:0": "mined",  # the seller's bank booked the payoff of 을구 entry 0
    }
    for contract, name in [
        (w.escrow, "TransactionReported"), (w.loans, "LoanApproved"), (w.loans, "LoanDisbursed"),
        (w.loans, "PayoffStated"), (w.escrow, "DealSettled"),
    ]:  # fmt: skip
        assert len(c.chain_events(contract, name, deal)) == 1, name
    # the seller's bank was paid its quoted payoff and the rest went to the seller
    payoff = c.chain_events(w.loans, "PayoffStated", deal)[0].args["amount"]
    assert w.escrow.call("claimable", w.addr("bank")) == payoff
    assert w.escrow.call("claimable", w.addr("seller")) == terms.price - payoff
    assert c.lender.loan(deal)["status"] == "disbursed"


def test_rejected_loan_goes_on_chain_with_its_reason(closing: Closing):
    c, w = closing, closing.w
    deal, terms = c.open_signed(loan=400_000_000)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    # only the resident registration: the income certificate is missing
    hashes = c.credentials()[:1]
    w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, hashes)
    c.pump(lambda: w.escrow.call("loanDecision", deal)[0])
    loan = w.loans.call("loan", deal)
    assert loan["status"] == 3 and loan["rejectReason"] == 2  # Rejected, MISSING_INCOME_CERTIFICATE
    assert c.effects(deal)[f"decision:{deal}"] == "mined"


def test_blocked_title_is_refunded_not_settled(closing: Closing):
    c, w = closing, closing.w
    deal, terms = c.open_signed(loan=0, interim=0)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payBalance", "buyer", terms.balance)
    # a seizure lands at the registry (and on chain) after the buyer paid
    parcel = c.parcels["eunma"]
    c.registry.add_blocking(parcel, "provisional_seizure", w.addr("issuer"), 10_000_000)
    w.tx("buyer", w.escrow, "requestRegistration", deal)
    c.settle_quietly()  # the bank states its payoff; the registry sees the seizure
    c.pump(lambda: w.state(deal).terminal)
    assert w.state(deal) == State.REFUNDED
    assert w.escrow.call("claimable", w.addr("buyer")) == terms.price
    assert w.land.call("ownerOf", parcel) == w.addr("seller")


def test_metrics_report_latency_and_counts(closing: Closing):
    from pipeline.metrics import oracle_metrics, percentile

    closing.full_deal()
    metrics = oracle_metrics(closing.engine)
    assert set(metrics) == {"registry:registrar", "bank:lender", "bank:bank"}
    assert metrics["registry:registrar"]["effects"] == {"mined": 2}
    assert metrics["bank:lender"]["effects"] == {"mined": 3}
    latency = metrics["bank:lender"]["latency_ms"]
    assert latency["count"] == 3 and 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 95) == 10.0
    assert percentile([], 50) is None


def test_full_closing_with_every_database_on_postgresql(world, tmp_path, pg_url):
    """The registry, both banks and the oracles' own books on PostgreSQL instead of SQLite."""
    import uuid

    from sqlalchemy import create_engine, text

    admin = create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    urls = {}
    with admin.connect() as conn:
        for name in ("registry", "lender", "bank", "oracles"):
            db = f"{name}_{uuid.uuid4().hex[:8]}"
            conn.execute(text(f"CREATE DATABASE {db}"))
            urls[name] = pg_url.rsplit("/", 1)[0] + "/" + db
    c = Closing(world, tmp_path, urls=urls)
    try:
        deal, _ = c.full_deal()
        assert world.state(deal) == State.SETTLED
        assert set(c.effects(deal).values()) == {"mined"} and len(c.effects(deal)) == 7
        assert c.registry.read_parcel(c.parcels["eunma"]).owner == world.addr("buyer")
    finally:
        c.close()
        admin.dispose()


def test_resales_discharge_the_lenders_own_mortgage_each_time(closing: Closing):
    """seller -> buyer -> buyer2 -> buyer: each sale pays off the previous buyer's loan, and the
    lender's books follow the chain (new mortgage placed at its 을구 entry, old one repaid)."""
    c, w = closing, closing.w
    parcel = c.parcels["eunma"]
    for seller, buyer in (("seller", "buyer"), ("buyer", "buyer2"), ("buyer2", "buyer")):
        deal, _ = c.full_deal(seller=seller, buyer=buyer)
        assert w.state(deal) == State.SETTLED, (seller, buyer)
        assert w.land.call("ownerOf", parcel) == w.addr(buyer)
    active = w.land.call("activeMortgages", parcel)
    assert len(active) == 1  # only the last buyer's loan stands
    held = c.lender.held_mortgage(parcel, active[0])
    assert held is not None and held["debtor"] == w.addr("buyer") and held["outstanding"] > 0
    c.settle_quietly()
    repaid = [e for e in c.oracles[1].store.effects() if e.kind == "payoff_booked"]
    assert len(repaid) == 2 and all(e.status == "mined" and e.answer["outstanding"] == 0 for e in repaid)
