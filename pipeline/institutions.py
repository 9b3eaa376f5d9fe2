"""The reference institutions on one chain: the land registry, the buyer's lender and the
seller's mortgage bank, each with its back office (real state), its oracle and its key.

Used by `deedchain serve`, the demo, the benchmarks and the tests. Everything is idempotent:
seeding the registry, mirroring its parcels on chain and opening customers skip what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from chain.events import LogHub
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
from pipeline.adapters.reference_bank import ReferenceBank
from pipeline.adapters.reference_registry import ReferenceRegistry
from pipeline.adapters.sample_data import seed_bank, seed_registry
from pipeline.db import make_engine, sqlite_url
from pipeline.journal import TxJournal, recover
from pipeline.oracles.base import Oracle
from pipeline.oracles.registry import publish_parcel
from pipeline.runtime import OracleThreads, bank_oracle, deployed_contracts, registry_oracle
from pipeline.store import WalletStore

# account names (brownie-config dev_accounts, or a live network's `accounts:`)
REGISTRAR, LENDER, BANK, ISSUER = "registrar", "lender", "bank", "issuer"


@dataclass
class Institutions:
    session: ChainSession
    folder: Path
    urls: dict[str, str]
    registry: ReferenceRegistry
    lender: ReferenceBank
    bank: ReferenceBank
    parcels: dict[str, str]
    engine: Engine  # the oracles' books, the journal and the wallet
    journal: TxJournal
    hub: LogHub  # the one poller of the chain's logs for every event stream on this chain
    adapters: dict[str, Any] = field(default_factory=dict)
    services: list[ServiceThread] = field(default_factory=list)
    oracles: list[Oracle] = field(default_factory=list)
    threads: OracleThreads | None = None

    @classmethod
    def reference(
        cls,
        session: ChainSession,
        folder: Path,
        *,
        urls: dict[str, str] | None = None,
        http_secrets: dict[str, bytes] | None = None,
        confirmations: int | None = None,
        poll_interval: float | None = None,
        hub: LogHub | None = None,
    ) -> Institutions:
        """Seed and wire the institutions; with `http_secrets` they answer through HTTP hooks.
        `hub`: the process's log poller; by default one of their own that shares only polls
        made at the same time (oracles stepped by hand see every block before the step)."""
        urls = {n: sqlite_url(folder / f"{n}.db") for n in ("registry", "lender", "bank", "oracles")} | (
            urls or {}
        )
        engine = make_engine(urls["oracles"])
        journal = recover(session, engine)
        signers = session.signers
        issuer = signers[ISSUER].address
        registry = ReferenceRegistry(urls["registry"])
        owners: dict[str, str] = {n: signers[n].address for n in ("seller", "owner2") if n in signers}
        parcels = seed_registry(registry, owners=owners, banks={BANK: signers[BANK].address})
        contracts, _start = deployed_contracts(session)
        for record in registry.list_parcels():
            publish_parcel(contracts["LandRegister"], session.sender(REGISTRAR), record)
        lender = ReferenceBank(urls["lender"], bank_name="Hanbit Bank (lender)", known_issuers={issuer})
        # the lender keeps everyone's current account, so any party can pay money in there
        parties = ("buyer", "buyer2", "seller", "owner2")
        seed_bank(lender, {n: signers[n].address for n in parties if n in signers})
        bank = ReferenceBank(urls["bank"], bank_name="Seoul Mortgage Bank", known_issuers={issuer})
        seed_bank(bank, owners, registry=registry, creditor=signers[BANK].address)
        hub = hub or LogHub(session.rpc)
        inst = cls(session, folder, urls, registry, lender, bank, parcels, engine, journal, hub)
        inst.adapters = {"registry": registry, "lender": lender, "bank": bank}
        if http_secrets:
            inst.adapters = {
                "registry": HttpRegistry(inst._serve("registry", registry, REGISTRY_METHODS, http_secrets)),
                "lender": HttpBank(inst._serve("lender", lender, BANK_METHODS, http_secrets)),
                "bank": HttpBank(inst._serve("bank", bank, BANK_METHODS, http_secrets)),
            }
        inst.oracles = inst.make_oracles(confirmations=confirmations, poll_interval=poll_interval)
        return inst

    def _serve(
        self, name: str, adapter: Any, methods: dict[str, Any], secrets: dict[str, bytes]
    ) -> HookClient:
        service = ServiceThread(make_service(adapter, secrets[name], methods, name), free_port()).start()
        self.services.append(service)
        return HookClient(service.url, secrets[name], timeout=2.0, retries=2, backoff=0.05)

    def make_oracles(
        self, *, confirmations: int | None = None, poll_interval: float | None = None
    ) -> list[Oracle]:
        common: dict[str, Any] = {
            "engine": self.engine,
            "confirmations": confirmations,
            "poll_interval": poll_interval,
            "hub": self.hub,
        }
        oracles: list[Oracle] = [
            registry_oracle(self.session, signer=REGISTRAR, adapter=self.adapters["registry"], **common),
            bank_oracle(self.session, signer=LENDER, adapter=self.adapters["lender"], **common),
            bank_oracle(self.session, signer=BANK, adapter=self.adapters["bank"], **common),
        ]
        for oracle in oracles:
            oracle.recover()  # finish any outbox and make the banks' one-time allowance now
        return oracles

    @cached_property
    def wallet(self) -> WalletStore:
        """The parties' submitted e-certificates, kept beside the oracles' books."""
        return WalletStore(self.engine)

    def start(self) -> Institutions:
        self.threads = OracleThreads(self.oracles).start()
        return self

    def stop(self) -> None:
        if self.threads:
            self.threads.stop()
            self.threads = None
        for service in self.services:
            service.stop()
        self.services = []
