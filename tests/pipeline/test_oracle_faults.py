"""Faults: crashes at every step, institutions that time out, fail or answer garbage, reorgs,
events delivered twice. Every deal completes exactly once; nothing wrong is written on chain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from fastapi import FastAPI, Request, Response

from chain.events import ChainEvent, Cursor, EventId
from chain.node import free_port
from chain.txsign import TxSigner
from pipeline.adapters.http import BANK_METHODS, HookClient, HttpBank, ServiceThread, make_service, sign
from pipeline.domain import Party, State
from pipeline.faults import CRASH_ENV
from pipeline.oracles.base import Parked, Plan
from tests.pipeline.harness import SECRET, Closing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def closing(world, tmp_path):
    c = Closing(world, tmp_path)
    yield c
    c.close()


# --- HTTP hooks ----------------------------------------------------------------------------------


def test_full_closing_over_http_hooks(world, tmp_path):
    c = Closing(world, tmp_path, http=True)
    try:
        deal, _ = c.full_deal()
        assert world.state(deal) == State.SETTLED
        assert set(c.effects(deal).values()) == {"mined"}
        # a request without the institution's signature is refused
        unsigned = requests.post(
            c.services[0].url, json={"id": "x", "data": {"method": "disburse", "params": {}}}
        )
        assert unsigned.status_code == 401
    finally:
        c.close()


class FaultyBank:
    """An HTTP service that misbehaves in a chosen way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0
        app = FastAPI()

        @app.post("/")
        async def hook(request: Request) -> Response:
            self.calls += 1
            doc = json.loads(await request.body())
            if self.mode == "timeout":
                await asyncio.sleep(1.0)
                return Response(b"{}", media_type="application/json")
            if self.mode == "500":
                return Response(b"boom", status_code=500)
            if self.mode == "unsigned":
                body = json.dumps({"id": doc["id"], "data": {"approved": True}}).encode()
                return Response(body, media_type="application/json")
            # "garbage": properly signed, but not a loan decision
            body = json.dumps({"id": doc["id"], "data": {"approved": "yes please", "rate_bps": -5}}).encode()
            stamp = str(int(time.time()))
            headers = {
                "X-Deedchain-Timestamp": stamp,
                "X-Deedchain-Signature": sign(SECRET["lender"], stamp, body),
            }
            return Response(body, media_type="application/json", headers=headers)

        self.app = app


@pytest.mark.parametrize("mode", ["timeout", "500", "unsigned", "garbage"])
def test_bad_institution_is_retried_then_parked_and_nothing_goes_on_chain(world, tmp_path, mode):
    c = Closing(world, tmp_path)
    faulty = FaultyBank(mode)
    service = ServiceThread(faulty.app, free_port()).start()
    healthy = ServiceThread(
        make_service(c.lender, SECRET["lender"], BANK_METHODS, "lender"), free_port()
    ).start()
    c.services += [service, healthy]
    client = HookClient(service.url, SECRET["lender"], timeout=0.3, retries=2, backoff=0.05)
    c.adapters["lender"] = HttpBank(client)
    c.oracles = c.make_oracles()
    lender_oracle = c.oracles[1]
    try:
        w = world
        deal, terms = c.open_signed()
        w.pay(deal, "payDeposit", "buyer", terms.deposit)
        w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, c.credentials())
        c.pump(lambda: lender_oracle.store.effect(f"decision:{deal}") is not None)

        effect = lender_oracle.store.effect(f"decision:{deal}")
        assert effect is not None and effect.status == "parked"
        assert "AdapterUnavailable" in (effect.error or "")
        assert faulty.calls == 3  # first try + 2 retries
        assert lender_oracle.store.counters()["retries"] == 2
        assert lender_oracle.store.counters()["parked"] == 1
        assert w.loans.call("loan", deal)["status"] == 1  # still Requested: nothing written
        assert c.lender.loan(deal) is None

        # the bank comes back; an operator retries the parked item and it completes once
        client.url = healthy.url
        assert lender_oracle.retry_parked(f"decision:{deal}")
        c.pump(lambda: w.escrow.call("loanDecision", deal)[0])
        assert w.loans.call("loan", deal)["status"] == 2  # Approved
        assert len(c.chain_events(w.loans, "LoanApproved", deal)) == 1
    finally:
        c.close()


def test_an_unexpected_error_neither_ends_the_oracle_nor_loses_its_event(world, tmp_path):
    """A bug (here: plan() raising, once) is logged and retried like a node outage: the thread lives
    on and reads the batch it was handling again."""
    c = Closing(world, tmp_path)
    w = world
    registry = c.oracles[0]
    plan, failed = registry.plan, []

    def failing_once(event: ChainEvent) -> Plan | None:
        if event.event == "TermsAccepted" and event.args["state"] == State.SIGNED and not failed:
            failed.append(event)
            raise RuntimeError("a bug in plan()")
        return plan(event)

    registry.plan = failing_once
    c.inst.start()
    try:
        deal, _ = c.open_signed()
        deadline = time.monotonic() + 20
        while not w.escrow.call("reported", deal):
            assert time.monotonic() < deadline, "the report was never filed"
            time.sleep(0.05)
        assert c.inst.threads is not None and all(t.is_alive() for t in c.inst.threads.threads)
    finally:
        c.close()
    assert len(failed) == 1
    assert len(c.chain_events(w.escrow, "TransactionReported", deal)) == 1


