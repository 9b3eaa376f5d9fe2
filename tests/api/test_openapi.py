"""What the OpenAPI document promises beyond the schemas schemathesis checks: required headers and
the event stream's format."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from api.schemas import StateEvent, StepEvent
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


def resolve(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return dict(node)


def test_the_event_stream_is_documented_as_text_event_stream_with_its_events(api: Api):
    document = spec(api)
    (ok,) = [
        r
        for status, r in document["paths"]["/deals/{deal_id}/events"]["get"]["responses"].items()
        if status == "200"
    ]
    assert set(ok["content"]) == {"text/event-stream"}
    stream = ok["content"]["text/event-stream"]
    # the wire format: what the `event:`, `id:` and `data:` lines hold
    assert stream["schema"]["type"] == "string"
    wire = stream["schema"]["description"]
    assert all(line in wire for line in ("event: step", "id: ", "data: {", "event: state", ": keepalive"))
    # one item schema per event (OpenAPI 3.2 SSE items), its data as JSON of a documented model
    frames = {f["properties"]["event"]["const"]: f for f in stream["itemSchema"]["oneOf"]}
    assert set(frames) == {"step", "state"}
    assert frames["step"]["required"] == ["data", "event", "id"] and "id" not in frames["state"]["properties"]
    assert frames["step"]["properties"]["id"]["pattern"] == "^[0-9]+:[0-9]+$"
    for event, model in (("step", StepEvent), ("state", StateEvent)):
        data = frames[event]["properties"]["data"]
        assert data["type"] == "string" and data["contentMediaType"] == "application/json"
        schema = resolve(document, data["contentSchema"]["$ref"])
        assert set(schema["properties"]) == set(model.model_fields) == set(schema["required"])
    assert {"deal_id", "step", "tx", "block", "log_index"} <= set(StepEvent.model_fields)
    assert set(StateEvent.model_fields) == {"deal_id", "state", "waiting"}
    # the references inside resolve as well (a state's `waiting`)
    waiting = resolve(document, frames["state"]["properties"]["data"]["contentSchema"]["$ref"])["properties"][
        "waiting"
    ]
    assert resolve(document, waiting["anyOf"][0]["$ref"])["title"] == "Waiting"
