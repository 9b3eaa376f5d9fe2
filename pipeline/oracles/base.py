"""The oracle loop: events in, exactly-once effects out.

For each confirmed event (from the reorg-safe stream), an oracle plans an effect keyed by
what it does, asks its institution's adapter, signs the resulting transactions, and records
event + effect + signed transactions + cursor in one database transaction before anything
is broadcast (an outbox). Broadcasting and receipts come after; a restart re-broadcasts what
the outbox holds. Adapter failures are retried inside the hook client, then the item is
parked with its reason and nothing is written on chain.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chain.contract import Contract
from chain.errors import ChainError, ContractRevert, TransactionError
from chain.events import Batch, ChainEvent, Cursor, EventStream
from chain.sender import Sender
from pipeline.adapters.http import AdapterError
from pipeline.faults import checkpoint
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
        """Finish what a previous run recorded but may not have broadcast or seen mined."""
        for effect in self.store.effects(status="signed"):
            self._deliver(effect)
        self.sender.resync()
        self._recovered = True

    def step(self) -> Batch:
        """One poll of the stream; every event in it is handled before returning."""
        if not self._recovered:
            self.recover()
        start = self.stream.cursor
        batch = self.stream.poll()
        if batch.rewound_to is not None:
            orphans = self.store.orphan_after(batch.rewound_to)
            self.sender.resync()
            self._log("reorg", rewound_to=batch.rewound_to, orphaned=[o.key for o in orphans])
            self.store.save_cursor(batch.cursor)
            return batch
        for event in batch.events:
            self._handle(event, start)
        if batch.events or batch.cursor.next_block != start.next_block:
            self.store.save_cursor(batch.cursor)  # an idle poll changes nothing worth a write
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
        self._deliver(effect)
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
            except (ChainError, OSError) as exc:  # node restarting, network: keep trying
                self._log("loop_error", error=str(exc))
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

    def _deliver(self, effect: Effect) -> None:
        try:
            for tx in effect.txs:
                self.sender.broadcast(tx)
                checkpoint("after_broadcast", effect.kind)
                self.sender.wait(tx.hash)
        except ContractRevert as exc:
            self.store.finish(
                effect.key, "reverted", f"{exc.name}({json.dumps(exc.args_by_name, default=str)})"
            )
            self._log("reverted", deal_id=effect.deal_id, effect=effect.key, error=exc.name, tx=exc.tx_hash)
            return
        except TransactionError as exc:
            self.store.finish(effect.key, "failed", str(exc))
            self.sender.resync()
            self._log("failed", deal_id=effect.deal_id, effect=effect.key, error=str(exc))
            return
        checkpoint("after_mined", effect.kind)
        latency = self.store.finish(effect.key, "mined")
        last_tx = effect.txs[-1].hash if effect.txs else None
        self._log(
            "done", deal_id=effect.deal_id, effect=effect.key, tx=last_tx, latency_ms=round(latency or 0, 1)
        )

    def _log(self, what: str, **fields: Any) -> None:
        log.info(json.dumps({"oracle": self.name, "event": what, **fields}, default=str))