def test_a_booking_without_the_banks_loan_account_is_parked(closing: Closing):
    """Not a ValidationError out of MortgageUpdate, which would escape the oracle's loop."""
    lender = closing.oracles[1]
    event = ChainEvent(EventId("0x00", "0x00", 0), 1, "LoanBook", "0x00", "LoanSecured", {})
    with pytest.raises(Parked, match="no booked loan account"):
        lender.execute(Plan("secured:999", 999, "mortgage_booked", {"entry": 0}), event)


# --- crashes ---------------------------------------------------------------------------------------

CHECKPOINTS = ["before_adapter", "after_adapter", "after_record", "after_broadcast", "after_mined"]
KINDS = ["transaction_report", "loan_decision", "disbursement", "payoff", "settlement"]


class OracleProcess:
    """`deedchain oracles` as a real process on the test chain, restartable after SIGKILL."""

    def __init__(self, c: Closing, crash: str | None) -> None:
        self.c = c
        self.crash = crash
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0
        self.start(crash)

    def start(self, crash: str | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
        if crash:
            env[CRASH_ENV] = crash
        u = self.c.urls
        cmd = [
            sys.executable, "-m", "scripts.cli", "oracles", "--rpc", self.c.chain.rpc.url,
            "--deployments", str(self.c.chain.deployments_dir), "--db", u["oracles"],
            "--registry-db", u["registry"], "--lender-db", u["lender"], "--bank-db", u["bank"],
            "--known-issuer", self.c.w.addr("issuer"), "--poll", "0.02",
        ]  # fmt: skip
        self.log = (self.c.folder / "oracles.log").open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def watch(self) -> None:
        """Restart (without the failpoint) if the process died; it may only die by SIGKILL."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return
        assert code == -9, (self.c.folder / "oracles.log").read_text()[-2000:]
        self.kills += 1
        self.start(None)

    def wait(self, until, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            self.watch()
            assert time.monotonic() < deadline, (self.c.folder / "oracles.log").read_text()[-3000:]
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", CHECKPOINTS)
def test_sigkill_at_every_step_completes_exactly_once(world, tmp_path, point, kind):
    c = Closing(world, tmp_path)
    w = world
    proc = OracleProcess(c, f"{point}@{kind}")
    try:
        deal, terms = c.open_signed()
        proc.wait(lambda: bool(w.escrow.call("reported", deal)))
        w.pay(deal, "payDeposit", "buyer", terms.deposit)
        w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, c.credentials())
        proc.wait(lambda: w.escrow.call("loanDecision", deal)[0])
        w.pay(deal, "payInterim", "buyer", terms.interim)
        proc.wait(lambda: w.escrow.call("payments", deal)[3] > 0)
        w.pay(deal, "payBalance", "buyer", terms.balance - terms.loanAmount)
        w.tx("buyer", w.escrow, "requestRegistration", deal)
        proc.wait(lambda: w.state(deal).terminal)
        # and the oracles' books say so: every effect recorded as mined (after any restart)
        proc.wait(lambda: len(c.effects(deal)) == 7 and set(c.effects(deal).values()) == {"mined"})
    finally:
        proc.stop()
    assert proc.kills == 1  # the failpoint really fired
    assert w.state(deal) == State.SETTLED
    for contract, name in [
        (w.escrow, "TransactionReported"), (w.loans, "LoanApproved"), (w.loans, "LoanDisbursed"),
        (w.loans, "PayoffStated"), (w.escrow, "DealSettled"),
    ]:  # fmt: skip
        assert len(c.chain_events(contract, name, deal)) == 1, name
    # the back offices did each thing once too
    assert c.registry.read_parcel(c.parcels["eunma"]).owner == w.addr("buyer")
    assert c.lender.loan(deal)["status"] == "disbursed"


# --- reorgs and duplicates ---------------------------------------------------------------------------


def _accept_tx(c: Closing, deal: int, terms, party: Party, who: str) -> dict:
    expiry, sig = c.w.signature(deal, terms, who)
    data = c.w.escrow.encode("acceptTerms", deal, int(party), expiry, sig)
    return {"from": c.w.addr("broker"), "to": c.w.escrow.address, "data": data, "gas": hex(300_000)}


def test_reorg_inside_the_confirmation_window_acts_once_on_the_reincluded_event(world, tmp_path):
    c = Closing(world, tmp_path, confirmations=2)
    w = world
    terms = w.terms(c.parcels["eunma"])
    deal = w.open_deal(terms)
    w.accept(deal, terms, Party.BUYER, "buyer")
    tx = _accept_tx(c, deal, terms, Party.SELLER, "seller")
    receipt = w.sender("broker").transact(tx["to"], tx["data"], gas=300_000)
    c.settle_quietly()  # the Signed event is not confirmed yet: no oracle acts
    assert not w.escrow.call("reported", deal)
    w.chain.rpc.call("anvil_reorg", [1, [[tx, 0]]])  # drop its block; the same tx lands in a new one
    w.chain.resync()
    for _ in range(3):
        w.chain.rpc.call("evm_mine")
    c.pump(lambda: bool(w.escrow.call("reported", deal)))
    registry = c.oracles[0].store
    effect = registry.effect(f"report:{deal}")
    assert effect is not None and effect.status == "mined"
    assert receipt.block_hash not in effect.source_event  # acted on the re-included event
    assert len(c.chain_events(w.escrow, "TransactionReported", deal)) == 1


def test_reorg_after_acting_orphans_the_effect_and_acts_once_again(world, tmp_path):
    c = Closing(world, tmp_path, confirmations=0)
    w = world
    terms = w.terms(c.parcels["eunma"])
    deal = w.open_deal(terms)
    w.accept(deal, terms, Party.BUYER, "buyer")
    tx = _accept_tx(c, deal, terms, Party.SELLER, "seller")
    w.sender("broker").transact(tx["to"], tx["data"], gas=300_000)
    c.pump(lambda: bool(w.escrow.call("reported", deal)))  # acted at once (no confirmations)
    first = c.oracles[0].store.effect(f"report:{deal}")
    assert first is not None and first.status == "mined"
    # drop the Signed block and the report's block; only the acceptance comes back
    w.chain.rpc.call("anvil_reorg", [2, [[tx, 0]]])
    w.chain.resync()
    assert not w.escrow.call("reported", deal)
    c.pump(lambda: bool(w.escrow.call("reported", deal)))
    second = c.oracles[0].store.effect(f"report:{deal}")
    assert second is not None and second.status == "mined" and second.source_event != first.source_event
    assert c.oracles[0].store.counters()["orphaned"] >= 1
    assert len(c.chain_events(w.escrow, "TransactionReported", deal)) == 1


@pytest.mark.parametrize("nonce_taken", [False, True], ids=["nonce-free", "nonce-taken"])
def test_reorg_dropping_only_the_oracles_own_tx_has_it_sent_again(world, tmp_path, nonce_taken):
    """The report's source event stays on chain; only the block with the report itself is replaced,
    before the registry's stream has read it, so the stream sees no reorg. The registry finds the
    report gone when it reads that block, and sends it again: the same transaction while its nonce
    is free, else the same call signed anew, once."""
    c = Closing(world, tmp_path, confirmations=0)
    w = world
    deal, _ = c.open_signed()
    c.pump(lambda: bool(w.escrow.call("reported", deal)))
    registry = c.oracles[0]
    first = registry.store.effect(f"report:{deal}")
    assert first is not None and first.status == "mined" and first.mined_block is not None
    assert registry.stream.cursor.next_block <= first.mined_block  # not read by the stream yet
    w.chain.rpc.call("anvil_reorg", [1, []])  # the report's block, replaced by an empty one
    assert not w.escrow.call("reported", deal)
    lost = first.txs[0]
    if nonce_taken:  # the registrar's key sends something else with that nonce meanwhile
        key = w.chain.signers["registrar"].account
        gas_price = 2 * int(w.chain.rpc.call("eth_gasPrice"), 16)
        other = {"chainId": w.chain.chain_id, "nonce": lost.nonce, "gas": 21_000, "to": key.address}
        raw, _ = TxSigner(key.key).sign({**other, "value": 0, "data": "0x", "gasPrice": gas_price})
        w.chain.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    c.pump(lambda: bool(w.escrow.call("reported", deal)))
    again = registry.store.effect(f"report:{deal}")
    assert again is not None and again.status == "mined" and len(again.txs) == 1
    if nonce_taken:
        assert again.txs[0].nonce == lost.nonce + 1 and again.txs[0].hash != lost.hash
    else:
        assert again.txs == first.txs
    counters = registry.store.counters()
    assert counters["resent"] == 1 and "orphaned" not in counters
    assert len(c.chain_events(w.escrow, "TransactionReported", deal)) == 1
    c.settle_quietly()
    assert registry.store.effect(f"report:{deal}") == again  # checked once more, and it stands


def test_every_event_delivered_twice_causes_no_second_effect(closing: Closing):
    c, w = closing, closing.w
    deal, _ = c.full_deal()
    before = c.effects(deal)
    head = int(w.chain.rpc.call("eth_blockNumber"), 16)
    # lose every processed-event record and replay the whole history from the deployment
    with c.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DELETE FROM oracle_events"))
    for oracle in c.oracles:
        oracle.stream.cursor = Cursor(0)
    c.settle_quietly(rounds=4)
    assert c.effects(deal) == before
    assert int(w.chain.rpc.call("eth_blockNumber"), 16) == head  # not one transaction more
