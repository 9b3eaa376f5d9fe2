"""(issue 13) `deedchain serve` and its node killed together (SIGKILL, the same instant) right
after the API answered 2xx for a write, or right after the automation or an oracle moved the
deal on; then `serve` is started again on the same state and the deal goes on from where the
API says it is. The embedded anvil writes its state only once a second, so each kill most likely
loses the last transactions from the node: the pipeline must put back what it answered
success for. Variant 2 rolls the node's state file back to an older copy before one restart.

Everything goes through the product's command and HTTP API; the test also plays the parties'
wallets (they sign typed data), the e-certificate issuer (it anchors on chain itself) and an
auditor reading the chain over JSON-RPC (receipts, logs).

At the end: the deal settled once, each earlier 2xx write is on the final chain (its
transaction mined with status 1, or, if the pipeline had to sign it again, its effect), and
nothing happened twice (the timeline has each step once, the buyer was issued exactly what it
paid in).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_utils import keccak

from chain.config import load_config
from chain.eip712 import sign_typed_data
from chain.node import free_port
from chain.rpc import Rpc
from chain.session import ChainSession
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from scripts.demo import DAY, PARTIES, Broker
from tests.faults.conftest import EXPECTED_TIMELINE

ROOT = Path(__file__).resolve().parents[2]
NETWORK = "development"
PARCEL = "eunma"  # a sample apartment with the seller's mortgage (the demo's first choice)
PRICE, DEPOSIT, INTERIM, LOAN = 2_200_000_000, 220_000_000, 660_000_000, 600_000_000
OWN = PRICE - LOAN  # what the buyer pays in at the bank and authorizes the escrow to pull
# The buyer pays in at the bank as each installment falls due: the deal then waits for the
# buyer's money (or its certificates) between the stages, and the automation's and the
# oracles' steps happen while the test watches, so it can kill right after them.
CASH = [DEPOSIT, INTERIM, OWN - DEPOSIT - INTERIM]
STATES = ["open", "signed", "deposit_paid", "interim_paid", "loan_approved", "funded",
          "registration_requested", "settled"]  # fmt: skip
PR_SET_CHILD_SUBREAPER = 36
RECOVERY = 20.0  # seconds a restarted serve may take to put back what the node lost


def topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


ISSUED = topic("Issued(address,address,uint256)")
APPROVAL = topic("Approval(address,address,uint256)")


# --- the project and its `serve` process ------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root of its own: the config (so state, deployments and logs land here), the
    contracts and node_modules linked, and the compiled build copied (nothing recompiles)."""
    from chain.compiler import compile_project

    compile_project(load_config(ROOT / "brownie-config.yaml"))  # the developer's cache, as other tests
    shutil.copy(ROOT / "brownie-config.yaml", tmp_path / "brownie-config.yaml")
    (tmp_path / "contracts").symlink_to(ROOT / "contracts")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    shutil.copytree(ROOT / "build", tmp_path / "build")
    return tmp_path


