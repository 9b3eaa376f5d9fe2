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
(a reorg, a step lost with the node) is caught by a sweep over every live deal each
`sweep_interval`, and at start; a certificate put in the wallet marks its subject's deals.

A tick's steps go out batched: per broker, one `payMany`, one `requestLoans` and one
`requestRegistrations` transaction for all its deals, up to BATCH_MAX items each (a lone deal's
step goes as its single call). The driver does not wait for them: it is a broadcaster and a
confirmer, like an oracle's outbox. A tick signs and sends what is due, then reads the receipts of
every transaction still on its way in one JSON-RPC batch; one not mined yet is read again next
tick, and its deals are left alone until it is. Under automine a step is confirmed in the tick
that sent it; on a chain with block times the driver keeps sending for other deals meanwhile.
The escrow applies each item on its own; one it refuses comes back as an `ItemFailed` event with
the single call's custom error, logged like a refused single call. No outbox is needed: a step
lost with a crash or a dropped transaction is simply due again, and the contract refuses a
repeat, so none is applied twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chain.contract import Contract, call_many
from chain.errors import ChainError, ContractRevert, TransactionError
from chain.events import Batch
from chain.sender import STRANDED_AFTER, Receipt, Sender, explain_failure
from pipeline.adapters.protocols import CredentialKind
from pipeline.brokerage import Brokerage, Progress, next_payment
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
WANTED = (int(CredentialKind.RESIDENT_REGISTRATION), int(CredentialKind.INCOME))


@dataclass
class Due:
    """What one broker's deals take next, gathered over a tick."""

    payments: list[tuple[int, str, int]] = field(default_factory=list)  # deal, kind, amount
    loans: list[tuple[int, int, str, list[str]]] = field(default_factory=list)  # deal, amount, lender, certs
    registrations: list[int] = field(default_factory=list)


@dataclass
class Sent:
    """A step transaction on its way: what each of its deals was to take."""

    contract: Contract
    sender: Sender  # the broker's
    steps: dict[int, dict[str, Any]]  # deal -> the log fields of its step (`what` among them)
    checked: float  # when it was sent, or last asked after
    strikes: int = 0  # checks in a row that found it will not be mined


