"""A node cannot outlive the command that started it, and one state has one node (issue 13).

Each command runs as a process in a private copy of the project; the node's PID is read from
the lock file next to its state, which holds the owner's PID and the node's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.node import free_port, read_lock, rpc_answers
from tests.cli.healthz import wait_healthy

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(".deedchain/development/anvil-state.json")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its reaper does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_for_line(proc: subprocess.Popen[str], text: str) -> str:
    """The first stdout line holding `text` (the command prints it once it is ready)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return line
    _out, err = proc.communicate(timeout=60)
    raise AssertionError(f"exited with {proc.returncode} before printing {text!r}: {err[-2000:]}")


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return out


class Cli:
    """`deedchain` commands in one project copy; what a failed test leaves running is killed."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.procs: list[subprocess.Popen[str]] = []
        self.nodes: set[int] = set()

    def launch(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "DEEDCHAIN_PROJECT": str(self.project)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def node_pid(self, owner: subprocess.Popen[str]) -> int:
        pids = read_lock(self.project / f"{STATE}.lock")
        assert pids["owner"] == owner.pid and alive(pids["node"]), pids
        self.nodes.add(pids["node"])
        return pids["node"]

    def start_node(self) -> tuple[subprocess.Popen[str], str]:
        proc = self.launch("node")
        line = wait_for_line(proc, "Ctrl-C stops it")
        return proc, line.split(" on ", 1)[1].split(";", 1)[0]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for pid in self.nodes:
            if not gone_within(pid, 5):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli(project_copy: Path) -> Iterator[Cli]:
    runner = Cli(project_copy)
    yield runner
    runner.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_node_stops_its_anvil_and_saves_state_on(cli: Cli, sig: signal.Signals) -> None:
    proc, _url = cli.start_node()
    pid = cli.node_pid(proc)
    assert "stopped; state saved" in stop(proc, sig)
    assert not alive(pid)
    assert (cli.project / STATE).stat().st_size > 0


def test_a_killed_node_command_takes_its_anvil_along(cli: Cli) -> None:
    proc, _url = cli.start_node()
    pid = cli.node_pid(proc)
    proc.kill()
    proc.communicate(timeout=10)
    assert gone_within(pid, 5), f"anvil {pid} outlived its owner"
    assert (cli.project / STATE).stat().st_size > 0  # it wrote its state on the way out
    again, _url = cli.start_node()  # and released the state's lock
    stop(again)


def test_a_second_node_on_the_same_state_refuses_and_names_the_holder(cli: Cli) -> None:
    first, _url = cli.start_node()
    pid = cli.node_pid(first)
    second = cli.launch("node")
    _out, err = second.communicate(timeout=60)
    assert second.returncode == 2, err[-2000:]
    assert f"PID {first.pid}" in err and f"anvil PID {pid}" in err, err
    assert cli.node_pid(first) == pid  # the first is untouched
    stop(first)


def test_serve_stops_its_node_and_a_killed_serve_takes_it_along(cli: Cli) -> None:
    port = free_port()

    def serve() -> subprocess.Popen[str]:
        return wait_healthy(cli.launch("serve", "--port", str(port)), port, timeout=180)

    proc = serve()
    pid = cli.node_pid(proc)
    stop(proc, signal.SIGTERM)
    assert not alive(pid)

    proc = serve()
    pid = cli.node_pid(proc)
    proc.kill()
    proc.communicate(timeout=10)
    assert gone_within(pid, 5), f"anvil {pid} outlived serve"

    proc = serve()  # the next serve finds the state free again
    stop(proc, signal.SIGINT)


def test_oracles_stop_on_sigterm(cli: Cli) -> None:
    deploy = cli.launch("deploy")
    _out, err = deploy.communicate(timeout=300)
    assert deploy.returncode == 0, err[-2000:]
    node, url = cli.start_node()
    dbs = ("db", "registry-db", "lender-db", "bank-db")
    own_dbs = [arg for db in dbs for arg in (f"--{db}", f"sqlite:///{cli.project / db}.db")]
    oracles = cli.launch("oracles", "--rpc", url, *own_dbs)
    wait_for_line(oracles, "oracles running")
    stop(oracles, signal.SIGTERM)
    stop(node)


NODE_FROM_A_THREAD = """
import sys, threading
from chain.config import load_config
from chain.node import EmbeddedNode

config = load_config(sys.argv[1])
nodes = []
worker = threading.Thread(
    target=lambda: nodes.append(EmbeddedNode(config, config.networks["development"], persist=False).start())
)
worker.start()
worker.join()
print(nodes[0].process.pid, nodes[0].url, flush=True)
threading.Event().wait()
"""


def test_a_node_started_from_a_thread_outlives_the_thread_but_not_the_process(project_copy: Path) -> None:
    """The parent-death signal fires when the forking *thread* ends: nodes are forked from one
    thread that lasts as long as the process."""
    owner = subprocess.Popen(
        [sys.executable, "-c", NODE_FROM_A_THREAD, str(project_copy / "brownie-config.yaml")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        pid, url = owner.stdout.readline().split()
        time.sleep(0.5)
        assert rpc_answers(url) == 31337
    finally:
        owner.kill()
        owner.wait()
    if not gone_within(int(pid), 5):
        os.kill(int(pid), signal.SIGKILL)
        raise AssertionError(f"anvil {pid} outlived its owner")