@pytest.fixture
def subreaper() -> Iterator[None]:
    """The node, killed with `serve`, is reparented when `serve` dies: to this process, which
    reaps it (no zombie left behind)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def gone(pid: int) -> bool:
    """Dead: reaped, or a zombie (which holds no port and no file)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Serve:
    """`deedchain --config <project> serve --port N` as a process, and the node it started."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.folder = project / ".deedchain" / NETWORK
        self.state_file = self.folder / "anvil-state.json"
        self.log = project / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_pid = 0
        self.family: list[int] = []  # serve's descendants: the node (and whatever else it started)
        self.url = self.rpc_url = ""
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "scripts.cli", "--config", str(self.project / "brownie-config.yaml"),
               "serve", "--port", str(port)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEEDCHAIN_")}
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"serve not healthy in {timeout:.0f}s:\n{self.tail()}"
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.family = descendants(self.proc.pid)
        nodes = [
            p for p in self.family if Path((cmdline(p) or [""])[0]).name == "anvil" and "--port" in cmdline(p)
        ]
        assert len(nodes) == 1, {p: cmdline(p) for p in self.family}
        self.node_pid = nodes[0]
        args = cmdline(self.node_pid)
        self.rpc_url = f"http://127.0.0.1:{args[args.index('--port') + 1]}"

    def kill(self) -> None:
        """SIGKILL `serve` and its node at the same instant; wait until both are gone."""
        assert self.proc is not None
        os.kill(self.node_pid, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        for other in self.family:  # anything else serve started (none today)
            with contextlib.suppress(ProcessLookupError):
                os.kill(other, signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while not all(map(gone, self.family)):
            assert time.monotonic() < deadline, f"{self.family} survived SIGKILL"
            time.sleep(0.01)
        self.proc = None

    def stop(self) -> None:
        """Teardown: ask politely, then make sure nothing of ours is left."""
        if self.proc is None:
            return
        node = self.node_pid
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in {node, *self.family} - {0}:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def tail(self, chars: int = 4000) -> str:
        """The end of serve's log, without the access lines."""
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if '"event": "http"' not in line)[-chars:]

    def keys(self) -> dict[str, str]:
        keys: dict[str, str] = json.loads((self.folder / "api-keys.json").read_text())
        return keys

    def dumped_block(self) -> int | None:
        """The last block in the node's state file (what a restart will load), None mid-write."""
        try:
            return int(json.loads(self.state_file.read_text())["best_block_number"])
        except (OSError, ValueError, KeyError):
            return None

    def save_state(self, copy: Path) -> None:
        """A copy of the node's state file as it is now (a whole dump, not one mid-write)."""
        while True:
            shutil.copy(self.state_file, copy)
            with contextlib.suppress(ValueError):
                json.loads(copy.read_text())
                return
            time.sleep(0.05)

    def wait_dumped(self, block: int, timeout: float = 10.0) -> None:
        """Until the node's periodic dump has written `block`."""
        deadline = time.monotonic() + timeout
        while (self.dumped_block() or -1) < block:
            assert time.monotonic() < deadline, f"the node did not write block {block} in {timeout:.0f}s"
            time.sleep(0.1)


# --- the auditor's view of the chain ----------------------------------------------------------


