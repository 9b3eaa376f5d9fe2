"""The automated flow: once both parties signed, the pipeline takes every remaining step itself.

Each tick looks at every live deal opened by a broker this service signs for and does the
one thing the deal can take next: pull a payment the buyer has funded and authorized, file
the loan application with the buyer's e-certificates, ask for registration once funded. The
institutions' steps (report, loan decision, disbursement, payoff, settlement) are the
oracles'. Every action is checked by the contract; a repeat simply reverts and is ignored.

The live deals are the deal index's (pipeline/deal_index.py), whose stream this driver reads
too: a restart resumes from the index's cursor instead of replaying from the deployment. A deal
is looked at when something happened after which it may have a step to take: a signature, a
payment or a loan decision on the escrow, or a token event of its buyer (money paid in, a
permit). Its views are read for all such deals in one batch. Anything with no event of its own
(a certificate put in the wallet, a reorg) is caught by a sweep over every live deal each
`sweep_interval`, and at start.

A tick's payments and registration requests go out batched: per broker, one `payMany` and one
`requestRegistrations` transaction for all its deals, up to BATCH_MAX items each, instead of a
transaction per deal (a lone deal's step goes as its single call). The escrow applies each item
on its own; one it refuses comes back as an `ItemFailed` event with the single call's custom
error, logged like a refused single call.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chain.errors import ChainError, ContractRevert
from chain.events import Batch
from chain.sender import Receipt
from pipeline.adapters.protocols import CredentialKind
from pipeline.brokerage import Brokerage, Snapshot, next_payment
from pipeline.domain import State
from pipeline.journal import deal_memo

log = logging.getLogger("deedchain.automation")
PAYMENT = {"deposit": 0, "interim": 1, "balance": 2}  # DealEscrow.Payment, as payMany takes it
PAY_FN = {"deposit": "payDeposit", "interim": "payInterim", "balance": "payBalance"}
# The escrow events after which the automation may have a step to take (the rest, e.g. a
# report or a payoff statement, change nothing it does).
TRIGGERS = {"TermsAccepted", "PaymentReceived", "LoanDecisionRecorded"}
SNAPSHOT_CHUNK = 50  # deals per batch of views
BATCH_MAX = 100  # items per batch transaction: ~8 M gas of payments, well inside a block


@dataclass
class Due:
    """What one broker's deals take next, gathered over a tick."""

    payments: list[tuple[int, str, int]] = field(default_factory=list)  # deal, kind, amount
    registrations: list[int] = field(default_factory=list)


