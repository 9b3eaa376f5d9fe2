"""The embedded node: anvil (default) or ganache on a free loopback port, with persisted state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from chain.config import Config, NetworkSettings
from chain.errors import NodeError


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


def rpc_answers(url: str, timeout: float = 1.0) -> int | None:
    """The chain id the endpoint reports, or None when it does not answer (yet)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


class EmbeddedNode:
    """A local node process owned by deedchain. Use as a context manager or start()/stop().

    State lives in `cmd_settings.state` (relative to the project root) unless `state` is
    given; pass `state=None` and `persist=False` for a throwaway chain.
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
                # Dump on exit and every few seconds, so even a SIGKILL loses little.
                cmd += ["--state", str(self.state), "--state-interval", "2"]
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
        fixed_port = self.port != 0
        if fixed_port and not port_is_free(self.port):
            raise NodeError(f"port {self.port} on 127.0.0.1 is in use; set cmd_settings.port: 0")
        for _attempt in range(3):
            if not fixed_port:
                self.port = free_port()
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen(
                    self._command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C in a terminal reaches us, not the node
                )
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

    def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully so the node writes its state; kill only if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self.process = None

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

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
