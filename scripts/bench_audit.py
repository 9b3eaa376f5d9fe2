"""Benchmark the audit replay: events per second and memory on a large history.

    python -m scripts.bench_audit [--events N]

On a throwaway embedded anvil: deploy, then generate about N events cheaply — register
parcels, mortgages, discharges and ownership transfers (registrar), deposit-token mints
(bank) — as pre-signed raw transactions sent in JSON-RPC batches and mined 100 to a block.
Then replay them with the Replayer (timed, untraced), and once more under tracemalloc to
show memory stays bounded: the peak at 10k events and at N, and what the final state
retains. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from eth_account import Account

from chain.config import load_config
from chain.deploy import deploy_project
from chain.events import EventStream
from chain.session import ChainSession
from pipeline.audit.replay import Replayer
from pipeline.audit.source import AuditChain
from pipeline.domain import LandUse, parcel_id, receipt

PER_BLOCK = 100
# Blocks here hold 100 transactions each, so read 20 blocks (~2,600 events) per get_logs: the
# transient memory of a batch is what bounds the replay, on top of the state it keeps.
BLOCK_RANGE = 20


def _generate(session: ChainSession, target: int) -> int:
    """Send transactions producing about `target` events; returns the events they emit."""
    chain = AuditChain.from_session(session)
    land, token = chain.contracts["LandRegister"], chain.contracts["DepositToken"]
    rpc, fees = session.rpc, session.fees.fields()
    keys = {n: session.signers[n].account for n in ("registrar", "bank")}
    nonces = {
        n: int(rpc.call("eth_getTransactionCount", [k.address, "pending"]), 16) for n, k in keys.items()
    }
    owners = [Account.create().address for _ in range(16)]
    events = 0
    pending: list[str] = []

    def tx(who: str, to: str, data: str, gas: int) -> None:
        fields: dict[str, Any] = {"chainId": session.chain_id, "nonce": nonces[who], "to": to, "gas": gas}
        fields.update(data=data, **fees)
        raw = keys[who].sign_transaction(fields)
        nonces[who] += 1
        pending.append("0x" + raw.raw_transaction.hex())
        if len(pending) >= PER_BLOCK:
            flush()

    def flush() -> None:
        for answer in rpc.batch([("eth_sendRawTransaction", [r]) for r in pending]):
            if isinstance(answer, Exception):
                raise answer
        pending.clear()
        rpc.call("evm_mine")

    rpc.call("evm_setAutomine", [False])
    i = 0
    while events < target:
        number = f"bench-{i:07d}"
        pid = parcel_id(number)
        a, b, c = owners[i % 16], owners[(i + 1) % 16], owners[(i + 2) % 16]
        use = int(LandUse.BUILDING)
        tx("registrar", land.address, land.encode("registerParcel", number, f"Seoul {i}", 8000, use, a,
                                                   receipt(f"R{i}")), 260_000)  # fmt: skip
        tx(
            "registrar",
            land.address,
            land.encode("registerMortgage", pid, b, a, 10**8, receipt(f"M{i}a")),
            200_000,
        )
        tx(
            "registrar",
            land.address,
            land.encode("registerMortgage", pid, c, a, 10**8, receipt(f"M{i}b")),
            200_000,
        )
        tx("registrar", land.address, land.encode("dischargeMortgage", pid, 0, receipt(f"D{i}")), 120_000)
        tx(
            "registrar",
            land.address,
            land.encode("recordOwnershipTransfer", pid, b, receipt(f"T{i}a")),
            120_000,
        )
        tx(
            "registrar",
            land.address,
            land.encode("recordOwnershipTransfer", pid, c, receipt(f"T{i}b")),
            120_000,
        )
        tx("bank", token.address, token.encode("mint", a, 1_000 + i), 90_000)
        events += 9  # 2 + 1 + 1 + 1 + 1 + 1 + 2 (Transfer, Issued)
        i += 1
    if pending:
        flush()
    for _ in range(1000):  # mine whatever did not fit in its block
        if all(int(rpc.call("eth_getTransactionCount", [k.address, "latest"]), 16) == nonces[n]
               for n, k in keys.items()):  # fmt: skip
            break
        rpc.call("evm_mine")
    rpc.call("evm_setAutomine", [True])
    return events


def _traced(chain: AuditChain, head: int) -> dict[str, Any]:
    """Replay under tracemalloc: the peak at 10k events and at the end, and the retained state."""
    tracemalloc.start()
    replayer = Replayer()
    stream = EventStream(
        chain.pinned(head),
        {c.address: (n, c.abi) for n, c in chain.contracts.items()},
        start_block=chain.start_block,
        block_range=BLOCK_RANGE,
    )
    at_10k: float | None = None
    while stream.cursor.next_block <= head:
        replayer.apply(stream.poll().events)
        if at_10k is None and replayer.state.events >= 10_000:
            at_10k = tracemalloc.get_traced_memory()[1] / 2**20
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "tracemalloc_peak_mb_at_10k": round(at_10k or 0.0, 1),
        "tracemalloc_peak_mb_at_end": round(peak / 2**20, 1),
        "state_retained_mb_at_end": round(current / 2**20, 1),
        "state_entries": sum(len(p.gapgu) + len(p.eulgu) for p in replayer.state.parcels.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="about how many events to generate")
    args = parser.parse_args(argv)
    config = load_config()
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChainSession.open("development", config, persist=False, deployments_dir=Path(tmp)) as session,
    ):
        deploy_project(session)
        t0 = time.perf_counter()
        generated = _generate(session, args.events)
        generate_s = time.perf_counter() - t0
        chain = AuditChain.from_session(session)
        head = chain.head()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t1 = time.perf_counter()
        state = Replayer().run(chain, head, block_range=BLOCK_RANGE)
        seconds = time.perf_counter() - t1
        replayed = state.events
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        del state
        traced = _traced(chain, head)
    result = {
        "events": replayed,
        "generated": generated,
        "blocks": head,
        "generate_s": round(generate_s, 1),
        "seconds": round(seconds, 2),
        "events_per_s": round(replayed / seconds),
        "peak_rss_mb_before_replay": round(rss_before, 1),
        "peak_rss_mb_after_replay": round(rss_after, 1),
        **traced,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
