"""`deedchain demo`: a complete Korean apartment sale, with a mortgage loan for the buyer and the
seller's mortgage discharged, driven through the real HTTP API on the embedded chain.

The demo plays the broker (HTTP calls with its API key), the parties' wallets (they sign typed
data with their own keys) and the e-certificate issuer. After the parties signed, paid in at
the bank and authorized the escrow, the pipeline and the institutions do everything else; the
demo only watches the deal's event stream and prints the timeline as it happens.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from chain.eip712 import sign_typed_data
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from pipeline.domain import State
from scripts.serve import Running, dev_broker_keys, start

DAY = 86_400
SELLABLE = ("eunma", "gongdeok", "jamsil", "yongin_forest", "banpo", "yongin_field")  # mortgaged ones first
PARTIES = ("seller", "owner2", "buyer", "buyer2")
STEP_NAMES = {
    "DealOpened": "broker opened the deal",
    "TermsAccepted": "a party signed the terms (EIP-712)",
    "TransactionReported": "registry: transaction report filed (실거래 신고)",
    "PaymentReceived": "payment into escrow",
    "LoanRequested": "loan application with e-certificates",
    "LoanApproved": "bank: loan approved",
    "LoanDecisionRecorded": "escrow: loan decision recorded",
    "LoanDisbursed": "bank: loan disbursed into escrow",
    "RegistrationRequested": "registration requested",
    "PayoffStated": "seller's bank: payoff stated",
    "PayoffPaid": "seller's mortgage paid off",
    "DealSettled": "registry: settled - title, mortgages, money (one tx)",
    "LoanSecured": "buyer's mortgage registered (을구)",
}


class Broker:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        response = self.http.request(method, self.base + path, json=body, timeout=30, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:400]}")
        return response.json()


def _pick(running: Running) -> tuple[str, str, str]:
    """A sample parcel a dev party owns with no live contract, its owner and a buyer."""
    s = running.session
    land, escrow = s.contract("LandRegister"), s.contract("DealEscrow")
    names = {s.signers[n].address: n for n in PARTIES}
    for label in SELLABLE:
        pid = running.services.institutions.parcels[label]
        owner = names.get(land.call("ownerOf", pid))
        live = int(escrow.call("contractedDeal", pid))
        if (
            owner
            and (live == 0 or State(escrow.call("dealState", live)).terminal)
            and not land.call("isBlocked", pid)
        ):
            buyer = "buyer" if owner != "buyer" else "buyer2"
            return label, owner, buyer
    raise RuntimeError("no sample parcel is free to sell; delete .deedchain/ to start over")


def run_demo(network: str | None, config: Path | None, *, as_json: bool = False) -> int:
    started = time.perf_counter()

    def say(text: str = "") -> None:
        if not as_json:
            print(text, flush=True)

    running = start(network, config, poll_interval=0.02, sse_poll_interval=0.1)
    try:
        s = running.session
        if not s.network.embedded:
            raise RuntimeError("the demo signs with dev wallets: run it on an embedded network")
        broker = Broker(running.url, dev_broker_keys(running)["broker"])
        label, seller, buyer = _pick(running)
        addr = {n: s.signers[n].address for n in (seller, buyer, "lender", "issuer")}
        say(f"deedchain demo - chain {s.chain_id} at {s.rpc.url}, API at {running.url}/docs")

        before = broker.call("GET", f"/parcels/{label}")
        say(f"\nparcel   {before['number']}  {before['address']}  ({before['area_m2']} m²)")
        say(f"owner    {before['owner']} ({seller})")
        for e in before["encumbrances"]:
            say(f"  을구 {e['index']}: {e['kind']} {e['amount']:,} won to {e['holder']}")

        now = int(s.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        price, deposit, interim, loan = 2_200_000_000, 220_000_000, 660_000_000, 600_000_000
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        opened = broker.call("POST", "/deals", {
            "parcel": label, "seller": addr[seller], "buyer": addr[buyer], "price": price, "deposit": deposit,
            "interim": interim, "balance": price - deposit - interim, "deposit_deadline": iso(now + 7 * DAY),
            "interim_deadline": iso(now + 30 * DAY), "balance_deadline": iso(now + 60 * DAY),
            "loan_amount": loan, "lender": addr["lender"],
        })  # fmt: skip
        deal = opened["deal"]["deal_id"]
        balance = price - deposit - interim
        say(f"\ndeal {deal}: {price:,} won (계약금 {deposit:,} / 중도금 {interim:,} / 잔금 {balance:,})")
        say(f"         with a loan of {loan:,} won from the lender")

        for party, who in (("buyer", buyer), ("seller", seller)):
            data = broker.call("GET", f"/deals/{deal}/typed-data/{party}")
            sig = sign_typed_data(s.signers[who].account, data)
            broker.call("POST", f"/deals/{deal}/signatures",
                        {"party": party, "expiry": data["message"]["expiry"], "signature": sig})  # fmt: skip

        # the buyer's wallet: e-certificates from the issuer, money in at the bank, one permit
        creds = s.contract("CredentialRegistry")
        certificates: list[tuple[CredentialKind, dict[str, str | int]]] = [
            (CredentialKind.RESIDENT_REGISTRATION, {"name": "김민준", "serial": f"RR-{deal}"}),
            (CredentialKind.INCOME, {"annual_income": 150_000_000, "year": 2026, "serial": f"IN-{deal}"}),
        ]
        for kind, claims in certificates:
            doc, h, sig = issue_credential(
                s.signers["issuer"].account, kind, addr[buyer], claims, now, now + 90 * DAY
            )
            creds.transact(s.sender("issuer"), "anchor", h, int(kind), addr[buyer], now + 90 * DAY)
            broker.call("POST", "/credentials", {"document": doc.model_dump(mode="json"), "signature": sig})
        own = price - loan
        broker.call("POST", f"/deals/{deal}/payments", {"party": "buyer", "amount": own},
                    headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        deadline = now + 90 * DAY
        permit = broker.call(
            "GET", f"/deals/{deal}/permit-typed-data", params={"value": own, "deadline": deadline}
        )
        broker.call("POST", f"/deals/{deal}/permit", {"value": own, "deadline": deadline,
                    "signature": sign_typed_data(s.signers[buyer].account, permit)})  # fmt: skip
        signed_at = time.perf_counter()
        say("\nparties signed, paid in at the bank and authorized the escrow; the pipeline takes over:\n")

        state = _watch(broker, deal, say)
        to_settle = time.perf_counter() - signed_at
        after = broker.call("GET", f"/parcels/{label}")
        timeline = broker.call("GET", f"/deals/{deal}/timeline")["steps"]
        steps = [{"step": t["step"], "tx": t["tx"], "block": t["block"], "gas": t["gas"]} for t in timeline]
        txs = {t["tx"]: t["gas"] for t in timeline}
        say(f"\ntitle after: owner {after['owner']} ({buyer})")
        for e in after["encumbrances"]:
            say(
                f"  을구 {e['index']}: {e['kind']} {e['amount']:,} won to {e['holder']}, debtor {e['debtor']}"
            )
        say(f"{len(txs)} transactions, {sum(txs.values()):,} gas; signatures to settlement {to_settle:.2f}s")
        summary = {
            "deal_id": deal,
            "state": state,
            "chain_id": s.chain_id,
            "contracts": {
                n: s.contract(n).address
                for n in ("DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook")
            },
            "parcel": before["parcel_id"],
            "buyer": addr[buyer],
            "seller": addr[seller],
            "owner_before": before["owner"],
            "owner_after": after["owner"],
            "tx_count": len(txs),
            "gas_used": sum(txs.values()),
            "seconds": round(time.perf_counter() - started, 3),
            "signed_to_settled_s": round(to_settle, 3),
            "steps": steps,
        }
    finally:
        running.stop()
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    return 0 if state == "settled" else 1


def _watch(broker: Broker, deal: int, say: Any, timeout: float = 120.0) -> str:
    """Follow the deal's server-sent events until it ends; print each step as it lands."""
    state = "unknown"
    deadline = time.monotonic() + timeout
    with broker.http.get(f"{broker.base}/deals/{deal}/events", stream=True, timeout=timeout) as stream:
        event = None
        for raw in stream.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                break
            if raw.startswith("event: "):
                event = raw[7:]
            elif raw.startswith("data: "):
                data = json.loads(raw[6:])
                if event == "step":
                    what = STEP_NAMES.get(data["step"], data["step"])
                    say(f"  block {data['block']:>5}  {what:52} gas {data['gas']:>7,}  {data['tx'][:18]}…")
                elif event == "state":
                    state = data["state"]
                    waiting = data.get("waiting") or {}
                    say(f"           -> {state}" + (f"  ({waiting['reason']})" if waiting else ""))
                    if State[state.upper()].terminal:
                        break
    return state
