"""Every error has the same shape and the right status: reverts, idempotency, rate limit,
body size, validation."""

from __future__ import annotations

import uuid

import httpx

from chain.eip712 import sign_typed_data
from tests.api.conftest import Api


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def test_second_contract_on_a_parcel_under_contract_is_409(api: Api):
    first = api.open_signed()
    second = api.open()  # an offer is fine; a second signed contract is not
    api.ok(api.post(f"/deals/{second}/signatures", api.sign(second, "buyer")))
    e = error(api.post(f"/deals/{second}/signatures", api.sign(second, "seller")), 409)
    assert e["code"] == "revert.ParcelUnderContract"
    assert e["details"]["liveDealId"] == first


def test_input_reverts_are_422(api: Api):
    w = api.world
    e = error(api.post("/deals", {**api.terms(), "price": 999_999_999}), 422)
    assert e["code"] == "revert.PriceMismatch"
    assert e["details"] == {"price": 999_999_999, "sum": 1_000_000_000}
    e = error(api.post("/deals", api.terms(seller=w.addr("buyer2"))), 422)
    assert e["code"] == "revert.SellerNotOwner"
    deal = api.open()
    # the seller signs what the buyer should sign
    data = api.ok(api.get(f"/deals/{deal}/typed-data/buyer"))
    body = {
        "party": "buyer",
        "expiry": data["message"]["expiry"],
        "signature": sign_typed_data(w.key("seller"), data),
    }
    e = error(api.post(f"/deals/{deal}/signatures", body), 422)
    assert e["code"] == "revert.InvalidSigner"
    assert e["details"]["expected"] == w.addr("buyer") and e["details"]["recovered"] == w.addr("seller")
    # an expired signature
    data = api.ok(api.get(f"/deals/{deal}/typed-data/buyer", params={"expiry": 1}))
    body = {"party": "buyer", "expiry": 1, "signature": sign_typed_data(w.key("buyer"), data)}
    assert error(api.post(f"/deals/{deal}/signatures", body), 422)["code"] == "revert.SignatureExpired"
    # a permit signed by the wrong key
    data = api.ok(api.get(f"/deals/{deal}/permit-typed-data", params={"value": 5, "deadline": w.now() + 99}))
    body = {
        "value": 5,
        "deadline": data["message"]["deadline"],
        "signature": sign_typed_data(w.key("seller"), data),
    }
    assert error(api.post(f"/deals/{deal}/permit", body), 422)["code"] == "revert.ERC2612InvalidSigner"
    # state conflicts: registration of an open deal
    assert error(api.post(f"/deals/{deal}/registration"), 409)["code"].startswith("revert.")


def test_pipeline_value_errors_are_422(api: Api):
    deal = api.open(loan=0)
    e = error(api.post(f"/deals/{deal}/loan", {"credentials": ["0x" + "ab" * 32]}), 422)
    assert e["code"] == "invalid_request" and "no loan" in e["message"]
    e = error(api.post("/credentials", {
        "document": {"kind": 2, "subject": api.world.addr("buyer"), "issuer": api.world.addr("issuer"),
                     "issued_at": 1, "expiry": 2, "claims": {}},
        "signature": "0x" + "11" * 65,
    }), 422)  # fmt: skip
    assert e["code"] == "invalid_request" and "credential rejected" in e["message"]
    assert error(api.get("/parcels/1168010600-99999-0000"), 404)["code"] == "parcel_not_found"


def test_payments_need_an_idempotency_key_and_replay_it(api: Api):
    w = api.world
    deal = api.open_signed(loan=0)
    body = {"party": "buyer", "amount": 100_000_000}
    e = error(api.post(f"/deals/{deal}/payments", body), 400)
    assert e["code"] == "idempotency_key_required"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post(f"/deals/{deal}/payments", body, headers=key)
    assert first.status_code == 200 and first.json()["status"] == "mined"
    again = api.post(f"/deals/{deal}/payments", body, headers=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert int(w.token.call("balanceOf", w.addr("buyer"))) == 100_000_000  # issued once
    e = error(api.post(f"/deals/{deal}/payments", {"party": "buyer", "amount": 5}, headers=key), 422)
    assert e["code"] == "idempotency_key_reused"
    # the same key on another broker is another key
    assert api.post(f"/deals/{deal}/payments", body, headers=key, who="broker2").status_code == 404
    # an error is replayed too: the same revert, not a second attempt
    key2 = {"Idempotency-Key": str(uuid.uuid4())}
    conflict = api.post(f"/deals/{deal}/registration", {}, headers=key2)  # not funded yet
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "revert.DealNotInState"
    replay = api.post(f"/deals/{deal}/registration", {}, headers=key2)
    assert replay.status_code == 409 and replay.json() == conflict.json()


def test_opening_a_deal_is_idempotent(api: Api):
    key = {"Idempotency-Key": "open-1"}
    terms = api.terms()
    first = api.ok(api.post("/deals", terms, headers=key), 201)
    again = api.post("/deals", terms, headers=key)
    assert again.status_code == 201 and again.json() == first
    assert api.ok(api.get("/deals"))["total"] == 1


def test_rate_limit_is_429_with_retry_after(make_api):
    api = make_api(rate_limit_per_second=0.5, rate_limit_burst=3)
    statuses = [api.get("/deals").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    r = api.get("/deals")
    assert error(r, 429)["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    # per key: the other broker is not limited
    assert api.get("/deals", who="broker2").status_code == 200


def test_oversized_body_is_413(api: Api):
    big = {"party": "buyer", "expiry": 1, "signature": "0x" + "11" * 65, "padding": "x" * 70_000}
    e = error(api.post("/deals/1/signatures", big), 413)
    assert e["code"] == "body_too_large"

    def chunks():
        yield b'{"party": "buyer", "padding": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    r = api.client().post("/credentials", content=chunks(), headers={"Content-Type": "application/json"})
    assert error(r, 413)["code"] == "body_too_large"


def test_validation_errors_are_422_with_locations(api: Api):
    terms = {**api.terms(buyer="0x1234", deposit_deadline="tomorrow"), "price": -1}
    e = error(api.post("/deals", terms), 422)
    assert e["code"] == "validation_error"
    locations = {tuple(x["loc"]) for x in e["details"]["errors"]}
    assert {("body", "price"), ("body", "buyer"), ("body", "deposit_deadline")} <= locations
    e = error(api.post("/deals", api.terms(deposit_deadline="2030-01-01T00:00:00")), 422)  # no zone
    assert ("body", "deposit_deadline") in {tuple(x["loc"]) for x in e["details"]["errors"]}
    e = error(api.post("/deals", {**api.terms(), "price": 2**96}), 422)
    assert e["code"] == "validation_error"
    assert error(api.get("/deals/0"), 422)["code"] == "validation_error"
    assert error(api.get("/deals", params={"limit": 101}), 422)["code"] == "validation_error"
    deal = api.open()
    assert error(api.get(f"/deals/{deal}/typed-data/broker"), 422)["code"] == "validation_error"
    r = api.client().post("/deals", content=b"{not json", headers={"Content-Type": "application/json"})
    assert error(r, 422)["code"] == "validation_error"
    assert error(api.post("/deals", {**api.terms(), "extra": 1}), 422)["code"] == "validation_error"
