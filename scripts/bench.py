"""`deedchain bench`: complete deals (loan + seller mortgage) through the pipeline on the embedded
node, against the node's own ceiling measured in the same run.

Each deal gets its own parcel (registered at the registry with a mortgage held by the seller's
bank, mirrored on chain) and its own seller and buyer wallets; the buyer is a lender customer
with anchored e-certificates in the wallet. That world is prepared first, untimed. Then, timed,
a worker plays the broker and the parties up to the permit; from there the automation, the
oracles and the institutions finish the deal. `--concurrency` deals are in flight at once; a
deal's latency runs from its opening to its DealSettled event. `--block-time SECONDS` runs the
node with interval mining (for the timed deals; the untimed world is set up under automine).
After the deals, the node's own deal ceiling: the same deals' calls pre-signed and batched (the
growth bench's seeder). Prints one JSON object as its last line.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.config import Config, load_config
from chain.deploy import deploy_project
from chain.eip712 import sign_typed_data
from chain.events import EventStream, LogHub
from chain.rpc import Rpc, raise_errors
from chain.session import ChainSession
from chain.subscribe import HeadFeed, ws_url
from chain.txsign import TxSigner
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from pipeline.domain import DealTerms, LandUse, Party, State
from pipeline.metrics import oracle_metrics, percentile
from pipeline.oracles.registry import publish_parcel
from pipeline.service import Services

DAY = 86_400
ENDED = {"DealSettled", "DealCancelled", "DealDefaulted", "DealRefunded"}  # the escrow's end events
# The deal: a 1,000,000,000 won apartment, 400,000,000 of it on loan, the seller's 근저당
# (채권최고액 300,000,000) paid off at 250,000,000 (OWED) from the proceeds.
PRICE, DEPOSIT, INTERIM, BALANCE, LOAN = 1_000_000_000, 100_000_000, 300_000_000, 600_000_000, 400_000_000
OLD_MORTGAGE, OWED = 300_000_000, 250_000_000
SETTLE_TIMEOUT_S = 120.0  # a deal's wait for its end under automine
# At interval mining a deal waits for ~15 blocks of its own, and (the automation and each
# institution wait for one transaction's block before sending the next) for the blocks of the
# deals in flight with it: the wait for its end grows with both.
SETTLE_BLOCKS, SETTLE_BLOCKS_PER_DEAL_IN_FLIGHT = 60, 8
RECEIPT_BLOCKS = 30  # a receipt's wait, in blocks: the network's timeout is in seconds
# A permissioned network's block gas limit for the block-time mode: at 40 deals/s of ~770,000 gas
# a 30 M block (the development default) is full every second, and an EIP-1559 base fee then grows
# 12.5% a block until the transactions' fee cap falls behind it and the node drops them.
BLOCK_TIME_GAS_LIMIT = 100_000_000
POLL_S = 0.01  # the oracles' and the automation's wait between polls when caught up


def node_ceiling(session: ChainSession, count: int = 1000, batch: int = 200) -> float:
    """Pre-signed token transfers sent in JSON-RPC batches of `batch`: the node's own rate here.
    One sender's consecutive nonces, as anvil takes them fastest; a node that refuses a nonce
    gap within a batch (hardhat's automine) gets one transaction of each of `batch` senders per
    batch instead."""
    try:
        return _rate(session, [session.signers["bank"].account], count, batch)
    except NonceGapRefused:
        session.sender("bank").resync()
        return _rate(session, [Account.create() for _ in range(batch)], count, batch)


class NonceGapRefused(RuntimeError):
    """The node took a batch's transactions only in order."""


def _rate(session: ChainSession, senders: list[LocalAccount], count: int, batch: int) -> float:
    token = session.contract("DepositToken")
    bank = session.sender("bank")
    fees = session.fees.fields()
    # untimed: the senders get tokens, and gas money unless it is the bank itself
    setup = [bank.send(token.address, token.encode("mint", a.address, count), gas=100_000) for a in senders]
    funder = session.sender("deployer")
    setup += [
        funder.send(a.address, "0x", value=10**17, gas=21_000) for a in senders if a.address != bank.address
    ]
    for tx_hash in setup:
        bank.wait(tx_hash)
    data = token.encode("transfer", Account.create().address, 1)
    first = {
        a.address: int(session.rpc.call("eth_getTransactionCount", [a.address, "pending"]), 16)
        for a in senders
    }
    per_sender = -(-count // len(senders))

    def signed(a: LocalAccount, nonce: int) -> str:
        tx = {"chainId": session.chain_id, "nonce": nonce, "gas": 80_000, "to": token.address, "value": 0}
        return "0x" + TxSigner(a.key).sign({**tx, "data": data, **fees})[0].hex()

    raws = [signed(a, first[a.address] + n) for n in range(per_sender) for a in senders]
    started = time.perf_counter()
    last: Any = None
    for i in range(0, len(raws), batch):
        answers = session.rpc.batch([("eth_sendRawTransaction", [r]) for r in raws[i : i + batch]])
        refused = [a for a in answers if isinstance(a, Exception)]
        if refused and len(senders) == 1:
            raise NonceGapRefused(str(refused[0]))
        if refused:
            raise RuntimeError(f"the node refused {len(refused)} of a ceiling batch: {refused[0]}")
        last = answers[-1]
    bank.wait(str(last))
    if len(senders) == 1:
        bank.resync()
    return len(raws) / (time.perf_counter() - started)


def empty_block_ms(session: ChainSession, blocks: int = 5) -> float:
    """What the node spends on a block with nothing in it: anvil rebuilds its state root for
    every block, so this grows with the state, and automine makes a block per transaction."""
    started = time.perf_counter()
    for _ in range(blocks):
        session.rpc.call("evm_mine")
    return (time.perf_counter() - started) / blocks * 1000


@dataclass(frozen=True)
class Prepared:
    """The world before a deal: the seller's mortgaged parcel, a buyer who banks at the lender
    and holds anchored e-certificates in the wallet."""

    seller: LocalAccount
    buyer: LocalAccount
    parcel: str


class Finish:
    """One watcher for every deal's end: an event stream over the escrow, not a poll per deal.
    On an RPC client of its own, so that the session's client counts only the pipeline's calls."""

    def __init__(self, session: ChainSession, services: Services) -> None:
        escrow = services.brokerage.escrow
        rpc = Rpc(session.rpc.urls, timeout=session.rpc.timeout)
        # heads pushed: its idle polls (every 5 ms) ask the node nothing and cost this process
        # (whose CPU is the pipeline's measure) next to nothing
        self.hub = LogHub(rpc, feed=HeadFeed(ws_url(rpc.url)) if session.network.subscribe else None)
        self.stream = EventStream(
            self.hub,
            {escrow.address: (escrow.name, escrow.abi)},
            # deals it waits for are opened after it starts; older history (a growth run's
            # thousands of seeded deals) is not its business
            start_block=int(session.rpc.call("eth_blockNumber"), 16) + 1,
            events=ENDED,
        )
        self.done: dict[int, tuple[str, float]] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-finish")

    def _run(self) -> None:
        while not self.stop.is_set():
            batch = self.stream.poll()
            ends = [e for e in batch.events if e.event in ENDED]
            if ends:
                now = time.perf_counter()
                with self.cond:
                    for e in ends:
                        self.done.setdefault(int(e.args["dealId"]), (e.event, now))
                    self.cond.notify_all()
            if batch.caught_up:
                self.stop.wait(0.005)

    def wait(self, deal: int, timeout: float) -> tuple[str, float] | None:
        with self.cond:
            self.cond.wait_for(lambda: deal in self.done, timeout)
            return self.done.get(deal)


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system) used so far by this process, or by another one (Linux /proc)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    """Deals set up and started the way a broker does, for the bench and the fault campaign.
    `watch`: also see every deal end (what `run` waits for), each for up to `settle_timeout` s."""

    def __init__(
        self,
        session: ChainSession,
        services: Services,
        *,
        watch: bool = True,
        settle_timeout: float = SETTLE_TIMEOUT_S,
    ) -> None:
        self.s = session
        self.settle_timeout = settle_timeout
        self.services = services
        self.b = services.brokerage
        self.inst = services.institutions
        self.deal_contracts = {self.b.escrow.address.lower(), self.b.loans.address.lower()}
        self.lock = threading.Lock()  # the registrar's and issuer's setup transactions, one at a time
        self._lots = itertools.count()
        self.broker = session.signers["broker"].address
        self.finish = Finish(session, services) if watch else None
        if self.finish:
            self.finish.thread.start()

    def close(self) -> None:
        if self.finish:
            self.finish.stop.set()
            self.finish.thread.join(timeout=5)
            self.finish.hub.close()

    def prepare(self, _index: int = 0) -> Prepared:
        seller, buyer = Account.create(), Account.create()
        # a main lot number of its own per deal of this Bench (random numbers alone met twice in
        # a run of 2,000), a random sub lot against other Benches on the same registry
        with self.lock:
            lot = next(self._lots)
        number = f"1168010600-{90_000 + lot % 10_000}-{uuid.uuid4().int % 10**4:04d}"
        now = self.b.now()
        with self.lock:
            registry = self.inst.registry
            pid = registry.register_parcel(
                number, f"서울특별시 강남구 벤치동 {number[-4:]}", 8_497, LandUse.BUILDING, seller.address
            )
            registry.add_mortgage(pid, self.s.signers["bank"].address, seller.address, OLD_MORTGAGE)
            record = registry.read_parcel(pid)
            assert record is not None
            publish_parcel(self.b.land, self.s.sender("registrar"), record)
            self.inst.bank.book_existing_mortgage(pid, seller.address, OWED)
        self.inst.lender.open_customer(buyer.address, "벤치", 150_000_000, cash=2_000_000_000)
        certificates: list[tuple[CredentialKind, dict[str, str | int]]] = [
            (CredentialKind.RESIDENT_REGISTRATION, {"name": "벤치", "serial": number}),
            (CredentialKind.INCOME, {"annual_income": 150_000_000, "serial": number}),
        ]
        for kind, claims in certificates:
            doc, h, sig = issue_credential(
                self.s.signers["issuer"].account, kind, buyer.address, claims, now, now + 365 * DAY
            )
            with self.lock:
                self.b.c["CredentialRegistry"].transact(
                    self.s.sender("issuer"), "anchor", h, int(kind), buyer.address, now + 365 * DAY
                )
            self.b.submit_credential(doc.model_dump(mode="json"), sig)
        # the buyer's own money, paid in at its bank before the deal (its savings): in the timed
        # part the institutions' keys are the oracles' alone, which may run in a process of their own
        self.b.lender_oracle.issue_deposit(f"bench-{pid}", buyer.address, PRICE - LOAN)
        return Prepared(seller, buyer, pid)

    def start(self, p: Prepared) -> int:
        """The broker opens the deal with both parties' acceptances of its draft, and the buyer
        signs one permit (its own part is in at the bank already); from there the pipeline runs
        the deal by itself."""
        now = self.b.now()
        terms = DealTerms(
            parcelId=p.parcel,
            seller=p.seller.address,
            buyer=p.buyer.address,
            price=PRICE,
            deposit=DEPOSIT,
            interim=INTERIM,
            balance=BALANCE,
            depositDeadline=now + 7 * DAY,
            interimDeadline=now + 30 * DAY,
            balanceDeadline=now + 60 * DAY,
            loanAmount=LOAN,
            lender=self.s.signers["lender"].address,
        )
        acceptances = {
            party: (now + DAY, sign_typed_data(key, self.b.draft_typed_data(terms, party, now + DAY)))
            for party, key in ((Party.BUYER, p.buyer), (Party.SELLER, p.seller))
        }
        own, deadline = PRICE - LOAN, now + 90 * DAY
        permit = sign_typed_data(p.buyer, self.b.owner_permit_typed_data(p.buyer.address, own, deadline))
        # two independent transactions, sent at once: the deal opened with both acceptances, and
        # the buyer's permit for the escrow
        with ThreadPoolExecutor(1) as pool:
            permitted = pool.submit(
                self.b.submit_owner_permit, self.broker, p.buyer.address, own, deadline, permit
            )
            deal, _ = self.b.open_signed_deal(self.broker, terms, acceptances)
            permitted.result()
        return deal

    def run(self, p: Prepared) -> dict[str, Any]:
        """The deal itself, timed from its opening to its end."""
        assert self.finish is not None, "a Bench made with watch=False sees no deal end"
        started = time.perf_counter()
        deal = self.start(p)
        end = self.finish.wait(deal, timeout=self.settle_timeout)
        settled = end is not None and end[0] == "DealSettled"
        return {
            "deal": deal,
            "settled": settled,
            "seconds": (end[1] if end else time.perf_counter()) - started,
        }

    def stalled(self, deal: int) -> dict[str, Any]:
        """Where a deal that did not end in time stands: its state and what it waits for, its
        last events, each oracle's effects for it, and whether the automation still counts it live."""
        view = self.b.deal(deal)
        return {
            "deal": deal,
            "state": view["state"],
            "waiting": view["waiting"],
            "last_events": [(s["step"], s["block"]) for s in self.b.timeline(deal)][-4:],
            "effects": {
                f"{o.store.oracle} {e.key}": [e.status, e.error]
                for o in self.inst.oracles
                for e in o.store.effects(deal_id=deal)
            },
            "indexed": str(self.b.index.get(deal)),  # the automation's view: live while not ended
        }

    def cost(self, deal: int) -> tuple[float, int, int | None]:
        """Transactions and gas of a deal's own steps, and its blocks from the signature that
        made it Signed to its DealSettled (None if it has not both), from its timeline. A batch
        transaction that carried several deals' steps counts for each by its share."""
        steps = self.b.timeline(deal)
        gas = {s["tx"]: s["gas"] for s in steps}
        hashes = list(gas)
        receipts = raise_errors(
            self.b.session.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        )
        shares = {
            h: 1 / max(1, len(_deals_in(r, self.deal_contracts)))
            for h, r in zip(hashes, receipts, strict=True)
        }
        signed = [
            s["block"]
            for s in steps
            if s["step"] == "TermsAccepted" and s["details"]["state"] == State.SIGNED
        ]
        settled = [s["block"] for s in steps if s["step"] == "DealSettled"]
        blocks = settled[0] - signed[0] if signed and settled else None
        return sum(shares.values()), round(sum(gas[h] * shares[h] for h in hashes)), blocks

    def deal(self, index: int) -> dict[str, Any]:
        """One whole deal, preparation included (for callers that run deals one by one)."""
        result = self.run(self.prepare(index))
        if result["settled"]:
            result["txs"], result["gas"], result["blocks"] = self.cost(result["deal"])
        return result


def _deals_in(receipt: dict[str, Any], contracts: set[str]) -> set[str]:
    """The deals whose events a receipt carries (the first indexed topic of the escrow's and the
    loan book's deal events is the deal id)."""
    return {
        log["topics"][1]
        for log in receipt["logs"]
        if log["address"].lower() in contracts and len(log["topics"]) > 1
    }


def node_deal_ceiling(session: ChainSession, deals: int) -> float:
    """Deals/s of the node itself: every transaction of `deals` complete deals (all parties and
    institutions) pre-signed and sent in JSON-RPC batches, stage by stage, until all are mined:
    the growth bench's seeder, which mines its own large blocks, so it measures what the node
    can execute, in either mining mode. The pipeline must be stopped: the seeder plays the
    institutions with their accounts."""
    from scripts.bench_growth import Seeder  # bench_growth builds on this module

    seeded = Seeder(session).seed(deals)
    return seeded.deals / seeded.seconds


def _with_block_time(config: Config, network: str | None, block_time: float) -> Config:
    """The config with the bench's network mining a block every `block_time` s (this run's node
    only) with blocks of BLOCK_TIME_GAS_LIMIT gas, and waiting for a receipt at least
    RECEIPT_BLOCKS blocks."""
    name, net = config.network(network)
    if block_time <= 0:
        raise SystemExit("--block-time: seconds, more than 0")
    if net.cmd not in ("anvil", "hardhat"):
        raise SystemExit(f"--block-time: network {name!r} is not an embedded anvil or hardhat node")
    if net.cmd == "anvil" and not float(block_time).is_integer():
        raise SystemExit("--block-time: whole seconds on anvil (its evm_setIntervalMining takes no less)")
    gas_limit = max(net.cmd_settings.gas_limit, BLOCK_TIME_GAS_LIMIT)
    update = {
        "cmd_settings": net.cmd_settings.model_copy(
            update={"block_time": block_time, "gas_limit": gas_limit}
        ),
        "timeout": max(net.timeout, RECEIPT_BLOCKS * block_time),
    }
    return config.model_copy(update={"networks": {**config.networks, name: net.model_copy(update=update)}})


def _automine(session: ChainSession) -> None:
    """A block per transaction: the untimed setup (serial registrar and issuer transactions,
    hours for thousands of deals at 1 s a block) and the node's own measures run this way."""
    session.rpc.call("evm_setIntervalMining", [0])
    session.rpc.call("evm_setAutomine", [True])


def _interval_mining(session: ChainSession, block_time: float) -> None:
    session.rpc.call("evm_setAutomine", [False])
    # anvil takes whole seconds, hardhat milliseconds
    interval = round(block_time * 1000) if session.network.cmd == "hardhat" else int(block_time)
    session.rpc.call("evm_setIntervalMining", [interval])


def oracles_command(session: ChainSession, services: Services, poll: float) -> list[str]:
    """`deedchain oracles` on this session's node and the institutions' databases."""
    urls = services.institutions.urls
    return [
        sys.executable, "-m", "scripts.cli", "oracles", "--rpc", session.rpc.url,
        "--deployments", str(session.deployments_dir), "--db", urls["oracles"],
        "--registry-db", urls["registry"], "--lender-db", urls["lender"], "--bank-db", urls["bank"],
        "--known-issuer", session.signers["issuer"].address, "--poll", str(poll),
    ]  # fmt: skip


class OracleWorker:
    """The institutions' oracles (and their reference back offices) as `deedchain oracles`, a
    process of their own on the same node and databases: the pipeline's second core. Its CPU
    and its JSON-RPC calls count as the pipeline's."""

    def __init__(self, session: ChainSession, services: Services, poll: float) -> None:
        self.cmd = oracles_command(session, services, poll)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()  # "oracles running on chain ...", once they recovered
        if not ready.startswith("oracles running"):
            raise RuntimeError(f"the oracles' process did not start: {ready!r}")

    def cpu(self) -> float | None:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> dict[str, Any]:
        """Stop it; its last line: the JSON-RPC calls and HTTP requests it made."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        lines = [line for line in out.strip().splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def run_bench(
    deals: int,
    concurrency: int,
    *,
    as_json: bool = True,
    network: str | None = None,
    block_time: float | None = None,
) -> int:
    config = load_config()
    if block_time is not None:
        config = _with_block_time(config, network, block_time)
    settle_timeout = SETTLE_TIMEOUT_S
    if block_time is not None:
        settle_timeout += block_time * (SETTLE_BLOCKS + SETTLE_BLOCKS_PER_DEAL_IN_FLIGHT * concurrency)
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChainSession.open(network, config, persist=False, deployments_dir=Path(tmp)) as session,
    ):
        if session.node is None:
            raise SystemExit(
                f"network {session.network_name!r} is not an embedded node: the bench needs its own"
            )
        if block_time is not None:
            _automine(session)
        deploy_project(session)
        ceiling = node_ceiling(session)
        services = Services.build(session, Path(tmp), poll_interval=POLL_S).start()
        bench = Bench(session, services, settle_timeout=settle_timeout)
        rpc = session.rpc  # this process's client: the broker's calls, the automation's
        worker: OracleWorker | None = None
        try:
            with ThreadPoolExecutor(concurrency) as pool:
                prepared = list(pool.map(bench.prepare, range(deals)))
            # the oracles move to their own process: the second core
            services.institutions.stop()
            worker = OracleWorker(session, services, POLL_S)
            node_pid = session.node.process.pid if session.node and session.node.process else None
            block_ms = [empty_block_ms(session)]
            if block_time is not None:
                _interval_mining(session, block_time)
            first_block = int(session.rpc.call("eth_blockNumber"), 16)
            cpu_before = cpu_seconds(), cpu_seconds(node_pid), worker.cpu()
            rpc_before = rpc.calls, rpc.requests
            started = time.perf_counter()
            # `concurrency` deals in flight: a worker takes the next deal when its deal has ended
            with ThreadPoolExecutor(concurrency) as pool:
                results = list(pool.map(bench.run, prepared))
            seconds = time.perf_counter() - started
            cpu_after = cpu_seconds(), cpu_seconds(node_pid), worker.cpu()
            rpc_after = rpc.calls, rpc.requests
            worked = worker.stop()  # its calls from its start: a little more than the timed window's
            worker = None
            for o in services.institutions.oracles:
                o.sender.resync()  # the worker used their keys
            blocks = int(session.rpc.call("eth_blockNumber"), 16) - first_block
            if block_time is not None:
                _automine(session)  # the node's own measures below, as in the automine mode
            block_ms.append(empty_block_ms(session))
            ceiling_end = node_ceiling(session)  # the same measure on the state the run left
            metrics = oracle_metrics(services.institutions.engine)
            for r in results:
                if r["settled"]:
                    r["txs"], r["gas"], r["blocks"] = bench.cost(r["deal"])
            unsettled = [bench.stalled(r["deal"]) for r in results if not r["settled"]]
        finally:
            if worker is not None:
                worker.stop()
            bench.close()
            services.stop()
        deal_ceiling = node_deal_ceiling(session, deals)
    settled = [r for r in results if r["settled"]]
    per_deal_tx = sum(r["txs"] for r in settled) / max(1, len(settled))
    deals_per_s = len(settled) / seconds
    reactions = [v["latency_ms"]["p95"] for v in metrics.values() if "latency_ms" in v]
    spans = [r["blocks"] for r in settled if r["blocks"] is not None]
    out = {
        "deals": deals,
        "settled": len(settled),
        "seconds": round(seconds, 3),
        "deals_per_s": round(deals_per_s, 3),
        "tx_per_deal": round(per_deal_tx, 2),
        "gas_per_deal": round(sum(r["gas"] for r in settled) / max(1, len(settled))),
        "node_ceiling_tx_per_s": round(ceiling, 1),
        "ratio_to_ceiling": round(deals_per_s * per_deal_tx / ceiling, 4),
        "latency_p50_s": round(percentile([r["seconds"] for r in settled], 50) or 0, 3),
        "latency_p95_s": round(percentile([r["seconds"] for r in settled], 95) or 0, 3),
        "oracle_reaction_p95_ms": round(max(reactions), 1) if reactions else None,
        # where the time goes: CPU per settled deal in this process and in the node
        "pipeline_cpu_ms_per_deal": _per_deal(
            _sum(cpu_before[0], cpu_before[2]), _sum(cpu_after[0], cpu_after[2]), len(settled)
        ),
        # of which the oracles' process (the institutions' oracles with their reference back offices)
        "oracles_cpu_ms_per_deal": _per_deal(cpu_before[2], cpu_after[2], len(settled)),
        "node_cpu_ms_per_deal": _per_deal(cpu_before[1], cpu_after[1], len(settled)),
        # what bounds the node under automine: blocks per deal times its cost per block
        "blocks_per_deal": round(blocks / max(1, len(settled)), 2),
        "node_empty_block_ms": [round(ms, 2) for ms in block_ms],
        "node_ceiling_end_tx_per_s": round(ceiling_end, 1),
        "block_time_s": block_time,  # None: automine
        # a deal's own span on chain: from the signature that made it Signed to its DealSettled
        "blocks_per_deal_p50": percentile(spans, 50),
        "blocks_per_deal_p95": percentile(spans, 95),
        # the pipeline's JSON-RPC calls (a batch's each; the broker's part included, the bench's
        # watching for deal ends not), and the HTTP requests that carried them
        "rpc_requests_per_deal": _per_deal(
            rpc_before[0], rpc_after[0] + worked.get("rpc_calls", 0), len(settled), 1
        ),
        "rpc_http_requests_per_deal": _per_deal(
            rpc_before[1], rpc_after[1] + worked.get("rpc_requests", 0), len(settled), 1
        ),
        "node_deal_ceiling_per_s": round(deal_ceiling, 2),
        "ratio_to_deal_ceiling": round(deals_per_s / deal_ceiling, 4),
        # a deal that did not settle in time: where it stands, for the team to look into
        "unsettled": unsettled,
    }
    if not as_json:
        for key, value in out.items():
            print(f"{key:27} {value}")
    print(json.dumps(out))
    return 0 if len(settled) == deals else 1


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _per_deal(before: float | None, after: float | None, deals: int, scale: float = 1000) -> float | None:
    """(after - before) per deal, times `scale` (seconds to ms by default)."""
    if before is None or after is None or not deals:
        return None
    return round((after - before) * scale / deals, 1)
