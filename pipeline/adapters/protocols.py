"""What an oracle asks of a bank and of the land registry, and what they answer.

Every call carries a request id chosen by the oracle; an adapter must answer the same id
with the same answer (idempotency), so an oracle restarted after a crash can ask again.
All payloads are pydantic models: they cross HTTP to an institution's own service and are
validated strictly on the way back.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]
Hash32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]
Won = Annotated[int, Field(ge=0, le=10**18)]
ReceiptNo = Annotated[str, Field(min_length=1, max_length=32)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- e-certificates --------------------------------------------------------------------


class CredentialKind(IntEnum):
    RESIDENT_REGISTRATION = 0
    FAMILY_RELATION = 1
    INCOME = 2


class CredentialDocument(Payload):
    """An e-certificate as issued: the issuer signs keccak256 of its canonical JSON."""

    kind: CredentialKind
    subject: Address
    issuer: Address
    issued_at: int = Field(ge=0)
    expiry: int = Field(ge=0)
    claims: dict[str, str | int] = {}


class PresentedCredential(Payload):
    """A credential as the bank sees it: the document, the issuer's signature, and what the
    chain says of its hash (the oracle fills `anchored_valid` from CredentialRegistry)."""

    hash: Hash32
    document: CredentialDocument
    signature: str = Field(pattern=r"^0x[0-9a-fA-F]{130}$")
    anchored_valid: bool


# --- bank ------------------------------------------------------------------------------


class LoanReason(IntEnum):
    """Reason codes of a loan decision (0 = approved); they go on chain with a rejection."""

    APPROVED = 0
    MISSING_RESIDENT_REGISTRATION = 1
    MISSING_INCOME_CERTIFICATE = 2
    CREDENTIAL_INVALID = 3
    LTV_EXCEEDED = 4
    DSR_EXCEEDED = 5
    UNKNOWN_CUSTOMER = 6
    AMOUNT_INVALID = 7


class LoanApplication(Payload):
    deal_id: int = Field(ge=1)
    buyer: Address
    amount: Won
    price: Won
    parcel_id: Hash32
    credentials: list[PresentedCredential] = Field(max_length=8)


class LoanDecision(Payload):
    approved: bool
    reason: LoanReason
    amount: Won = 0
    rate_bps: int = Field(0, ge=0, le=10_000)
    term_months: int = Field(0, ge=0, le=600)
    max_secured: Won = 0
    detail: str = ""


class DisbursementRequest(Payload):
    deal_id: int = Field(ge=1)
    borrower: Address
    amount: Won


class DisbursementAnswer(Payload):
    """The bank booked the loan; `amount` is what it puts into escrow (minted as deposit tokens)."""

    loan_account: str = Field(min_length=1, max_length=64)
    amount: Won


class PayoffRequest(Payload):
    deal_id: int = Field(ge=1)
    parcel_id: Hash32
    mortgage_entry: int = Field(ge=0)
    debtor: Address


class PayoffQuote(Payload):
    amount: Won
    loan_account: str = Field(max_length=64)


class MortgageUpdate(Payload):
    """What settlement did to one of the bank's mortgages: registered it at 을구 `registry_entry`,
    or paid it off with `repaid` won (which closes it)."""

    loan_account: str = Field(min_length=1, max_length=64)
    registry_entry: int | None = Field(None, ge=0)
    repaid: Won = 0


class MortgageBooked(Payload):
    loan_account: str
    outstanding: Won
    registry_entry: int | None


class CashRequest(Payload):
    """A customer's cash deposit (mint) or withdrawal (burn) of deposit tokens."""

    customer: Address
    amount: Won = Field(gt=0)
    direction: Literal["deposit", "withdrawal"]


class CashAnswer(Payload):
    accepted: bool
    balance_after: Won
    detail: str = ""


class BankAdapter(Protocol):
    """A bank, as the bank oracle uses it."""

    def assess_loan(self, request_id: str, application: LoanApplication) -> LoanDecision: ...

    def disburse(self, request_id: str, request: DisbursementRequest) -> DisbursementAnswer: ...

    def payoff_quote(self, request_id: str, request: PayoffRequest) -> PayoffQuote: ...

    def cash(self, request_id: str, request: CashRequest) -> CashAnswer: ...

    def update_mortgage(self, request_id: str, update: MortgageUpdate) -> MortgageBooked: ...


# --- land registry ---------------------------------------------------------------------


class RegisterEntry(Payload):
    section: Literal["gapgu", "eulgu"]
    index: int = Field(ge=0)
    kind: str
    holder: Address | None = None
    debtor: Address | None = None
    amount: Won = 0
    rank: int = 0
    ref: int | None = None
    receipt: ReceiptNo
    active: bool


class ParcelRecord(Payload):
    parcel_id: Hash32
    number: str
    address: str
    area_m2_x100: int = Field(ge=1)
    land_use: str
    owner: Address
    entries: list[RegisterEntry]


class TransferCheckRequest(Payload):
    parcel_id: Hash32
    seller: Address
    buyer: Address


class TransferCheck(Payload):
    ok: bool
    reason: Literal["ok", "unknown_parcel", "seller_not_owner", "blocked"]
    detail: str = ""


class TaxRequest(Payload):
    deal_id: int = Field(ge=1)
    parcel_id: Hash32
    buyer: Address
    price: Won


class TaxReceipt(Payload):
    receipt_no: ReceiptNo
    tax: Won
    rate_bps: int = Field(ge=0, le=10_000)


class TransactionReport(Payload):
    deal_id: int = Field(ge=1)
    parcel_id: Hash32
    seller: Address
    buyer: Address
    price: Won
    contract_time: int = Field(ge=0)


class ReportReceipt(Payload):
    receipt_no: ReceiptNo


class RegistrationRequest(Payload):
    deal_id: int = Field(ge=1)
    parcel_id: Hash32
    seller: Address
    buyer: Address
    price: Won
    tax_receipt: ReceiptNo
    discharged_entries: list[int] = []
    new_mortgage: RegisterEntry | None = None


class RegistrationReceipt(Payload):
    receipt_no: ReceiptNo


class LandRegistryAdapter(Protocol):
    """The land registry (등기소) and the tax office, as the registry oracle uses them."""

    def read_parcel(self, parcel_id: str) -> ParcelRecord | None: ...

    def check_transfer(self, request_id: str, request: TransferCheckRequest) -> TransferCheck: ...

    def acquisition_tax(self, request_id: str, request: TaxRequest) -> TaxReceipt: ...

    def file_transaction_report(self, request_id: str, report: TransactionReport) -> ReportReceipt: ...

    def file_registration(self, request_id: str, request: RegistrationRequest) -> RegistrationReceipt: ...
