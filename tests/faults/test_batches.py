"""The oracles' batch transactions: the due effects of one kind in one poll go out as one
transaction (DealEscrow/LoanBook batch entry points), each effect still its own row in the
outbox, and still exactly once through kills, a refused item and a reorg."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from chain.session import ChainSession
from chain.txsign import TxSigner
from pipeline.audit.replay import Lookups, Replayer
from pipeline.audit.report import deal_report, deal_text, render_html
from pipeline.audit.source import AuditChain
from pipeline.audit.verify import verify
from pipeline.domain import State, receipt
from pipeline.oracles.base import Oracle
from pipeline.service import Services
from pipeline.store import Effect
from tests.faults.conftest import Campaign, wait_for
from tests.faults.test_crashes import OracleProcess

DEALS = 3


def open_deals(chain: ChainSession, tmp_path: Path, n: int = DEALS) -> tuple[Services, Campaign, Oracle]:
    """`n` signed deals whose reports are all due; no oracle has run yet."""
    services = Services.build(chain, tmp_path, poll_interval=0.02)
    campaign = Campaign(chain, services)
    for _ in range(n):
        campaign.open()
    return services, campaign, services.institutions.oracles[0]


def reports(campaign: Campaign, registry: Oracle) -> list[Effect]:
    found = [registry.store.effect(f"report:{d.id}") for d in campaign.deals]
    assert all(e is not None for e in found), found
    return [e for e in found if e is not None]


def reported_on_chain(campaign: Campaign) -> list[int]:
    """How many TransactionReported events each deal has on the chain."""
    return [
        Counter(s["step"] for s in campaign.b.timeline(d.id))["TransactionReported"] for d in campaign.deals
    ]


def test_due_effects_of_one_kind_in_one_poll_go_out_as_one_transaction(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    """Eight deals in lockstep: each institution step is one transaction for all of them (the
    disbursement's two calls two: one mint of the eight amounts' sum, one disburseMany)."""
    services, campaign, registry = open_deals(chain, tmp_path, 8)
    before = campaign.oracle_nonces()
    registry.step()  # one poll: the eight reports
    assert campaign.oracle_nonces()["registrar"] == before["registrar"] + 1
    first = reports(campaign, registry)
    assert {e.status for e in first} == {"mined"} and len({e.txs[0].hash for e in first}) == 1
    assert reported_on_chain(campaign) == [1] * 8

    oracles = services.institutions.oracles
    for _ in range(60):
        if campaign.books_complete() and all(s.terminal for s in campaign.states().values()):
            break
        services.driver.tick()
        for oracle in oracles:
            oracle.step()
    campaign.assert_each_effect_once()
    after = campaign.oracle_nonces()
    sent = {n: after[n] - before[n] for n in after}
    assert sent == campaign.effect_txs()
    # one per effect and call, as the oracles sent them before batching
    ids = {d.id for d in campaign.deals}
    single = sum(len(e.txs) for o in oracles for e in o.store.effects() if e.deal_id in ids)
    assert single == 6 * 8  # report, decision, mint + disburse, payoff, settlement
    # report, settlement, decision, payoff: one each; the disbursements: a mint and a disburseMany
    assert sum(sent.values()) == 4 + 2
    carried = campaign.shared_txs()
    assert sorted(carried.values()) == [8] * 6, carried

    # the auditors' rebuild: every deal's timeline from the chain, the batch transactions in each
    # of the eight, and the rebuilt state consistent with the views and the registry's books
    audit = AuditChain.from_session(chain)
    state = Replayer().run(audit)
    audited = [deal_report(state, d.id, Lookups(chain.rpc)) for d in campaign.deals]
    assert {r["state"] for r in audited} == {"settled"}
    opened = [next(s for s in r["steps"] if s["step"] == "DealOpened") for r in audited]
    for report, first in zip(audited, opened, strict=True):
        accepted = [s for s in report["steps"] if s["step"] == "TermsAccepted"]
        assert [s["tx"] for s in accepted] == [first["tx"]] * 2  # opened signed, in one transaction
    settled = {next(s["tx"] for s in r["steps"] if s["step"] == "DealSettled") for r in audited}
    assert len(settled) == 1  # one settleMany for the eight
    assert {s["batch_deals"] for r in audited for s in r["steps"] if s["step"] == "DealSettled"} == {8}
    assert "(a batch of 8 deals)" in deal_text(audited[0]) and "batch_deals" in render_html(audited[0])
    result = verify(state, audit.contracts, chain.rpc, registry=services.institutions.registry)
    assert result.mismatches == [] and result.consistent


@pytest.mark.parametrize("point", ["after_record", "after_broadcast", "after_mined"])
def test_a_kill_around_a_batch_leaves_each_item_applied_once(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path, point: str
) -> None:
    """SIGKILL once the batch is signed and recorded (not sent), once it is sent (no receipt
    read), and once its receipt is read (no effect marked): the restart sends that one
    transaction again, or finds it mined, and marks every effect."""
    services, campaign, registry = open_deals(chain, tmp_path)
    before = campaign.oracle_nonces()["registrar"]
    oracles = OracleProcess(chain, services, tmp_path)
    oracles.start(f"{point}@transaction_report")
    try:
        wait_for(lambda: oracles.exit_code() is not None, 30, "the failpoint", oracles.tail)
        assert oracles.exit_code() == -9, oracles.tail()
        recorded = reports(campaign, registry)
        assert {e.status for e in recorded} == {"signed"}
        assert len({e.txs[0].hash for e in recorded}) == 1  # one transaction carries them all
        sent = campaign.oracle_nonces()["registrar"] - before
        assert sent == (0 if point == "after_record" else 1)
        oracles.start(None)
        wait_for(
            lambda: {e.status for e in reports(campaign, registry)} == {"mined"},
            30,
            "the reports",
            oracles.tail,
        )
    finally:
        oracles.stop()
    assert reports(campaign, registry) and all(e.txs == recorded[0].txs for e in reports(campaign, registry))
    assert campaign.oracle_nonces()["registrar"] - before == 1
    assert reported_on_chain(campaign) == [1] * DEALS


def test_a_refused_item_is_reverted_and_the_others_mined(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="deedchain.oracle")
    _services, campaign, registry = open_deals(chain, tmp_path)
    refused = campaign.deals[1].id
    # reported already (by the registrar's own key, beside the oracle): its batch item fails
    campaign.b.escrow.transact(registry.sender, "recordTransactionReport", refused, receipt("filed-by-hand"))
    registry.step()
    found = {e.deal_id: e for e in reports(campaign, registry)}
    assert len({e.txs[0].hash for e in found.values()}) == 1
    assert {d: e.status for d, e in found.items()} == {
        d.id: "reverted" if d.id == refused else "mined" for d in campaign.deals
    }
    assert (found[refused].error or "").startswith("AlreadyReported(")
    logged = [m for r in caplog.records if (m := json.loads(r.getMessage()))["oracle"] == "registry"]
    assert [(m["deal_id"], m["error"]) for m in logged if m["event"] == "reverted"] == [
        (refused, "AlreadyReported")
    ]
    assert sorted(m["deal_id"] for m in logged if m["event"] == "done") == sorted(
        d.id for d in campaign.deals if d.id != refused
    )
    assert reported_on_chain(campaign) == [1] * DEALS


@pytest.mark.parametrize("nonce_taken", [False, True], ids=["nonce-free", "nonce-taken"])
def test_a_batch_reorged_out_is_sent_again_once_for_its_items(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path, nonce_taken: bool
) -> None:
    """The batch's block is replaced before the registry's stream read it: the registry finds
    the transaction gone and sends it again once for the effects it carried (the same one while
    its nonce is free, else signed anew); the effect whose item failed is not sent again."""
    _services, campaign, registry = open_deals(chain, tmp_path)
    rpc = chain.rpc
    refused = campaign.deals[0].id
    campaign.b.escrow.transact(registry.sender, "recordTransactionReport", refused, receipt("filed-by-hand"))
    before = campaign.oracle_nonces()["registrar"]
    registry.step()
    first = {e.deal_id: e for e in reports(campaign, registry)}
    batch = first[refused].txs[0]
    mined = [e for e in first.values() if e.status == "mined"]
    assert len(mined) == DEALS - 1 and all(e.txs == [batch] for e in first.values())
    assert registry.stream.cursor.next_block <= (mined[0].mined_block or 0)  # not read yet
    rpc.call("anvil_reorg", [1, []])  # the batch's block, replaced by an empty one
    assert not any(campaign.b.escrow.call("reported", e.deal_id) for e in mined)
    if nonce_taken:  # the registrar's key sends something else with that nonce meanwhile
        key = chain.signers["registrar"].account
        gas_price = 2 * int(rpc.call("eth_gasPrice"), 16)
        other = {"chainId": chain.chain_id, "nonce": batch.nonce, "gas": 21_000, "to": key.address}
        raw, _ = TxSigner(key.key).sign({**other, "value": 0, "data": "0x", "gasPrice": gas_price})
        rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    for _ in range(3):
        registry.step()
    again = {e.deal_id: e for e in reports(campaign, registry)}
    assert again[refused] == first[refused]  # reverted, and left so
    resent = {tuple(e.txs) for d, e in again.items() if d != refused}
    assert len(resent) == 1  # one transaction for both
    (txs,) = resent
    if nonce_taken:
        assert txs[0].nonce == batch.nonce + 1 and txs[0].hash != batch.hash
    else:
        assert txs == (batch,)
    assert {e.status for d, e in again.items() if d != refused} == {"mined"}
    counters = registry.store.counters()
    assert counters["resent"] == DEALS - 1 and "orphaned" not in counters
    assert campaign.oracle_nonces()["registrar"] - before == (2 if nonce_taken else 1)  # with the other one
    assert reported_on_chain(campaign) == [1] * DEALS


def test_a_report_and_a_settlement_due_in_one_poll_go_out_in_order(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    """A registry far behind its deals reads a deal's signature and its registration request in
    one poll: the report batch is sent (and mined) before the settlement is dry-run, so the
    settlement is not parked as TransactionNotReported."""
    services, campaign, registry = open_deals(chain, tmp_path)
    others = services.institutions.oracles[1:]
    bank = others[-1]

    def stated() -> bool:
        found = [bank.store.effect(f"payoff:{d.id}") for d in campaign.deals]
        return all(e is not None and e.status == "mined" for e in found)

    for _ in range(40):  # everyone but the registry: the deals reach RegistrationRequested, payoffs stated
        services.driver.tick()
        for oracle in others:
            oracle.step()
        if set(campaign.states().values()) == {State.REGISTRATION_REQUESTED} and stated():
            break
    assert set(campaign.states().values()) == {State.REGISTRATION_REQUESTED} and stated()
    for _ in range(3):  # the payoff statements came in meanwhile: the registry catches up at once
        registry.step()
    settled = [registry.store.effect(f"settle:{d.id}") for d in campaign.deals]
    assert [e.status if e else None for e in settled] == ["mined"] * DEALS, [
        (e.key, e.status, e.error) for e in registry.store.effects()
    ]
    assert set(campaign.states().values()) == {State.SETTLED}
    assert reported_on_chain(campaign) == [1] * DEALS
