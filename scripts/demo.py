"""`deedchain demo`: compile, start the embedded node, deploy, and move real money on chain.

Until the full deal flow lands this shows the foundation at work: the KRW deposit token
issued by a bank, paid from buyer to seller, and redeemed, every step a mined transaction.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from chain.deploy import deploy_project
from chain.session import ChainSession


def run_demo(network: str | None, config: Path | None, *, as_json: bool = False) -> int:
    started = time.perf_counter()
    steps: list[dict[str, Any]] = []

    def say(text: str) -> None:
        if not as_json:
            print(text, flush=True)

    with ChainSession.open(network, config) as session:
        where = session.node.url if session.node else session.rpc.url
        say(f"chain {session.chain_id} ({session.network_name}) at {where}")
        report = deploy_project(session)
        for name, address in report.addresses.items():
            say(f"  {name} at {address} ({'reused' if name in report.reused else 'deployed'})")
        token = session.contract("DepositToken", report.addresses["DepositToken"])
        bank, buyer, seller = (session.signers[n].address for n in ("bank", "buyer", "seller"))

        def step(label: str, signer: str, fn: str, *args: Any) -> None:
            receipt = token.transact(session.sender(signer), fn, *args)
            steps.append(
                {
                    "step": label,
                    "tx": receipt.tx_hash,
                    "block": receipt.block_number,
                    "gas": receipt.gas_used,
                }
            )
            block, gas = receipt.block_number, receipt.gas_used
            say(f"  {label:44} block {block:5}  gas {gas:7}  {receipt.tx_hash}")

        seller_before = token.call("balanceOf", seller)
        step("bank issues 50,000,000 KRW to the buyer", "bank", "mint", buyer, 50_000_000)
        step("buyer pays a 50,000,000 KRW deposit", "buyer", "transfer", seller, 50_000_000)
        step("seller lets the bank redeem 10,000,000", "seller", "approve", bank, 10_000_000)
        step("bank redeems 10,000,000 KRW for the seller", "bank", "burn", seller, 10_000_000)
        seller_after = token.call("balanceOf", seller)
        supply = token.call("totalSupply")
        say(f"  seller's balance {seller_before:,} -> {seller_after:,} KRW; supply {supply:,} KRW")
        ok = seller_after == seller_before + 40_000_000
        summary = {
            "ok": ok,
            "chain_id": session.chain_id,
            "network": session.network_name,
            "contracts": report.addresses,
            "tx_count": len(steps),
            "gas_used": sum(s["gas"] for s in steps),
            "seconds": round(time.perf_counter() - started, 3),
            "steps": steps,
        }
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"done in {summary['seconds']}s; chain state is kept for the next run")
    return 0 if ok else 1
