"""A read-only connection to a deployment: RPC, ABIs and addresses, no signers, no senders.

`ChainSession` loads the network's keys (a live network's keystores must then be present);
an auditor has none, so this opens only what reading needs. Which node is read:

1. `--rpc URL` — a node that is already running (use this while `deedchain serve` runs: the
   embedded node it starts listens on a free port, shown in its log line);
2. a live network: its configured `host` (and `fallback_hosts`);
3. an embedded network whose `cmd_settings.port` is fixed and answers: that node;
4. otherwise an embedded node is started on a *copy* of the persisted state (so the project's
   own state file is never written, and never shared with a second node) and stopped on close.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from chain.abi import ContractABI
from chain.compiler import compile_project
from chain.config import Config, load_config
from chain.contract import Contract
from chain.deploy import load_deployment
from chain.errors import ConfigError
from chain.node import EmbeddedNode, rpc_answers
from chain.revert import ErrorDecoder
from chain.rpc import Rpc

CONTRACTS = ("DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook")


class PinnedRpc(Rpc):
    """An Rpc whose `eth_blockNumber` answers a fixed head, so a replay and the view calls
    that check it read the same block even while the chain keeps moving."""

    def __init__(self, rpc: Rpc, head: int) -> None:
        super().__init__(rpc.urls, timeout=rpc.timeout, retries=rpc.retries, backoff=rpc.backoff)
        self.head = head

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        if method == "eth_blockNumber":
            return hex(self.head)
        return super().call(method, params)


@dataclass
class AuditChain:
    rpc: Rpc
    chain_id: int
    contracts: dict[str, Contract]
    start_block: int
    network: str = ""
    block_range: int = 2000
    confirmations: int = 0  # the audit reads up to head - confirmations, so no reorg reaches it
    node: EmbeddedNode | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @classmethod
    def from_parts(
        cls,
        rpc: Rpc,
        abis: dict[str, list[dict[str, Any]]],
        deployments_dir: Path,
        *,
        network: str = "",
        block_range: int = 2000,
        confirmations: int = 0,
    ) -> AuditChain:
        chain_id = int(rpc.call("eth_chainId"), 16)
        record = load_deployment(deployments_dir, chain_id)["contracts"]
        missing = [n for n in CONTRACTS if n not in record]
        if missing:
            raise ConfigError(f"{deployments_dir}/{chain_id}.json lacks {', '.join(missing)}: redeploy")
        errors = ErrorDecoder(list(abis.values()))
        contracts = {
            n: Contract(n, record[n]["address"], ContractABI(abis[n]), rpc, errors) for n in CONTRACTS
        }
        start = min(int(record[n]["block"]) for n in CONTRACTS)
        return cls(rpc, chain_id, contracts, start, network, block_range, confirmations)

    @classmethod
    def from_session(cls, session: Any) -> AuditChain:
        """From an open ChainSession (tests, the API): its RPC and artifacts, none of its keys."""
        abis = {n: session.artifacts[n].abi for n in CONTRACTS}
        return cls.from_parts(
            session.rpc,
            abis,
            session.deployments_dir,
            network=session.network_name,
            block_range=session.network.block_range,
            confirmations=session.network.confirmations,
        )

    @classmethod
    def connect(
        cls,
        network: str | None = None,
        config: Config | Path | str | None = None,
        *,
        rpc_url: str | None = None,
        deployments_dir: Path | None = None,
    ) -> AuditChain:
        """Open read-only (see the module docstring for which node is read)."""
        cfg = config if isinstance(config, Config) else load_config(config)
        name, settings = cfg.network(network)
        artifacts = compile_project(cfg).artifacts
        abis = {n: artifacts[n].abi for n in CONTRACTS}
        folder = deployments_dir or cfg.root / "deployments"
        node: EmbeddedNode | None = None
        tmp: tempfile.TemporaryDirectory[str] | None = None
        if rpc_url:
            urls = [rpc_url]
        elif not settings.embedded:
            urls = [settings.host, *settings.fallback_hosts]
        else:
            fixed = f"{settings.host.rstrip('/')}:{settings.cmd_settings.port}"
            if settings.cmd_settings.port and rpc_answers(fixed) is not None:
                urls = [fixed]
            else:
                tmp = tempfile.TemporaryDirectory(prefix="deedchain-audit-")
                state = None
                saved = settings.cmd_settings.state
                if saved and (cfg.root / saved).exists():
                    state = Path(tmp.name) / Path(saved).name
                    source = cfg.root / saved
                    if source.is_dir():
                        shutil.copytree(source, state)
                    else:
                        shutil.copy(source, state)
                node = EmbeddedNode(
                    cfg, settings, name=name, state=state, persist=state is not None, port=0
                ).start()
                urls = [node.url]
        try:
            rpc = Rpc(urls, timeout=settings.timeout)
            chain = cls.from_parts(
                rpc,
                abis,
                folder,
                network=name,
                block_range=settings.block_range,
                confirmations=settings.confirmations,
            )
        except BaseException:
            if node:
                node.stop()
            if tmp:
                tmp.cleanup()
            raise
        chain.node, chain._tmp = node, tmp
        return chain

    def head(self) -> int:
        """The newest block with enough confirmations: what an audit reads up to."""
        return max(0, int(self.rpc.call("eth_blockNumber"), 16) - self.confirmations)

    def pinned(self, head: int) -> Rpc:
        return PinnedRpc(self.rpc, head)

    def close(self) -> None:
        if self.node:
            self.node.stop()
            self.node = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> AuditChain:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
