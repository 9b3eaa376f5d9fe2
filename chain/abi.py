"""ABI encoding and decoding without web3.py's per-call overhead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from chain.errors import ChainError
from chain.revert import _canonical


class AbiError(ChainError, ValueError):
    """A function or event is not in the ABI, or arguments do not fit it."""


def _normalise(kind: str, value: Any) -> Any:
    # eth_abi refuses lower-case addresses that are not checksummed; accept any case.
    if kind == "address" and isinstance(value, str):
        return to_checksum_address(value)
    return value


def _pythonise(types: list[str], values: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for kind, value in zip(types, values, strict=True):
        if kind == "address":
            out.append(to_checksum_address(value))
        elif kind == "address[]":
            out.append([to_checksum_address(v) for v in value])
        elif isinstance(value, bytes):
            out.append("0x" + value.hex())
        elif isinstance(value, tuple):
            out.append(list(value))
        else:
            out.append(value)
    return out


@dataclass(frozen=True)
class Function:
    name: str
    inputs: list[str]
    outputs: list[str]
    output_names: list[str]
    selector: bytes
    mutability: str


@dataclass(frozen=True)
class Event:
    name: str
    topic: str
    indexed: list[tuple[str, str]]
    plain: list[tuple[str, str]]
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
                inputs = [_canonical(p) for p in item["inputs"]]
                fn = Function(
                    name=item["name"],
                    inputs=inputs,
                    outputs=[_canonical(p) for p in item.get("outputs", [])],
                    output_names=[p.get("name") or "" for p in item.get("outputs", [])],
                    selector=function_signature_to_4byte_selector(
                        f"{item['name']}({','.join(inputs)})"
                    ),
                    mutability=item.get("stateMutability", "nonpayable"),
                )
                self.functions.setdefault(fn.name, []).append(fn)
            elif item["type"] == "event" and not item.get("anonymous"):
                types = [_canonical(p) for p in item["inputs"]]
                topic = "0x" + keccak(text=f"{item['name']}({','.join(types)})").hex()
                ev = Event(
                    name=item["name"],
                    topic=topic,
                    indexed=[
                        (p["name"], t)
                        for p, t in zip(item["inputs"], types, strict=True)
                        if p["indexed"]
                    ],
                    plain=[
                        (p["name"], t)
                        for p, t in zip(item["inputs"], types, strict=True)
                        if not p["indexed"]
                    ],
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
        values = [_normalise(t, a) for t, a in zip(fn.inputs, args, strict=True)]
        try:
            return "0x" + (fn.selector + encode(fn.inputs, values)).hex()
        except Exception as exc:  # noqa: BLE001 - eth_abi raises many types for bad values
            raise AbiError(
                f"{name}{tuple(args)!r} does not fit ({', '.join(fn.inputs)}): {exc}"
            ) from None

    def decode_output(self, name: str, nargs: int, data: bytes) -> Any:
        fn = self.function(name, nargs)
        values = _pythonise(fn.outputs, decode(fn.outputs, data))
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
        for (name, kind), topic in zip(ev.indexed, topics[1:], strict=True):
            raw = bytes.fromhex(topic[2:])
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                args[name] = "0x" + raw.hex()  # dynamic indexed values are stored hashed
            else:
                args[name] = _pythonise([kind], decode([kind], raw))[0]
        plain_types = [k for _n, k in ev.plain]
        values = _pythonise(plain_types, decode(plain_types, bytes.fromhex(log["data"][2:])))
        args.update({n: v for (n, _k), v in zip(ev.plain, values, strict=True)})
        return DecodedLog(
            event=ev.name,
            args={k: args[k] for k in ev.order},
            address=to_checksum_address(log["address"]),
            block_number=int(log["blockNumber"], 16),
            block_hash=log["blockHash"],
            tx_hash=log["transactionHash"],
            log_index=int(log["logIndex"], 16),
        )
