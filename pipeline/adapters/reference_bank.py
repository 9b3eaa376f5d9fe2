"""A reference bank: customers, loan decisions, loans and the mortgages it holds, in a database.

Money model (whole won, ints only): `cash` is a customer's ordinary account at the bank. A
deposit of deposit tokens is cash brought in at the counter: the bank accepts it, debits
nothing, and the oracle mints the tokens. A withdrawal is the reverse: the oracle burns the
tokens on chain and the bank credits the customer's account (`cash += amount`). A disbursed
loan goes to the deal's escrow (minted by the oracle), never to the customer's account.

Every BankAdapter call is idempotent by request id: the answer is stored with the state change
in one transaction, and a repeated id gets the stored answer and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any, TypeVar

from eth_utils import to_checksum_address
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.adapters.protocols import (
    CashAnswer,
    CashRequest,
    CredentialKind,
    DisbursementAnswer,
    DisbursementRequest,
    LoanApplication,
    LoanDecision,
    LoanReason,
    MortgageBooked,
    MortgageUpdate,
    Payload,
    PayoffQuote,
    PayoffRequest,
    PresentedCredential,
)
from pipeline.adapters.request_log import BackOffice
from pipeline.credentials import verify_presented
from pipeline.db import sql
from pipeline.errors import PipelineValueError

A = TypeVar("A", bound=Payload)

MAX_WON = 10**18

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS bank_customers (
        address TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        annual_income BIGINT NOT NULL,
        other_annual_debt_service BIGINT NOT NULL,
        cash BIGINT NOT NULL,
        opened_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bank_counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bank_decisions (
        deal_id BIGINT PRIMARY KEY,
        buyer TEXT NOT NULL,
        parcel_id TEXT NOT NULL,
        approved INTEGER NOT NULL,
        reason INTEGER NOT NULL,
        amount BIGINT NOT NULL,
        rate_bps INTEGER NOT NULL,
        term_months INTEGER NOT NULL,
        max_secured BIGINT NOT NULL,
        detail TEXT NOT NULL,
        answer TEXT NOT NULL,
        decided_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bank_loans (
        loan_account TEXT PRIMARY KEY,
        deal_id BIGINT NOT NULL UNIQUE,
        borrower TEXT NOT NULL,
        parcel_id TEXT NOT NULL,
        amount BIGINT NOT NULL,
        rate_bps INTEGER NOT NULL,
        term_months INTEGER NOT NULL,
        max_secured BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('approved', 'disbursed')),
        created_at BIGINT NOT NULL,
        disbursed_at BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS bank_mortgages_held (
        loan_account TEXT PRIMARY KEY,
        parcel_id TEXT NOT NULL,
        debtor TEXT NOT NULL,
        outstanding BIGINT NOT NULL,
        registry_entry INTEGER,
        booked_at BIGINT NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS bank_mortgages_held_parcel
        ON bank_mortgages_held (parcel_id, debtor)""",
    """CREATE TABLE IF NOT EXISTS bank_requests (
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        answer TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (request_id, method)
    )""",
]


class BankValueError(PipelineValueError):
    """A request the bank refuses to act on (not a loan decision: those are answers)."""


class LoanNotApproved(BankValueError):
    """Disbursement asked for a deal without an approved loan."""


class DisbursementMismatch(BankValueError):
    """Disbursement asked for another borrower or amount than the approval."""


class NoMortgageHeld(BankValueError):
    """A payoff quote was asked for a mortgage this bank does not hold."""


class CustomerExists(BankValueError):
    """open_customer for an address that already is a customer."""


class RequestIdReused(BankValueError):
    """The same request id came back with a different payload."""


def monthly_payment(principal: int, rate_bps: int, term_months: int) -> int:
    """Level monthly payment (원리금균등) of an annuity, in won, rounded up to the won.

    Monthly rate r = rate_bps / 10000 / 12; payment = P·r·(1+r)^n / ((1+r)^n - 1), computed
    exactly with Fractions; rate 0 is P / n.
    """
    if term_months <= 0:
        raise BankValueError(f"term {term_months} months: must be positive")
    if principal <= 0:
        return 0
    if rate_bps == 0:
        return math.ceil(Fraction(principal, term_months))
    r = Fraction(rate_bps, 120_000)
    growth = (1 + r) ** term_months
    return math.ceil(principal * r * growth / (growth - 1))


