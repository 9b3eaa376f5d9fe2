"""Drafts: the parties sign the terms before the deal exists, and the second acceptance opens the
deal, signed, in one transaction (DealOpened and both TermsAccepted in it)."""

from __future__ import annotations

from typing import Any

from chain.eip712 import sign_typed_data
from tests.api.conftest import Api


def acceptance(api: Api, draft: str, party: str, who: str | None = None, **params: Any) -> dict[str, Any]:
    data = api.ok(api.get(f"/drafts/{draft}/typed-data/{party}", params=params))
    assert data["primaryType"] == "AcceptTerms" and data["message"]["dealId"] == 0
    signature = sign_typed_data(api.world.key(who or party), data)
    return {"party": party, "expiry": data["message"]["expiry"], "signature": signature}


def test_a_draft_accepted_by_both_opens_the_deal_signed(api: Api):
    w = api.world
    terms = api.terms()
    draft = api.ok(api.post("/drafts", terms), 201)
    assert (draft["buyer_accepted"], draft["seller_accepted"], draft["deal"]) == (False, False, None)
    assert draft["terms"]["price"] == terms["price"] and draft["terms"]["buyer"] == w.addr("buyer")
    did = draft["draft_id"]

    half = api.ok(api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "buyer")))
    assert (half["buyer_accepted"], half["seller_accepted"], half["deal"]) == (True, False, None)
    done = api.ok(api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "seller")))
    deal = done["deal"]
    assert deal["state"] == "signed" and deal["signatures"] == {"buyer": True, "seller": True}
    assert deal["broker"] == w.addr("broker") and deal["terms"] == draft["terms"]
    assert api.ok(api.get(f"/drafts/{did}"))["deal"]["deal_id"] == deal["deal_id"]
    steps = api.ok(api.get(f"/deals/{deal['deal_id']}/timeline"))["steps"]
    opening = [s for s in steps if s["tx"] == done["tx"]]
    assert [s["step"] for s in opening] == ["DealOpened", "TermsAccepted", "TermsAccepted"]
    assert [s["step"] for s in steps[:3]] == ["DealOpened", "TermsAccepted", "TermsAccepted"]
    # opened: no more acceptances
    again = api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "buyer"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "draft_opened"


def test_a_wrong_or_expired_acceptance_is_refused_before_the_chain(api: Api):
    w = api.world
    did = api.ok(api.post("/drafts", api.terms()), 201)["draft_id"]
    nonce = int(w.escrow.call("nonces", w.addr("buyer")))
    wrong = api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "buyer", who="seller"))
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_signer"
    assert wrong.json()["error"]["details"]["recovered"] == w.addr("seller")
    stale = api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "buyer", expiry=w.now() - 1))
    assert stale.status_code == 422 and stale.json()["error"]["code"] == "signature_expired"
    view = api.ok(api.get(f"/drafts/{did}"))
    assert (view["buyer_accepted"], view["seller_accepted"]) == (False, False)
    assert int(w.escrow.call("nonces", w.addr("buyer"))) == nonce  # nothing was sent


def test_drafts_are_the_brokers_own_and_bad_terms_are_refused_at_once(api: Api):
    did = api.ok(api.post("/drafts", api.terms()), 201)["draft_id"]
    for response in (
        api.get(f"/drafts/{did}", who="broker2"),
        api.get(f"/drafts/{did}/typed-data/buyer", who="broker2"),
        api.post(f"/drafts/{did}/acceptances", acceptance(api, did, "buyer"), who="broker2"),
        api.get(f"/drafts/{'0' * 32}"),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "draft_not_found"
    assert api.get("/drafts/not-an-id").status_code == 422
    # the escrow's own checks, before anyone signs: a price that is not the sum, a seller who does
    # not own the parcel, an unknown parcel
    mismatch = api.post("/drafts", api.terms(balance=1))
    assert mismatch.status_code == 422 and mismatch.json()["error"]["code"] == "revert.PriceMismatch"
    not_owner = api.post("/drafts", api.terms(seller=api.world.addr("buyer"), buyer=api.world.addr("seller")))
    assert not_owner.status_code == 422 and not_owner.json()["error"]["code"] == "revert.SellerNotOwner"
    assert api.post("/drafts", api.terms(parcel="1111111111-1-1")).status_code == 404
