"""Oracle reaction latency on the embedded anvil (automine), measured from outside.

    python -m scripts.bench_oracles [--deals N] [--poll SECONDS]

For each step an institution answers (transaction report, loan decision, disbursement,
payoff statement, settlement) the clock runs from the moment the party's triggering
transaction is mined (its receipt returned) to the moment the institution's answer is
visible on chain. Oracles run in their own threads with their normal poll interval.
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chain.deploy import deploy_project
from chain.eip712 import read_domain, sign_typed_data
from chain.session import ChainSession
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from pipeline.deals import accept_terms_typed_data
from pipeline.domain import DealTerms, Party
from pipeline.institutions import Institutions
from pipeline.metrics import oracle_metrics, percentile
from pipeline.store import WalletStore

DAY = 86_400


class Bench:
    def __init__(self, session: ChainSession, inst: Institutions) -> None:
        self.s = session
        self.inst = inst
        self.c = {
            n: session.contract(n) for n in ("DepositToken", "DealEscrow", "LoanBook", "CredentialRegistry")
        }
        self.samples: dict[str, list[float]] = {}
        self.wallet = WalletStore(inst.engine)

    def addr(self, name: str) -> str:
        return self.s.signers[name].address

    def tx(self, who: str, contract: str, fn: str, *args: Any) -> Any:
        return self.c[contract].transact(self.s.sender(who), fn, *args)

    def timed(self, step: str, trigger: Callable[[], Any], done: Callable[[], bool]) -> None:
        trigger()
        t0 = time.perf_counter()
        while not done():
            time.sleep(0.001)
        self.samples.setdefault(step, []).append((time.perf_counter() - t0) * 1000)

    def pay(self, deal: int, fn: str, amount: int, buyer: str) -> Any:
        self.tx("bank", "DepositToken", "mint", self.addr(buyer), amount)
        self.tx(buyer, "DepositToken", "approve", self.c["DealEscrow"].address, amount)
        return self.tx(buyer, "DealEscrow", fn, deal)

    def deal(self, parcel: str, seller: str, buyer: str) -> float:
        esc, loans = self.c["DealEscrow"], self.c["LoanBook"]
        now = int(self.s.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        terms = DealTerms(
            parcelId=parcel, seller=self.addr(seller), buyer=self.addr(buyer), price=1_000_000_000,
            deposit=100_000_000, interim=300_000_000, balance=600_000_000, depositDeadline=now + 7 * DAY,
            interimDeadline=now + 30 * DAY, balanceDeadline=now + 60 * DAY, loanAmount=400_000_000,
            lender=self.addr("lender"),
        )  # fmt: skip
        receipt = self.tx("broker", "DealEscrow", "openDeal", terms.to_abi())
        deal = int(esc.events(receipt)[0].args["dealId"])
        domain = read_domain(esc)
        signatures = {}
        for party, who in ((Party.BUYER, buyer), (Party.SELLER, seller)):
            nonce = int(esc.call("nonces", self.addr(who)))
            data = accept_terms_typed_data(domain, deal, terms, nonce, now + DAY)
            signatures[party] = sign_typed_data(self.s.signers[who].account, data)
        self.tx(
            "broker", "DealEscrow", "acceptTerms", deal, int(Party.BUYER), now + DAY, signatures[Party.BUYER]
        )
        signed_at = time.perf_counter()
        self.timed(
            "transaction_report",
            lambda: self.tx(
                "broker",
                "DealEscrow",
                "acceptTerms",
                deal,
                int(Party.SELLER),
                now + DAY,
                signatures[Party.SELLER],
            ),
            lambda: bool(esc.call("reported", deal)),
        )
        self.pay(deal, "payDeposit", terms.deposit, buyer)
        hashes = []
        certificates: list[tuple[CredentialKind, dict[str, str | int]]] = [
            (CredentialKind.RESIDENT_REGISTRATION, {"name": "김민준", "serial": deal}),
            (CredentialKind.INCOME, {"annual_income": 96_000_000, "serial": deal}),
        ]
        for kind, claims in certificates:
            doc, h, sig = issue_credential(
                self.s.signers["issuer"].account, kind, self.addr(buyer), claims, now, now + 90 * DAY
            )
            self.tx("issuer", "CredentialRegistry", "anchor", h, int(kind), self.addr(buyer), now + 90 * DAY)
            self.wallet.put(h, doc.subject, doc.model_dump(mode="json"), sig)
            hashes.append(h)
        self.timed(
            "loan_decision",
            lambda: self.tx(buyer, "LoanBook", "requestLoan", deal, terms.loanAmount, terms.lender, hashes),
            lambda: bool(esc.call("loanDecision", deal)[0]),
        )
        self.timed(
            "disbursement",
            lambda: self.pay(deal, "payInterim", terms.interim, buyer),
            lambda: esc.call("payments", deal)[3] > 0,
        )
        self.pay(deal, "payBalance", terms.balance - terms.loanAmount, buyer)
        self.timed(
            "payoff_and_settlement",
            lambda: self.tx(buyer, "DealEscrow", "requestRegistration", deal),
            lambda: esc.call("dealState", deal) == 8,
        )
        assert loans.call("loan", deal)["status"] == 5
        return time.perf_counter() - signed_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.02, help="oracle poll interval when idle (s)")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChainSession.open("development", persist=False, deployments_dir=Path(tmp)) as session,
    ):
        deploy_project(session)
        inst = Institutions.reference(session, Path(tmp), poll_interval=args.poll).start()
        try:
            bench = Bench(session, inst)
            # every sellable sample parcel in turn; a sold one is later sold on by its new owner
            land = session.contract("LandRegister")
            names = {s.address: n for n, s in session.signers.items()}
            sellable = [
                inst.parcels[p]
                for p in ("eunma", "banpo", "gongdeok", "jamsil", "yongin_field", "yongin_forest")
            ]
            spans = []
            for i in range(args.deals):
                parcel = sellable[i % len(sellable)]
                seller = names[land.call("ownerOf", parcel)]
                buyer = "buyer" if seller != "buyer" else "buyer2"
                spans.append(bench.deal(parcel, seller, buyer))
            metrics = oracle_metrics(inst.engine)
        finally:
            inst.stop()
    all_ms = [v for vs in bench.samples.values() for v in vs]
    result = {
        "deals": len(spans),
        "poll_s": args.poll,
        "reaction_ms": {
            step: {
                "n": len(v),
                "p50": round(percentile(v, 50) or 0, 1),
                "p95": round(percentile(v, 95) or 0, 1),
            }
            for step, v in bench.samples.items()
        },
        "reaction_p50_ms": round(percentile(all_ms, 50) or 0, 1),
        "reaction_p95_ms": round(percentile(all_ms, 95) or 0, 1),
        "signed_to_settled_s": [round(s, 3) for s in spans],
        "oracle_internal_latency_ms": {k: v.get("latency_ms") for k, v in metrics.items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
