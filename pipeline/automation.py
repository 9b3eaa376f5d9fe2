"""The automated flow: once both parties signed, the pipeline takes every remaining step itself.

Each tick looks at every live deal opened by a broker this service signs for and does the
one thing the deal can take next: pull a payment the buyer has funded and authorized, file
the loan application with the buyer's e-certificates, ask for registration once funded. The
institutions' steps (report, loan decision, disbursement, payoff, settlement) are the
oracles'. Every action is checked by the contract; a repeat simply reverts and is ignored.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from chain.errors import ChainError, ContractRevert
from chain.events import EventStream
from pipeline.adapters.protocols import CredentialKind
from pipeline.brokerage import Brokerage, next_payment
from pipeline.domain import State

log = logging.getLogger("deedchain.automation")
PAY_FN = {"deposit": "payDeposit", "interim": "payInterim", "balance": "payBalance"}


class DealDriver:
    def __init__(self, brokerage: Brokerage, poll_interval: float = 0.05) -> None:
        self.b = brokerage
        self.poll_interval = poll_interval
        self.live: set[int] = set()
        self.stream = EventStream(
            brokerage.session.rpc,
            {brokerage.escrow.address: ("DealEscrow", brokerage.escrow.abi)},
            start_block=brokerage.start_block,
            block_range=brokerage.session.network.block_range,
        )
        self.actions = 0

    def tick(self) -> int:
        """Catch up on new deals, then act on each live deal once. Returns actions taken."""
        while True:
            batch = self.stream.poll()
            for event in batch.events:
                if event.event == "DealOpened" and event.args["broker"] in self.b.brokers:
                    self.live.add(int(event.args["dealId"]))
            if batch.caught_up:
                break
        taken = 0
        for deal_id in sorted(self.live):
            try:
                taken += self._advance(deal_id)
            except ContractRevert as exc:
                log.info(json.dumps({"event": "not_yet", "deal_id": deal_id, "error": exc.name}))
        self.actions += taken
        return taken

    def _advance(self, deal_id: int) -> int:
        b = self.b
        state = State(b.escrow.call("dealState", deal_id))
        if state.terminal:
            self.live.discard(deal_id)
            return 0
        if state == State.OPEN:
            return 0
        snap = b.snapshot(deal_id)
        terms, broker = snap.terms, snap.broker
        due = next_payment(snap)
        if due is not None:
            kind, amount = due
            if snap.buyer_funds >= amount and snap.buyer_allowance >= amount:
                receipt = b.escrow.transact(b._broker(broker), PAY_FN[kind], deal_id)
                self._log("paid", deal_id, kind=kind, amount=amount, tx=receipt.tx_hash)
                return 1
        if terms["loanAmount"] and state >= State.DEPOSIT_PAID and snap.loan["status"] == 0:
            credentials = self._credentials(terms["buyer"])
            if credentials:
                receipt = b.apply_for_loan(broker, deal_id, credentials)
                self._log("loan_applied", deal_id, credentials=len(credentials), tx=receipt.tx_hash)
                return 1
        if state == State.FUNDED:
            receipt = b.request_registration(broker, deal_id)
            self._log("registration_requested", deal_id, tx=receipt.tx_hash)
            return 1
        return 0

    def _credentials(self, buyer: str) -> list[str]:
        """The buyer's newest valid resident-registration and income certificates, if both exist."""
        found: dict[int, str] = {}
        for h, document in self.b.wallet.by_subject(buyer):
            kind = int(document["kind"])
            if kind in found:
                continue
            if self.b.c["CredentialRegistry"].call("isValid", h, buyer, kind):
                found[kind] = h
        wanted = (int(CredentialKind.RESIDENT_REGISTRATION), int(CredentialKind.INCOME))
        return [found[k] for k in wanted] if all(k in found for k in wanted) else []

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except (ChainError, OSError) as exc:
                self._log("loop_error", None, error=str(exc))
                stop.wait(1.0)
                continue
            stop.wait(self.poll_interval)

    def _log(self, what: str, deal_id: int | None, **fields: Any) -> None:
        log.info(json.dumps({"event": what, "deal_id": deal_id, **fields}, default=str))
