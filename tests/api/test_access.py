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
