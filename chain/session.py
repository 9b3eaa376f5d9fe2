"""One object for talking to a network: config, node, RPC, signers, artifacts, senders."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from chain.abi import ContractABI
from chain.accounts import Signer, load_signers
from chain.compiler import Artifact, compile_project
from chain.config import Config, load_config
from chain.contract import Contract
from chain.deploy import load_deployment
from chain.errors import ConfigError
from chain.node import EmbeddedNode
from chain.revert import ErrorDecoder
from chain.rpc import Rpc
from chain.sender import FeePolicy, ReceiptWatch, Sender, TxJournal


class ChainSession:
    """Open with `ChainSession.open(network)`; on an embedded network it starts the node."""

    def __init__(
        self,
        config: Config,
        network_name: str,
        rpc: Rpc,
        node: EmbeddedNode | None = None,
        artifacts: dict[str, Artifact] | None = None,
        deployments_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.deployments_dir = deployments_dir or config.root / "deployments"
        self.network_name = network_name
        self.network = config.networks[network_name]
        self.node = node
        self.rpc = rpc
        self.chain_id = int(rpc.call("eth_chainId"), 16)
        if self.network.chainid and self.network.chainid != self.chain_id:
            raise ConfigError(
                f"{config.path}: networks.{network_name}.chainid is {self.network.chainid} "
                f"but {rpc.url} reports {self.chain_id}"
            )
        self.signers: dict[str, Signer] = load_signers(config, network_name)
        self.artifacts = artifacts if artifacts is not None else compile_project(config).artifacts
        self.errors = ErrorDecoder([a.abi for a in self.artifacts.values()])
        self.fees = FeePolicy(rpc, self.network.gas_price, self.network.priority_fee)
        # with blocks on a timer, every sender's receipt waits are read together once a block (a
        # batch for all waiters); under automine a receipt is there within milliseconds, and each
        # Sender polls for its own with a fast backoff
        self.receipts = (
            ReceiptWatch(rpc, interval=min(self.network.poll_interval, 0.05))
            if self.network.cmd_settings.block_time
            else None
        )
        self._abis: dict[str, ContractABI] = {}
        self._senders: dict[str, Sender] = {}
        self._journal: TxJournal | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        network: str | None = None,
        config: Config | Path | str | None = None,
        *,
        state: Path | None = None,
        persist: bool = True,
        deployments_dir: Path | None = None,
    ) -> ChainSession:
        cfg = config if isinstance(config, Config) else load_config(config)
        name, settings = cfg.network(network)
        artifacts = compile_project(cfg).artifacts
        node: EmbeddedNode | None = None
        if settings.embedded:
            node = EmbeddedNode(cfg, settings, name=name, state=state, persist=persist).start()
            urls = [node.url]
        else:
            urls = [settings.host, *settings.fallback_hosts]
        try:
            return cls(cfg, name, Rpc(urls, timeout=settings.timeout), node, artifacts, deployments_dir)
        except BaseException:
            if node:
                node.stop()
            raise

    def close(self) -> None:
        if self.node:
            self.node.stop()

    def __enter__(self) -> ChainSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def abi(self, name: str) -> ContractABI:
        with self._lock:
            if name not in self._abis:
                if name not in self.artifacts:
                    raise ConfigError(f"no compiled contract named {name!r}")
                self._abis[name] = ContractABI(self.artifacts[name].abi)
            return self._abis[name]

    def contract(self, name: str, address: str | None = None) -> Contract:
        """A contract by name, at `address` or at its recorded deployment on this chain."""
        if address is None:
            address = load_deployment(self.deployments_dir, self.chain_id)["contracts"][name]["address"]
        return Contract(name, address, self.abi(name), self.rpc, self.errors)

    def sender(self, name: str) -> Sender:
        """The (shared, thread-safe) Sender for a named account."""
        with self._lock:
            if name not in self._senders:
                if name not in self.signers:
                    raise ConfigError(f"no account named {name!r} on network {self.network_name}")
                self._senders[name] = Sender(
                    self.rpc,
                    self.signers[name].account,
                    self.chain_id,
                    fees=self.fees,
                    errors=self.errors,
                    timeout=self.network.timeout,
                    poll_interval=self.network.poll_interval,
                    journal=self._journal,
                    watch=self.receipts,
                )
            return self._senders[name]

    def attach_journal(self, journal: TxJournal) -> None:
        """Every Sender of this session, now and later, records what it sends in `journal`."""
        with self._lock:
            self._journal = journal
            for sender in self._senders.values():
                sender.journal = journal

    def resync(self) -> None:
        """Drop every local nonce (after evm_revert or a node restart)."""
        for sender in self._senders.values():
            sender.resync()
