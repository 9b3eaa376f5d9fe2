"""Request and response models: every input validated at the edge, every response documented."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from eth_utils import to_checksum_address
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MAX_WON = 2**96  # the contracts keep amounts in uint96
MAX_UINT64 = 2**64

BUYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SELLER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
LENDER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
HASH = "0x" + "ab" * 32
SIGNATURE = "0x" + "11" * 64 + "1b"  # r, s, v=27: the form a wallet returns

Address = Annotated[
    str,
    Field(pattern=r"^0x[0-9a-fA-F]{40}$", examples=[BUYER], description="a 0x address (any case)"),
    AfterValidator(to_checksum_address),
]
Hash32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$", examples=[HASH]), AfterValidator(str.lower)]
Signature = Annotated[
    str,
    Field(pattern=r"^0x[0-9a-fA-F]{130}$", examples=[SIGNATURE], description="65-byte ECDSA (r, s, v)"),
]
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _ecdsa(value: str) -> str:
    """A signature the contracts can accept, or the rule it breaks: checked here so that a malformed
    one is a validation error naming the rule, not an InvalidSigner from the chain (OpenZeppelin's
    ECDSA refuses the same). v 0/1 (some wallets) is taken as 27/28, as the permit route always did."""
    raw = bytes.fromhex(value[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28):
        raise ValueError(f"v (the last byte) must be 27 or 28 (or 0/1), not {raw[64]}")
    if not 0 < r < SECP256K1_N:
        raise ValueError("r (bytes 0-31) must lie between 1 and the curve order")
    if not 0 < s <= SECP256K1_N // 2:
        raise ValueError("s (bytes 32-63) must be non-zero and in the lower half of the curve order (EIP-2)")
    return "0x" + (raw[:64] + bytes([v])).hex()


EcdsaSignature = Annotated[Signature, AfterValidator(_ecdsa)]
# Every integer of a body is strict: lax pydantic took true, 1.0, 1e3 and "100" as 1, 1, 1000 and 100,
# and the chain minted what it was given. Query and path integers stay lax: they arrive as text.
Won = Annotated[int, Field(strict=True, ge=0, lt=MAX_WON, description="an amount in won (KRW), an integer")]
Seconds = Annotated[int, Field(strict=True, ge=0, lt=MAX_UINT64, description="UTC seconds since 1970")]
PartyName = Literal["buyer", "seller"]
StateName = Literal[
    "open",
    "signed",
    "deposit_paid",
    "interim_paid",
    "loan_approved",
    "funded",
    "registration_requested",
    "settled",
    "cancelled",
    "defaulted",
    "refunded",
]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _deadline(value: datetime | None) -> datetime | None:
    if value is not None and not 0 <= value.timestamp() < 2**40:
        raise ValueError("a deadline must lie between 1970 and the year 36812")
    return value


Deadline = Annotated[AwareDatetime, AfterValidator(_deadline)]


# --- requests ----------------------------------------------------------------------------------


class DealTermsIn(Input):
    """The full terms of a sale; deposit + interim + balance must equal the price."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "parcel": "1168010600-10316-0000",
                    "seller": SELLER,
                    "buyer": BUYER,
                    "price": 1_000_000_000,
                    "deposit": 100_000_000,
                    "interim": 300_000_000,
                    "balance": 600_000_000,
                    "deposit_deadline": "2031-01-08T00:00:00Z",
                    "interim_deadline": "2031-01-31T00:00:00Z",
                    "balance_deadline": "2031-03-02T00:00:00Z",
                    "loan_amount": 400_000_000,
                    "lender": LENDER,
                }
            ]
        },
    )

    parcel: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[0-9A-Za-z][0-9A-Za-z_\-]*$",
        description="registry number (1168010600-10316-0000), 0x parcel id, or a sample parcel's name",
    )
    seller: Address
    buyer: Address
    price: Won
    deposit: Won
    interim: Won = 0
    balance: Won
    deposit_deadline: Deadline
    interim_deadline: Deadline | None = Field(None, description="null when there is no interim payment")
    balance_deadline: Deadline
    loan_amount: Won = 0
    lender: Address | None = Field(None, description="the lending bank's address; null without a loan")


class SignatureIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"party": "buyer", "expiry": 1924992000, "signature": SIGNATURE}]},
    )

    party: PartyName
    expiry: Seconds = Field(description="the expiry that was signed (from the typed data's message)")
    signature: EcdsaSignature


class PermitIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"value": 1_000_000_000, "deadline": 1924992000, "signature": SIGNATURE}]
        },
    )

    value: Won = Field(description="won the escrow may pull from the buyer's deposit tokens")
    deadline: Seconds
    signature: EcdsaSignature


class PaymentIn(Input):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"party": "buyer", "amount": 100_000_000}]}
    )

    party: PartyName
    amount: Annotated[int, Field(strict=True, ge=1, lt=MAX_WON, description="won paid in at the bank")]


class CredentialDocumentIn(Input):
    # not Literal[0, 1, 2]: a literal takes true and 1.0 for 1, strict or not
    kind: Annotated[
        int,
        Field(strict=True, ge=0, le=2, description="0 resident registration, 1 family relation, 2 income"),
    ]
    subject: Address
    issuer: Address
    issued_at: Seconds
    expiry: Seconds
    claims: dict[
        Annotated[str, Field(max_length=100)],
        Annotated[str, Field(max_length=1000)] | Annotated[int, Field(strict=True)],
    ] = Field(default_factory=dict, max_length=50)

    @field_validator("claims")
    @classmethod
    def _ints_fit(cls, claims: dict[str, str | int]) -> dict[str, str | int]:
        for k, v in claims.items():
            if isinstance(v, int) and not -(2**63) <= v < 2**63:
                raise ValueError(f"claim {k!r}: integers must fit in 64 bits")
        return claims


