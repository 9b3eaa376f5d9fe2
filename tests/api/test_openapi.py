"""What the OpenAPI document promises beyond the schemas schemathesis checks: required headers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.conftest import Api


def spec(api: Api) -> dict[str, Any]:
    return dict(httpx.get(f"{api.url}/openapi.json").json())


def header(operation: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in operation["parameters"] if p["in"] == "header" and p["name"] == name]
    return dict(found)


def test_payments_require_an_idempotency_key_in_the_spec_too(api: Api):
    paths = spec(api)["paths"]
    assert header(paths["/deals/{deal_id}/payments"]["post"], "Idempotency-Key")["required"] is True
    assert header(paths["/deals"]["post"], "Idempotency-Key")["required"] is False  # optional there
    # and the answer without one is still the 400 the spec lists, even with a bad body besides
    deal = api.open()
    for body in ({"party": "buyer", "amount": 1_000}, {"party": "nobody", "amount": True}):
        r = api.post(f"/deals/{deal}/payments", body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_required", r.text
        assert "Idempotency-Key" in r.json()["error"]["message"]
    # an invalid key is a validation error of the header, as before
    r = api.post(
        f"/deals/{deal}/payments", {"party": "buyer", "amount": 1}, headers={"Idempotency-Key": "a b"}
    )
    assert r.status_code == 422 and ["header", "Idempotency-Key"] in [
        e["loc"] for e in r.json()["error"]["details"]["errors"]
    ]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert (
        api.post(f"/deals/{deal}/payments", {"party": "buyer", "amount": 1}, headers=key).status_code == 200
    )
