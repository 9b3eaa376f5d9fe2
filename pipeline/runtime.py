"""Wiring: build the oracles for a chain session, run them in threads or as a process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from chain.contract import Contract
from chain.deploy import load_deployment
from chain.events import EventStream, LogHub
from chain.session import ChainSession
from chain.subscribe import HeadFeed, ws_url
from pipeline.adapters.http import HookClient
from pipeline.adapters.protocols import BankAdapter, LandRegistryAdapter
from pipeline.adapters.reference_bank import ReferenceBank
from pipeline.adapters.reference_registry import ReferenceRegistry
from pipeline.db import make_engine
from pipeline.journal import recover
from pipeline.oracles.bank import BankOracle
from pipeline.oracles.base import Oracle
from pipeline.oracles.registry import RegistryOracle
from pipeline.store import OracleStore, WalletStore

CONTRACTS = ("DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook")
WATCHED = ("DealEscrow", "LoanBook")


def deployed_contracts(session: ChainSession) -> tuple[dict[str, Contract], int]:
    """The project's contracts on this chain and the block to replay events from."""
    record = load_deployment(session.deployments_dir, session.chain_id)["contracts"]
    contracts = {name: session.contract(name, record[name]["address"]) for name in CONTRACTS}
    return contracts, min(int(record[name]["block"]) for name in CONTRACTS)


def oracle_poll_interval(session: ChainSession, poll_interval: float | None = None) -> float:
    """How long an oracle's loop waits when caught up; also how old a shared read may be."""
    return poll_interval or min(session.network.poll_interval, 0.05)


def process_hub(session: ChainSession, poll_interval: float | None = None) -> LogHub:
    """The one log poller of a process (oracles, automation, deal index, API): the oracles'
    loops take a read younger than their poll interval (none older than the process's own last
    write), the deal index one begun after each sync. Heads come pushed over the node's
    WebSocket where it has one (the same port as its HTTP endpoint), else by asking."""
    feed = HeadFeed(ws_url(session.rpc.url)) if session.network.subscribe else None
    return LogHub(session.rpc, max_age=oracle_poll_interval(session, poll_interval), feed=feed)


def _stream(session: ChainSession, store: OracleStore, contracts: dict[str, Contract], start: int,
            confirmations: int | None, poll_interval: float | None,
            events: frozenset[str], hub: LogHub | None) -> EventStream:  # fmt: skip
    network = session.network
    return EventStream(
        hub or session.rpc,
        {contracts[n].address: (n, contracts[n].abi) for n in WATCHED},
        start_block=start,
        cursor=store.load_cursor(),
        confirmations=network.confirmations if confirmations is None else confirmations,
        block_range=network.block_range,
        poll_interval=oracle_poll_interval(session, poll_interval),
        events=events,
    )


def _count_retries(adapter: object, store: OracleStore) -> None:
    """HTTP hooks report each retry; count them in the oracle's metrics."""
    client = getattr(adapter, "client", None)
    if isinstance(client, HookClient):
        client.on_retry = lambda _problem: store.bump("retries")


def reference_oracles(
    session: ChainSession,
    *,
    oracle_db: str,
    registry_db: str,
    lender_db: str,
    bank_db: str,
    known_issuers: set[str],
    confirmations: int | None = None,
    poll_interval: float | None = None,
) -> list[Oracle]:
    """The registry and two banks (the buyer's lender, the seller's mortgagee) with their
    reference back offices, each oracle acting with its institution's own key."""
    engine = make_engine(oracle_db)
    recover(session, engine)
    common: dict[str, Any] = {
        "engine": engine,
        "confirmations": confirmations,
        "poll_interval": poll_interval,
        # the oracles poll in threads: one read of the chain a poll interval serves all three
        "hub": process_hub(session, poll_interval),
    }
    registry = ReferenceRegistry(registry_db)
    lender = ReferenceBank(lender_db, bank_name="lender", known_issuers=known_issuers)
    bank = ReferenceBank(bank_db, bank_name="bank", known_issuers=known_issuers)
    return [
        registry_oracle(session, signer="registrar", adapter=registry, **common),
        bank_oracle(session, signer="lender", adapter=lender, **common),
        bank_oracle(session, signer="bank", adapter=bank, **common),
    ]


def bank_oracle(
    session: ChainSession,
    *,
    signer: str,
    adapter: BankAdapter,
    engine: Engine,
    confirmations: int | None = None,
    poll_interval: float | None = None,
    hub: LogHub | None = None,
) -> BankOracle:
    contracts, start = deployed_contracts(session)
    store = OracleStore(engine, f"bank:{signer}")
    _count_retries(adapter, store)
    return BankOracle(
        adapter=adapter,
        wallet=WalletStore(engine),
        stream=_stream(
            session, store, contracts, start, confirmations, poll_interval, BankOracle.events, hub
        ),
        sender=session.sender(signer),
        store=store,
        contracts=contracts,
    )


def registry_oracle(
    session: ChainSession,
    *,
    signer: str,
    adapter: LandRegistryAdapter,
    engine: Engine,
    confirmations: int | None = None,
    poll_interval: float | None = None,
    hub: LogHub | None = None,
) -> RegistryOracle:
    contracts, start = deployed_contracts(session)
    store = OracleStore(engine, f"registry:{signer}")
    _count_retries(adapter, store)
    return RegistryOracle(
        adapter=adapter,
        stream=_stream(
            session, store, contracts, start, confirmations, poll_interval, RegistryOracle.events, hub
        ),
        sender=session.sender(signer),
        store=store,
        contracts=contracts,
    )


@dataclass
class OracleThreads:
    """Runs oracles in background threads until stop()."""

    oracles: list[Oracle]
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> OracleThreads:
        for oracle in self.oracles:
            thread = threading.Thread(
                target=oracle.run, args=(self.stop_event,), daemon=True, name=oracle.name
            )
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def __enter__(self) -> OracleThreads:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
