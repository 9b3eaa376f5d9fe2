"""A whole closing on a real chain: reference bank, lender, registry, oracles, and the parties."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chain.session import ChainSession
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from pipeline.domain import DealTerms, Party, State
from pipeline.institutions import Institutions
from pipeline.oracles.base import Oracle
from pipeline.store import WalletStore
from tests.contracts.conftest import DAY, World

SECRET = {"lender": b"lender-hook-secret", "bank": b"bank-hook-secret", "registry": b"registry-hook-secret"}


def issue_credentials(
    w: World, wallet: WalletStore, who: str = "buyer", income: int = 96_000_000
) -> list[str]:
    """Resident-registration and income certificates: issued, anchored, put in the wallet."""
    now = w.now()
    hashes = []
    for kind, claims in (
        (CredentialKind.RESIDENT_REGISTRATION, {"name": "김민준", "serial": uuid.uuid4().hex}),
        (CredentialKind.INCOME, {"annual_income": income, "year": 2026, "serial": uuid.uuid4().hex}),
    ):
        doc, h, sig = issue_credential(w.key("issuer"), kind, w.addr(who), claims, now, now + 90 * DAY)
        w.tx("issuer", w.creds, "anchor", h, int(kind), w.addr(who), now + 90 * DAY)
        wallet.put(h, doc.subject, doc.model_dump(mode="json"), sig)
        hashes.append(h)
    return hashes


class Closing:
    """The reference institutions with their oracles, and helpers to act as buyer and seller."""

    def __init__(
        self,
        world: World,
        folder: Path,
        *,
        http: bool = False,
        confirmations: int = 0,
        urls: dict[str, str] | None = None,
    ) -> None:
        self.w = world
        self.chain: ChainSession = world.chain
        self.folder = folder
        self.inst = Institutions.reference(
            self.chain,
            folder,
            urls=urls,
            http_secrets=SECRET if http else None,
            confirmations=confirmations,
            poll_interval=0.02,
        )
        self.urls = self.inst.urls
        self.registry, self.lender, self.bank = self.inst.registry, self.inst.lender, self.inst.bank
        self.parcels = self.inst.parcels
        self.adapters = self.inst.adapters
        self.services = self.inst.services
        self.confirmations = confirmations
        self.oracles = self.inst.oracles
        self.engine = self.inst.engine
        self.wallet = self.inst.wallet

    def make_oracles(self) -> list[Oracle]:
        self.inst.adapters = self.adapters
        return self.inst.make_oracles(confirmations=self.confirmations, poll_interval=0.02)

    def close(self) -> None:
        self.inst.stop()

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
        return issue_credentials(self.w, self.wallet, who, income)

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

    def full_deal(
        self,
        *,
        interim: int = 300_000_000,
        loan: int = 400_000_000,
        seller: str = "seller",
        buyer: str = "buyer",
    ) -> tuple[int, DealTerms]:
        """Drive a deal like the parties would; the oracles do the institutions' part."""
        w = self.w
        terms = w.terms(self.parcels["eunma"], interim=interim, loan=loan, seller=seller, buyer=buyer)
        deal = w.signed_deal(terms, buyer=buyer, seller=seller)
        self.pump(lambda: bool(w.escrow.call("reported", deal)))
        w.pay(deal, "payDeposit", buyer, terms.deposit)
        if loan:
            w.tx(buyer, w.loans, "requestLoan", deal, loan, terms.lender, self.credentials(buyer))
            self.pump(lambda: w.escrow.call("loanDecision", deal)[0])
        if interim:
            w.pay(deal, "payInterim", buyer, interim)
        if loan:
            self.pump(lambda: w.escrow.call("payments", deal)[3] > 0)
        w.pay(deal, "payBalance", buyer, terms.balance - loan)
        assert w.state(deal) == State.FUNDED
        w.tx(buyer, w.escrow, "requestRegistration", deal)
        self.pump(lambda: w.state(deal).terminal)
        return deal, terms


__all__ = ["Closing", "Party"]
