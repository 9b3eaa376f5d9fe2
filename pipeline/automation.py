"""The automated flow: once both parties signed, the pipeline takes every remaining step itself.

Each tick looks at every live deal opened by a broker this service signs for and does the
one thing the deal can take next: pull a payment the buyer has funded and authorized, file
the loan application with the buyer's e-certificates, ask for registration once funded. The
institutions' steps (report, loan decision, disbursement, payoff, settlement) are the
oracles'. Every action is checked by the contract; a repeat simply reverts and is ignored.

A deal is looked at when something happened after which it may have a step to take: a
signature, a payment or a loan decision on the escrow, or a token event of its buyer (money
paid in, a permit). Its views
are read for all such deals in one batch. Anything with no event of its own (a certificate
put in the wallet, a reorg) is caught by a sweep over every live deal each `sweep_interval`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from chain.errors import ChainError, ContractRevert
from chain.events import KEEP_HASHES, ChainEvent, EventStream
from pipeline.adapters.protocols import CredentialKind
from pipeline.brokerage import Brokerage, Snapshot, next_payment
from pipeline.domain import State

log = logging.getLogger("deedchain.automation")
PAY_FN = {"deposit": "payDeposit", "interim": "payInterim", "balance": "payBalance"}
ENDED = {"DealSettled", "DealCancelled", "DealDefaulted", "DealRefunded"}
# The escrow events after which the automation may have a step to take (the rest, e.g. a
# report or a payoff statement, change nothing it does).
TRIGGERS = {"TermsAccepted", "PaymentReceived", "LoanDecisionRecorded"}
SNAPSHOT_CHUNK = 50  # deals per batch of views


class DealDriver:
    def __init__(
        self, brokerage: Brokerage, poll_interval: float = 0.05, sweep_interval: float = 1.0
    ) -> None:
        self.b = brokerage
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self.live: dict[int, str] = {}  # live deal -> its buyer
        self.by_buyer: dict[str, set[int]] = {}
        self.dirty: set[int] = set()
        self.ended: dict[int, tuple[int, str]] = {}  # recently ended deal -> (block, buyer), for reorgs
        self._swept = 0.0
        watched = (brokerage.escrow, brokerage.token)
        self.stream = EventStream(
            brokerage.session.rpc,
            {c.address: (c.name, c.abi) for c in watched},
            start_block=brokerage.start_block,
            block_range=brokerage.session.network.block_range,
            events={"DealOpened", *ENDED, *TRIGGERS, "Transfer", "Approval"},
        )
        self.actions = 0

    def tick(self) -> int:
        """Catch up on events, then act once on each deal they touched. Returns actions taken."""
        while True:
            batch = self.stream.poll()
            if batch.rewound_to is not None:  # a reorg: deals it un-ended are live again; look at all
                for deal_id, (block, buyer) in list(self.ended.items()):
                    if block > batch.rewound_to:
                        del self.ended[deal_id]
                        self._track(deal_id, buyer)
                self._swept = 0.0
            for event in batch.events:
                self._note(event)
            if batch.caught_up:
                break
        if time.monotonic() - self._swept >= self.sweep_interval:
            self.dirty |= set(self.live)
            self._swept = time.monotonic()
        todo = sorted(self.dirty & set(self.live))
        self.dirty.clear()
        taken = 0
        for i in range(0, len(todo), SNAPSHOT_CHUNK):
            for snap in self.b.snapshots(todo[i : i + SNAPSHOT_CHUNK]):
                try:
                    taken += self._advance(snap)
                except ContractRevert as exc:
                    log.info(json.dumps({"event": "not_yet", "deal_id": snap.deal_id, "error": exc.name}))
        self.actions += taken
        return taken

    def _note(self, event: ChainEvent) -> None:
        args = event.args
        if event.event == "DealOpened":
            if args["broker"] in self.b.brokers:
                self._track(int(args["dealId"]), args["terms"]["buyer"])
        elif event.event in ENDED:
            deal_id = int(args["dealId"])
            buyer = self._forget(deal_id)
            if buyer is not None:
                self.ended[deal_id] = (event.block_number, buyer)
                horizon = event.block_number - KEEP_HASHES
                for old in [d for d, (block, _) in self.ended.items() if block < horizon]:
                    del self.ended[old]
        elif event.event in TRIGGERS:
            self.dirty.add(int(args["dealId"]))
        elif event.contract == "DepositToken":
            for key in ("to", "owner"):  # money reached a buyer; a buyer's permit or approval
                self.dirty |= self.by_buyer.get(args.get(key, ""), set())

    def _track(self, deal_id: int, buyer: str) -> None:
        self.live[deal_id] = buyer
        self.by_buyer.setdefault(buyer, set()).add(deal_id)
        self.dirty.add(deal_id)

    def _forget(self, deal_id: int) -> str | None:
        buyer = self.live.pop(deal_id, None)
        if buyer is not None:
            deals = self.by_buyer.get(buyer, set())
            deals.discard(deal_id)
            if not deals:
                self.by_buyer.pop(buyer, None)
        return buyer

    def _advance(self, snap: Snapshot) -> int:
        b, deal_id, state = self.b, snap.deal_id, snap.state
        if state.terminal:
            self._forget(deal_id)
            return 0
        if state == State.OPEN:
            return 0
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
