"""Decode revert data into the contract's custom error name and arguments."""

from __future__ import annotations

from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from chain.errors import ContractRevert

PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised function",
}


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + kind[5:]
    return kind


class ErrorDecoder:
    """Knows every custom error of the ABIs it was given (the project's contracts)."""

    def __init__(self, abis: list[list[dict[str, Any]]] | None = None) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
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
            types = [_canonical(p) for p in item["inputs"]]
            selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
            names = [p.get("name") or f"arg{i}" for i, p in enumerate(item["inputs"])]
            self._errors[selector] = (item["name"], types, names)

    def decode(self, data: bytes, tx_hash: str | None = None) -> ContractRevert:
        if len(data) < 4:
            return ContractRevert("Unknown", {"reason": "reverted without data"}, data, tx_hash)
        known = self._errors.get(data[:4])
        if known is None:
            return ContractRevert("Unknown", {"selector": "0x" + data[:4].hex()}, data, tx_hash)
        name, types, names = known
        try:
            values = decode(types, data[4:])
        except DecodingError:
            return ContractRevert(name, {"raw": "0x" + data[4:].hex()}, data, tx_hash)
        args = {n: _plain(t, v) for n, t, v in zip(names, types, values, strict=True)}
        if name == "Panic":
            args["reason"] = PANIC_REASONS.get(args["code"], "unknown panic")
        return ContractRevert(name, args, data, tx_hash)


def _plain(kind: str, value: Any) -> Any:
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple):
        return list(value)
    return value


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
