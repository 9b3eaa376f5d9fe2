"""Benchmark the transaction sender against the node's own ceiling, measured in the same run.

    python -m scripts.bench_sender [--txs N] [--json]

Prints one JSON object as its last line: compile times (cold, warm), the node's ceiling
(pre-signed raw transactions sent in JSON-RPC batches of 200), and the Sender's rate with one
thread and with eight threads sharing one account, each as tx/s and as a ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eth_account import Account

from chain.compiler import compile_project
from chain.config import load_config
from chain.deploy import deploy_project
from chain.session import ChainSession


def _compile_times(root: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copy(root / "brownie-config.yaml", copy)
        shutil.copytree(root / "contracts", copy / "contracts")
        (copy / "node_modules").symlink_to(root / "node_modules")
        cfg = load_config(copy / "brownie-config.yaml")
        t0 = time.perf_counter()
        compile_project(cfg)
        t1 = time.perf_counter()
        compile_project(cfg)
        return t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=2000, help="transactions per measurement")
    args = parser.parse_args(argv)
    config = load_config()
    cold, warm = _compile_times(config.root)

    with (
        tempfile.TemporaryDirectory() as tmp,
        ChainSession.open("development", config, persist=False, deployments_dir=Path(tmp)) as session,
    ):
        token = session.contract("DepositToken", deploy_project(session).addresses["DepositToken"])
        rpc = session.rpc
        to = Account.create().address
        gas = 120_000

        # Ceiling: the node alone. Pre-sign, then send in batches of 200 and wait for the last.
        bank = session.signers["lender"].account
        nonce = int(rpc.call("eth_getTransactionCount", [bank.address, "pending"]), 16)
        fees = session.fees.fields()
        data = token.encode("mint", to, 1)
        raws = []
        for i in range(args.txs):
            tx: dict[str, Any] = {
                "chainId": session.chain_id,
                "nonce": nonce + i,
                "to": token.address,
                "gas": gas,
                "data": data,
                **fees,
            }
            raws.append("0x" + bank.sign_transaction(tx).raw_transaction.hex())
        t0 = time.perf_counter()
        last = None
        for start in range(0, len(raws), 200):
            results = rpc.batch([("eth_sendRawTransaction", [r]) for r in raws[start : start + 200]])
            last = results[-1]
        assert isinstance(last, str), last
        session.sender("lender").wait(last)
        ceiling = args.txs / (time.perf_counter() - t0)

        sender = session.sender("bank")

        def run(threads: int) -> float:
            per = args.txs // threads

            def work(_: int) -> list[str]:
                return [token.send(sender, "mint", to, 1, gas=gas) for _ in range(per)]

            t = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                hashes = [h for chunk in pool.map(work, range(threads)) for h in chunk]
            for h in hashes[-threads:]:
                sender.wait(h)
            return per * threads / (time.perf_counter() - t)

        one, eight = run(1), run(8)
    result = {
        "compile_cold_s": round(cold, 3),
        "compile_warm_s": round(warm, 4),
        "txs": args.txs,
        "node_ceiling_tx_per_s": round(ceiling, 1),
        "sender_1_thread_tx_per_s": round(one, 1),
        "sender_8_threads_tx_per_s": round(eight, 1),
        "ratio_1_thread": round(one / ceiling, 3),
        "ratio_8_threads": round(eight / ceiling, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
