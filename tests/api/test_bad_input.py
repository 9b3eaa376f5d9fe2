"""Bad input changes nothing (issue 7): mass assignment, oversized bodies, bodies that are not what
they claim to be, malformed signatures and signatures made for another chain, contract or deal.

Every probe starts from a request that would go through (a real signature, a real permit, valid
terms...), adds one flaw, and must be refused with a 4xx whose error code names the rule (a
validation error and where it is, `body_too_large`, `revert.<Error>`), never a 5xx. Afterwards the
chain and the API's stores are exactly as before: no block mined, the same deals, states,
signatures, EIP-712 nonces, allowance, balances, supply, credentials. Then the same requests
without the flaw go through, so the flaw was the only reason for the refusal.
"""

from __future__ import annotations

import functools
import json
import operator
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from api.schemas import (
    SECP256K1_N,
    CancelIn,
    CredentialIn,
    DealTermsIn,
    EmptyIn,
    LoanIn,
    PaymentIn,
    PermitIn,
    SignatureIn,
)
from api.settings import Settings
from chain.eip712 import sign_typed_data
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from tests.api.conftest import Api
from tests.contracts.conftest import DAY

LIMIT: int = Settings.model_fields["max_body_bytes"].default


@dataclass
class Write:
    """A write route with a body that would go through as it is."""

    path: str
    body: dict[str, Any]
    model: type[BaseModel]
    control: int  # the status the body gets without a flaw
    idempotency: bool = False  # the route requires an Idempotency-Key

    def send(
        self,
        api: Api,
        body: Any = None,
        *,
        content: bytes | Iterator[bytes] | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if self.idempotency:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        if content is None:
            content = json.dumps(self.body if body is None else body).encode()
        return api.client().post(self.path, content=content, headers=headers)


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.url, r.status_code, r.text[:1000])
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


def invalid_at(r: httpx.Response, *loc: str) -> dict[str, Any]:
    """The validation error at `loc` of a 422 `validation_error`."""
    e = error(r, 422)
    assert e["code"] == "validation_error", e
    found = [x for x in e["details"]["errors"] if tuple(x["loc"]) == loc]
    assert len(found) == 1, (loc, e["details"]["errors"])
    return dict(found[0])


def deposit_paid(api: Api) -> int:
    """A signed deal whose deposit the pipeline paid: one a valid cancellation would end."""
    deal = api.open_signed(loan=0)
    deposit = api.deal(deal)["terms"]["deposit"]
    api.pay_in(deal, deposit)
    api.permit(deal, deposit)
    api.wait(deal, lambda d: d["state"] == "deposit_paid")
    return deal


