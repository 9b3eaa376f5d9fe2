"""The commands a user runs, as processes, in a private copy of the project."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from chain.node import free_port, rpc_answers
from tests.cli.healthz import wait_healthy

ROOT = Path(__file__).resolve().parents[2]


def run(project: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEEDCHAIN_PROJECT": str(project)}
    return subprocess.run(
        [sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_demo_sells_an_apartment_and_a_second_run_sells_on(project_copy):
    first = run(project_copy, "demo", "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert result["state"] == "settled"
    assert result["owner_before"] == result["seller"] and result["owner_after"] == result["buyer"]
    steps = [s["step"] for s in result["steps"]]
    for step in (
        "DealOpened",
        "TransactionReported",
        "LoanApproved",
        "LoanDisbursed",
        "PayoffStated",
        "DealSettled",
    ):
        assert step in steps
    assert result["tx_count"] >= 12 and result["gas_used"] > 0
    assert set(result["contracts"]) == {
        "DepositToken",
        "LandRegister",
        "CredentialRegistry",
        "DealEscrow",
        "LoanBook",
    }
    # the chain and the institutions kept their state: the next sale builds on the first
    second = run(project_copy, "demo", "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert again["state"] == "settled" and again["deal_id"] == result["deal_id"] + 1
    assert again["contracts"] == result["contracts"]  # deployment reused


def test_serve_answers_stops_cleanly_and_resumes(project_copy):
    port = free_port()
    env = {**os.environ, "DEEDCHAIN_PROJECT": str(project_copy)}
    cmd = [sys.executable, "-m", "scripts.cli", "serve", "--port", str(port)]

    def up() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return wait_healthy(proc, port, timeout=90)

    def down(proc: subprocess.Popen[str]) -> tuple[str, str]:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        return out, err

    proc = up()
    # the node's URL, where `deedchain audit` finds it without --rpc (not a second node on its state)
    rpc_file = project_copy / ".deedchain" / "development" / "rpc.json"
    node = json.loads(rpc_file.read_text())
    assert rpc_answers(node["url"]) == node["chain_id"]
    audit = run(project_copy, "audit", "property", "eunma", "--json")
    assert audit.returncode == 0, audit.stderr[-2000:]
    assert json.loads(audit.stdout.strip().splitlines()[-1])["number"] == "1168010600-10316-0000"
    keys = json.loads((project_copy / ".deedchain" / "development" / "api-keys.json").read_text())
    auth = {"Authorization": f"Bearer {keys['broker']}"}
    title = requests.get(f"http://127.0.0.1:{port}/parcels/1168010600-10316-0000", headers=auth, timeout=10)
    assert title.status_code == 200 and title.json()["number"] == "1168010600-10316-0000"
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "deedchain_" in metrics
    out, err = down(proc)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    serving = next(line for line in lines if line.get("event") == "serving")  # logs are JSON lines
    assert serving["rpc"] == node["url"] and node["url"] in out  # and a plain line for people
    assert not rpc_file.exists()  # a clean stop takes it away
    assert keys["broker"] not in err  # keys are never logged

    proc = up()  # a restart finds its chain, contracts, institutions and keys again
    again = requests.get(f"http://127.0.0.1:{port}/parcels/1168010600-10316-0000", headers=auth, timeout=10)
    assert again.json()["history"] == title.json()["history"]
    down(proc)


BENCH_FIELDS = {
    "deals", "settled", "seconds", "deals_per_s", "tx_per_deal", "gas_per_deal", "node_ceiling_tx_per_s",
    "oracles_cpu_ms_per_deal",
    "ratio_to_ceiling", "latency_p50_s", "latency_p95_s", "oracle_reaction_p95_ms",
    "pipeline_cpu_ms_per_deal", "node_cpu_ms_per_deal", "blocks_per_deal", "node_empty_block_ms",
    "node_ceiling_end_tx_per_s", "block_time_s", "blocks_per_deal_p50", "blocks_per_deal_p95",
    "rpc_requests_per_deal", "rpc_http_requests_per_deal", "node_deal_ceiling_per_s", "ratio_to_deal_ceiling",
    "unsettled",
}  # fmt: skip


def check_deal_ceiling_and_rpc(result: dict[str, Any]) -> None:
    """The fields both mining modes report the same way."""
    assert 1 <= result["blocks_per_deal_p50"] <= result["blocks_per_deal_p95"]
    # a batch carries several calls in one HTTP request
    assert result["rpc_requests_per_deal"] >= result["rpc_http_requests_per_deal"] > 0
    assert result["node_deal_ceiling_per_s"] > 0 and result["ratio_to_deal_ceiling"] > 0
    expected = result["deals_per_s"] / result["node_deal_ceiling_per_s"]
    assert abs(result["ratio_to_deal_ceiling"] - expected) < 1e-3


def two_deals_tx(result: dict[str, Any]) -> bool:
    """A deal's opening (with both acceptances) its own transaction, and its 10 other steps each
    its own transaction or a batch's shared between the two deals: 1 + 10/2 to 1 + 10."""
    return 6 <= result["tx_per_deal"] <= 11


