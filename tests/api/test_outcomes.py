"""The other ways a deal ends: §565 cancellation by either side, default, a rejected loan,
a blocked title."""

from __future__ import annotations

import pytest

from pipeline.adapters.protocols import CredentialKind
from tests.api.conftest import Api
from tests.contracts.conftest import DAY


def deposit_paid(api: Api, **terms: int) -> int:
    deal = api.open_signed(**terms)
    deposit = api.deal(deal)["terms"]["deposit"]
    api.pay_in(deal, deposit)
    api.permit(deal, deposit)
    api.wait(deal, lambda d: d["state"] == "deposit_paid")
    return deal


@pytest.mark.parametrize("party", ["buyer", "seller"])
def test_cancellation_before_performance(api: Api, party: str):
    w = api.world
    deal = deposit_paid(api, loan=0)
    deposit = api.deal(deal)["terms"]["deposit"]
    if party == "seller":  # the seller pays in the same again: the escrow pulls it on cancellation
        w.mint("seller", deposit)
        w.approve("seller", w.escrow, deposit)
    data = api.ok(api.get(f"/deals/{deal}/cancel-typed-data/{party}"))
    assert data["primaryType"] == "CancelDeal" and data["message"]["party"] == (party == "seller")
    from chain.eip712 import sign_typed_data

    body = {
        "party": party,
        "expiry": data["message"]["expiry"],
        "signature": sign_typed_data(w.key(party), data),
    }
    result = api.ok(api.post(f"/deals/{deal}/cancel", body))
    assert result["state"] == "cancelled"
    view = api.deal(deal)
    assert view["state"] == "cancelled" and view["waiting"] is None
    (cancelled,) = [
        s for s in api.ok(api.get(f"/deals/{deal}/timeline"))["steps"] if s["step"] == "DealCancelled"
    ]
    expected = (0, deposit) if party == "buyer" else (2 * deposit, 0)
    assert (cancelled["details"]["toBuyer"], cancelled["details"]["toSeller"]) == expected
    # after the cancellation the parcel is free for a new deal
    assert api.open(loan=0) > deal


def test_cancellation_after_performance_is_a_conflict(api: Api):
    w = api.world
    deal = api.open_signed(loan=0, interim=300_000_000)
    api.pay_in(deal, 400_000_000)
    api.permit(deal, 400_000_000)
    api.wait(deal, lambda d: d["state"] == "interim_paid")
    from chain.eip712 import sign_typed_data

    data = api.ok(api.get(f"/deals/{deal}/cancel-typed-data/buyer"))
    body = {
        "party": "buyer",
        "expiry": data["message"]["expiry"],
        "signature": sign_typed_data(w.key("buyer"), data),
    }
    r = api.post(f"/deals/{deal}/cancel", body)
    assert r.status_code == 409 and r.json()["error"]["code"] == "revert.PerformanceBegun"


def test_default_after_missed_deadline(api: Api):
    w = api.world
    deal = deposit_paid(api, loan=0)
    w.warp(31 * DAY)  # the interim deadline passes unpaid
    w.tx("seller", w.escrow, "declareDefault", deal)
    view = api.deal(deal)
    assert view["state"] == "defaulted" and view["waiting"] is None
    steps = api.ok(api.get(f"/deals/{deal}/timeline"))["steps"]
    assert steps[-1]["step"] == "DealDefaulted" and steps[-1]["by"] == w.addr("seller")
    assert steps[-1]["details"]["toSeller"] == view["terms"]["deposit"]


def test_missed_deposit_cancels(api: Api):
    w = api.world
    deal = api.open_signed(loan=0)
    w.warp(8 * DAY)
    w.tx("buyer", w.escrow, "declareDefault", deal)
    assert api.deal(deal)["state"] == "cancelled"


def test_rejected_loan_waits_for_the_full_balance(api: Api):
    deal = deposit_paid(api, interim=0, loan=400_000_000)
    (resident,) = api.certificates((CredentialKind.RESIDENT_REGISTRATION,))
    # the automation waits for both certificates; the broker files with only one (manual override)
    assert api.deal(deal)["waiting"]["step"] == "loan"
    filed = api.ok(api.post(f"/deals/{deal}/loan", {"credentials": [resident]}))
    assert filed["tx"].startswith("0x")
    view = api.wait(deal, lambda d: d["loan"]["decided"])
    assert view["loan"]["status"] == "rejected" and view["loan"]["reject_reason"] == 2
    assert view["loan"]["approved_amount"] == 0
    assert view["waiting"]["step"] == "balance"
    assert "900,000,000 won due" in view["waiting"]["reason"]
    assert "LoanRejected" in api.steps(deal)


def test_blocked_title_is_refunded(api: Api):
    w = api.world
    deal = api.open_signed(loan=0, interim=0)
    parcel = api.services.institutions.parcels["eunma"]
    api.services.institutions.registry.add_blocking(
        parcel, "provisional_seizure", w.addr("issuer"), 10_000_000
    )
    price = api.deal(deal)["terms"]["price"]
    api.pay_in(deal, price)
    api.permit(deal, price)
    view = api.wait(deal, lambda d: d["state"] in ("settled", "refunded"))
    assert view["state"] == "refunded"
    assert "DealRefunded" in api.steps(deal)
    assert api.ok(api.get("/parcels/eunma"))["owner"] == w.addr("seller")
    assert int(w.escrow.call("claimable", w.addr("buyer"))) == price