def _checksum(address: str) -> str:
    return to_checksum_address(address)


def _income_claim(value: str | int | None) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class ReferenceBank(BackOffice):
    """A bank with persistent state (tables bank_*), implementing BankAdapter."""

    SCHEMA = _SCHEMA
    REQUESTS_TABLE = "bank_requests"
    INVALID = BankValueError
    REUSED = RequestIdReused

    def __init__(
        self,
        engine_or_url: Engine | str,
        *,
        bank_name: str,
        known_issuers: set[str],
        ltv_bps: int = 7000,
        dsr_bps: int = 4000,
        rate_bps: int = 420,
        term_months: int = 360,
        max_secured_bps: int = 12000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if not 0 < ltv_bps <= 10_000 or not 0 < dsr_bps <= 10_000:
            raise BankValueError(f"ltv_bps {ltv_bps} / dsr_bps {dsr_bps}: must be in 1..10000")
        if not 0 <= rate_bps <= 10_000 or not 0 < term_months <= 600:
            raise BankValueError(f"rate {rate_bps} bps / term {term_months}: out of range")
        if max_secured_bps < 10_000:
            raise BankValueError(f"max_secured_bps {max_secured_bps}: must be >= 10000")
        self.bank_name = bank_name
        self.known_issuers = frozenset(_checksum(a) for a in known_issuers)
        self.ltv_bps = ltv_bps
        self.dsr_bps = dsr_bps
        self.rate_bps = rate_bps
        self.term_months = term_months
        self.max_secured_bps = max_secured_bps
        super().__init__(engine_or_url, clock)

    # ------------------------------------------------------------------ setup

    def open_customer(
        self,
        address: str,
        name: str,
        annual_income: int,
        cash: int = 0,
        other_annual_debt_service: int = 0,
    ) -> str:
        """Open an account; returns the checksummed address. Amounts are whole won."""
        for label, value in (
            ("annual_income", annual_income),
            ("cash", cash),
            ("other_annual_debt_service", other_annual_debt_service),
        ):
            if not 0 <= value <= MAX_WON:
                raise BankValueError(f"{label} {value}: must be 0..{MAX_WON} won")
        address = _checksum(address)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sql(
                        "INSERT INTO bank_customers (address, name, annual_income,"
                        " other_annual_debt_service, cash, opened_at)"
                        " VALUES (:a, :n, :i, :d, :c, :t)"
                    ),
                    {
                        "a": address,
                        "n": name,
                        "i": annual_income,
                        "d": other_annual_debt_service,
                        "c": cash,
                        "t": self.clock(),
                    },
                )
        except IntegrityError:
            raise CustomerExists(f"{address} already is a customer of {self.bank_name}") from None
        return address

    def customer(self, address: str) -> dict[str, Any] | None:
        """The customer's record (address, name, annual_income, other_annual_debt_service,
        cash, opened_at), or None for a stranger."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sql(
                        "SELECT address, name, annual_income, other_annual_debt_service, cash,"
                        " opened_at FROM bank_customers WHERE address = :a"
                    ),
                    {"a": _checksum(address)},
                )
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def loan(self, deal_id: int) -> dict[str, Any] | None:
        """The loan booked for a deal (status 'approved' or 'disbursed'), or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sql("SELECT * FROM bank_loans WHERE deal_id = :d"), {"d": deal_id})
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def held_mortgage(self, parcel_id: str, registry_entry: int) -> dict[str, Any] | None:
        """The mortgage the bank holds as 을구 entry `registry_entry` of a parcel, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sql("SELECT * FROM bank_mortgages_held WHERE parcel_id = :p AND registry_entry = :e"),
                    {"p": parcel_id.lower(), "e": registry_entry},
                )
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def book_existing_mortgage(
        self, parcel_id: str, debtor: str, outstanding: int, registry_entry: int | None = None
    ) -> str:
        """Record a mortgage loan the bank already holds on a parcel; returns its loan account.

        `registry_entry` is the mortgage's 을구 index when known; payoff quotes prefer it.
        """
        if not 0 < outstanding <= MAX_WON:
            raise BankValueError(f"outstanding {outstanding}: must be 1..{MAX_WON} won")
        with self.engine.begin() as conn:
            account = self._next_account(conn)
            conn.execute(
                sql(
                    "INSERT INTO bank_mortgages_held (loan_account, parcel_id, debtor,"
                    " outstanding, registry_entry, booked_at) VALUES (:l, :p, :d, :o, :e, :t)"
                ),
                {
                    "l": account,
                    "p": parcel_id.lower(),
                    "d": _checksum(debtor),
                    "o": outstanding,
                    "e": registry_entry,
                    "t": self.clock(),
                },
            )
        return account

    # ------------------------------------------------------------------ BankAdapter

    def assess_loan(self, request_id: str, application: LoanApplication) -> LoanDecision:
        """Decide once per deal; a later request for the same deal gets the same decision."""

        def work(conn: Connection) -> LoanDecision:
            stored = conn.execute(
                sql("SELECT answer FROM bank_decisions WHERE deal_id = :d"),
                {"d": application.deal_id},
            ).first()
            if stored is not None:
                return LoanDecision.model_validate_json(stored.answer)
            decision = self._decide(conn, application)
            now = self.clock()
            conn.execute(
                sql(
                    "INSERT INTO bank_decisions (deal_id, buyer, parcel_id, approved, reason,"
                    " amount, rate_bps, term_months, max_secured, detail, answer, decided_at)"
                    " VALUES (:d, :b, :p, :ap, :r, :am, :rate, :term, :ms, :det, :ans, :t)"
                ),
                {
                    "d": application.deal_id,
                    "b": _checksum(application.buyer),
                    "p": application.parcel_id.lower(),
                    "ap": int(decision.approved),
                    "r": int(decision.reason),
                    "am": decision.amount,
                    "rate": decision.rate_bps,
                    "term": decision.term_months,
                    "ms": decision.max_secured,
                    "det": decision.detail,
                    "ans": decision.model_dump_json(),
                    "t": now,
                },
            )
            if decision.approved:
                conn.execute(
                    sql(
                        "INSERT INTO bank_loans (loan_account, deal_id, borrower, parcel_id,"
                        " amount, rate_bps, term_months, max_secured, status, created_at)"
                        " VALUES (:l, :d, :b, :p, :am, :rate, :term, :ms, 'approved', :t)"
                    ),
                    {
                        "l": self._next_account(conn),
                        "d": application.deal_id,
                        "b": _checksum(application.buyer),
                        "p": application.parcel_id.lower(),
                        "am": decision.amount,
                        "rate": decision.rate_bps,
                        "term": decision.term_months,
                        "ms": decision.max_secured,
                        "t": now,
                    },
                )
            return decision

        return self._idempotent("assess_loan", request_id, application, LoanDecision, work)

    def disburse(self, request_id: str, request: DisbursementRequest) -> DisbursementAnswer:
        """Pay out an approved loan (into the deal's escrow); once per deal."""

        def work(conn: Connection) -> DisbursementAnswer:
            loan = (
                conn.execute(
                    sql(
                        "SELECT loan_account, borrower, parcel_id, amount, status"
                        " FROM bank_loans WHERE deal_id = :d"
                    ),
                    {"d": request.deal_id},
                )
                .mappings()
                .first()
            )
            if loan is None:
                raise LoanNotApproved(
                    f"deal {request.deal_id}: {self.bank_name} has not approved a loan"
                    " for it, so nothing can be disbursed"
                )
            borrower = _checksum(request.borrower)
            if loan["borrower"] != borrower or loan["amount"] != request.amount:
                raise DisbursementMismatch(
                    f"deal {request.deal_id}: approved {loan['amount']} won to"
                    f" {loan['borrower']}, asked {request.amount} won to {borrower}"
                )
            answer = DisbursementAnswer(loan_account=loan["loan_account"], amount=loan["amount"])
            if loan["status"] == "disbursed":
                return answer
            now = self.clock()
            conn.execute(
                sql(
                    "UPDATE bank_loans SET status = 'disbursed', disbursed_at = :t"
                    " WHERE loan_account = :l AND status = 'approved'"
                ),
                {"t": now, "l": loan["loan_account"]},
            )
            # once disbursed the loan is secured on the parcel it financed
            conn.execute(
                sql(
                    "INSERT INTO bank_mortgages_held (loan_account, parcel_id, debtor,"
                    " outstanding, registry_entry, booked_at) VALUES (:l, :p, :d, :o, NULL, :t)"
                ),
                {
                    "l": loan["loan_account"],
                    "p": loan["parcel_id"],
                    "d": borrower,
                    "o": loan["amount"],
                    "t": now,
                },
            )
            return answer

        return self._idempotent("disburse", request_id, request, DisbursementAnswer, work)

    def payoff_quote(self, request_id: str, request: PayoffRequest) -> PayoffQuote:
        """What it takes to discharge the bank's mortgage on the parcel for that debtor."""

        def work(conn: Connection) -> PayoffQuote:
            rows = (
                conn.execute(
                    sql(
                        "SELECT loan_account, outstanding, registry_entry FROM bank_mortgages_held"
                        " WHERE parcel_id = :p AND debtor = :d AND outstanding > 0"
                        " ORDER BY loan_account"
                    ),
                    {"p": request.parcel_id.lower(), "d": _checksum(request.debtor)},
                )
                .mappings()
                .all()
            )
            exact = [r for r in rows if r["registry_entry"] == request.mortgage_entry]
            unplaced = [r for r in rows if r["registry_entry"] is None]
            chosen = exact or (unplaced if len(unplaced) == 1 else [])
            if len(chosen) != 1:
                raise NoMortgageHeld(
                    f"{self.bank_name} holds {'no' if not rows else 'no unambiguous'} mortgage"
                    f" on parcel {request.parcel_id} (을구 entry {request.mortgage_entry})"
                    f" for debtor {request.debtor}"
                )
            row = chosen[0]
            return PayoffQuote(amount=row["outstanding"], loan_account=row["loan_account"])

        return self._idempotent("payoff_quote", request_id, request, PayoffQuote, work)

    def update_mortgage(self, request_id: str, update: MortgageUpdate) -> MortgageBooked:
        """Book what settlement did: the 을구 entry of a new mortgage, or a payoff received."""

        def work(conn: Connection) -> MortgageBooked:
            row = (
                conn.execute(
                    sql(
                        "SELECT outstanding, registry_entry FROM bank_mortgages_held WHERE loan_account = :a"
                    ),
                    {"a": update.loan_account},
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NoMortgageHeld(f"{self.bank_name} has no mortgage loan {update.loan_account}")
            entry = update.registry_entry if update.registry_entry is not None else row["registry_entry"]
            outstanding = max(0, int(row["outstanding"]) - update.repaid)
            conn.execute(
                sql(
                    "UPDATE bank_mortgages_held SET outstanding = :o, registry_entry = :e"
                    " WHERE loan_account = :a"
                ),
                {"o": outstanding, "e": entry, "a": update.loan_account},
            )
            return MortgageBooked(
                loan_account=update.loan_account, outstanding=outstanding, registry_entry=entry
            )

        return self._idempotent("update_mortgage", request_id, update, MortgageBooked, work)

    def cash(self, request_id: str, request: CashRequest) -> CashAnswer:
        """Deposit (cash in at the counter; tokens minted) or withdrawal (tokens burned;
        the customer's account credited). See the module docstring."""

        def work(conn: Connection) -> CashAnswer:
            customer = _checksum(request.customer)
            if request.direction == "withdrawal":
                conn.execute(
                    sql("UPDATE bank_customers SET cash = cash + :a WHERE address = :c"),
                    {"a": request.amount, "c": customer},
                )
            row = conn.execute(
                sql("SELECT cash FROM bank_customers WHERE address = :c"), {"c": customer}
            ).first()
            if row is None:
                return CashAnswer(
                    accepted=False,
                    balance_after=0,
                    detail=f"{customer} is not a customer of {self.bank_name}",
                )
            if row.cash > MAX_WON:
                raise BankValueError(f"{customer}: account balance would exceed {MAX_WON} won")
            return CashAnswer(accepted=True, balance_after=row.cash)

        return self._idempotent("cash", request_id, request, CashAnswer, work)

    # ------------------------------------------------------------------ decision

    def _decide(self, conn: Connection, application: LoanApplication) -> LoanDecision:
        buyer = _checksum(application.buyer)
        customer = conn.execute(
            sql("SELECT other_annual_debt_service FROM bank_customers WHERE address = :a"),
            {"a": buyer},
        ).first()
        if customer is None:
            return _reject(LoanReason.UNKNOWN_CUSTOMER, f"{buyer} is not a customer")
        amount, price = application.amount, application.price
        if amount <= 0 or amount > price:
            return _reject(LoanReason.AMOUNT_INVALID, f"amount {amount} won for a price of {price} won")
        max_secured = -(-amount * self.max_secured_bps // 10_000)  # rounded up to the won
        if max_secured > MAX_WON:
            return _reject(LoanReason.AMOUNT_INVALID, f"채권최고액 {max_secured} won too large")

        by_kind: dict[CredentialKind, list[PresentedCredential]] = {}
        for presented in application.credentials:
            problem = self._credential_problem(presented, buyer)
            if problem is not None:
                kind = presented.document.kind.name
                return _reject(LoanReason.CREDENTIAL_INVALID, f"{kind} {presented.hash}: {problem}")
            by_kind.setdefault(presented.document.kind, []).append(presented)
        if CredentialKind.RESIDENT_REGISTRATION not in by_kind:
            return _reject(LoanReason.MISSING_RESIDENT_REGISTRATION, "no resident registration presented")
        if CredentialKind.INCOME not in by_kind:
            return _reject(LoanReason.MISSING_INCOME_CERTIFICATE, "no income certificate presented")
        income_doc = max(by_kind[CredentialKind.INCOME], key=lambda p: p.document.issued_at)
        annual_income = _income_claim(income_doc.document.claims.get("annual_income"))
        if annual_income is None:
            return _reject(
                LoanReason.CREDENTIAL_INVALID,
                f"INCOME {income_doc.hash}: no integer claim 'annual_income'",
            )

        ltv = Fraction(amount, price)
        if ltv > Fraction(self.ltv_bps, 10_000):
            return _reject(
                LoanReason.LTV_EXCEEDED,
                f"LTV {math.ceil(ltv * 10_000)} bps > {self.ltv_bps} bps",
            )
        payment = monthly_payment(amount, self.rate_bps, self.term_months)
        annual_debt_service = payment * 12 + int(customer.other_annual_debt_service)
        if annual_income == 0 or Fraction(annual_debt_service, annual_income) > Fraction(
            self.dsr_bps, 10_000
        ):
            shown = (
                "no income"
                if annual_income == 0
                else f"{math.ceil(Fraction(annual_debt_service * 10_000, annual_income))} bps"
            )
            return _reject(
                LoanReason.DSR_EXCEEDED,
                f"DSR {shown} > {self.dsr_bps} bps (annual debt service"
                f" {annual_debt_service} won, income {annual_income} won)",
            )
        dsr = math.ceil(Fraction(annual_debt_service * 10_000, annual_income))
        return LoanDecision(
            approved=True,
            reason=LoanReason.APPROVED,
            amount=amount,
            rate_bps=self.rate_bps,
            term_months=self.term_months,
            max_secured=max_secured,
            detail=(f"LTV {math.ceil(ltv * 10_000)} bps, DSR {dsr} bps, monthly payment {payment} won"),
        )

    def _credential_problem(self, presented: PresentedCredential, buyer: str) -> str | None:
        document = presented.document
        problem = verify_presented(presented)
        if problem is not None:
            return problem
        issuer = _checksum(document.issuer)
        if issuer not in self.known_issuers:
            return f"issuer {issuer} is not trusted by {self.bank_name}"
        now = self.clock()
        if document.expiry <= now:
            return f"expired at {document.expiry} (now {now})"
        if not presented.anchored_valid:
            return "not anchored, or revoked, in the credential registry"
        if _checksum(document.subject) != buyer:
            return f"issued to {document.subject}, not to the buyer {buyer}"
        return None

    # ------------------------------------------------------------------ plumbing

    def _next_account(self, conn: Connection) -> str:
        conn.execute(
            sql(
                "INSERT INTO bank_counters (name, value) VALUES ('loan_account', 0)"
                " ON CONFLICT (name) DO NOTHING"
            )
        )
        conn.execute(sql("UPDATE bank_counters SET value = value + 1 WHERE name = 'loan_account'"))
        value = conn.execute(sql("SELECT value FROM bank_counters WHERE name = 'loan_account'")).scalar_one()
        return f"L-{int(value):06d}"


def _reject(reason: LoanReason, detail: str) -> LoanDecision:
    return LoanDecision(approved=False, reason=reason, detail=detail[:500])
