"""The embedded node: anvil (default) or ganache on a free loopback port, with persisted state."""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import IO

from chain.config import Config, NetworkSettings
from chain.errors import NodeError

log = logging.getLogger("deedchain.node")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """No one listens on the port. TIME_WAIT leftovers of a stopped node do not count: the
    node binds with SO_REUSEADDR too, so a restart on the same port works at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _rpc(url: str, method: str, params: list[object], timeout: float = 1.0) -> object:
    """One bare JSON-RPC call (the node's own lifecycle needs no retries or counters)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())["result"]


def rpc_answers(url: str, timeout: float = 1.0) -> int | None:
    """The chain id the endpoint reports, or None when it does not answer (yet)."""
    try:
        return int(str(_rpc(url, "eth_chainId", [], timeout)), 16)
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


# What the node gets when its owner dies: the signal stop() sends, on which anvil and ganache
# write their state (npm's anvil wrapper forwards it too).
DEATH_SIGNAL = signal.SIGINT
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# How long a start waits for a node whose owner is gone (it is writing its state on the way out).
ORPHAN_GRACE = 15.0
STATE_INTERVAL = 1  # seconds between anvil's state dumps: its shortest
# anvil's dump is not atomic with mining: a block mined while it writes can be missing from the
# file while its effects (balances, nonces) are in it. A stop first halts mining and lets one
# periodic dump of the still chain pass (measured under a flood of transactions: 8 of 10 plain
# stops came back inconsistent, 1 of 10 with this pause).
QUIESCE = STATE_INTERVAL + 0.2


def _dies_with_owner() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get DEATH_SIGNAL when its owner dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None).prctl  # resolved before the fork
    owner = os.getpid()

    def preexec() -> None:
        # Between fork and exec, so nothing that takes a lock: one libc call and getppid.
        prctl(_PR_SET_PDEATHSIG, int(DEATH_SIGNAL))
        if os.getppid() != owner:  # the owner died before prctl: no signal will ever come
            os._exit(1)

    return preexec


