"""Everything behind the broker API on one chain: institutions, oracles, brokerage, automation."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from chain.session import ChainSession
from pipeline.automation import DealDriver
from pipeline.brokerage import Brokerage
from pipeline.institutions import Institutions
from pipeline.runtime import process_hub

BROKER_ACCOUNTS = ("broker", "broker2")


@dataclass
class Services:
    session: ChainSession
    institutions: Institutions
    brokerage: Brokerage
    driver: DealDriver
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def build(
        cls,
        session: ChainSession,
        folder: Path,
        *,
        http_secrets: dict[str, bytes] | None = None,
        poll_interval: float | None = None,
        urls: dict[str, str] | None = None,
    ) -> Services:
        hub = process_hub(session, poll_interval)
        inst = Institutions.reference(
            session, folder, urls=urls, http_secrets=http_secrets, poll_interval=poll_interval, hub=hub
        )
        brokers = {session.signers[n].address: n for n in BROKER_ACCOUNTS if n in session.signers}
        brokerage = Brokerage(session, inst, brokers)
        return cls(session, inst, brokerage, DealDriver(brokerage, poll_interval=poll_interval or 0.05))

    def start(self) -> Services:
        self.institutions.start()
        self._thread = threading.Thread(
            target=self.driver.run, args=(self._stop,), daemon=True, name="driver"
        )
        self._thread.start()
        return self

    def running(self) -> dict[str, bool]:
        """Which background parts are alive: each oracle, and the automation."""
        threads = self.institutions.threads
        alive = {o.store.oracle: False for o in self.institutions.oracles}
        if threads is not None:
            for oracle, thread in zip(threads.oracles, threads.threads, strict=True):
                alive[oracle.store.oracle] = thread.is_alive()
        alive["automation"] = bool(self._thread and self._thread.is_alive())
        return alive

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.institutions.stop()
        self.institutions.hub.close()