def test_bench_prints_its_json_with_every_field(project_copy):
    done = run(project_copy, "bench", "--deals", "2", "--concurrency", "2", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == BENCH_FIELDS
    assert result["unsettled"] == []
    assert result["pipeline_cpu_ms_per_deal"] > 0 and result["node_cpu_ms_per_deal"] > 0
    # the run mined blocks; the cost of an empty block is read before and after it
    assert result["blocks_per_deal"] >= 1 and len(result["node_empty_block_ms"]) == 2
    assert min(result["node_empty_block_ms"]) > 0 and result["node_ceiling_end_tx_per_s"] > 0
    assert result["settled"] == 2 and two_deals_tx(result)
    assert result["node_ceiling_tx_per_s"] > 0
    expected = result["deals_per_s"] * result["tx_per_deal"] / result["node_ceiling_tx_per_s"]
    assert abs(result["ratio_to_ceiling"] - expected) < 1e-3
    assert result["block_time_s"] is None  # automine
    check_deal_ceiling_and_rpc(result)


def test_bench_with_a_block_time_mines_on_the_interval(project_copy):
    done = run(project_copy, "bench", "--block-time", "1", "--deals", "2", "--concurrency", "2", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == BENCH_FIELDS
    assert result["block_time_s"] == 1 and result["settled"] == 2 and result["unsettled"] == []
    # about a block a second in the timed window (automine would make one per transaction)
    assert result["blocks_per_deal"] * result["settled"] <= result["seconds"] + 2
    check_deal_ceiling_and_rpc(result)


def test_bench_refuses_a_block_time_anvil_cannot_keep():
    for seconds in ("0.5", "0"):
        done = run(ROOT, "bench", "--block-time", seconds, "--deals", "1")
        assert done.returncode != 0 and "--block-time" in done.stderr


def test_bench_runs_on_hardhat_and_measures_its_ceiling_there(project_copy):
    """Hardhat's automine refuses a nonce gap within a batch: its ceiling is measured with one
    transaction per sender per batch, and the pipeline's outboxes wait for their earlier nonce."""
    hardhat = ("--network", "development-hardhat")
    done = run(project_copy, *hardhat, "bench", "--deals", "2", "--concurrency", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["settled"] == 2 and two_deals_tx(result)
    assert result["node_ceiling_tx_per_s"] > 0 and result["node_ceiling_end_tx_per_s"] > 0


def test_benchmarks_writes_every_section_from_small_runs(project_copy, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    done = run(
        project_copy, "benchmarks", "--deals", "2", "--concurrency", "2", "--hardhat-concurrency", "2",
        "--block-time-deals", "2", "--block-time-concurrency", "2", "--prior", "2,4", "--actions", "20",
        "--out", str(out), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    sections = ("## Method", "## Deals through the pipeline", "## Targets", "## Growth",
                "## Contracts' state machine", "## Oracle reaction per step", "## What bounds")  # fmt: skip
    assert [s for s in sections if s not in text] == []
    table = [line for line in text.splitlines() if line.startswith(("| anvil |", "| hardhat |"))]
    assert [line.split(" | ")[:2] for line in table] == [
        ["| anvil", "automine"], ["| hardhat", "automine"], ["| anvil", "1 s blocks"]
    ]  # fmt: skip
    assert "failed" not in "\n".join(table)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(results["bench"]) == {"anvil C=2", "hardhat C=2", "anvil C=2 block 1s"}
    assert results["invariants"]["failures"] == 0 and results["invariants"]["actions"] >= 20