class DealDriver:
    def __init__(
        self, brokerage: Brokerage, poll_interval: float = 0.05, sweep_interval: float = 30.0
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
        brokerage.on_credential(self._note_buyer)
        self.actions = 0
        self.sent: dict[str, Sent] = {}  # tx hash -> the steps it carries, until its receipt is read

    def tick(self) -> int:
        """Catch up on events, send each touched deal's next step, and confirm the steps on
        their way. Returns the steps confirmed applied."""
        self.index.sync()
        with self._lock:
            sweep = time.monotonic() - self._swept >= self.sweep_interval
            if sweep:
                self._swept = time.monotonic()
            dirty, paid = self.dirty, self.paid
            self.dirty, self.paid = set(), set()
        if dirty or paid or sweep:
            live = {d.deal_id: (d.broker, d.buyer) for d in self.index.live(self.b.brokers)}
            if sweep:
                dirty |= set(live)
            dirty |= {deal for deal, (_broker, buyer) in live.items() if buyer in paid}
            busy = self.busy
            todo = sorted((dirty & set(live)) - busy)
            self._mark_dirty(dirty & busy)  # looked at once its step is mined
            due: dict[str, Due] = {}
            for i in range(0, len(todo), SNAPSHOT_CHUNK):
                snaps = self.b.progress({deal: live[deal] for deal in todo[i : i + SNAPSHOT_CHUNK]})
                certs = self._credentials([s.terms["buyer"] for s in snaps if self._wants_loan(s)])
                for snap in snaps:
                    self._advance(snap, due.setdefault(snap.broker, Due()), certs)
            for broker, found in due.items():
                self._send_due(broker, found)
        taken = self._confirm()
        self.actions += taken
        return taken

    @property
    def busy(self) -> set[int]:
        """Deals with a step on its way: looked at again once it is mined."""
        return {deal for sent in self.sent.values() for deal in sent.steps}

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

    @staticmethod
    def _wants_loan(snap: Progress) -> bool:
        return bool(
            snap.terms["loanAmount"]
            and State.DEPOSIT_PAID <= snap.state < State.FUNDED
            and snap.loan_status == 0
        )

    def _advance(self, snap: Progress, due: Due, certs: dict[str, list[str]]) -> None:
        """Put the deal's next step in `due`, if it has one the pipeline takes."""
        state, terms = snap.state, snap.terms
        if state.terminal or state == State.OPEN:
            return
        payment = next_payment(snap)
        if payment is not None:
            kind, amount = payment
            if snap.buyer_funds >= amount and snap.buyer_allowance >= amount:
                due.payments.append((snap.deal_id, kind, amount))
                return
        if self._wants_loan(snap) and certs.get(terms["buyer"]):
            due.loans.append((snap.deal_id, terms["loanAmount"], terms["lender"], certs[terms["buyer"]]))
            return
        if state == State.FUNDED:
            due.registrations.append(snap.deal_id)

    def _send_due(self, broker: str, due: Due) -> None:
        escrow, loans = self.b.escrow, self.b.loans
        for j in range(0, len(due.payments), BATCH_MAX):
            chunk = due.payments[j : j + BATCH_MAX]
            deals, kinds = [d for d, _, _ in chunk], [PAYMENT[k] for _, k, _ in chunk]
            steps = {d: {"what": "paid", "kind": k, "amount": a} for d, k, a in chunk}
            single = (PAY_FN[chunk[0][1]], (deals[0],))
            self._send(broker, escrow, steps, ("payMany", (deals, kinds)), single)
        for j in range(0, len(due.loans), BATCH_MAX):
            items = due.loans[j : j + BATCH_MAX]
            steps = {d: {"what": "loan_applied", "credentials": len(c)} for d, _, _, c in items}
            requests = [
                {"dealId": d, "amount": amount, "lender": lender, "credentials": c}
                for d, amount, lender, c in items
            ]
            self._send(broker, loans, steps, ("requestLoans", (requests,)), ("requestLoan", items[0]))
        for j in range(0, len(due.registrations), BATCH_MAX):
            deals = due.registrations[j : j + BATCH_MAX]
            steps = {d: {"what": "registration_requested"} for d in deals}
            single = ("requestRegistration", (deals[0],))
            self._send(broker, escrow, steps, ("requestRegistrations", (deals,)), single)

    def _send(
        self,
        broker: str,
        contract: Contract,
        steps: dict[int, dict[str, Any]],
        batch: tuple[str, tuple[Any, ...]],
        single: tuple[str, tuple[Any, ...]],
    ) -> None:
        """Sign and send the batch call for these deals' steps, or for one deal its single call
        (a batch of one costs ~3,000 gas more), without waiting for it."""
        sender = self.b._broker(broker)
        fn, args = single if len(steps) == 1 else batch
        memo = deal_memo(next(iter(steps)), fn) if len(steps) == 1 else f"{fn}:{len(steps)} deals"
        try:
            tx_hash = contract.send(sender, fn, *args, memo=memo)
        except ContractRevert as exc:  # found by the gas estimate: nothing was sent
            for deal, step in steps.items():
                self._log("not_yet", deal, **_refused_fields(step), error=exc.name)
            return
        except TransactionError as exc:
            self._log("send_failed", None, batch=fn, deals=list(steps), error=str(exc))
            return
        self.sent[tx_hash] = Sent(contract, sender, steps, time.monotonic())

    def _confirm(self) -> int:
        """Read the receipts of every step transaction on its way, in one batch; log each step
        as taken or refused (its item's ItemFailed, or the whole transaction's revert). Returns
        the steps applied."""
        if not self.sent:
            return 0
        hashes = list(self.sent)
        receipts = self.b.session.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        taken = 0
        now = time.monotonic()
        for tx_hash, raw in zip(hashes, receipts, strict=True):
            sent = self.sent[tx_hash]
            if isinstance(raw, Exception) or raw is None:
                if now - sent.checked >= STRANDED_AFTER:
                    # as Sender.wait does: twice found never to be mined (the node lost it, or it
                    # waits behind a nonce the node lost), it is dropped and its steps are due again
                    why = sent.sender.stranded(tx_hash)
                    sent.checked, sent.strikes = now, sent.strikes + 1 if why else 0
                    if sent.strikes >= 2:
                        del self.sent[tx_hash]
                        sent.sender.resync()
                        self._log("dropped", None, tx=tx_hash, deals=list(sent.steps), why=why)
                        self._mark_dirty(sent.steps)
                continue
            del self.sent[tx_hash]  # its deals' events (or a refusal) make them worth a look again
            receipt = Receipt.from_rpc(raw)
            refused = self._refused(sent, receipt)
            for deal, step in sent.steps.items():
                fields = {k: v for k, v in step.items() if k != "what"}
                if deal in refused:
                    self._log("not_yet", deal, **_refused_fields(step), error=refused[deal])
                else:
                    self._log(step["what"], deal, **fields, tx=tx_hash)
                    taken += 1
        return taken

    def _note_buyer(self, buyer: str) -> None:
        """A buyer's certificate came in: its deals may now apply for their loans."""
        with self._lock:
            self.paid.add(buyer)

    def _mark_dirty(self, deals: Iterable[int]) -> None:
        with self._lock:
            self.dirty |= set(deals)

    def _refused(self, sent: Sent, receipt: Receipt) -> dict[int, str]:
        """The deals whose step this transaction did not take -> the custom error's name: all of
        a reverted transaction's (a single call's revert), or a batch's ItemFailed items."""
        if receipt.status != 1:
            rpc, errors = self.b.session.rpc, self.b.session.errors
            failure = explain_failure(rpc, errors, receipt.tx_hash, receipt)
            name = failure.name if isinstance(failure, ContractRevert) else str(failure)
            return dict.fromkeys(sent.steps, name)
        out: dict[int, str] = {}
        for event in sent.contract.events(receipt):
            if event.event == "ItemFailed":
                reason = event.args["reason"]
                data = bytes.fromhex(reason[2:]) if isinstance(reason, str) else bytes(reason)
                out[int(event.args["dealId"])] = self.b.session.errors.decode(data).name
        return out

    def _credentials(self, buyers: list[str]) -> dict[str, list[str]]:
        """Each buyer's newest valid resident-registration and income certificates, if it has
        both; their validity read for all buyers in one batch of views."""
        candidates = {
            buyer: [(h, int(doc["kind"])) for h, doc in self.b.wallet.by_subject(buyer)]
            for buyer in dict.fromkeys(buyers)
        }
        registry = self.b.c["CredentialRegistry"]
        calls = [
            (registry, "isValid", (h, buyer, kind)) for buyer, docs in candidates.items() for h, kind in docs
        ]
        valid = iter(call_many(calls))
        out: dict[str, list[str]] = {}
        for buyer, docs in candidates.items():
            found: dict[int, str] = {}
            for h, kind in docs:
                if next(valid) and kind not in found:
                    found[kind] = h
            if all(k in found for k in WANTED):
                out[buyer] = [found[k] for k in WANTED]
        return out

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


def _refused_fields(step: dict[str, Any]) -> dict[str, Any]:
    """What a refused step's log says it was: a payment's kind, or the step's name."""
    if step["what"] == "paid":
        return {"kind": step["kind"]}
    return {"step": {"registration_requested": "registration", "loan_applied": "loan"}[step["what"]]}
