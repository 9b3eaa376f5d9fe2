"""The auditors' explorer against real closings: rebuild, report, verify, and catch tampering."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from chain.config import load_config
from chain.node import free_port
from pipeline.audit.commands import serve_rpc_file, served_rpc
from pipeline.audit.replay import Lookups, Replayer
from pipeline.audit.report import deal_report, property_report, render_html, write_csv
from pipeline.audit.source import AuditChain
from pipeline.audit.verify import verify
from pipeline.brokerage import Brokerage
from scripts.cli import main
from tests.pipeline.harness import Closing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def closing(world, tmp_path):
    c = Closing(world, tmp_path)
    yield c
    c.close()


def _history(closing: Closing) -> tuple[int, int]:
    """One full closing with a loan and a mortgage paid off, and one §565 cancellation."""
    w = closing.w
    settled, _ = closing.full_deal()
    cancelled, terms = closing.open_signed("gongdeok", interim=0, loan=0)
    w.pay(cancelled, "payDeposit", "buyer", terms.deposit)
    w.tx("buyer", w.escrow, "cancel", cancelled)
    return settled, cancelled


def test_rebuild_reports_and_verify(closing, world, tmp_path):
    settled, cancelled = _history(closing)
    chain = AuditChain.from_session(world.chain)
    state = Replayer().run(chain)

    # property: the rebuilt register equals the chain's own title, entry by entry
    brokerage = Brokerage(world.chain, closing.inst, {})
    for label in ("eunma", "gongdeok"):
        pid = closing.parcels[label]
        ours, views = property_report(state, pid), brokerage.title(pid)
        assert ours["owner"] == views["owner"]
        assert ours["blocked"] == views["blocked"]
        keep = ("section", "index", "kind", "holder", "amount", "active", "receipt", "time")
        assert [{k: e[k] for k in keep} for e in ours["history"]] == [
            {k: e[k] for k in keep} for e in views["history"]
        ]
        assert all(e["tx"].startswith("0x") and e["block"] > 0 for e in ours["history"])
    eunma = property_report(state, closing.parcels["eunma"])
    assert eunma["owner"] == world.addr("buyer")
    assert [e["kind"] for e in eunma["encumbrances"]] == ["mortgage"]  # the buyer's lender's, not the old one
    assert eunma["encumbrances"][0]["holder"] == world.addr("lender")

    # deal: every step with who acted (role, address), amounts and gas
    report = deal_report(state, settled, Lookups(world.chain.rpc))
    steps = [s["step"] for s in report["steps"]]
    for step in ("DealOpened", "TermsAccepted", "TransactionReported", "PaymentReceived", "LoanRequested",
                 "LoanApproved", "LoanDisbursed", "PayoffStated", "RegistrationRequested", "PayoffPaid",
                 "DealSettled", "OwnershipRecorded", "MortgageDischarged", "MortgageRegistered"):  # fmt: skip
        assert step in steps, step
    assert report["state"] == "settled"
    assert all(s["gas"] and s["by"] and s["time"] for s in report["steps"])
    paid = [s for s in report["steps"] if s["step"] == "PaymentReceived"]
    assert sum(s["details"]["amount"] for s in paid) == report["terms"]["price"]
    deposit = next(s for s in paid if s["details"]["payment"] == "deposit")
    assert deposit["actor_role"] == "buyer" and deposit["by_role"] == "buyer"
    reported = next(s for s in report["steps"] if s["step"] == "TransactionReported")
    assert "REGISTRAR_ROLE@DealEscrow" in reported["by_role"]
    flows = report["money_flows"]
    assert (
        sum(f["amount"] for f in flows if f["kind"] == "transfer" and f["to"] == "DealEscrow")
        == 1_000_000_000
    )
    assert {f["to"] for f in flows if f["kind"] == "credit"} >= {"seller", world.addr("bank")}

    cancel = deal_report(state, cancelled, Lookups(world.chain.rpc))
    assert cancel["state"] == "cancelled" and cancel["held"] == 0
    assert cancel["steps"][-1]["step"] == "DealCancelled" and cancel["steps"][-1]["actor_role"] == "buyer"

    # verify: an honest history is consistent with the views and with the registry's books
    result = verify(state, chain.contracts, world.chain.rpc, registry=closing.registry)
    assert result.mismatches == []
    assert result.consistent and result.deals == 2 and result.parcels == len(closing.parcels)

    # exports: HTML self-contained with the three tables; CSV and JSON parse back
    report["title"] = eunma
    page = render_html(report)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for heading in ("Timeline", "Title history", "Money flow", "DealSettled", "MortgageDischarged"):
        assert heading in page
    files = write_csv(report, tmp_path / "csv")
    assert {f.name for f in files} == {"steps.csv", "money_flows.csv", "title_history.csv"}
    with (tmp_path / "csv" / "steps.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == steps and int(rows[0]["block"]) == report["steps"][0]["block"]
    assert json.loads(json.dumps(report, default=str))["deal_id"] == settled


def test_tampered_registry_and_snapshot_are_caught(closing, world, tmp_path):
    settled, _cancelled = _history(closing)
    deployments, rpc_url = world.chain.deployments_dir, world.chain.rpc.url
    registry_db = closing.urls["registry"]

    def cli(*args: str) -> tuple[int, dict]:
        run = subprocess.run(
            [sys.executable, "-m", "scripts.cli", "audit", *args, "--rpc", rpc_url,
             "--deployments", str(deployments), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.stdout, run.stderr
        return run.returncode, json.loads(run.stdout.strip().splitlines()[-1])

    # the auditor archives a deal report (an off-chain copy others will rely on)
    code, snapshot = cli("deal", str(settled))
    assert code == 0 and snapshot["state"] == "settled"
    archived = tmp_path / "deal.json"
    archived.write_text(json.dumps(snapshot))
    code, out = cli("verify", "--registry-db", registry_db, "--against", str(archived))
    assert code == 0, out["mismatches"]
    assert set(out) >= {"consistent", "events", "parcels", "deals", "mismatches"}
    assert out["consistent"] is True and out["events"] > 50 and out["deals"] == 2

    # (a) someone edits the registry's own books: the mortgage holder and the owner of a parcel
    pid = closing.parcels["banpo"]
    with closing.registry.engine.begin() as conn:
        conn.execute(text("UPDATE registry_parcels SET owner = :o WHERE parcel_id = :p"),
                     {"o": world.addr("buyer2"), "p": pid})  # fmt: skip
        conn.execute(
            text(
                "UPDATE registry_entries SET holder = :h"
                " WHERE parcel_id = :p AND section = 'eulgu' AND idx = 0"
            ),
            {"h": world.addr("buyer2"), "p": closing.parcels["jamsil"]},
        )
    # (b) someone edits the archived copy: a smaller payment and a different recipient
    doc = json.loads(archived.read_text())
    doc["steps"][next(i for i, s in enumerate(doc["steps"]) if s["step"] == "PaymentReceived")]["details"][
        "amount"
    ] -= 1
    doc["money_flows"][0]["to"] = "someone else"
    archived.write_text(json.dumps(doc))

    code, out = cli("verify", "--registry-db", registry_db, "--against", str(archived))
    assert code == 1 and out["consistent"] is False
    found = {(m["kind"], m.get("parcel") or m.get("deal"), m["field"]) for m in out["mismatches"]}
    assert ("registry", pid, "owner") in found
    assert ("registry", closing.parcels["jamsil"], "eulgu[0].holder") in found
    assert any(k == "snapshot" and f.startswith("steps[") and f.endswith(".details") for k, _, f in found)
    assert any(k == "snapshot" and f == "money_flows[0].to" for k, _, f in found)
    assert not any(m["kind"] == "chain" for m in out["mismatches"])  # the chain itself is fine


def _property(capsys, *argv: str) -> dict:
    assert main(["audit", "property", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_property_takes_the_parcels_the_api_takes(closing, world, capsys):
    where = ("--rpc", world.chain.rpc.url, "--deployments", str(world.chain.deployments_dir))
    pid = closing.parcels["eunma"]
    by_name = _property(capsys, "eunma", *where)  # a sample parcel's name, as GET /parcels/eunma
    assert by_name["parcel_id"] == pid and by_name["number"] == "1168010600-10316-0000"
    assert _property(capsys, "1168010600-10316-0000", *where) == by_name
    assert _property(capsys, pid, *where) == by_name


def test_audit_reads_the_node_serve_recorded(closing, world, project_copy, capsys):
    """Without --rpc the audit reads the node `deedchain serve` runs (no second node on its state)."""
    shutil.copytree(ROOT / "build", project_copy / "build")  # the session compiled: skip solc
    config = load_config(project_copy / "brownie-config.yaml")
    file = serve_rpc_file(config.root, "development")
    file.parent.mkdir(parents=True)
    file.write_text(json.dumps({"url": world.chain.rpc.url, "chain_id": world.chain.chain_id}))
    report = _property(
        capsys, "eunma", "--config", str(config.path), "--deployments", str(world.chain.deployments_dir)
    )
    assert report["parcel_id"] == closing.parcels["eunma"]

    # a serve that was killed left its file: a port that no longer answers, or another chain there
    assert served_rpc(config, None) == world.chain.rpc.url
    file.write_text(json.dumps({"url": f"http://127.0.0.1:{free_port()}", "chain_id": world.chain.chain_id}))
    assert served_rpc(config, None) is None
    file.write_text(json.dumps({"url": world.chain.rpc.url, "chain_id": world.chain.chain_id + 1}))
    assert served_rpc(config, None) is None