class CredentialIn(Input):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "document": {
                        "kind": 2,
                        "subject": BUYER,
                        "issuer": "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
                        "issued_at": 1767225600,
                        "expiry": 1775001600,
                        "claims": {"annual_income": 96000000, "year": 2026},
                    },
                    "signature": SIGNATURE,
                }
            ]
        },
    )

    document: CredentialDocumentIn
    signature: Signature = Field(description="the issuer's signature over the document's hash")


class LoanIn(Input):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"credentials": [HASH]}]})

    credentials: list[Hash32] = Field(
        min_length=1, max_length=16, description="hashes of submitted certificates"
    )


class EmptyIn(Input):
    """No fields: a route that takes no input refuses a body with any (rather than ignoring it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


class CancelIn(SignatureIn):
    """A §565 cancellation signed by the party (CancelDeal typed data)."""


# --- responses ---------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["revert.ParcelUnderContract"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: ErrorDetail


class RegisterEntry(BaseModel):
    section: Literal["gapgu", "eulgu"]
    index: int
    kind: str
    holder: str | None
    debtor: str | None = None
    amount: int
    rank: int | None = None
    ref: int | None = Field(
        description="the index (same section) of the entry a cancellation or discharge closes; "
        "null for every other entry"
    )
    receipt: str
    time: str
    active: bool


class TitleView(BaseModel):
    parcel_id: str
    number: str
    address: str
    area_m2: float
    land_use: str
    owner: str
    blocked: bool
    encumbrances: list[RegisterEntry]
    history: list[RegisterEntry]


class TermsView(BaseModel):
    parcel_id: str
    seller: str
    buyer: str
    price: int
    deposit: int
    interim: int
    balance: int
    deposit_deadline: str
    interim_deadline: str | None
    balance_deadline: str
    loan_amount: int
    lender: str | None


class Signatures(BaseModel):
    buyer: bool
    seller: bool


class Payments(BaseModel):
    deposit: int
    interim: int
    buyer_balance: int
    loan: int


class LoanView(BaseModel):
    decided: bool
    approved_amount: int
    status: Literal["none", "requested", "approved", "rejected", "disbursed", "secured", "returned"]
    rate_bps: int
    term_months: int
    reject_reason: int


class Waiting(BaseModel):
    step: str = Field(examples=["deposit"])
    reason: str = Field(examples=["waiting for the buyer's funds: 100,000,000 won due, 0 won held"])


class RecoveryNotice(BaseModel):
    """A transaction of this deal that the pipeline had sent, that the chain later lost (a crash
    of the node), and that sending it again could not make happen: the step must be taken anew."""

    tx: str
    step: str = Field(examples=["permit"])
    outcome: Literal["reverted", "refused", "superseded"]
    error: str | None = Field(examples=['ERC2612ExpiredSignature({"deadline": 1700000000})'])
    at: float = Field(description="UTC seconds the replay found it")


class DealView(BaseModel):
    deal_id: int
    state: StateName
    broker: str
    terms: TermsView
    signatures: Signatures
    payments: Payments
    loan: LoanView
    reported: bool
    held: int
    waiting: Waiting | None
    recovery: list[RecoveryNotice] = Field(
        description="steps lost with a crash of the node that could not be replayed (empty: none)"
    )


class DealPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[DealView]


class Step(BaseModel):
    step: str = Field(examples=["PaymentReceived"])
    contract: str
    by: str
    tx: str
    block: int
    log_index: int
    time: str
    gas: int
    details: dict[str, Any]


class Timeline(BaseModel):
    deal_id: int
    steps: list[Step]


class StepEvent(Step):
    """The data of an SSE `step` event: a timeline entry of the deal."""

    deal_id: int


class StateEvent(BaseModel):
    """The data of an SSE `state` event: the deal's state and what it waits for."""

    deal_id: int
    state: StateName
    waiting: Waiting | None


class TypedField(BaseModel):
    name: str
    type: str


class TypedData(BaseModel):
    """Exactly what a wallet's eth_signTypedData_v4 takes."""

    types: dict[str, list[TypedField]]
    primaryType: str
    domain: dict[str, Any]
    message: dict[str, Any]


class TxResult(BaseModel):
    deal_id: int
    tx: str
    block: int
    gas_used: int
    state: StateName


class DealOpened(BaseModel):
    tx: str
    block: int
    gas_used: int
    deal: DealView


class PaymentResult(BaseModel):
    deal_id: int
    status: str = Field(description="mined when the deposit tokens were issued")
    txs: list[str]
    customer: str
    amount: int
    error: str | None


class CredentialView(BaseModel):
    hash: str
    subject: str
    kind: str
    anchored_valid: bool


class NodeHealth(BaseModel):
    reachable: bool
    block_number: int | None
    chain_id: int | None
    error: str | None = None


class Health(BaseModel):
    ok: bool
    node: NodeHealth
    oracles: dict[str, bool]
    driver: bool


def iso(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class DraftView(BaseModel):
    """A deal's terms before it is opened: each party signs them (GET .../typed-data/{party}) and
    the broker submits the signatures; the second one opens the deal on chain, both acceptances in
    its one transaction."""

    draft_id: str
    terms: TermsView
    buyer_accepted: bool
    seller_accepted: bool
    deal: DealView | None = Field(description="the deal once opened (null until both accepted)")
    tx: str | None = Field(description="the transaction that opened it")