def signature_body(api: Api, deal: int, kind: str, party: str = "buyer", **domain: Any) -> dict[str, Any]:
    """A `kind` (signatures, cancel, permit) body signed by the party, over the typed data the API
    serves, with its EIP-712 domain changed by `domain` (another chain id, contract...)."""
    w = api.world
    if kind == "permit":
        deadline = w.now() + 30 * DAY
        data = api.ok(
            api.get(f"/deals/{deal}/permit-typed-data", params={"value": 5_000, "deadline": deadline})
        )
        body: dict[str, Any] = {"value": 5_000, "deadline": deadline}
    else:
        path = "typed-data" if kind == "signatures" else "cancel-typed-data"
        data = api.ok(api.get(f"/deals/{deal}/{path}/{party}"))
        body = {"party": party, "expiry": data["message"]["expiry"]}
    data["domain"] = {**data["domain"], **domain}
    return {**body, "signature": sign_typed_data(w.key("buyer" if kind == "permit" else party), data)}


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes: whitespace after the opening brace (still valid)."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return b"{" + b" " * (size - len(raw)) + raw[1:]


@dataclass
class Scene:
    """Deal `b` is past its deposit (a valid cancellation by the buyer would end it), deal `a` an offer
    on the same parcel (the seller's acceptance: the buyer's escrow nonce is the cancellation's); one
    good request per write route."""

    api: Api
    a: int
    b: int
    writes: dict[str, Write]

    def observe(self) -> dict[str, Any]:
        """What a write could change, on chain and in the API's stores."""
        api, w = self.api, self.api.world
        people = [w.addr(p) for p in ("buyer", "seller")]
        return {
            "block": w.chain.rpc.call("eth_blockNumber"),
            "next_deal": w.escrow.call("nextDealId"),
            "deals": [api.deal(d) for d in (self.a, self.b)],
            "listed": api.ok(api.get("/deals"))["total"],
            "escrow_nonces": [w.escrow.call("nonces", p) for p in people],
            "token_nonces": [w.token.call("nonces", p) for p in people],
            "allowance": w.token.call("allowance", people[0], w.escrow.address),
            "balances": [w.balance(x) for x in ("buyer", "seller", w.escrow)],
            "supply": w.token.call("totalSupply"),
            "credentials": api.services.brokerage.wallet.by_subject(people[0]),
        }

    def controls(self, pad: int | None = None, **bodies: dict[str, Any]) -> None:
        """Each write's good request (or the body given here; with `pad`, padded to that many bytes)
        gets the status it should."""
        for name, write in self.writes.items():
            body = bodies.get(name, write.body)
            r = write.send(self.api, body, content=None if pad is None else padded(body, pad))
            assert r.status_code == write.control, (name, r.status_code, r.text[:500])


@pytest.fixture
def scene(make_api: Callable[..., Api]) -> Scene:
    api = make_api(rate_limit_per_second=100_000.0, rate_limit_burst=100_000)  # hundreds of probes
    w = api.world
    b = deposit_paid(api)
    a = api.open()
    now = w.now()
    doc, credential, sig = issue_credential(
        w.key("issuer"), CredentialKind.INCOME, w.addr("buyer"), {"annual_income": 96_000_000}, now, now + DAY
    )
    writes = {
        "open_deal": Write("/deals", api.terms(), DealTermsIn, 201),
        "submit_signature": Write(
            f"/deals/{a}/signatures", signature_body(api, a, "signatures", "seller"), SignatureIn, 200
        ),
        "submit_permit": Write(f"/deals/{a}/permit", signature_body(api, a, "permit"), PermitIn, 200),
        "cancel": Write(f"/deals/{b}/cancel", signature_body(api, b, "cancel"), CancelIn, 200),
        "record_payment": Write(
            f"/deals/{a}/payments", {"party": "buyer", "amount": 1_000}, PaymentIn, 200, idempotency=True
        ),
        "submit_credential": Write(
            "/credentials", {"document": doc.model_dump(mode="json"), "signature": sig}, CredentialIn, 201
        ),
        # an open deal can apply for neither its loan (with the certificate submitted above) nor
        # registration: their controls are 409, not 422
        "apply_for_loan": Write(f"/deals/{a}/loan", {"credentials": [credential]}, LoanIn, 409),
        "request_registration": Write(f"/deals/{a}/registration", {}, EmptyIn, 409),
    }
    return Scene(api, a, b, writes)


# --- mass assignment -----------------------------------------------------------------------------


def test_mass_assignment_is_refused_and_changes_nothing(scene: Scene):
    w = scene.api.world
    probes: dict[str, Any] = {
        "state": "settled",
        "status": "settled",
        "owner": w.addr("broker2"),
        "seller": w.addr("broker2"),
        "buyer": w.addr("broker2"),
        "broker": w.addr("broker2"),
        "lender": w.addr("broker2"),
        "amount": 10**15,
        "price": 1,
        "paid": True,
        "held": 10**15,
        "approved": 10**15,
        "dealId": scene.b,
        "deal_id": scene.b,
        "role": "DEFAULT_ADMIN_ROLE",
        "signatures": {"buyer": True, "seller": True},
    }
    before = scene.observe()
    refused = 0
    for name, write in scene.writes.items():
        for key, value in probes.items():
            if key in write.model.model_fields:
                continue  # a field of the route's own (seller, price... of new terms)
            found = invalid_at(write.send(scene.api, {**write.body, key: value}), "body", key)
            assert found["type"] == "extra_forbidden", (name, key, found)
            refused += 1
    # one level down: the certificate's document
    credential = scene.writes["submit_credential"]
    for key in ("owner", "state", "role"):
        body = {**credential.body, "document": {**credential.body["document"], key: probes[key]}}
        assert (
            invalid_at(credential.send(scene.api, body), "body", "document", key)["type"] == "extra_forbidden"
        )
        refused += 1
    assert refused >= 100
    assert scene.observe() == before
    scene.controls()
    after = scene.observe()
    assert after["deals"][0]["signatures"]["seller"] and after["deals"][1]["state"] == "cancelled"
    assert after["next_deal"] == before["next_deal"] + 1 and len(after["credentials"]) == 1


# --- oversized bodies ----------------------------------------------------------------------------


def test_oversized_bodies_are_413_and_change_nothing(scene: Scene):
    before = scene.observe()
    for write in scene.writes.values():
        # a body that would go through, but one byte over the limit: declared, then chunked
        over = padded(write.body, LIMIT + 1)
        assert error(write.send(scene.api, content=over), 413)["code"] == "body_too_large"
        chunks = iter([over[:1000], over[1000:40_000], over[40_000:]])
        e = error(write.send(scene.api, content=chunks), 413)
        assert e["code"] == "body_too_large" and e["details"] == {"limit": LIMIT}
        # ... and far over it
        assert (
            error(write.send(scene.api, content=b"[" + b"0," * LIMIT + b"0]"), 413)["code"]
            == "body_too_large"
        )
    assert scene.observe() == before
    # exactly at the limit is not too large: the good requests, padded to it, go through
    scene.controls(pad=LIMIT)
    assert scene.observe()["deals"][1]["state"] == "cancelled"


# --- signatures ----------------------------------------------------------------------------------


def malformed(good: str) -> dict[str, tuple[Any, str]]:
    """Flawed variants of a good 65-byte signature: (value, what the validation error says)."""
    raw = bytes.fromhex(good[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    high_s = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # the same signature's twin
    pattern = "should match pattern"
    return {
        "64 bytes (r, s without v)": ("0x" + raw[:64].hex(), pattern),
        "66 bytes": ("0x" + raw.hex() + "00", pattern),
        "no 0x": (raw.hex(), pattern),
        "not hex": ("0x" + "zz" * 65, pattern),
        "empty": ("0x", pattern),
        "a number": (int.from_bytes(raw, "big"), "valid string"),
        "v = 29": ("0x" + (raw[:64] + bytes([29])).hex(), "v (the last byte) must be 27 or 28"),
        "v = 255": ("0x" + (raw[:64] + bytes([255])).hex(), "v (the last byte) must be 27 or 28"),
        "high s (EIP-2)": ("0x" + high_s.hex(), "lower half of the curve order"),
        "s = 0": ("0x" + (raw[:32] + bytes(32) + raw[64:]).hex(), "lower half of the curve order"),
        "r = 0": ("0x" + (bytes(32) + raw[32:]).hex(), "r (bytes 0-31)"),
        "r = n": ("0x" + (SECP256K1_N.to_bytes(32, "big") + raw[32:]).hex(), "r (bytes 0-31)"),
        "all zero": ("0x" + "00" * 65, "r (bytes 0-31)"),
    }


SIGNED = ("submit_signature", "submit_permit", "cancel")


def test_malformed_signatures_are_422_naming_the_rule_and_change_nothing(scene: Scene):
    before = scene.observe()
    for name in SIGNED:
        write = scene.writes[name]
        for flaw, (value, says) in malformed(write.body["signature"]).items():
            found = invalid_at(write.send(scene.api, {**write.body, "signature": value}), "body", "signature")
            assert says in found["msg"], (name, flaw, found)
    assert scene.observe() == before
    # v as 0/1 (what some wallets return) is the same signature as 27/28
    bodies = {}
    for name in ("submit_signature", "submit_permit"):
        body = scene.writes[name].body
        raw = bytes.fromhex(body["signature"][2:])
        bodies[name] = {**body, "signature": "0x" + (raw[:64] + bytes([raw[64] - 27])).hex()}
    scene.controls(**bodies)
    after = scene.observe()
    assert after["deals"][0]["signatures"]["seller"] and after["deals"][1]["state"] == "cancelled"
    assert after["token_nonces"][0] == before["token_nonces"][0] + 1  # the permit was used


def test_signatures_for_another_chain_contract_or_deal_are_refused_by_the_contracts(scene: Scene):
    api, a, b = scene.api, scene.a, scene.b
    w = api.world
    foreign = {
        "another chain": {"chainId": 1},
        "another contract": {"verifyingContract": w.loans.address},
        "another name": {"name": "DealEscrow2"},
    }
    before = scene.observe()
    for what, domain in foreign.items():
        for name, kind, deal, party, expected in (
            ("submit_signature", "signatures", a, "seller", "revert.InvalidSigner"),
            ("cancel", "cancel", b, "buyer", "revert.InvalidSigner"),
            ("submit_permit", "permit", a, "buyer", "revert.ERC2612InvalidSigner"),
        ):
            body = signature_body(api, deal, kind, party, **domain)
            e = error(scene.writes[name].send(api, body), 422)
            assert e["code"] == expected, (what, name, e)
            if expected == "revert.InvalidSigner":
                assert e["details"]["expected"] == w.addr(party) != e["details"]["recovered"], (what, e)
    # the seller's acceptance of deal b (same parcel, same parties) is no acceptance of deal a
    e = error(scene.writes["submit_signature"].send(api, signature_body(api, b, "signatures", "seller")), 422)
    assert e["code"] == "revert.InvalidSigner" and e["details"]["recovered"] != w.addr("seller")
    assert scene.observe() == before
    scene.controls()


# --- bodies that are not what they claim to be ---------------------------------------------------


def test_bodies_that_are_not_json_objects_are_4xx_and_change_nothing(scene: Scene):
    deep = 30_000  # nesting under the size limit, deeper than any recursive parser allows
    probes: dict[str, tuple[bytes, str]] = {
        "not JSON": (b"{not json", "validation_error"),
        "an array": (b"[]", "validation_error"),
        "a string": (b'"state"', "validation_error"),
        "infinity": (b"1e999", "validation_error"),
        "NaN": (b'{"amount": NaN}', "validation_error"),
        "a lone surrogate": (b'{"\\ud800": "\\udfff"}', "validation_error"),
        "a 5000-digit number": (b'{"amount": ' + b"9" * 5000 + b"}", "malformed_body"),  # int() refuses
        "invalid UTF-8": (b'{"party": "\xff\xfe"}', "malformed_body"),
        "nested 30000 deep": (b"[" * deep + b"]" * deep, "validation_error"),
    }
    before = scene.observe()
    for name, write in scene.writes.items():
        good = json.dumps(write.body).encode()
        cases = {**probes, "truncated": (good[:-1], "validation_error")}
        for what, (content, code) in cases.items():
            r = write.send(scene.api, content=content)
            assert r.status_code in (400, 422), (name, what, r.status_code, r.text[:300])
            assert r.json()["error"]["code"] == (code or r.json()["error"]["code"]), (
                name,
                what,
                r.text[:300],
            )
        # the right JSON declared as something else is not read as JSON
        r = write.send(scene.api, content=good, content_type="text/plain")
        assert r.status_code == 422, (name, r.status_code, r.text[:300])
    # JSON objects of the right shape with values the pipeline must not choke on
    credential = scene.writes["submit_credential"]
    document = credential.body["document"]
    # (the signature is over other claims: the hash does not match)
    for claims in ({"name": "\x00"}, {"name": "\u202e"}, {"n": -(2**63)}, {"n": 2**63 - 1}):
        e = error(
            credential.send(scene.api, {**credential.body, "document": {**document, "claims": claims}}), 422
        )
        assert e["code"] == "invalid_request" and "credential rejected" in e["message"], (claims, e)
    for claims, where in (({"n": 2**63}, ()), ({"name": "\ud800"}, ("name", "constrained-str"))):
        body = {**credential.body, "document": {**document, "claims": claims}}
        assert invalid_at(credential.send(scene.api, body), "body", "document", "claims", *where)
    assert scene.observe() == before
    scene.controls()


# --- loose integers ------------------------------------------------------------------------------


def integer_fields(body: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Where `body` holds an integer (money, ids, counts, times, a claim)."""
    if isinstance(body, dict):
        for key, value in body.items():
            yield from integer_fields(value, (*path, key))
    elif isinstance(body, int) and not isinstance(body, bool):
        yield path


def with_raw(body: dict[str, Any], path: tuple[str, ...], raw: str) -> bytes:
    """`body` as JSON with the value at `path` written as the JSON text `raw`."""
    marker = "\x00loose\x00"
    copy = json.loads(json.dumps(body))
    inner = copy
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw).encode()


def loose(value: int) -> dict[str, str]:
    """JSON that is no integer but that lax parsing read as one: raw JSON -> what the message says it is."""
    fraction = "not a number with a fraction or an exponent"
    return {
        "true": "not true/false",
        "false": "not true/false",
        "1.0": fraction,
        "1e3": fraction,
        f"{value}.0": fraction,  # the very amount, as a float
        f"{value}e0": fraction,
        '"100"': "not a string",
        f'"{value}"': "not a string",
    }


def test_loose_integers_are_422_naming_the_field_and_change_nothing(scene: Scene):
    before = scene.observe()
    probed = set()
    for name, write in scene.writes.items():
        for path in integer_fields(write.body):
            probes = loose(functools.reduce(operator.getitem, path, write.body))
            loc = ("body", *path)
            if "claims" in path:
                # a claim is a string or an integer: "100" is a string claim, and the integer branch
                # of the union says why the others are refused
                probes = {raw: says for raw, says in probes.items() if not raw.startswith('"')}
                loc = (*loc, "int")
            for raw, says in probes.items():
                found = invalid_at(write.send(scene.api, content=with_raw(write.body, path, raw)), *loc)
                assert found["type"] == "int_type" and says in found["msg"], (name, path, raw, found)
            probed.add(".".join(path))
    assert probed == {
        "price", "deposit", "interim", "balance", "loan_amount", "expiry", "value", "deadline", "amount",
        "document.kind", "document.issued_at", "document.expiry", "document.claims.annual_income",
    }  # fmt: skip
    assert scene.observe() == before
    scene.controls()
    after = scene.observe()
    assert after["deals"][0]["signatures"]["seller"] and after["deals"][1]["state"] == "cancelled"
    assert after["next_deal"] == before["next_deal"] + 1 and len(after["credentials"]) == 1
