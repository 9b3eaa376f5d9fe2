"""The oracle loop: events in, exactly-once effects out.

For each confirmed event (from the reorg-safe stream), an oracle plans an effect keyed by
what it does, asks its institution's adapter, signs the resulting transactions, and records
event + effect + signed transactions + cursor in one database transaction before anything
is broadcast (an outbox). Broadcasting and receipts come after; a restart re-broadcasts what
the outbox holds. Adapter failures are retried inside the hook client, then the item is
parked with its reason and nothing is written on chain.

Within one poll, every effect that is a single call with a batch entry point (BATCHES) waits
until all the poll's events are handled; then those of one contract and entry point are
signed into ONE transaction (a lone one as its plain single call) and recorded together, each
effect its own row holding that transaction. Delivery broadcasts each distinct transaction
once, reads the receipts in one JSON-RPC batch, and marks each effect mined, or reverted with
its item's error when the batch refused it (ItemFailed). An effect of several calls, or of a
call without a batch, is signed, recorded and delivered as its event is handled.

A reorg can drop an oracle's own transactions as well as the events it acted on. The
stream's reorg check covers the blocks it has read; the oracle's transactions usually land
in blocks it has not read yet, so each is checked once more when the stream reads past its
block, before any newer event is acted on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chain.contract import Contract
from chain.errors import ChainError, ContractRevert, TransactionError, TransactionLost, TransactionTimeout
from chain.events import Batch, ChainEvent, Cursor, EventStream
from chain.sender import Receipt, Sender, SignedTx, explain_failure
from pipeline.adapters.http import AdapterError
from pipeline.faults import checkpoint
from pipeline.journal import deal_memo
from pipeline.store import Effect, NewEffect, OracleStore

log = logging.getLogger("deedchain.oracle")


@dataclass(frozen=True)
class Plan:
    """An effect an event calls for, named before any adapter is asked."""

    effect_key: str
    deal_id: int | None
    kind: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    contract: Contract
    fn: str
    args: tuple[Any, ...]
    gas: int


@dataclass(frozen=True)
class Action:
    answer: dict[str, Any]
    calls: list[Call]


def _columns(items: list[tuple[str, tuple[Any, ...]]]) -> tuple[Any, ...]:
    """The single calls' arguments as the batch's arrays, one per parameter."""
    return tuple(list(column) for column in zip(*(args for _fn, args in items), strict=True))


def _decisions(items: list[tuple[str, tuple[Any, ...]]]) -> tuple[Any, ...]:
    """approveLoan / rejectLoan as LoanBook.LoanDecision structs."""
    out = []
    for fn, args in items:
        if fn == "approveLoan":
            deal, amount, rate, term, max_secured = args
            out.append((deal, True, amount, rate, term, max_secured, 0))
        else:
            deal, reason = args
            out.append((deal, False, 0, 0, 0, 0, reason))
    return (out,)


# (contract, single call) -> its batch entry point and how items become its arguments
# (contracts/README.md). Every single call listed takes the deal id first.
BATCHES: dict[tuple[str, str], tuple[str, Callable[[list[tuple[str, tuple[Any, ...]]]], tuple[Any, ...]]]] = {
    ("DealEscrow", "recordTransactionReport"): ("recordTransactionReports", _columns),
    ("DealEscrow", "settle"): ("settleMany", _columns),
    ("DealEscrow", "refund"): ("refundMany", _columns),
    ("LoanBook", "approveLoan"): ("recordLoanDecisions", _decisions),
    ("LoanBook", "rejectLoan"): ("recordLoanDecisions", _decisions),
    ("LoanBook", "disburse"): ("disburseMany", _columns),
    ("LoanBook", "statePayoff"): ("statePayoffs", _columns),
}
# Single calls merged across a poll's effects into one call: a bank's mints of its own reserve
# (the money each disbursement then pays out) become one mint of their sum.
MERGED = {("DepositToken", "mint")}
BATCH_MAX = 100  # items per batch transaction
# The items' single-call gas summed stays under this: a third of a 30 M block, so a batch of
# settlements is mined next to other senders' transactions.
BATCH_GAS = 10_000_000


@dataclass(frozen=True)
class _Due:
    """An effect of this poll waiting to be signed, call by call, into the batch transactions of
    the effects of its shape."""

    event_key: str
    block: int
    plan: Plan
    action: Action
    seen_at: float

    @property
    def shape(self) -> tuple[tuple[str, str], ...]:
        """Per call, the transaction it joins: (contract address, batch entry point), or for a
        merged call its recipient too."""
        return tuple(
            (c.contract.address, f"{c.fn}:{c.args[0]}")
            if (c.contract.name, c.fn) in MERGED
            else (c.contract.address, BATCHES[(c.contract.name, c.fn)][0])
            for c in self.action.calls
        )

    @property
    def gas(self) -> int:
        return sum(c.gas for c in self.action.calls)


def _batchable(action: Action) -> bool:
    keys = [(c.contract.name, c.fn) for c in action.calls]
    return bool(keys) and all(k in BATCHES or k in MERGED for k in keys) and any(k in BATCHES for k in keys)


class Parked(Exception):
    """Raised by execute(): the effect cannot be done now, for the reason given."""


class Oracle:
    name = "oracle"
    events: frozenset[str] = frozenset()  # the event names plan() looks at: the stream asks only for these

    def __init__(
        self,
        *,
        stream: EventStream,
        sender: Sender,
        store: OracleStore,
        contracts: dict[str, Contract],
    ) -> None:
        self.stream = stream
        self.sender = sender
        self.store = store
        self.contracts = contracts
        self.me = sender.address
        # (address, topic) of each contract's ItemFailed: the batch results, found without
        # decoding the batch's other logs
        self._item_failed = {
            (c.address.lower(), c.abi.topic("ItemFailed")): c
            for c in contracts.values()
            if "ItemFailed" in c.abi.events_by_name
        }
        self._recovered = False
        self._direct = threading.Lock()
        self._terms: dict[int, dict[str, Any]] = {}  # deal -> its terms, which never change

    # --- to implement ---------------------------------------------------------------------
    def plan(self, event: ChainEvent) -> Plan | None:
        raise NotImplementedError

    def execute(self, plan: Plan, event: ChainEvent) -> Action | None:
        raise NotImplementedError

    def after(self, plan: Plan) -> tuple[str, ...]:
        """Effects of this oracle that must be on chain before `plan` is executed (its dry run
        would fail without them). One still due in this poll's batches is sent first."""
        return ()

    def terms(self, deal: int) -> dict[str, Any]:
        """The deal's terms, read once: they never change after it opens (a reorg, which could
        give its id to other terms, forgets them all)."""
        found = self._terms.get(deal)
        if found is None:
            found = self._terms[deal] = self.contracts["DealEscrow"].call("terms", deal)
        return found

    # --- the loop ---------------------------------------------------------------------------
    def recover(self) -> None:
        """Finish what a previous run (or try) recorded but may not have broadcast or seen mined."""
        self._deliver_in_order(self.store.effects(status="signed"))
        self.sender.resync()
        self._recovered = True

    def step(self) -> Batch:
        """One poll of the stream; every event in it is handled before returning."""
        if not self._recovered:
            self.recover()
        start = self.stream.cursor
        try:
            batch = self.stream.poll()
            if batch.rewound_to is not None:
                self._terms.clear()
                self._reconcile(self.store.effects_after(batch.rewound_to, sources=True), batch.rewound_to)
                self.sender.resync()
                self.store.save_cursor(batch.cursor)
                return batch
            if batch.cursor.next_block != start.next_block:
                self._reconcile(self.store.effects_after(start.next_block - 1))
            due: dict[str, _Due] = {}
            for event in batch.events:
                self._handle(event, start, due)
            self._send_due(list(due.values()), start)
            if batch.events or batch.cursor.next_block != start.next_block:
                self.store.save_cursor(batch.cursor)  # an idle poll changes nothing worth a write
        except BaseException:
            # The stream moved on when it read the batch; whatever was not handled is read again.
            self.stream.cursor = start
            raise
        return batch

    def submit(self, effect_key: str, deal_id: int | None, kind: str, action: Action) -> Effect:
        """Carry out an effect asked for directly (not by an event), exactly once per key."""
        with self._direct:
            existing = self.store.effect(effect_key)
            if existing is not None:
                return existing
            signed = self.sender.sign_batch(
                [(c.contract.address, c.contract.encode(c.fn, *c.args), c.gas) for c in action.calls]
            )
            try:
                self.store.record_direct(
                    effect_key=effect_key, deal_id=deal_id, kind=kind, answer=action.answer, txs=signed
                )
            except Exception:
                self.sender.resync()
                raise
        effect = self.store.effect(effect_key)
        assert effect is not None
        try:
            self._deliver_in_order([effect])
        except Exception:
            self._recovered = False  # the loop sends it once the node answers again
            raise
        done = self.store.effect(effect_key)
        assert done is not None
        return done

    def retry_parked(self, effect_key: str) -> bool:
        """Try a parked effect again: forget it and re-read the blocks from its source event."""
        effect = self.store.effect(effect_key)
        if effect is None or effect.status != "parked":
            return False
        self.store.retry_parked(effect_key)
        if self.stream.cursor.next_block > effect.source_block:
            hashes = {n: h for n, h in self.stream.cursor.hashes.items() if n < effect.source_block}
            self.stream.cursor = Cursor(effect.source_block, hashes)
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch = self.step()
            except Exception as exc:
                # Node restarting, network (ChainError, OSError), or a bug: this oracle is the
                # institution's only voice on chain, so it keeps trying, and drains its outbox
                # again before reading on.
                if isinstance(exc, ChainError | OSError):
                    self._log("loop_error", error=str(exc))
                else:
                    log.exception(
                        json.dumps({"oracle": self.name, "event": "loop_error", "error": repr(exc)})
                    )
                self._recovered = False
                stop.wait(1.0)
                continue
            if batch.caught_up and not batch.events:
                stop.wait(self.stream.poll_interval)

    # --- one event ----------------------------------------------------------------------------
    def _handle(self, event: ChainEvent, cursor: Any, due: dict[str, _Due]) -> None:
        """Plan and execute the event's effect. One that is a single batchable call waits in
        `due` for the poll's batch transactions; any other is recorded and delivered at once."""
        key = event.id.key()
        if self.store.is_processed(key) or any(d.event_key == key for d in due.values()):
            return  # delivered twice (a replay, a restart mid-batch): already handled
        plan = self.plan(event)
        if plan is None:
            return
        seen = time.time()
        if plan.effect_key in due or self.store.effect(plan.effect_key) is not None:
            # one already due in this poll is recorded with its own event, or read again with it
            self.store.record_skip(key, event.block_number, cursor, plan.effect_key)
            return
        if any(key in due for key in self.after(plan)):
            self._send_due(list(due.values()), cursor)
            due.clear()
        checkpoint("before_adapter", plan.kind)
        try:
            action = self.execute(plan, event)
        except (AdapterError, Parked) as exc:
            self.store.record_effect(
                event_key=key, block=event.block_number, cursor=cursor, effect_key=plan.effect_key,
                deal_id=plan.deal_id, kind=plan.kind, answer={}, txs=[], seen_at=seen,
                status="parked", error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            self._log("parked", deal_id=plan.deal_id, effect=plan.effect_key, reason=str(exc))
            return
        if action is None:
            self.store.record_skip(key, event.block_number, cursor)
            return
        checkpoint("after_adapter", plan.kind)
        if _batchable(action):
            due[plan.effect_key] = _Due(key, event.block_number, plan, action, seen)
            return
        signed = self.sender.sign_batch(
            [(c.contract.address, c.contract.encode(c.fn, *c.args), c.gas) for c in action.calls]
        )
        try:
            self.store.record_effect(
                event_key=key, block=event.block_number, cursor=cursor, effect_key=plan.effect_key,
                deal_id=plan.deal_id, kind=plan.kind, answer=action.answer, txs=signed, seen_at=seen,
            )  # fmt: skip
        except Exception:
            self.sender.resync()  # the signed nonces were never used
            raise
        checkpoint("after_record", plan.kind)
        effect = self.store.effect(plan.effect_key)
        assert effect is not None
        self._deliver_in_order([effect])

    def _send_due(self, due: list[_Due], cursor: Cursor) -> None:
        """Sign the poll's due effects of one shape into one transaction per call position
        (its contract's batch entry point, a merged call, or for a lone effect its plain single
        calls), record them all with their events in one database transaction, then deliver
        each transaction once."""
        if not due:
            return
        chunks: dict[tuple[tuple[str, str], ...], list[list[_Due]]] = {}
        for d in due:
            found = chunks.setdefault(d.shape, [[]])
            last = found[-1]
            full = len(last) >= BATCH_MAX or sum(x.gas for x in last) + d.gas > BATCH_GAS
            # ItemFailed names an item by its deal: one deal appears once per transaction
            if full or any(x.plan.deal_id == d.plan.deal_id for x in last):
                found.append([d])
            else:
                last.append(d)
        groups = [chunk for found in chunks.values() for chunk in found if chunk]
        calls = [self._batch_call(chunk, i) for chunk in groups for i in range(len(chunk[0].action.calls))]
        signed = iter(self.sender.sign_batch(calls))
        rows = []
        for chunk in groups:
            txs = [next(signed) for _ in chunk[0].action.calls]
            rows += [
                NewEffect(
                    d.event_key,
                    d.block,
                    d.plan.effect_key,
                    d.plan.deal_id,
                    d.plan.kind,
                    d.action.answer,
                    txs,
                    d.seen_at,
                )
                for d in chunk
            ]
        try:
            self.store.record_effects(cursor, rows)
        except Exception:
            self.sender.resync()  # the signed nonces were never used
            raise
        for kind in dict.fromkeys(d.plan.kind for d in due):
            checkpoint("after_record", kind)
        effects = [self.store.effect(d.plan.effect_key) for d in due]
        self._deliver_in_order([e for e in effects if e is not None])

    @staticmethod
    def _batch_call(chunk: list[_Due], position: int) -> tuple[str, str, int]:
        """The transaction of the chunk's calls at `position`: (to, data, gas)."""
        items = [d.action.calls[position] for d in chunk]
        first = items[0]
        if (first.contract.name, first.fn) in MERGED:  # mint(to, amount): one mint of the sum
            total = sum(c.args[1] for c in items)
            return first.contract.address, first.contract.encode(first.fn, first.args[0], total), first.gas
        if len(items) == 1:  # a batch of one costs 2-3k gas more than its single call
            return first.contract.address, first.contract.encode(first.fn, *first.args), first.gas
        batch_fn, arrange = BATCHES[(first.contract.name, first.fn)]
        data = first.contract.encode(batch_fn, *arrange([(c.fn, c.args) for c in items]))
        # each item's single-call gas includes the 21,000 a batch item does not pay: room for
        # the loop and the self-call, so no item runs out of gas
        return first.contract.address, data, sum(c.gas for c in items)

    def _reconcile(self, effects: list[Effect], rewound_to: int | None = None) -> None:
        """Check `effects` against the chain as it is now: after a reorg that dropped the blocks
        after `rewound_to`, or once the stream has read past the blocks their transactions went
        into. An effect whose source event went is done afresh from the re-included event,
        unless any of its transactions is (again) on chain or in the node's pool: then it
        stands, for doing it again could do it twice. An effect whose transactions went is sent
        again, from the outbox."""
        if not effects and rewound_to is None:
            return
        hashes = list(dict.fromkeys(t.hash for e in effects for t in e.txs))  # a batch's tx once
        receipts: dict[str, Receipt | None] = dict(zip(hashes, self.sender.receipts(hashes), strict=True))
        absent = [h for h, r in receipts.items() if r is None]
        pooled = {h for h, known in zip(absent, self.sender.known(absent), strict=True) if known}
        orphans: list[str] = []
        mined_at: dict[str, int] = {}
        reopen: list[Effect] = []
        for e in effects:
            source_gone = rewound_to is not None and e.source_block > rewound_to
            on_its_way = any(receipts[t.hash] is not None or t.hash in pooled for t in e.txs)
            if source_gone and not on_its_way:
                orphans.append(e.key)
            elif e.status == "mined" and e.txs:
                found = [receipts[t.hash] for t in e.txs]
                # a batch re-included in another order may now refuse this effect's item
                if all(r is not None and r.status == 1 and not self._item_error(r, e) for r in found):
                    block = max(r.block_number for r in found if r is not None)
                    if block != e.mined_block:
                        mined_at[e.key] = block
                else:
                    reopen.append(e)
        if rewound_to is None and not (mined_at or reopen):
            return  # all as recorded: the common case, with nothing to write
        with self._direct:  # no direct effect is signed meanwhile: the nonces below stay ours
            resend = self._reissue(reopen, receipts, pooled)
            try:
                self.store.reconcile(rewound_to=rewound_to, orphans=orphans, mined_at=mined_at, resend=resend)
            except Exception:
                self.sender.resync()
                raise
        if rewound_to is not None or orphans or resend:
            self._log("reorg", rewound_to=rewound_to, orphaned=orphans, resent=list(resend))
        self._deliver_in_order([e for e in self.store.effects(status="signed") if e.key in resend])

    def _reissue(
        self, effects: list[Effect], receipts: dict[str, Receipt | None], pooled: set[str]
    ) -> dict[str, list[SignedTx]]:
        """The transactions to send again for `effects`, whose own a reorg dropped: the dropped
        ones as they are while their nonces are still free and next, else signed anew."""
        if not effects:
            return {}
        keys = {e.key for e in effects}
        # a batch transaction shared by several effects is sent again once, for all of them
        lost = list(
            {
                t.hash: t for e in effects for t in e.txs if receipts[t.hash] is None and t.hash not in pooled
            }.values()
        )
        held = {t.nonce for e in effects for t in e.txs if t.hash in pooled}
        held |= {t.nonce for e in self.store.effects(status="signed") if e.key not in keys for t in e.txs}
        fresh = self.sender.reissue(lost, held)
        return {e.key: [fresh.get(t.hash, t) for t in e.txs] for e in effects}

    def _deliver_in_order(self, effects: list[Effect]) -> None:
        """Deliver `effects`: each distinct transaction broadcast once, in nonce order (a later
        nonce first would wait on the earlier one), the receipts read in batches, then each
        effect marked: mined once all its transactions are, else reverted with the first error
        (a whole transaction's, or in a batch its item's: ItemFailed) or failed."""
        by_txs: dict[tuple[str, ...], list[Effect]] = {}
        for effect in effects:
            by_txs.setdefault(tuple(t.hash for t in effect.txs), []).append(effect)
        txs = sorted({t.hash: t for e in effects for t in e.txs}.values(), key=lambda t: t.nonce)
        memos = {}
        for group in by_txs.values():
            first = group[0]
            memo = (
                deal_memo(first.deal_id, first.kind)
                if len(group) == 1
                else f"{first.kind}:{len(group)} deals"
            )
            memos.update({t.hash: memo for t in first.txs})
        refused: dict[str, str] = {}
        sent: list[str] = []
        for tx in txs:
            try:
                self.sender.broadcast(tx, memo=memos[tx.hash])
            except TransactionError as exc:
                refused[tx.hash] = str(exc)
                self.sender.resync()
                continue
            sent.append(tx.hash)
        for kind in dict.fromkeys(e.kind for e in effects if any(t.hash in sent for t in e.txs)):
            checkpoint("after_broadcast", kind)
        try:
            receipts = self._receipts(sent)
        except (TransactionTimeout, TransactionLost) as exc:
            # Sent, not yet mined, and it still may be: calling it failed would leave the books
            # wrong if it is, and the deal stalled if it is not. It stays in the outbox; the
            # loop sends it again and waits (its later nonces could not be mined before it).
            # Lost with a restarted node, or stranded behind a nonce it lost: the loop's
            # redelivery, in nonce order, puts it and what it waits behind back.
            for effect in effects:
                if effect.txs and not refused.keys() & {t.hash for t in effect.txs}:
                    self._log("not_mined_yet", deal_id=effect.deal_id, effect=effect.key, error=str(exc))
            raise
        for kind in dict.fromkeys(e.kind for e in effects if all(t.hash in receipts for t in e.txs)):
            checkpoint("after_mined", kind)
        failures = {
            h: explain_failure(self.sender.rpc, self.sender.errors, h, r)  # the whole transaction
            for h, r in receipts.items()
            if r.status != 1
        }
        for effect in effects:
            self._mark(effect, receipts, failures, refused)

    def _mark(
        self,
        effect: Effect,
        receipts: dict[str, Receipt],
        failures: dict[str, ContractRevert | TransactionError],
        refused: dict[str, str],
    ) -> None:
        for tx in effect.txs:
            if tx.hash in refused:
                self.store.finish(effect.key, "failed", refused[tx.hash])
                self._log("failed", deal_id=effect.deal_id, effect=effect.key, error=refused[tx.hash])
                return
            error = failures.get(tx.hash) or self._item_error(receipts[tx.hash], effect)
            if isinstance(error, ContractRevert):
                reason = f"{error.name}({json.dumps(error.args_by_name, default=str)})"
                self.store.finish(effect.key, "reverted", reason)
                self._log("reverted", deal_id=effect.deal_id, effect=effect.key, error=error.name, tx=tx.hash)
                return
            if error is not None:
                self.store.finish(effect.key, "failed", str(error))
                self._log("failed", deal_id=effect.deal_id, effect=effect.key, error=str(error))
                return
        block = max((receipts[t.hash].block_number for t in effect.txs), default=None)
        latency = self.store.finish(effect.key, "mined", block=block)
        self._log(
            "done", deal_id=effect.deal_id, effect=effect.key, tx=effect.txs[-1].hash if effect.txs else None,
            latency_ms=round(latency or 0, 1),
        )  # fmt: skip

    def _receipts(self, hashes: list[str]) -> dict[str, Receipt]:
        """Receipts of `hashes`, read in one JSON-RPC batch for as long as some are missing; the
        Sender's wait (its timeout, its lost-transaction checks) for the first one missing."""
        found: dict[str, Receipt] = {}
        pending = hashes
        while pending:
            for tx_hash, receipt in zip(pending, self.sender.receipts(pending), strict=True):
                if receipt is not None:
                    found[tx_hash] = receipt
            pending = [h for h in pending if h not in found]
            if pending:
                with contextlib.suppress(ContractRevert):  # mined, and failed: the next read has it
                    self.sender.wait(pending[0])
        return found

    def _item_error(self, receipt: Receipt, effect: Effect) -> ContractRevert | None:
        """The revert of the effect's item, if the batch in `receipt` refused it (ItemFailed)."""
        for log_ in receipt.logs:
            contract = self._item_failed.get(
                (log_["address"].lower(), log_["topics"][0] if log_["topics"] else "")
            )
            if contract is None or int(log_["topics"][1], 16) != effect.deal_id:
                continue
            event = contract.abi.decode_log(log_)
            assert event is not None
            reason = event.args["reason"]
            data = bytes.fromhex(reason[2:]) if isinstance(reason, str) else bytes(reason)
            return self.sender.errors.decode(data, receipt.tx_hash)
        return None

    def _log(self, what: str, **fields: Any) -> None:
        log.info(json.dumps({"oracle": self.name, "event": what, **fields}, default=str))