_SpawnJob = tuple[Callable[[], "subprocess.Popen[bytes]"], "Future[subprocess.Popen[bytes]]"]
_spawn_jobs: queue.SimpleQueue[_SpawnJob] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _spawn(popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `popen` on one daemon thread that lives as long as the process: the parent-death
    signal fires when the *thread* that forked the child exits, so a node started from a
    short-lived thread would otherwise die with that thread."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_spawn_forever, name="node-spawner", daemon=True)
            _spawner.start()
    done: Future[subprocess.Popen[bytes]] = Future()
    _spawn_jobs.put((popen, done))
    return done.result()


def _spawn_forever() -> None:
    while True:
        popen, done = _spawn_jobs.get()
        try:
            done.set_result(popen())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
            done.set_exception(exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def _parses(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            json.load(f)
    except (ValueError, OSError):
        return False
    return True


def read_lock(lock_file: Path) -> dict[str, int]:
    """The PIDs a state lock file records: `owner` (the deedchain process) and `node`."""
    try:
        lines = lock_file.read_text().splitlines()
    except OSError:
        return {}
    pids = (line.split() for line in lines)
    return {p[0]: int(p[1]) for p in pids if len(p) == 2 and p[1].isdigit()}


class EmbeddedNode:
    """A local node process owned by deedchain. Use as a context manager or start()/stop().

    State lives in `cmd_settings.state` (relative to the project root) unless `state` is
    given; pass `state=None` and `persist=False` for a throwaway chain. A node with state holds
    `lock_file` while it runs, and no node outlives its owner (Linux: a parent-death signal).
    """

    def __init__(
        self,
        config: Config,
        network: NetworkSettings,
        *,
        name: str = "development",
        state: Path | None = None,
        persist: bool = True,
        port: int | None = None,
    ) -> None:
        if network.cmd is None:
            raise NodeError(f"network {name!r} has no `cmd`: it is not an embedded node")
        self.config = config
        self.network = network
        self.name = name
        self.kind = network.cmd
        settings = network.cmd_settings
        if state is None and persist and settings.state:
            state = config.root / settings.state
        self.state = state if persist else None
        self.port = port if port is not None else settings.port
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = config.root / ".deedchain" / name / f"{self.kind}.log"
        self._lock_fd: int | None = None

    @property
    def lock_file(self) -> Path | None:
        """Next to the state: held while the node runs, so no second node writes that state."""
        return self.state.with_name(self.state.name + ".lock") if self.state else None

    @property
    def url(self) -> str:
        return f"{self.network.host.rstrip('/')}:{self.port}"

    def _binary(self) -> Path:
        modules = self.config.root / "node_modules"
        if self.kind == "anvil":
            # npm's `.bin/anvil` is a Node wrapper that spawns the real binary, forwards SIGINT
            # and exits at once: stop() would return while anvil still dumps its state and holds
            # the port, and a kill would orphan it. Run the platform binary itself when present.
            native_builds = sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil"))
            for native in [*native_builds, modules / "@foundry-rs" / "anvil" / "dist" / "anvil"]:
                if native.is_file() and os.access(native, os.X_OK):
                    return native
        binary = modules / ".bin" / self.kind
        if not binary.exists():
            raise NodeError(f"{binary} is missing; run `npm ci` in {self.config.root}")
        return binary

    def _command(self) -> list[str]:
        s = self.network.cmd_settings
        chain_id = str(self.network.chainid or (31337 if self.kind in ("anvil", "hardhat") else 1337))
        if self.kind == "anvil":
            cmd = [
                str(self._binary()),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--chain-id", chain_id,
                "--accounts", str(s.accounts),
                "--mnemonic", s.mnemonic,
                "--balance", str(s.balance),
                "--gas-limit", str(s.gas_limit),
                "--hardfork", self.config.compiler.evm_version,
            ]  # fmt: skip
            if s.block_time:
                cmd += ["--block-time", str(s.block_time)]
            if s.max_persisted_states is not None:
                cmd += ["--max-persisted-states", str(s.max_persisted_states)]
            if self.state:
                self.state.parent.mkdir(parents=True, exist_ok=True)
                # Dump on exit and every second (anvil's shortest interval), so even a SIGKILL
                # of the node itself loses at most a second.
                cmd += ["--state", str(self.state), "--state-interval", str(STATE_INTERVAL)]
            return cmd
        if self.kind == "hardhat":
            return self._hardhat_command(chain_id)
        cmd = [
            str(self._binary()),
            "--server.host", "127.0.0.1",
            "--server.port", str(self.port),
            "--chain.chainId", chain_id,
            "--chain.hardfork", self.config.compiler.evm_version,
            "--wallet.totalAccounts", str(s.accounts),
            "--wallet.mnemonic", s.mnemonic,
            "--wallet.defaultBalance", str(s.balance),
            "--miner.blockGasLimit", str(s.gas_limit),
            "--logging.quiet",
        ]  # fmt: skip
        if s.block_time:
            cmd += ["--miner.blockTime", str(s.block_time)]
        if self.state:
            self.state.mkdir(parents=True, exist_ok=True)
            cmd += ["--database.dbPath", str(self.state)]
        return cmd

    def _hardhat_command(self, chain_id: str) -> list[str]:
        """Hardhat Network (EDR) takes its settings from a config file, written next to its log.
        Unlike anvil, its cost per block does not grow with the state; it keeps no state on disk."""
        if self.state:
            raise NodeError(f"hardhat keeps no state on disk: network {self.name!r} must set no `state`")
        s = self.network.cmd_settings
        hardfork = self.config.compiler.evm_version
        interval = round(s.block_time * 1000) if s.block_time else 0
        network = {
            "chainId": int(chain_id),
            "hardfork": "merge" if hardfork == "paris" else hardfork,  # hardhat's name for it
            "blockGasLimit": s.gas_limit,
            "accounts": {
                "mnemonic": s.mnemonic,
                "count": s.accounts,
                "accountsBalance": str(s.balance * 10**18),
            },
            "mining": {"auto": not interval, "interval": interval},
            "loggingEnabled": False,
            # like anvil and geth: a reverting transaction is mined and its hash returned
            "throwOnTransactionFailures": False,
        }
        config_file = self.log_file.with_name("hardhat.config.js")
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(f"module.exports = {{ networks: {{ hardhat: {json.dumps(network)} }} }};\n")
        return [str(self._binary()), "--config", str(config_file), "node",
                "--hostname", "127.0.0.1", "--port", str(self.port)]  # fmt: skip

    def start(self, timeout: float = 60.0) -> EmbeddedNode:
        if self.process is not None:
            return self
        self._lock_state()
        try:
            self._check_state()
            return self._start(timeout)
        except BaseException:
            self._kill()
            self._unlock()
            raise

    @property
    def state_backup(self) -> Path | None:
        """anvil's last state file that parsed, kept at each start (anvil rewrites its file in
        place, so a kill in the middle of a dump leaves it cut short)."""
        if self.kind != "anvil" or self.state is None:
            return None
        return self.state.with_name(self.state.name + ".good")

    def _check_state(self) -> None:
        """Start from a state anvil can read: back a sound file up, or put the backup back in
        place of one cut short (the pipeline's transaction journal sends again what it lacks)."""
        backup, state = self.state_backup, self.state
        if backup is None or state is None or not state.exists():
            return
        if _parses(state):
            partial = backup.with_name(backup.name + ".partial")
            shutil.copyfile(state, partial)
            partial.replace(backup)
            return
        if not backup.exists():
            raise NodeError(f"{state} is not a whole state file (a dump cut short?) and has no backup")
        damaged = state.with_name(state.name + ".damaged")
        state.replace(damaged)
        shutil.copyfile(backup, state)
        log.warning(json.dumps({"event": "state_restored", "state": str(state), "damaged": str(damaged)}))

    def _start(self, timeout: float) -> EmbeddedNode:
        fixed_port = self.port != 0
        if fixed_port and not port_is_free(self.port):
            raise NodeError(f"port {self.port} on 127.0.0.1 is in use; set cmd_settings.port: 0")
        for _attempt in range(3):
            if not fixed_port:
                self.port = free_port()
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                self.process = _spawn(functools.partial(self._popen, log))
            self._write_lock(node=self.process.pid)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if rpc_answers(self.url, timeout=0.5) is not None:
                    return self
                time.sleep(0.05)
            code = self.process.poll()
            self._kill()
            if code is None:
                raise NodeError(f"{self.kind} did not answer on {self.url} within {timeout:.0f}s")
            if fixed_port:
                break
        raise NodeError(f"{self.kind} exited at start; see {self.log_file}:\n{self._log_tail()}")

    def _popen(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the node
            preexec_fn=_dies_with_owner(),  # but our death does
            pass_fds=() if self._lock_fd is None else (self._lock_fd,),
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully so the node writes its state; kill only if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._quiesce()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None
        self._unlock()

    def _quiesce(self) -> None:
        """Halt a persisted anvil's mining before it is stopped (see QUIESCE). Transactions sent
        meanwhile stay in its pool and go with it, as they would in a crash: their senders
        see them lost and send again."""
        if self.kind != "anvil" or self.state is None:
            return
        try:
            _rpc(self.url, "evm_setAutomine", [False])
            _rpc(self.url, "evm_setIntervalMining", [0])
        except (OSError, ValueError, KeyError):
            return  # it does not answer: nothing more to save by waiting
        time.sleep(QUIESCE)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _lock_state(self) -> None:
        """Take the state's lock or raise a NodeError naming who holds it. The node inherits
        the locked file, so the lock lasts until the node itself exits, even if we are killed;
        a node whose owner is gone gets ORPHAN_GRACE to write its state and go."""
        lock_file = self.lock_file
        if lock_file is None:
            return
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + ORPHAN_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_lock(lock_file)
                owner_gone = "owner" in holder and not _pid_alive(holder["owner"])
                if not owner_gone or time.monotonic() > deadline:
                    os.close(fd)
                    raise NodeError(
                        f"{self.state} is in use by deedchain PID {holder.get('owner', '?')} "
                        f"({self.kind} PID {holder.get('node', '?')}); stop it first"
                    ) from None
                time.sleep(0.1)
        self._lock_fd = fd
        self._write_lock()

    def _write_lock(self, node: int | None = None) -> None:
        if self._lock_fd is None:
            return
        text = f"owner {os.getpid()}\n" + (f"node {node}\n" if node else "")
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, text.encode(), 0)

    def _unlock(self) -> None:
        """Close our copy of the locked file; the lock goes once the node's copy is closed too."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> EmbeddedNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
