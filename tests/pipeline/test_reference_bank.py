"""The reference bank on SQLite and PostgreSQL: decisions, idempotency, loans, payoff, cash."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from sqlalchemy import text

from pipeline.adapters.protocols import (
    CashRequest,
    CredentialKind,
    DisbursementRequest,
    LoanApplication,
    LoanReason,
    PayoffRequest,
    PresentedCredential,
)
from pipeline.adapters.reference_bank import (
    CustomerExists,
    DisbursementMismatch,
    LoanNotApproved,
    NoMortgageHeld,
    ReferenceBank,
    RequestIdReused,
    monthly_payment,
)
from pipeline.credentials import issue_credential, present
from pipeline.domain import parcel_id

NOW = 1_780_000_000
ISSUER = Account.from_key(keccak(text="bank test issuer"))
STRANGER_ISSUER = Account.from_key(keccak(text="bank test unknown issuer"))
BUYER = Account.from_key(keccak(text="bank test buyer")).address
OTHER = Account.from_key(keccak(text="bank test other person")).address
SELLER = Account.from_key(keccak(text="bank test seller")).address
PARCEL = parcel_id("1168010600-10316-0000")
PRICE = 1_000_000_000


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _bank(url: str, clock: Clock | None = None) -> ReferenceBank:
    return ReferenceBank(url, bank_name="한빛은행", known_issuers={ISSUER.address}, clock=clock or Clock())


@pytest.fixture
def bank(db_url: str) -> Iterator[ReferenceBank]:
    b = _bank(db_url)
    b.open_customer(BUYER, "김민준", 96_000_000, cash=150_000_000, other_annual_debt_service=0)
    yield b
    b.close()


def credential(
    kind: CredentialKind,
    *,
    subject: str = BUYER,
    issuer: Any = ISSUER,
    claims: dict[str, str | int] | None = None,
    expiry: int = NOW + 86_400 * 90,
    anchored: bool = True,
) -> PresentedCredential:
    if claims is None:
        claims = {"annual_income": 96_000_000} if kind == CredentialKind.INCOME else {}
    document, digest, signature = issue_credential(
        issuer, kind, subject, claims, issued_at=NOW - 86_400, expiry=expiry
    )
    return present(document, digest, signature, anchored)


def both(**income_claims: int) -> list[PresentedCredential]:
    claims: dict[str, str | int] = dict(income_claims)
    income = credential(CredentialKind.INCOME, claims=claims or None)
    return [credential(CredentialKind.RESIDENT_REGISTRATION), income]


def application(
    amount: int = 400_000_000,
    credentials: list[PresentedCredential] | None = None,
    *,
    deal_id: int = 1,
    buyer: str = BUYER,
    price: int = PRICE,
) -> LoanApplication:
    return LoanApplication(
        deal_id=deal_id,
        buyer=buyer,
        amount=amount,
        price=price,
        parcel_id=PARCEL,
        credentials=both() if credentials is None else credentials,
    )


def count(bank: ReferenceBank, table: str) -> int:
    with bank.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


# --- decisions -------------------------------------------------------------------------


def test_approval_values(bank: ReferenceBank) -> None:
    decision = bank.assess_loan("r1", application())
    assert decision.approved and decision.reason == LoanReason.APPROVED
    assert decision.amount == 400_000_000
    assert decision.rate_bps == 420 and decision.term_months == 360
    assert decision.max_secured == 480_000_000  # 채권최고액 120%
    assert "LTV 4000 bps" in decision.detail
    loan = bank.loan(1)
    assert loan is not None and loan["status"] == "approved"
    assert loan["loan_account"] == "L-000001" and loan["amount"] == 400_000_000


def test_unknown_customer(bank: ReferenceBank) -> None:
    decision = bank.assess_loan("r1", application(buyer=OTHER))
    assert not decision.approved and decision.reason == LoanReason.UNKNOWN_CUSTOMER
    assert decision.amount == 0 and decision.max_secured == 0


@pytest.mark.parametrize("amount", [0, PRICE + 1])
def test_amount_invalid(bank: ReferenceBank, amount: int) -> None:
    assert bank.assess_loan("r1", application(amount)).reason == LoanReason.AMOUNT_INVALID


def test_missing_resident_registration(bank: ReferenceBank) -> None:
    decision = bank.assess_loan("r1", application(credentials=[both()[1]]))
    assert decision.reason == LoanReason.MISSING_RESIDENT_REGISTRATION


def test_missing_income_certificate(bank: ReferenceBank) -> None:
    decision = bank.assess_loan("r1", application(credentials=[both()[0]]))
    assert decision.reason == LoanReason.MISSING_INCOME_CERTIFICATE


def _tampered() -> PresentedCredential:
    good = credential(CredentialKind.INCOME)
    forged = good.document.model_copy(update={"claims": {"annual_income": 900_000_000}})
    return good.model_copy(update={"document": forged})


INVALID_INCOME = {
    "tampered": _tampered,
    "unknown issuer": lambda: credential(CredentialKind.INCOME, issuer=STRANGER_ISSUER),
    "expired": lambda: credential(CredentialKind.INCOME, expiry=NOW),
    "not anchored": lambda: credential(CredentialKind.INCOME, anchored=False),
    "someone else's": lambda: credential(CredentialKind.INCOME, subject=OTHER),
    "no income claim": lambda: credential(CredentialKind.INCOME, claims={"employer": "x"}),
}


@pytest.mark.parametrize("case", sorted(INVALID_INCOME))
def test_credential_invalid(bank: ReferenceBank, case: str) -> None:
    creds = [credential(CredentialKind.RESIDENT_REGISTRATION), INVALID_INCOME[case]()]
    decision = bank.assess_loan("r1", application(credentials=creds))
    assert not decision.approved and decision.reason == LoanReason.CREDENTIAL_INVALID
    assert decision.detail


def test_an_invalid_extra_credential_rejects(bank: ReferenceBank) -> None:
    family = credential(CredentialKind.FAMILY_RELATION, anchored=False)
    decision = bank.assess_loan("r1", application(credentials=[*both(), family]))
    assert decision.reason == LoanReason.CREDENTIAL_INVALID


def test_ltv_exceeded_and_boundary(db_url: str) -> None:
    bank = _bank(db_url)
    try:
        bank.open_customer(BUYER, "정우진", 300_000_000)
        rich = both(annual_income=300_000_000)
        over = bank.assess_loan("r1", application(700_000_001, rich, deal_id=1))
        assert over.reason == LoanReason.LTV_EXCEEDED
        at = bank.assess_loan("r2", application(700_000_000, rich, deal_id=2))
        assert at.approved and at.max_secured == 840_000_000
    finally:
        bank.close()


def test_dsr_uses_the_certificate_income_not_the_bank_record(bank: ReferenceBank) -> None:
    # the bank's own record says 96M; the certificate says 50M: 1,956,069 x 12 / 50M = 47%
    decision = bank.assess_loan("r1", application(credentials=both(annual_income=50_000_000)))
    assert decision.reason == LoanReason.DSR_EXCEEDED
    assert "DSR 4695 bps" in decision.detail


def test_dsr_counts_other_debt_service(db_url: str) -> None:
    bank = _bank(db_url)
    try:
        # 23,472,828 of this loan + 15,000,000 others = 38,472,828 > 40% of 90M
        bank.open_customer(BUYER, "박지훈", 90_000_000, other_annual_debt_service=15_000_000)
        decision = bank.assess_loan("r1", application(credentials=both(annual_income=90_000_000)))
        assert decision.reason == LoanReason.DSR_EXCEEDED
        ok = bank.assess_loan("r2", application(credentials=both(annual_income=97_000_000), deal_id=2))
        assert ok.approved
    finally:
        bank.close()


def test_monthly_payment_is_exact_and_rounded_up() -> None:
    assert monthly_payment(100_000_000, 420, 360) == 489_018  # 489,017.17 rounded up
    assert monthly_payment(100_000_000, 0, 360) == 277_778
    assert monthly_payment(400_000_000, 420, 360) == 1_956_069


# --- idempotency -----------------------------------------------------------------------


def test_same_request_id_same_answer_one_state_change(bank: ReferenceBank) -> None:
    first = bank.assess_loan("r1", application())
    again = bank.assess_loan("r1", application())
    assert again == first
    assert count(bank, "bank_decisions") == 1 and count(bank, "bank_loans") == 1
    assert count(bank, "bank_requests") == 1


def test_a_decision_is_made_once_per_deal(bank: ReferenceBank) -> None:
    first = bank.assess_loan("r1", application())
    # a new request for the same deal, even asking for more, gets the stored decision
    second = bank.assess_loan("r2", application(650_000_000))
    assert second == first and second.amount == 400_000_000
    assert count(bank, "bank_decisions") == 1 and count(bank, "bank_requests") == 2


def test_a_reused_request_id_with_another_payload_is_refused(bank: ReferenceBank) -> None:
    bank.assess_loan("r1", application())
    with pytest.raises(RequestIdReused):
        bank.assess_loan("r1", application(300_000_000))


def test_concurrent_assessments_decide_once(bank: ReferenceBank) -> None:
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: bank.assess_loan(f"c{i}", application()), range(6)))
    assert len({a.model_dump_json() for a in answers}) == 1
    assert count(bank, "bank_loans") == 1 and count(bank, "bank_requests") == 6


# --- disbursement and payoff -----------------------------------------------------------


def test_disburse_before_approval_raises(bank: ReferenceBank) -> None:
    request = DisbursementRequest(deal_id=1, borrower=BUYER, amount=400_000_000)
    with pytest.raises(LoanNotApproved, match="has not approved"):
        bank.disburse("d1", request)
    bank.assess_loan("r1", application(credentials=[]))  # rejected
    with pytest.raises(LoanNotApproved):
        bank.disburse("d1", request)
    assert count(bank, "bank_requests") == 1  # failures store nothing


def test_disburse_books_the_loan_once(bank: ReferenceBank) -> None:
    bank.assess_loan("r1", application())
    request = DisbursementRequest(deal_id=1, borrower=BUYER, amount=400_000_000)
    answer = bank.disburse("d1", request)
    assert answer.loan_account == "L-000001" and answer.amount == 400_000_000
    assert bank.disburse("d1", request) == answer
    assert bank.disburse("d2", request) == answer
    loan = bank.loan(1)
    assert loan is not None and loan["status"] == "disbursed"
    assert loan["disbursed_at"] == NOW
    assert count(bank, "bank_mortgages_held") == 1
    # the new loan is now a mortgage the bank holds on the parcel it financed
    quote = bank.payoff_quote(
        "p1", PayoffRequest(deal_id=9, parcel_id=PARCEL, mortgage_entry=3, debtor=BUYER)
    )
    assert quote.amount == 400_000_000 and quote.loan_account == "L-000001"


def test_disburse_must_match_the_approval(bank: ReferenceBank) -> None:
    bank.assess_loan("r1", application())
    with pytest.raises(DisbursementMismatch):
        bank.disburse("d1", DisbursementRequest(deal_id=1, borrower=BUYER, amount=500_000_000))
    with pytest.raises(DisbursementMismatch):
        bank.disburse("d2", DisbursementRequest(deal_id=1, borrower=OTHER, amount=400_000_000))


def test_payoff_quote(bank: ReferenceBank) -> None:
    first = bank.book_existing_mortgage(PARCEL, SELLER, 270_000_000, registry_entry=0)
    second = bank.book_existing_mortgage(PARCEL, SELLER, 90_000_000, registry_entry=2)
    assert (first, second) == ("L-000001", "L-000002")
    ask = PayoffRequest(deal_id=1, parcel_id=PARCEL, mortgage_entry=2, debtor=SELLER)
    quote = bank.payoff_quote("p1", ask)
    assert quote.amount == 90_000_000 and quote.loan_account == second
    assert bank.payoff_quote("p1", ask) == quote
    with pytest.raises(NoMortgageHeld):  # two held, neither is entry 1
        bank.payoff_quote("p2", ask.model_copy(update={"mortgage_entry": 1}))
    with pytest.raises(NoMortgageHeld):
        bank.payoff_quote("p3", ask.model_copy(update={"debtor": OTHER}))


# --- cash ------------------------------------------------------------------------------


def test_cash_deposit_and_withdrawal(bank: ReferenceBank) -> None:
    deposit = bank.cash("c1", CashRequest(customer=BUYER, amount=10_000_000, direction="deposit"))
    assert deposit.accepted and deposit.balance_after == 150_000_000
    withdrawal = CashRequest(customer=BUYER, amount=25_000_000, direction="withdrawal")
    answer = bank.cash("c2", withdrawal)
    assert answer.accepted and answer.balance_after == 175_000_000
    assert bank.cash("c2", withdrawal) == answer  # credited once
    customer = bank.customer(BUYER)
    assert customer is not None and customer["cash"] == 175_000_000


def test_cash_for_a_stranger_is_not_accepted(bank: ReferenceBank) -> None:
    answer = bank.cash("c1", CashRequest(customer=OTHER, amount=1, direction="withdrawal"))
    assert not answer.accepted and answer.balance_after == 0 and "not a customer" in answer.detail


def test_concurrent_repeats_of_one_withdrawal_credit_once(bank: ReferenceBank) -> None:
    request = CashRequest(customer=BUYER, amount=1_000_000, direction="withdrawal")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: bank.cash("same", request), range(6)))
    assert {r.balance_after for r in results} == {151_000_000}
    customer = bank.customer(BUYER)
    assert customer is not None and customer["cash"] == 151_000_000


# --- customers and persistence ---------------------------------------------------------


def test_customers(bank: ReferenceBank) -> None:
    record = bank.customer(BUYER.lower())
    assert record is not None
    assert record["name"] == "김민준" and record["annual_income"] == 96_000_000
    assert bank.customer(OTHER) is None
    with pytest.raises(CustomerExists):
        bank.open_customer(BUYER, "again", 1)


def test_state_persists_across_instances(db_url: str) -> None:
    first = _bank(db_url)
    first.open_customer(BUYER, "김민준", 96_000_000, cash=5)
    decision = first.assess_loan("r1", application())
    first.close()
    second = _bank(db_url)
    try:
        customer = second.customer(BUYER)
        assert customer is not None and customer["cash"] == 5
        assert second.assess_loan("r9", application(100)) == decision
        answer = second.disburse("d1", DisbursementRequest(deal_id=1, borrower=BUYER, amount=400_000_000))
        assert answer.loan_account == "L-000001"
        assert second.book_existing_mortgage(PARCEL, SELLER, 1) == "L-000002"
    finally:
        second.close()
