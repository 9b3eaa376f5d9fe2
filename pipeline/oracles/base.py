"""The oracle loop: events in, exactly-once effects out.

For each confirmed event (from the reorg-safe stream), an oracle plans an effect keyed by
what it does, asks its institution's adapter, signs the resulting transactions, and records
event + effect + signed transactions + cursor in one database transaction before anything
is broadcast (an outbox). Broadcasting and receipts come after; a restart re-broadcasts what
the outbox holds. Adapter failures are retried inside the hook client, then the item is
parked with its reason and nothing is written on chain.

A reorg can drop an oracle's own transactions as well as the events it acted on. The
stream's reorg check covers the blocks it has read; the oracle's transactions usually land
in blocks it has not read yet, so each is checked once more when the stream reads past its
block, before any newer event is acted on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chain.contract import Contract
from chain.errors import ChainError, ContractRevert, TransactionError, TransactionLost, TransactionTimeout
from chain.events import Batch, ChainEvent, Cursor, EventStream
from chain.sender import Receipt, Sender, SignedTx
from pipeline.adapters.http import AdapterError
from pipeline.faults import checkpoint
from pipeline.journal import deal_memo
from pipeline.store import Effect, OracleStore

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
        self._recovered = False
        self._direct = threading.Lock()

    # --- to implement ---------------------------------------------------------------------
    def plan(self, event: ChainEvent) -> Plan | None:
        raise NotImplementedError

    def execute(self, plan: Plan, event: ChainEvent) -> Action | None:
        raise NotImplementedError

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
                self._reconcile(self.store.effects_after(batch.rewound_to, sources=True), batch.rewound_to)
                self.sender.resync()
                self.store.save_cursor(batch.cursor)
                return batch
            if batch.cursor.next_block != start.next_block:
                self._reconcile(self.store.effects_after(start.next_block - 1))
            for event in batch.events:
                self._handle(event, start)
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
            self._deliver(effect)
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
    def _handle(self, event: ChainEvent, cursor: Any) -> None:
        key = event.id.key()
        if self.store.is_processed(key):
            return  # delivered twice (a replay, a restart mid-batch): already handled
        plan = self.plan(event)
        if plan is None:
            return
        seen = time.time()
        if self.store.effect(plan.effect_key) is not None:
            self.store.record_skip(key, event.block_number, cursor, plan.effect_key)
            return
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
        self._deliver(effect)

    def _reconcile(self, effects: list[Effect], rewound_to: int | None = None) -> None:
        """Check `effects` against the chain as it is now: after a reorg that dropped the blocks
        after `rewound_to`, or once the stream has read past the blocks their transactions went
        into. An effect whose source event went is done afresh from the re-included event,
        unless any of its transactions is (again) on chain or in the node's pool: then it
        stands, for doing it again could do it twice. An effect whose transactions went is sent
        again, from the outbox."""
        if not effects and rewound_to is None:
            return
        hashes = [t.hash for e in effects for t in e.txs]
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
                if all(r is not None and r.status == 1 for r in found):
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
        lost = [t for e in effects for t in e.txs if receipts[t.hash] is None and t.hash not in pooled]
        held = {t.nonce for e in effects for t in e.txs if t.hash in pooled}
        held |= {t.nonce for e in self.store.effects(status="signed") if e.key not in keys for t in e.txs}
        fresh = self.sender.reissue(lost, held)
        return {e.key: [fresh.get(t.hash, t) for t in e.txs] for e in effects}

    def _deliver_in_order(self, effects: list[Effect]) -> None:
        """Deliver in nonce order: a later nonce first would wait on the earlier one."""
        for effect in sorted(effects, key=lambda e: min((t.nonce for t in e.txs), default=-1)):
            self._deliver(effect)

    def _deliver(self, effect: Effect) -> None:
        blocks = []
        try:
            for tx in effect.txs:
                self.sender.broadcast(tx, memo=deal_memo(effect.deal_id, effect.kind))
                checkpoint("after_broadcast", effect.kind)
                blocks.append(self.sender.wait(tx.hash).block_number)
        except ContractRevert as exc:
            self.store.finish(
                effect.key, "reverted", f"{exc.name}({json.dumps(exc.args_by_name, default=str)})"
            )
            self._log("reverted", deal_id=effect.deal_id, effect=effect.key, error=exc.name, tx=exc.tx_hash)
            return
        except (TransactionTimeout, TransactionLost) as exc:
            # Sent, not yet mined, and it still may be: calling it failed would leave the books
            # wrong if it is, and the deal stalled if it is not. It stays in the outbox; the
            # loop sends it again and waits (its later nonces could not be mined before it).
            # Lost with a restarted node, or stranded behind a nonce it lost: the loop's
            # redelivery, in nonce order, puts it and what it waits behind back.
            self._log("not_mined_yet", deal_id=effect.deal_id, effect=effect.key, error=str(exc))
            raise
        except TransactionError as exc:
            self.store.finish(effect.key, "failed", str(exc))
            self.sender.resync()
            self._log("failed", deal_id=effect.deal_id, effect=effect.key, error=str(exc))
            return
        checkpoint("after_mined", effect.kind)
        latency = self.store.finish(effect.key, "mined", block=max(blocks, default=None))
        last_tx = effect.txs[-1].hash if effect.txs else None
        self._log(
            "done", deal_id=effect.deal_id, effect=effect.key, tx=last_tx, latency_ms=round(latency or 0, 1)
        )

    def _log(self, what: str, **fields: Any) -> None:
        log.info(json.dumps({"oracle": self.name, "event": what, **fields}, default=str))
