"""A whole closing on a real chain: reference bank, lender, registry, oracles, and the parties."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chain.node import free_port
from chain.session import ChainSession
from pipeline.adapters.http import (
    BANK_METHODS,
    REGISTRY_METHODS,
    HookClient,
    HttpBank,
    HttpRegistry,
    ServiceThread,
    make_service,
)
from pipeline.adapters.protocols import CredentialKind
from pipeline.adapters.reference_bank import ReferenceBank
from pipeline.adapters.reference_registry import ReferenceRegistry
from pipeline.adapters.sample_data import seed_bank, seed_registry
from pipeline.credentials import issue_credential
from pipeline.db import make_engine, sqlite_url
from pipeline.domain import DealTerms, Party, State
from pipeline.oracles.base import Oracle
from pipeline.oracles.registry import publish_parcel
from pipeline.runtime import bank_oracle, registry_oracle
from pipeline.store import WalletStore
from tests.contracts.conftest import DAY, World

SECRET = {"lender": b"lender-hook-secret", "bank": b"bank-hook-secret", "registry": b"registry-hook-secret"}


class Closing:
    """Institutions with real state, their oracles, and helpers to act as buyer and seller."""

    def __init__(self, world: World, folder: Path, *, http: bool = False, confirmations: int = 0) -> None:
        self.w = world
        self.chain: ChainSession = world.chain
        self.folder = folder
        self.urls = {
            name: sqlite_url(folder / f"{name}.db") for name in ("registry", "lender", "bank", "oracles")
        }
        addr = world.addr
        issuer = addr("issuer")
        self.registry = ReferenceRegistry(self.urls["registry"])
        self.parcels = seed_registry(
            self.registry, owners={"seller": addr("seller"), "owner2": addr("broker")},
            banks={"bank": addr("bank"), "lender": addr("lender")},
        )  # fmt: skip
        for record in self.registry.list_parcels():
            publish_parcel(world.land, self.chain.sender("registrar"), record)
        self.lender = ReferenceBank(self.urls["lender"], bank_name="KB Lender", known_issuers={issuer})
        seed_bank(self.lender, {"buyer": addr("buyer")})
        self.bank = ReferenceBank(self.urls["bank"], bank_name="Woori Mortgage", known_issuers={issuer})
        seed_bank(self.bank, {"seller": addr("seller")}, registry=self.registry, creditor=addr("bank"))
        self.engine = make_engine(self.urls["oracles"])
        self.wallet = WalletStore(self.engine)
        self.services: list[ServiceThread] = []
        adapters: dict[str, Any] = {"lender": self.lender, "bank": self.bank, "registry": self.registry}
        if http:
            adapters = {
                "lender": HttpBank(self.hook("lender", self.lender, BANK_METHODS)),
                "bank": HttpBank(self.hook("bank", self.bank, BANK_METHODS)),
                "registry": HttpRegistry(self.hook("registry", self.registry, REGISTRY_METHODS)),
            }
        self.adapters = adapters
        self.confirmations = confirmations
        self.oracles = self.make_oracles()

    def hook(self, name: str, adapter: Any, methods: dict) -> HookClient:
        service = ServiceThread(make_service(adapter, SECRET[name], methods, name), free_port()).start()
        self.services.append(service)
        return HookClient(service.url, SECRET[name], timeout=2.0, retries=2, backoff=0.05)

    def make_oracles(self) -> list[Oracle]:
        common = {"engine": self.engine, "confirmations": self.confirmations, "poll_interval": 0.02}
        oracles = [
            registry_oracle(self.chain, signer="registrar", adapter=self.adapters["registry"], **common),
            bank_oracle(self.chain, signer="lender", adapter=self.adapters["lender"], **common),
            bank_oracle(self.chain, signer="bank", adapter=self.adapters["bank"], **common),
        ]
        for oracle in oracles:
            oracle.recover()  # the banks' one-time allowance: mined now, not inside a test's window
        return oracles

    def close(self) -> None:
        for service in self.services:
            service.stop()

    # --- driving ------------------------------------------------------------------------------
    def pump(self, until: Callable[[], bool], timeout: float = 20.0) -> None:
        """Step every oracle until `until()` holds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("oracles did not get there in time")
            for oracle in self.oracles:
                oracle.step()

    def settle_quietly(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            for oracle in self.oracles:
                oracle.step()

    def credentials(self, who: str = "buyer", income: int = 96_000_000) -> list[str]:
        """Resident-registration and income certificates: issued, anchored, put in the wallet."""
        now = self.w.now()
        hashes = []
        for kind, claims in (
            (CredentialKind.RESIDENT_REGISTRATION, {"name": "김민준", "address": "서울특별시 강남구"}),
            (CredentialKind.INCOME, {"annual_income": income, "year": 2026}),
        ):
            doc, h, sig = issue_credential(
                self.w.key("issuer"), kind, self.w.addr(who), claims, now, now + 90 * DAY
            )
            self.w.tx("issuer", self.w.creds, "anchor", h, int(kind), self.w.addr(who), now + 90 * DAY)
            self.wallet.put(h, doc.subject, doc.model_dump(mode="json"), sig)
            hashes.append(h)
        return hashes

    def open_signed(self, parcel: str = "eunma", **terms_kw: Any) -> tuple[int, DealTerms]:
        terms = self.w.terms(self.parcels[parcel], **terms_kw)
        deal = self.w.signed_deal(terms)
        return deal, terms

    def effects(self, deal: int) -> dict[str, str]:
        out = {}
        for oracle in self.oracles:
            for e in oracle.store.effects(deal_id=deal):
                out[e.key] = e.status
        return out

    def chain_events(self, contract: Any, name: str, deal: int) -> list[Any]:
        topics = [contract.abi.topic(name), "0x" + deal.to_bytes(32, "big").hex()]
        query = {"fromBlock": "0x0", "toBlock": "latest", "address": contract.address, "topics": topics}
        logs = self.chain.rpc.call("eth_getLogs", [query])
        return [contract.abi.decode_log(log) for log in logs]

    def full_deal(self, *, interim: int = 300_000_000, loan: int = 400_000_000) -> tuple[int, DealTerms]:
        """Drive a deal like the parties would; the oracles do the institutions' part."""
        w = self.w
        deal, terms = self.open_signed(interim=interim, loan=loan)
        self.pump(lambda: bool(w.escrow.call("reported", deal)))
        w.pay(deal, "payDeposit", "buyer", terms.deposit)
        if loan:
            w.tx("buyer", w.loans, "requestLoan", deal, loan, terms.lender, self.credentials())
            self.pump(lambda: w.escrow.call("loanDecision", deal)[0])
        if interim:
            w.pay(deal, "payInterim", "buyer", interim)
        if loan:
            self.pump(lambda: w.escrow.call("payments", deal)[3] > 0)
        w.pay(deal, "payBalance", "buyer", terms.balance - loan)
        assert w.state(deal) == State.FUNDED
        w.tx("buyer", w.escrow, "requestRegistration", deal)
        self.pump(lambda: w.state(deal).terminal)
        return deal, terms


__all__ = ["Closing", "Party"]
