"""The domain as the contracts model it: deal states, terms, register entry kinds, parcel ids.

No chain code here, so adapters (which must not know the chain) can use it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

from eth_utils import keccak

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
