"""Who may see what: keys, revocation, and deals only for the broker that opened them."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.conftest import Api

SIG = "0x" + "11" * 64 + "1b"  # well-formed (r, s, v=27), signed by nobody


def every_deal_route(deal: int) -> list[tuple[str, str, dict | None, dict]]:
    """(method, path, body, headers) for every route that takes a deal id."""
    idem = {"Idempotency-Key": str(uuid.uuid4())}
    return [
        ("GET", f"/deals/{deal}", None, {}),
        ("GET", f"/deals/{deal}/timeline", None, {}),
        ("GET", f"/deals/{deal}/typed-data/buyer", None, {}),
        ("GET", f"/deals/{deal}/typed-data/seller?expiry=2000000000", None, {}),
        (
            "POST",
            f"/deals/{deal}/signatures",
            {"party": "buyer", "expiry": 2_000_000_000, "signature": SIG},
            {},
        ),
        ("GET", f"/deals/{deal}/permit-typed-data?value=1000&deadline=2000000000", None, {}),
        ("POST", f"/deals/{deal}/permit", {"value": 1000, "deadline": 2_000_000_000, "signature": SIG}, {}),
        ("POST", f"/deals/{deal}/payments", {"party": "buyer", "amount": 1000}, idem),
        ("POST", f"/deals/{deal}/loan", {"credentials": ["0x" + "ab" * 32]}, {}),
        ("POST", f"/deals/{deal}/registration", None, {}),
        ("GET", f"/deals/{deal}/cancel-typed-data/buyer", None, {}),
        ("POST", f"/deals/{deal}/cancel", {"party": "seller", "expiry": 2_000_000_000, "signature": SIG}, {}),
        ("GET", f"/deals/{deal}/events", None, {}),
    ]


def test_another_brokers_deal_does_not_exist(api: Api):
    deal = api.open()
    w = api.world
    balance = int(w.token.call("balanceOf", w.addr("buyer")))
    for method, path, body, headers in every_deal_route(deal):
        theirs = api.client("broker2").request(method, path, json=body, headers=headers)
        assert theirs.status_code == 404, (method, path, theirs.text)
        error = theirs.json()["error"]
        assert error["code"] == "deal_not_found", (method, path)
        # indistinguishable from a deal that does not exist at all
        missing = api.client("broker2").request(
            method,
            path.replace(f"/{deal}", "/999999", 1),
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())} if headers else {},
        )
        assert missing.status_code == 404 and missing.json()["error"]["message"] == error["message"].replace(
            str(deal), "999999"
        )
    # nothing happened to the deal or the buyer
    assert api.deal(deal)["state"] == "open" and api.deal(deal)["signatures"] == {
        "buyer": False,
        "seller": False,
    }
    assert int(w.token.call("balanceOf", w.addr("buyer"))) == balance
    assert api.ok(api.get("/deals", who="broker2"))["items"] == []
    assert [d["deal_id"] for d in api.ok(api.get("/deals"))["items"]] == [deal]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "dc_0123456789abcdef_wrong"},
        {"Authorization": "Basic eDp5"},
    ],
)
def test_no_or_unknown_key_is_401(api: Api, headers: dict):
    r = httpx.get(f"{api.url}/deals", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = httpx.post(f"{api.url}/deals", json=api.terms(), headers=headers)
    assert r.status_code == 401


def test_x_api_key_header_works_and_revoked_key_is_401(api: Api):
    key = api.keys["broker"]
    assert httpx.get(f"{api.url}/deals", headers={"X-API-Key": key}).status_code == 200
    assert api.store.revoke_key(api.store.key_id_of(key))
    r = httpx.get(f"{api.url}/deals", headers={"X-API-Key": key})
    assert r.status_code == 401 and r.json()["error"] == {
        "code": "unauthenticated",
        "message": "unknown or revoked API key",
        "details": {},
    }
    assert httpx.get(f"{api.url}/deals", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    # keys are stored hashed only
    with api.store.engine.connect() as conn:
        from sqlalchemy import text

        stored = [row.key_hash for row in conn.execute(text("SELECT key_hash FROM api_keys"))]
    assert all(len(h) == 64 and h not in key for h in stored)


def test_a_key_of_someone_who_is_not_a_broker_is_403_on_writes(api: Api):
    outsider = api.store.create_broker("outsider", api.world.addr("buyer2"))
    key = api.store.issue_key(outsider.id)
    r = httpx.post(f"{api.url}/deals", json=api.terms(), headers={"X-API-Key": key})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_broker"


def test_health_and_metrics_need_no_key(api: Api):
    health = httpx.get(f"{api.url}/healthz").json()
    assert health["node"]["reachable"] and health["node"]["block_number"] > 0
    assert "deedchain_oracle_parked_total" in httpx.get(f"{api.url}/metrics").text


def test_swagger_ui_and_an_honest_schema(api: Api):
    assert "swagger-ui" in httpx.get(f"{api.url}/docs").text
    spec = httpx.get(f"{api.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["DealTermsIn"]["examples"][0]["parcel"] == "1168010600-10316-0000"
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    payments = spec["paths"]["/deals/{deal_id}/payments"]["post"]
    assert {"400", "404", "409", "422", "429"} <= set(payments["responses"])
    error_ref = payments["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")
    assert any(p["name"] == "Idempotency-Key" for p in payments["parameters"])


@pytest.mark.parametrize(
    ("bearer", "x_api_key", "names"),
    [
        ("Basic eDp5", "{key}", "Authorization"),  # another scheme
        ("Bearer", "{key}", "Authorization"),  # the scheme alone
        ("Bearer {key} {key}", "{key}", "Authorization"),
        ("{key}", "{key}", "Authorization"),  # the key without its scheme
        ("Bearer nope", "{key}", "Authorization"),  # not in the form of a key
        ("Bearer {key}", "", "X-API-Key"),
        ("Bearer {key}", "nope", "X-API-Key"),
        ("Bearer {key}", "dc_0123456789abcdef", "X-API-Key"),  # no secret
        ("Bearer {key}", "dc__secret", "X-API-Key"),  # no key id
        ("Bearer {key}", "{other}", "different keys"),  # which broker would act?
    ],
)
def test_a_malformed_credential_is_401_even_beside_a_good_key(
    api: Api, bearer: str, x_api_key: str, names: str
):
    keys = {"key": api.keys["broker"], "other": api.keys["broker2"]}
    headers = {"Authorization": bearer.format(**keys), "X-API-Key": x_api_key.format(**keys)}
    next_deal = api.world.escrow.call("nextDealId")
    for r in (
        httpx.get(f"{api.url}/deals", headers=headers),
        httpx.post(f"{api.url}/deals", json=api.terms(), headers=headers),
    ):
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", r.text
        error = r.json()["error"]
        assert error["code"] == "unauthenticated" and names in error["message"], error
    assert api.world.escrow.call("nextDealId") == next_deal  # nothing opened
    # alone, the malformed header is refused as well
    alone = {k: v for k, v in headers.items() if k in names}
    if alone:
        assert httpx.get(f"{api.url}/deals", headers=alone).status_code == 401
    # the same key in both headers is no conflict, and the scheme's case does not matter
    same = {"Authorization": f"bearer {keys['key']}", "X-API-Key": keys["key"]}
    assert httpx.get(f"{api.url}/deals", headers=same).status_code == 200