class DealDriver:
    def __init__(
        self, brokerage: Brokerage, poll_interval: float = 0.05, sweep_interval: float = 1.0
    ) -> None:
        self.b = brokerage
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        # The live deals are the index's (a reorg that un-ends a deal makes it live there again);
        # this driver only keeps what to look at next.
        self.index = brokerage.index
        self.stream = self.index.stream  # the one stream both read
        self._lock = threading.Lock()  # the index may hand batches over on an API thread
        self.dirty: set[int] = set()
        self.paid: set[str] = set()  # buyers with a token event since the last tick
        self._swept = 0.0  # at start, a sweep: every live deal is looked at once
        self.index.listen(self._note_batch)
        self.actions = 0

    def tick(self) -> int:
        """Catch up on events, then act once on each deal they touched. Returns actions taken."""
        self.index.sync()
        with self._lock:
            sweep = time.monotonic() - self._swept >= self.sweep_interval
            if sweep:
                self._swept = time.monotonic()
            dirty, paid = self.dirty, self.paid
            self.dirty, self.paid = set(), set()
        if not (dirty or paid or sweep):
            return 0
        live = {d.deal_id: d.buyer for d in self.index.live(self.b.brokers)}
        if sweep:
            dirty |= set(live)
        dirty |= {deal for deal, buyer in live.items() if buyer in paid}
        todo = sorted(dirty & set(live))
        taken = 0
        due: dict[str, Due] = {}
        for i in range(0, len(todo), SNAPSHOT_CHUNK):
            for snap in self.b.snapshots(todo[i : i + SNAPSHOT_CHUNK]):
                try:
                    taken += self._advance(snap, due.setdefault(snap.broker, Due()))
                except ContractRevert as exc:
                    self._log("not_yet", snap.deal_id, error=exc.name)
        for broker, found in due.items():
            for j in range(0, len(found.payments), BATCH_MAX):
                taken += self._pay(broker, found.payments[j : j + BATCH_MAX])
            for j in range(0, len(found.registrations), BATCH_MAX):
                taken += self._request_registrations(broker, found.registrations[j : j + BATCH_MAX])
        self.actions += taken
        return taken

    def _note_batch(self, batch: Batch) -> None:
        with self._lock:
            if batch.rewound_to is not None:  # a reorg: deals it un-ended are live again; look at all
                self._swept = 0.0
            for event in batch.events:
                args = event.args
                if event.event == "DealOpened" or event.event in TRIGGERS:
                    self.dirty.add(int(args["dealId"]))
                elif event.contract == "DepositToken":
                    # money reached a buyer; a buyer's permit or approval
                    self.paid |= {args[key] for key in ("to", "owner") if key in args}

    def _advance(self, snap: Snapshot, due: Due) -> int:
        """Put the deal's next step in `due`, or take it at once (a loan application, which has
        no batch call). Returns the steps taken at once."""
        b, deal_id, state = self.b, snap.deal_id, snap.state
        if state.terminal or state == State.OPEN:
            return 0
        terms, broker = snap.terms, snap.broker
        payment = next_payment(snap)
        if payment is not None:
            kind, amount = payment
            if snap.buyer_funds >= amount and snap.buyer_allowance >= amount:
                due.payments.append((deal_id, kind, amount))
                return 0
        if terms["loanAmount"] and state >= State.DEPOSIT_PAID and snap.loan["status"] == 0:
            credentials = self._credentials(terms["buyer"])
            if credentials:
                receipt = b.apply_for_loan(broker, deal_id, credentials)
                self._log("loan_applied", deal_id, credentials=len(credentials), tx=receipt.tx_hash)
                return 1
        if state == State.FUNDED:
            due.registrations.append(deal_id)
        return 0

    def _pay(self, broker: str, payments: list[tuple[int, str, int]]) -> int:
        deals = [deal_id for deal_id, _, _ in payments]
        kinds = [PAYMENT[kind] for _, kind, _ in payments]
        sent = self._send(broker, deals, ("payMany", (deals, kinds)), PAY_FN[payments[0][1]])
        if sent is None:
            return 0
        tx, failed = sent
        for deal_id, kind, amount in payments:
            if deal_id in failed:
                self._log("not_yet", deal_id, kind=kind, error=failed[deal_id])
            else:
                self._log("paid", deal_id, kind=kind, amount=amount, tx=tx)
        return len(payments) - len(failed)

    def _request_registrations(self, broker: str, deals: list[int]) -> int:
        sent = self._send(broker, deals, ("requestRegistrations", (deals,)), "requestRegistration")
        if sent is None:
            return 0
        tx, failed = sent
        for deal_id in deals:
            if deal_id in failed:
                self._log("not_yet", deal_id, step="registration", error=failed[deal_id])
            else:
                self._log("registration_requested", deal_id, tx=tx)
        return len(deals) - len(failed)

    def _send(
        self, broker: str, deals: list[int], batch: tuple[str, tuple[Any, ...]], single: str
    ) -> tuple[str | None, dict[int, str]] | None:
        """The batch call for these deals, or for one deal its single call (a batch of one
        costs ~3,000 gas more). Returns the tx and the deals refused (-> the custom error's
        name), or None when the whole batch was refused."""
        sender, escrow = self.b._broker(broker), self.b.escrow
        if len(deals) == 1:
            try:
                receipt = escrow.transact(sender, single, deals[0], memo=deal_memo(deals[0], single))
            except ContractRevert as exc:
                return exc.tx_hash, {deals[0]: exc.name}
            return receipt.tx_hash, {}
        fn, args = batch
        try:
            receipt = escrow.transact(sender, fn, *args, memo=f"{fn}:{len(deals)} deals")
        except ContractRevert as exc:
            self._log("not_yet", None, batch=fn, deals=deals, error=exc.name)
            return None
        return receipt.tx_hash, self._failed(receipt)

    def _failed(self, receipt: Receipt) -> dict[int, str]:
        """The items of a batch the escrow refused: deal id -> the custom error's name."""
        out: dict[int, str] = {}
        for event in self.b.escrow.events(receipt):
            if event.event == "ItemFailed":
                reason = event.args["reason"]
                data = bytes.fromhex(reason[2:]) if isinstance(reason, str) else bytes(reason)
                out[int(event.args["dealId"])] = self.b.session.errors.decode(data).name
        return out

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
                # A transaction may have been lost with the node (its nonce counted here, not on
                # the chain that came back): the next one takes the node's count.
                for name in set(self.b.brokers.values()):
                    self.b.session.sender(name).resync()
                stop.wait(1.0)
                continue
            stop.wait(self.poll_interval)

    def _log(self, what: str, deal_id: int | None, **fields: Any) -> None:
        log.info(json.dumps({"event": what, "deal_id": deal_id, **fields}, default=str))