def rpc(url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = requests.post(url, json=body, timeout=10).json()
    assert "error" not in answer, (method, params, answer["error"])
    return answer["result"]


@dataclass
class Write:
    """A write the API (or the pipeline) answered success for, and how to see it took effect."""

    what: str
    tx: str | None  # the transaction the answer named (None: a write kept in the pipeline's DB)
    block: int | None
    effect: Callable[[], bool] | None = None  # the effect, for a transaction signed again


@dataclass
class Deal:
    """One deal driven through the API, and everything the test was told succeeded."""

    serve: Serve
    project: Path
    broker: Broker = field(init=False)
    signers: dict[str, Any] = field(init=False)
    contracts: dict[str, str] = field(default_factory=dict)
    id: int = 0
    seller: str = ""
    buyer: str = ""
    writes: list[Write] = field(default_factory=list)
    reached: str = "open"  # the furthest state the API reported
    kills: list[str] = field(default_factory=list)
    node_lost: list[int] = field(default_factory=list)  # per kill: blocks answered, not in the state file
    credentials: list[str] = field(default_factory=list)
    settled_topic: str = ""

    def __post_init__(self) -> None:
        self.signers = {s.name: s for s in _signers(self.project)}
        self.settled_topic = _settled_topic(self.project)

    # --- connection ------------------------------------------------------------------------
    def connect(self) -> None:
        self.broker = Broker(self.serve.url, self.serve.keys()["broker"])
        record = json.loads((self.project / "deployments" / "31337.json").read_text())["contracts"]
        self.contracts = {name: c["address"] for name, c in record.items()}

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.broker.http.get(self.broker.base + path, params=params, timeout=30)

    def post(self, what: str, path: str, body: Any, **headers: str) -> dict[str, Any]:
        """A write through the API, which must answer 2xx."""
        answer = self.broker.http.post(self.broker.base + path, json=body, headers=headers, timeout=60)
        assert 200 <= answer.status_code < 300, (what, answer.status_code, answer.text[:500])
        result: dict[str, Any] = answer.json()
        return result

    def record(self, what: str, tx: str | None, effect: Callable[[], bool] | None = None) -> None:
        block = None
        if tx is not None:
            receipt = rpc(self.serve.rpc_url, "eth_getTransactionReceipt", tx)
            assert receipt is not None and receipt["status"] == "0x1", (what, tx, receipt)
            block = int(receipt["blockNumber"], 16)
        self.writes.append(Write(what, tx, block, effect))

    def state(self) -> str:
        answer = self.get(f"/deals/{self.id}")
        if answer.status_code == 404:
            return "none"
        assert answer.status_code == 200, answer.text[:500]
        state: str = answer.json()["state"]
        return state

    def view(self) -> dict[str, Any]:
        answer = self.get(f"/deals/{self.id}")
        assert answer.status_code == 200, answer.text[:500]
        view: dict[str, Any] = answer.json()
        return view

    # --- the parties' and the issuer's steps -------------------------------------------------
    def anchor_credentials(self, buyer: str) -> list[tuple[dict[str, Any], str]]:
        """The issuer anchors the buyer's two e-certificates on chain with its own key and waits
        until the node has written them (the issuer's own transactions are not the pipeline's)."""
        config = load_config(self.project / "brownie-config.yaml")
        session = ChainSession(config, NETWORK, Rpc([self.serve.rpc_url]),
                               deployments_dir=self.project / "deployments")  # fmt: skip
        now = int(rpc(self.serve.rpc_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        tag = uuid.uuid4().hex[:8]
        issued: list[tuple[dict[str, Any], str]] = []
        last = 0
        for kind, claims in (
            (CredentialKind.RESIDENT_REGISTRATION, {"name": "김민준", "serial": f"RR-{tag}"}),
            (CredentialKind.INCOME, {"annual_income": 150_000_000, "year": 2026, "serial": f"IN-{tag}"}),
        ):
            doc, h, sig = issue_credential(
                self.signers["issuer"].account, kind, buyer, claims, now, now + 90 * DAY
            )
            receipt = session.contract("CredentialRegistry").transact(
                session.sender("issuer"), "anchor", h, int(kind), buyer, now + 90 * DAY
            )
            last = receipt.block_number
            issued.append((doc.model_dump(mode="json"), sig))
            self.credentials.append(h)
        self.serve.wait_dumped(last)
        return issued

    def open(self) -> None:
        title = self.get(f"/parcels/{PARCEL}").json()
        names = {s.address: n for n, s in self.signers.items() if n in PARTIES}
        seller = names[title["owner"]]
        buyer = "buyer" if seller != "buyer" else "buyer2"
        self.seller, self.buyer = self.signers[seller].address, self.signers[buyer].address
        now = int(rpc(self.serve.rpc_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
        opened = self.post("POST /deals", "/deals", {
            "parcel": PARCEL, "seller": self.seller, "buyer": self.buyer, "price": PRICE,
            "deposit": DEPOSIT, "interim": INTERIM, "balance": PRICE - DEPOSIT - INTERIM,
            "deposit_deadline": iso(now + 7 * DAY), "interim_deadline": iso(now + 30 * DAY),
            "balance_deadline": iso(now + 60 * DAY), "loan_amount": LOAN,
            "lender": self.signers["lender"].address,
        })  # fmt: skip
        self.id = opened["deal"]["deal_id"]
        self.record("POST /deals", opened["tx"], lambda: self._terms_are_ours())

    def _terms_are_ours(self) -> bool:
        answer = self.get(f"/deals/{self.id}")
        if answer.status_code != 200:
            return False
        terms = answer.json()["terms"]
        return (terms["buyer"], terms["seller"], terms["price"]) == (self.buyer, self.seller, PRICE)

    def sign(self, party: str) -> None:
        who = self.signers_by_address()[self.buyer if party == "buyer" else self.seller]
        data = self.get(f"/deals/{self.id}/typed-data/{party}").json()
        what = f"POST /deals/{self.id}/signatures ({party})"
        answer = self.post(what, f"/deals/{self.id}/signatures", {
            "party": party, "expiry": data["message"]["expiry"],
            "signature": sign_typed_data(who.account, data),
        })  # fmt: skip
        self.note(answer["state"])
        self.record(what, answer["tx"], lambda: self.get(f"/deals/{self.id}").json()["signatures"][party])

    def submit_credential(self, document: dict[str, Any], signature: str) -> None:
        body = {"document": document, "signature": signature}
        answer = self.post("POST /credentials", "/credentials", body)
        assert answer["anchored_valid"], answer
        self.record(f"POST /credentials ({answer['kind']})", None)

    def pay_in(self, amount: int) -> None:
        """The buyer paid `amount` in at the lender bank: it issues that many deposit tokens."""
        what = f"POST /deals/{self.id}/payments ({amount:,} won)"
        answer = self.post(what, f"/deals/{self.id}/payments", {"party": "buyer", "amount": amount},
                           **{"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
        assert answer["status"] == "mined" and len(answer["txs"]) == 1, answer
        self.record(what, answer["txs"][0], lambda: amount in self.issued_to_buyer())

    def permit(self) -> None:
        """The buyer's EIP-2612 permit: the escrow may pull what it pays in, as each falls due."""
        now = int(rpc(self.serve.rpc_url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)
        deadline = now + 90 * DAY
        data = self.get(f"/deals/{self.id}/permit-typed-data", value=OWN, deadline=deadline).json()
        buyer = self.signers_by_address()[self.buyer]
        what = f"POST /deals/{self.id}/permit"
        answer = self.post(what, f"/deals/{self.id}/permit", {
            "value": OWN, "deadline": deadline, "signature": sign_typed_data(buyer.account, data),
        })  # fmt: skip
        self.note(answer["state"])
        self.record(what, answer["tx"], lambda: OWN in self.approvals_by_buyer())

    def signers_by_address(self) -> dict[str, Any]:
        return {s.address: s for s in self.signers.values()}

    # --- reading the chain -------------------------------------------------------------------
    def logs(self, contract: str, *topics: str | None) -> list[dict[str, Any]]:
        query = {"fromBlock": "0x0", "toBlock": "latest", "address": self.contracts[contract],
                 "topics": list(topics)}  # fmt: skip
        logs: list[dict[str, Any]] = rpc(self.serve.rpc_url, "eth_getLogs", query)
        return logs

    def issued_to_buyer(self) -> list[int]:
        """Every deposit-token issue to the buyer (the bank's Issued events), in won."""
        found = self.logs("DepositToken", ISSUED, None, address_topic(self.buyer))
        return [int(log["data"], 16) for log in found]

    def approvals_by_buyer(self) -> list[int]:
        """Every allowance the buyer gave the escrow (the permit's Approval events)."""
        owner, spender = address_topic(self.buyer), address_topic(self.contracts["DealEscrow"])
        return [int(log["data"], 16) for log in self.logs("DepositToken", APPROVAL, owner, spender)]

    def buyer_balance(self) -> int:
        data = "0x70a08231" + address_topic(self.buyer)[2:]
        call = {"to": self.contracts["DepositToken"], "data": data}
        return int(rpc(self.serve.rpc_url, "eth_call", call, "latest"), 16)

    def missing(self) -> list[str]:
        """The success answers whose effect the chain (or the API) does not show now."""
        out = []
        for w in self.writes:
            if w.tx is not None:
                receipt = rpc(self.serve.rpc_url, "eth_getTransactionReceipt", w.tx)
                if receipt is not None and receipt["status"] == "0x1":
                    continue
                if w.effect is not None and _safely(w.effect):
                    continue  # signed again by the pipeline: the effect is there
                how = "not on chain" if receipt is None else f"status {receipt['status']}"
                out.append(f"{w.what}: tx {w.tx} (block {w.block}) {how}")
        if self.id:
            state = self.state()
            if state not in STATES or STATES.index(state) < STATES.index(self.reached):
                out.append(f"the deal is at {state!r}; the API had reported it at {self.reached!r}")
        return out

    # --- kills -------------------------------------------------------------------------------
    def crash(self, point: str, before_restart: Callable[[], None] | None = None) -> None:
        """Kill serve and its node together now; start serve again; everything answered so far
        must be back (the pipeline may take RECOVERY seconds to put it back)."""
        self.serve.kill()
        dumped = self.serve.dumped_block()
        head = max((w.block or 0 for w in self.writes), default=0)
        self.kills.append(point)
        self.node_lost.append(max(0, head - (dumped or 0)))
        if before_restart is not None:
            before_restart()
        self.serve.start()
        self.connect()
        deadline = time.monotonic() + RECOVERY
        while lost := self.missing():
            if time.monotonic() > deadline:
                new_head = int(rpc(self.serve.rpc_url, "eth_blockNumber"), 16)
                pytest.fail(
                    f"kill #{len(self.kills)} {point!r}: accepted writes lost after the restart "
                    f"(the last write answered was mined in block {head}, the node's state file had "
                    f"block {dumped}; head now {new_head}, {RECOVERY:.0f}s after the restart):\n  "
                    + "\n  ".join(lost)
                    + f"\nserve log:\n{self.serve.tail(2500)}"
                )  # fmt: skip
            time.sleep(0.2)

    def note(self, state: str) -> None:
        if state in STATES and STATES.index(state) > STATES.index(self.reached):
            self.reached = state

    def crash_at(self, state: str, timeout: float = 60.0, **kw: Any) -> None:
        """Once the API reports the deal at `state` or past it, kill at once (unless past
        settlement already)."""
        deadline = time.monotonic() + timeout
        while True:
            now = self.state()
            self.note(now)
            if now in STATES and STATES.index(now) >= STATES.index(state):
                break
            assert time.monotonic() < deadline, (
                f"the deal stayed {now!r} for {timeout:.0f}s, waiting for {state!r}: "
                f"{self.view().get('waiting')}\n{self.serve.tail(2500)}"
            )
            time.sleep(0.08)
        if now != "settled":
            self.crash(f"deal at {now} (waited for {state})", **kw)

    def wait_settled(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (now := self.state()) != "settled":
            assert time.monotonic() < deadline, (
                f"the deal did not settle in {timeout:.0f}s: {now!r}, {self.view().get('waiting')}, "
                f"lost: {self.missing()}\n{self.serve.tail(2500)}"
            )
            time.sleep(0.1)
        self.note(now)

    def report(self, started: float) -> None:
        kills = [
            f"{point}: the node's state file {n} blocks behind the last answer"
            for point, n in zip(self.kills, self.node_lost, strict=True)
        ]
        print(f"\n{len(kills)} kills, settled in {time.monotonic() - started:.1f}s:\n  " + "\n  ".join(kills))

    # --- the end -------------------------------------------------------------------------------
    def assert_settled_once_with_every_write(self) -> None:
        assert self.missing() == []
        view = self.view()
        assert view["state"] == "settled", view
        timeline = self.get(f"/deals/{self.id}/timeline").json()["steps"]
        steps = Counter(step["step"] for step in timeline)
        assert steps == EXPECTED_TIMELINE, (steps - EXPECTED_TIMELINE, EXPECTED_TIMELINE - steps)
        settled = self.logs("DealEscrow", self.settled_topic, _deal_topic(self.id))
        assert len(settled) == 1, settled  # one DealSettled on the whole chain
        # money moved once: the buyer was issued what it paid in, the escrow pulled it all, the
        # loan came in once, the escrow holds nothing more for the deal
        assert self.issued_to_buyer() == CASH  # each payment issued once, in order
        assert self.buyer_balance() == 0
        paid = {
            "deposit": DEPOSIT,
            "interim": INTERIM,
            "buyer_balance": OWN - DEPOSIT - INTERIM,
            "loan": LOAN,
        }
        assert view["payments"] == paid, view
        assert view["held"] == 0 and view["loan"]["status"] == "secured", view
        # the loan application carried the certificates the API accepted
        (requested,) = [s for s in timeline if s["step"] == "LoanRequested"]
        hexes = lambda hs: ["0x" + str(h).lower().removeprefix("0x") for h in hs]  # noqa: E731
        assert hexes(requested["details"]["credentials"]) == hexes(self.credentials), requested
        title = self.get(f"/parcels/{PARCEL}").json()
        assert title["owner"] == self.buyer, title
        owners = [
            e["holder"] for e in title["history"] if e["section"] == "gapgu" and e["kind"] == "ownership"
        ]
        assert owners == [self.seller, self.buyer], owners
        eulgu = [e["kind"] for e in title["history"] if e["section"] == "eulgu"]
        assert eulgu == ["mortgage", "discharge", "mortgage"], eulgu


def _deal_topic(deal_id: int) -> str:
    return "0x" + deal_id.to_bytes(32, "big").hex()


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except (requests.RequestException, AssertionError, KeyError, ValueError):
        return False


def _signers(project: Path) -> list[Any]:
    from chain.accounts import load_signers

    return list(load_signers(load_config(project / "brownie-config.yaml"), NETWORK).values())


@pytest.fixture
def deal(project: Path, subreaper: None) -> Iterator[Deal]:
    serve = Serve(project)
    serve.start()
    d = Deal(serve, project)
    d.connect()
    try:
        yield d
    finally:
        serve.stop()


def _settled_topic(project: Path) -> str:
    abi = json.loads((project / "build" / "contracts" / "DealEscrow.json").read_text())["abi"]
    event = next(e for e in abi if e.get("type") == "event" and e["name"] == "DealSettled")

    def canonical(p: dict[str, Any]) -> str:
        if p["type"].startswith("tuple"):
            return "(" + ",".join(canonical(c) for c in p["components"]) + ")" + p["type"][5:]
        return str(p["type"])

    return topic(f"DealSettled({','.join(canonical(p) for p in event['inputs'])})")


# --- the tests --------------------------------------------------------------------------------


def test_serve_and_node_killed_after_each_accepted_write_lose_nothing(deal: Deal) -> None:
    """Kill right after every 2xx write, and right after the automation and the oracles moved
    the deal on; each time start serve again and go on from where the API says the deal is."""
    started = time.monotonic()
    (resident, income) = deal.anchor_credentials(_buyer_of(deal))
    deal.open()
    deal.crash("after POST /deals (201)")
    deal.sign("buyer")
    deal.crash("after POST signatures, buyer (200)")
    deal.sign("seller")
    deal.crash("after POST signatures, seller (200)")
    deal.pay_in(DEPOSIT)
    deal.crash("after POST payments, deposit (200, tokens issued)")
    deal.permit()
    deal.crash("after POST permit (200)")  # the restarted automation then pays the 계약금
    deal.pay_in(INTERIM)  # the automation pays the 중도금 at once; then the loan waits for the certificates
    deal.crash_at("interim_paid")
    deal.submit_credential(*resident)
    deal.crash("after POST /credentials, resident registration (201)")
    deal.submit_credential(*income)  # the automation applies, the lender decides and disburses
    deal.crash_at("loan_approved")
    deal.pay_in(CASH[2])  # the automation pays the buyer's part of the 잔금; funded, registration
    deal.crash_at("funded")
    deal.wait_settled()
    deal.assert_settled_once_with_every_write()
    deal.report(started)


def test_serve_killed_and_node_state_rolled_back_loses_nothing(deal: Deal) -> None:
    """The same, with the node's state file put back to an older copy (from before the deal
    was opened) before one restart: the chain comes back without any of the deal's blocks."""
    started = time.monotonic()
    (resident, income) = deal.anchor_credentials(_buyer_of(deal))
    older = deal.project / "anvil-state.older.json"
    deal.serve.save_state(older)  # the dump after the anchors: from before the deal began
    deal.open()
    deal.sign("buyer")
    deal.sign("seller")
    deal.pay_in(DEPOSIT)
    deal.permit()
    deal.pay_in(INTERIM)
    deal.crash_at("interim_paid")
    deal.submit_credential(*resident)
    deal.submit_credential(*income)

    def roll_back() -> None:
        shutil.copy(older, deal.serve.state_file)

    deal.crash_at("loan_approved", before_restart=roll_back)
    deal.pay_in(CASH[2])
    deal.wait_settled()
    deal.assert_settled_once_with_every_write()
    deal.report(started)


def _buyer_of(deal: Deal) -> str:
    """Who buys the sample parcel: the demo's rule (the dev buyer, unless it owns the parcel)."""
    title = deal.get(f"/parcels/{PARCEL}").json()
    return deal.signers["buyer2" if title["owner"] == deal.signers["buyer"].address else "buyer"].address
