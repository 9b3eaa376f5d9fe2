"""The deal as the contracts see it: states, terms, and the EIP-712 acceptance each party signs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from eth_utils import keccak, to_checksum_address

from chain.eip712 import typed_data
from pipeline.errors import PipelineValueError


class State(IntEnum):
    """DealEscrow.State, in the contract's order."""

    NONE = 0
    OPEN = 1
    SIGNED = 2
    DEPOSIT_PAID = 3
    INTERIM_PAID = 4
    LOAN_APPROVED = 5
    FUNDED = 6
    REGISTRATION_REQUESTED = 7
    SETTLED = 8
    CANCELLED = 9
    DEFAULTED = 10
    REFUNDED = 11

    @property
    def terminal(self) -> bool:
        return self >= State.SETTLED


class Party(IntEnum):
    BUYER = 0
    SELLER = 1


class Payment(IntEnum):
    DEPOSIT = 0
    INTERIM = 1
    BALANCE = 2
    LOAN = 3


class GapguKind(IntEnum):
    """갑구 entry kinds (LandRegister.GapguKind)."""

    OWNERSHIP = 0
    PROVISIONAL_SEIZURE = 1  # 가압류
    INJUNCTION = 2  # 가처분
    AUCTION = 3  # 경매
    CANCELLATION = 4


class LandUse(IntEnum):
    BUILDING = 0
    FIELD = 1
    PADDY = 2
    ORCHARD = 3
    FOREST = 4
    FACTORY = 5
    ROAD = 6
    OTHER = 7


def parcel_id(parcel_number: str) -> str:
    """The register's key for a parcel: keccak256 of its registry number, as LandRegister does."""
    return "0x" + keccak(text=parcel_number).hex()


def receipt(text: str) -> str:
    """A receipt number as bytes32 (UTF-8, right-padded); the register stores it verbatim."""
    raw = text.encode()
    if len(raw) > 32:
        raise PipelineValueError(f"receipt {text!r} is longer than 32 bytes")
    return "0x" + raw.ljust(32, b"\0").hex()


@dataclass(frozen=True)
class DealTerms:
    """DealEscrow.DealTerms; amounts in won, deadlines in UTC seconds."""

    parcelId: str  # camelCase: the contract's field names, so to_abi is a plain asdict
    seller: str
    buyer: str
    price: int
    deposit: int
    interim: int
    balance: int
    depositDeadline: int
    interimDeadline: int
    balanceDeadline: int
    loanAmount: int
    lender: str

    def to_abi(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_abi(cls, data: dict[str, Any]) -> DealTerms:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


ACCEPT_TERMS_TYPES: dict[str, list[dict[str, str]]] = {
    "AcceptTerms": [
        {"name": "dealId", "type": "uint256"},
        {"name": "parcelId", "type": "bytes32"},
        {"name": "seller", "type": "address"},
        {"name": "buyer", "type": "address"},
        {"name": "price", "type": "uint256"},
        {"name": "deposit", "type": "uint256"},
        {"name": "interim", "type": "uint256"},
        {"name": "balance", "type": "uint256"},
        {"name": "depositDeadline", "type": "uint64"},
        {"name": "interimDeadline", "type": "uint64"},
        {"name": "balanceDeadline", "type": "uint64"},
        {"name": "loanAmount", "type": "uint256"},
        {"name": "lender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint64"},
    ]
}


def accept_terms_type_string() -> str:
    fields = ",".join(f"{f['type']} {f['name']}" for f in ACCEPT_TERMS_TYPES["AcceptTerms"])
    return f"AcceptTerms({fields})"


def accept_terms_typed_data(
    domain: dict[str, Any], deal_id: int, terms: DealTerms, nonce: int, expiry: int
) -> dict[str, Any]:
    """What a party signs (eth_signTypedData_v4) to accept every term of deal `deal_id`."""
    message = {"dealId": deal_id, **terms.to_abi(), "nonce": nonce, "expiry": expiry}
    for key in ("seller", "buyer", "lender"):
        message[key] = to_checksum_address(message[key])
    return typed_data(domain, "AcceptTerms", ACCEPT_TERMS_TYPES, message)
