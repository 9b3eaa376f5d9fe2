"""ABI encoding and decoding without web3.py's per-call overhead."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak
from eth_utils import to_checksum_address as _checksum

from chain.errors import ChainError

# A checksum is a keccak of the address: the same few addresses are decoded over and over.
to_checksum_address = lru_cache(maxsize=65_536)(_checksum)


class AbiError(ChainError, ValueError):
    """A function or event is not in the ABI, or arguments do not fit it."""


def canonical(param: dict[str, Any]) -> str:
    """The ABI type as it appears in a signature: tuples spelled out as (t1,t2,...)."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(canonical(c) for c in param["components"]) + ")" + kind[5:]
    return kind


def to_python(param: dict[str, Any], value: Any) -> Any:
    """A decoded value made friendly: checksummed addresses, 0x-hex bytes, structs as dicts."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [to_python(inner, v) for v in value]
    if kind == "tuple":
        return {
            c.get("name") or f"field{i}": to_python(c, v)
            for i, (c, v) in enumerate(zip(param["components"], value, strict=True))
        }
    if kind == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def _to_abi(param: dict[str, Any], value: Any) -> Any:
    """Accept what to_python returns (dicts for structs, any-case addresses) as input."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [_to_abi(inner, v) for v in value]
    if kind == "tuple":
        comps = param["components"]
        if isinstance(value, dict):
            value = [value[c["name"]] for c in comps]
        return tuple(_to_abi(c, v) for c, v in zip(comps, value, strict=True))
    if kind == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if kind.startswith("bytes") and isinstance(value, str) and value.startswith("0x"):
        return bytes.fromhex(value[2:])
    return value


@dataclass(frozen=True)
class Function:
    name: str
    inputs: list[str]
    input_params: list[dict[str, Any]]
    outputs: list[str]
    output_params: list[dict[str, Any]]
    selector: bytes
    mutability: str


@dataclass(frozen=True)
class Event:
    name: str
    topic: str
    indexed: list[dict[str, Any]]
    plain: list[dict[str, Any]]
    order: list[str]


@dataclass(frozen=True)
class DecodedLog:
    event: str
    args: dict[str, Any]
    address: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


class ContractABI:
    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self.abi = abi
        self.functions: dict[str, list[Function]] = {}
        self.events: dict[str, Event] = {}
        self.events_by_name: dict[str, Event] = {}
        for item in abi:
            if item["type"] == "function":
                inputs = [canonical(p) for p in item["inputs"]]
                fn = Function(
                    name=item["name"],
                    inputs=inputs,
                    input_params=item["inputs"],
                    outputs=[canonical(p) for p in item.get("outputs", [])],
                    output_params=item.get("outputs", []),
                    selector=function_signature_to_4byte_selector(f"{item['name']}({','.join(inputs)})"),
                    mutability=item.get("stateMutability", "nonpayable"),
                )
                self.functions.setdefault(fn.name, []).append(fn)
            elif item["type"] == "event" and not item.get("anonymous"):
                types = [canonical(p) for p in item["inputs"]]
                topic = "0x" + keccak(text=f"{item['name']}({','.join(types)})").hex()
                ev = Event(
                    name=item["name"],
                    topic=topic,
                    indexed=[p for p in item["inputs"] if p["indexed"]],
                    plain=[p for p in item["inputs"] if not p["indexed"]],
                    order=[p["name"] for p in item["inputs"]],
                )
                self.events[topic] = ev
                self.events_by_name[ev.name] = ev

    def function(self, name: str, nargs: int) -> Function:
        for fn in self.functions.get(name, []):
            if len(fn.inputs) == nargs:
                return fn
        raise AbiError(f"no function {name} taking {nargs} arguments in this ABI")

    def encode_call(self, name: str, *args: Any) -> str:
        fn = self.function(name, len(args))
        try:
            values = [_to_abi(p, a) for p, a in zip(fn.input_params, args, strict=True)]
        except (KeyError, TypeError, ValueError) as exc:
            raise AbiError(f"{name}: arguments do not fit ({', '.join(fn.inputs)}): {exc}") from None
        try:
            return "0x" + (fn.selector + encode(fn.inputs, values)).hex()
        except Exception as exc:  # noqa: BLE001 - eth_abi raises many types for bad values
            raise AbiError(f"{name}{tuple(args)!r} does not fit ({', '.join(fn.inputs)}): {exc}") from None

    def decode_output(self, name: str, nargs: int, data: bytes) -> Any:
        fn = self.function(name, nargs)
        raw = decode(fn.outputs, data)
        values = [to_python(p, v) for p, v in zip(fn.output_params, raw, strict=True)]
        return values[0] if len(values) == 1 else tuple(values)

    def topic(self, event: str) -> str:
        if event not in self.events_by_name:
            raise AbiError(f"no event {event} in this ABI")
        return self.events_by_name[event].topic

    def decode_log(self, log: dict[str, Any]) -> DecodedLog | None:
        """The decoded log, or None when its topic is not an event of this ABI."""
        topics = log.get("topics") or []
        ev = self.events.get(topics[0]) if topics else None
        if ev is None or len(topics) != len(ev.indexed) + 1:
            return None
        args: dict[str, Any] = {}
        for param, topic in zip(ev.indexed, topics[1:], strict=True):
            raw = bytes.fromhex(topic[2:])
            kind = canonical(param)
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                args[param["name"]] = "0x" + raw.hex()  # dynamic indexed values are stored hashed
            else:
                args[param["name"]] = to_python(param, decode([kind], raw)[0])
        plain_types = [canonical(p) for p in ev.plain]
        values = decode(plain_types, bytes.fromhex(log["data"][2:]))
        args.update({p["name"]: to_python(p, v) for p, v in zip(ev.plain, values, strict=True)})
        return DecodedLog(
            event=ev.name,
            args={k: args[k] for k in ev.order},
            address=to_checksum_address(log["address"]),
            block_number=int(log["blockNumber"], 16),
            block_hash=log["blockHash"],
            tx_hash=log["transactionHash"],
            log_index=int(log["logIndex"], 16),
        )
