"""A deployed contract: encode calls, read views, send transactions through a Sender."""

from __future__ import annotations

from typing import Any

from chain.abi import ContractABI
from chain.errors import RpcError
from chain.revert import ErrorDecoder
from chain.rpc import Rpc
from chain.sender import Receipt, Sender


class Contract:
    def __init__(self, name: str, address: str, abi: ContractABI, rpc: Rpc, errors: ErrorDecoder) -> None:
        self.name = name
        self.address = address
        self.abi = abi
        self.rpc = rpc
        self._errors = errors

    def __repr__(self) -> str:
        return f"<{self.name} at {self.address}>"

    def encode(self, fn: str, *args: Any) -> str:
        return self.abi.encode_call(fn, *args)

    def call(self, fn: str, *args: Any, block: str | int = "latest", sender: str | None = None) -> Any:
        """Read a view (one eth_call); a revert raises the decoded ContractRevert."""
        tx: dict[str, Any] = {"to": self.address, "data": self.encode(fn, *args)}
        if sender:
            tx["from"] = sender
        tag = hex(block) if isinstance(block, int) else block
        try:
            result = self.rpc.call("eth_call", [tx, tag])
        except RpcError as exc:
            raise self._errors.from_rpc_error(exc) from None
        return self.abi.decode_output(fn, len(args), bytes.fromhex(str(result)[2:]))

    def send(
        self,
        sender: Sender,
        fn: str,
        *args: Any,
        gas: int | None = None,
        value: int = 0,
        memo: str | None = None,
    ) -> str:
        return sender.send(self.address, self.encode(fn, *args), gas=gas, value=value, memo=memo)

    def transact(
        self,
        sender: Sender,
        fn: str,
        *args: Any,
        gas: int | None = None,
        value: int = 0,
        memo: str | None = None,
    ) -> Receipt:
        return sender.transact(self.address, self.encode(fn, *args), gas=gas, value=value, memo=memo)

    def events(self, receipt: Receipt) -> list[Any]:
        """This contract's decoded events in a receipt."""
        out = []
        for log in receipt.logs:
            if log["address"].lower() == self.address.lower():
                decoded = self.abi.decode_log(log)
                if decoded is not None:
                    out.append(decoded)
        return out


def call_many(calls: list[tuple[Contract, str, tuple[Any, ...]]]) -> list[Any]:
    """Several views in one JSON-RPC batch (one HTTP request), decoded like Contract.call."""
    if not calls:
        return []
    first = calls[0][0]
    results = first.rpc.batch(
        [("eth_call", [{"to": c.address, "data": c.encode(fn, *args)}, "latest"]) for c, fn, args in calls]
    )
    out = []
    for (contract, fn, args), result in zip(calls, results, strict=True):
        if isinstance(result, RpcError):
            raise contract._errors.from_rpc_error(result)
        out.append(contract.abi.decode_output(fn, len(args), bytes.fromhex(str(result)[2:])))
    return out
