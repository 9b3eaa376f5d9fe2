"""A whole closing through the API: after the parties' signatures, money, certificates and
one permit, the pipeline takes it to settlement with no more broker calls."""

from __future__ import annotations

import json
from typing import Any

import httpx

from api.schemas import StateEvent, StepEvent
from tests.api.conftest import Api


def read_events(api: Api, deal: int, timeout: float = 60.0) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    headers = {"Authorization": f"Bearer {api.keys['broker']}"}
    with httpx.stream("GET", f"{api.url}/deals/{deal}/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_happy_path_settles_itself(api: Api):
    w = api.world
    title = api.ok(api.get("/parcels/eunma"))
    assert title["owner"] == w.addr("seller")
    terms = api.terms()
    opened = api.ok(api.post("/deals", terms), 201)
    deal = opened["deal"]["deal_id"]
    assert opened["deal"]["state"] == "open" and opened["deal"]["broker"] == w.addr("broker")
    assert opened["deal"]["waiting"]["step"] == "signatures"

    for party in ("buyer", "seller"):
        result = api.ok(api.post(f"/deals/{deal}/signatures", api.sign(deal, party)))
        assert result["tx"].startswith("0x")
    view = api.deal(deal)
    assert view["state"] == "signed" and view["signatures"] == {"buyer": True, "seller": True}
    assert view["waiting"]["reason"].startswith("waiting for the buyer's funds")

    api.certificates()
    own = terms["deposit"] + terms["interim"] + terms["balance"] - terms["loan_amount"]
    for amount in (terms["deposit"], terms["interim"], own - terms["deposit"] - terms["interim"]):
        paid = api.pay_in(deal, amount)
        assert paid["status"] == "mined" and paid["customer"] == w.addr("buyer")
    api.permit(deal, own)

    # no more broker calls: the pipeline and the oracles do the rest
    settled = api.wait(deal, lambda d: d["state"] == "settled")
    assert settled["waiting"] is None and settled["loan"]["status"] in ("disbursed", "secured")
    steps = api.steps(deal)
    for step in (
        "TermsAccepted", "TransactionReported", "LoanRequested", "LoanApproved", "LoanDisbursed",
        "RegistrationRequested", "PayoffStated", "DealSettled",
    ):  # fmt: skip
        assert step in steps, (step, steps)
    assert steps.count("PaymentReceived") == 4
    timeline = api.ok(api.get(f"/deals/{deal}/timeline"))["steps"]
    assert all(s["tx"].startswith("0x") and s["gas"] > 0 and s["time"].endswith("Z") for s in timeline)
    assert api.ok(api.get("/parcels/eunma"))["owner"] == w.addr("buyer")

    events = read_events(api, deal)
    assert events[-1] == ("state", {"deal_id": deal, "state": "settled", "waiting": None})
    assert [e["step"] for kind, e in events if kind == "step"] == steps
    # each event's data is exactly its documented model (the OpenAPI's itemSchema names them)
    documented = {"step": StepEvent, "state": StateEvent}
    assert all(documented[kind].model_validate(e).model_dump(mode="json") == e for kind, e in events)

    listed = api.ok(api.get("/deals", params={"state": "settled"}))
    assert [d["deal_id"] for d in listed["items"]] == [deal]
    assert api.ok(api.get("/deals", params={"state": "open"}))["total"] == 0
    assert api.ok(api.get("/deals", who="broker2"))["total"] == 0

    metrics = httpx.get(f"{api.url}/metrics").text
    assert 'deedchain_deals{state="settled"} 1' in metrics
    assert 'deedchain_oracle_latency_ms{oracle="bank:lender",quantile="0.95"}' in metrics
    assert 'deedchain_http_requests_total{status="200"}' in metrics
    health = httpx.get(f"{api.url}/healthz").json()
    assert health["ok"] and health["driver"] and all(health["oracles"].values())
