"""The chain package's exceptions: one root, builtin mixins so callers can catch either."""

from __future__ import annotations

from typing import Any


class ChainError(Exception):
    """Root of every error raised by deedchain's chain layer."""


class ConfigError(ChainError, ValueError):
    """brownie-config.yaml (or the environment) is wrong; the message names file, key and rule."""


class CompilerError(ChainError, RuntimeError):
    """The Solidity compiler is missing or rejected the sources."""


class NodeError(ChainError, RuntimeError):
    """The embedded node could not start, answer or stop."""


class AccountError(ChainError, ValueError):
    """A signing key could not be loaded."""


class RpcError(ChainError, ConnectionError):
    """The JSON-RPC endpoint failed after retries or returned an error object."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class TransactionError(ChainError, RuntimeError):
    """A transaction could not be sent or confirmed."""


class TransactionTimeout(TransactionError, TimeoutError):
    """No receipt arrived in time; the transaction may still be mined later."""


class TransactionLost(TransactionError):
    """The node no longer has the transaction, or holds it behind a nonce it lost (it came back
    from a crash or a revert without it): it will not be mined unless sent again."""


class ContractRevert(TransactionError):
    """The EVM reverted; `name` and `args` are the decoded custom error.

    `name` is the Solidity error name (`DealNotSigned`, `Error` for require strings,
    `Panic` for assertion failures, `Unknown` when the selector is not in any ABI).
    """

    def __init__(
        self,
        name: str,
        args: dict[str, Any],
        data: bytes = b"",
        tx_hash: str | None = None,
    ) -> None:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        where = f" in tx {tx_hash}" if tx_hash else ""
        super().__init__(f"reverted with {name}({shown}){where}")
        self.name = name
        self.args_by_name = args
        self.data = data
        self.tx_hash = tx_hash


class DeploymentError(ChainError, RuntimeError):
    """Deploying or wiring the contracts failed."""
