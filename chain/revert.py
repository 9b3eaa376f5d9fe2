"""Decode revert data into the contract's custom error name and arguments."""

from __future__ import annotations

from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector

from chain.abi import canonical, to_python
from chain.errors import ContractRevert, RpcError

PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised function",
}


class ErrorDecoder:
    """Knows every custom error of the ABIs it was given (the project's contracts)."""

    def __init__(self, abis: list[list[dict[str, Any]]] | None = None) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[dict[str, Any]]]] = {}
        self.add(
            [
                {
                    "type": "error",
                    "name": "Error",
                    "inputs": [{"name": "message", "type": "string"}],
                },
                {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
            ]
        )
        for abi in abis or []:
            self.add(abi)

    def add(self, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") != "error":
                continue
            types = [canonical(p) for p in item["inputs"]]
            selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
            self._errors[selector] = (item["name"], types, item["inputs"])

    def from_rpc_error(self, exc: RpcError) -> Exception:
        """A node's error answer as the decoded revert it carries, or the error itself."""
        data = revert_data(exc.data)
        if data is None:
            if "revert" in str(exc).lower():
                return ContractRevert("Unknown", {"reason": str(exc)})
            return exc
        return self.decode(data)

    def decode(self, data: bytes, tx_hash: str | None = None) -> ContractRevert:
        if len(data) < 4:
            return ContractRevert("Unknown", {"reason": "reverted without data"}, data, tx_hash)
        known = self._errors.get(data[:4])
        if known is None:
            return ContractRevert("Unknown", {"selector": "0x" + data[:4].hex()}, data, tx_hash)
        name, types, params = known
        try:
            values = decode(types, data[4:])
        except DecodingError:
            return ContractRevert(name, {"raw": "0x" + data[4:].hex()}, data, tx_hash)
        args = {
            p.get("name") or f"arg{i}": to_python(p, v)
            for i, (p, v) in enumerate(zip(params, values, strict=True))
        }
        if name == "Panic":
            args["reason"] = PANIC_REASONS.get(args["code"], "unknown panic")
        return ContractRevert(name, args, data, tx_hash)


def revert_data(error_data: Any) -> bytes | None:
    """Pull revert bytes out of a node's error `data`: anvil gives hex, ganache an object."""
    if isinstance(error_data, str) and error_data.startswith("0x"):
        try:
            return bytes.fromhex(error_data[2:])
        except ValueError:
            return None
    if isinstance(error_data, dict):
        for key in ("data", "result", "return"):
            found = revert_data(error_data.get(key))
            if found is not None:
                return found
        for value in error_data.values():  # ganache v7: {txhash: {return: "0x.."}}
            if isinstance(value, dict):
                found = revert_data(value)
                if found is not None:
                    return found
    return None
