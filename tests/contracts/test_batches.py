"""Batch entry points: one transaction per institution step, each item applied on its own.

For every batch: all items succeed with exactly the events of the single calls (compared log by log
against the singles sent from the same snapshot); a failing item in the middle emits ItemFailed with
the single call's custom error (decoded by the project's error decoder), leaves no trace, and the
others apply; a wrong caller reverts the whole call with the single call's role error; arrays of
different lengths revert LengthMismatch; an item repeated in one batch applies once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eth_utils import keccak

from chain.contract import Contract
from chain.errors import ContractRevert
from chain.sender import Receipt
from pipeline.domain import DealTerms, Payment, State, receipt
from tests.contracts.conftest import World

REGISTRAR_ROLE = "0x" + keccak(text="REGISTRAR_ROLE").hex()
PAYOFF = 250_000_000
APPROVAL = {"approve": True, "rateBps": 420, "termMonths": 360, "reasonCode": 0}
REJECTION = {"approve": False, "amount": 0, "rateBps": 0, "termMonths": 0, "maxSecured": 0}

# the steps a deal goes through, in order (Deals.advance takes deals up to one of them)
STEPS = (
    "reported",
    "deposit",
    "interim",
    "requested",
    "approved",
    "disbursed",
    "balance",
    "registration",
    "payoff",
)


@contextmanager
def rolled_back(w: World) -> Iterator[None]:
    """Whatever happens inside is undone (evm_snapshot / evm_revert), local nonces included."""
    snapshot = w.chain.rpc.call("evm_snapshot")
    try:
        yield
    finally:
        w.revert(snapshot)


def logs(w: World, *receipts: Receipt) -> list[tuple[str, str, dict[str, Any]]]:
    """Every log of the receipts, decoded, in order; register entry times (the block's) left out."""
    by_address = {c.address.lower(): c for c in (w.escrow, w.loans, w.land, w.token)}
    out = []
    for r in receipts:
        for log in r.logs:
            contract = by_address[log["address"].lower()]
            decoded = contract.abi.decode_log(log)
            assert decoded is not None, log
            args = {k: v for k, v in decoded.args.items() if k != "time"}
            out.append((contract.name, decoded.event, args))
    return out


def failures(w: World, contract: Contract, r: Receipt) -> dict[int, list[ContractRevert]]:
    """The ItemFailed events of a batch: deal id -> the decoded custom errors, in order."""
    out: dict[int, list[ContractRevert]] = {}
    for e in contract.events(r):
        if e.event == "ItemFailed":
            raw = bytes.fromhex(e.args["reason"][2:])
            out.setdefault(int(e.args["dealId"]), []).append(w.chain.errors.decode(raw))
    return out


def reverted(w: World, who: str, contract: Contract, fn: str, *args: Any) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.tx(who, contract, fn, *args)
    return err.value


def same_events(w: World, singles: Callable[[], list[Receipt]], batch: Callable[[], Receipt]) -> Receipt:
    """Send the single calls, note their logs, undo them; send the batch: it must log the same."""
    with rolled_back(w):
        expected = logs(w, *singles())
    r = batch()
    assert logs(w, r) == expected
    return r


class Deals:
    """Deals on fresh parcels of `seller` (each with one mortgage of `bank`), bought by `buyer` with
    an interim and a loan from `lender`, taken step by step with single calls (sent by the broker,
    the registrar, the lender and the bank). With `fresh`, each deal has its own new seller and
    buyer instead, as a batch across many deals would meet them."""

    def __init__(self, w: World, n: int, fresh: bool = False) -> None:
        self.w = w
        self.terms: dict[int, DealTerms] = {}
        self.mortgage: dict[int, int] = {}
        for _ in range(n):
            seller, buyer = (w.new_account(), w.new_account()) if fresh else ("seller", "buyer")
            parcel = w.register_parcel(seller)
            entry = w.add_mortgage(parcel, creditor="bank", debtor=seller)
            terms = w.terms(parcel, seller=seller, buyer=buyer)
            deal = w.signed_deal(terms, buyer=buyer, seller=seller)
            self.terms[deal] = terms
            self.mortgage[deal] = entry
            if fresh:  # the buyer allows the escrow all its payments at once
                w.mint(buyer, terms.price)
                w.approve(buyer, w.escrow, terms.price)
        self.ids = list(self.terms)
        if not fresh:
            total = sum(t.price for t in self.terms.values())
            w.mint("buyer", total)
            w.approve("buyer", w.escrow, total)
        loans = sum(t.loanAmount for t in self.terms.values())
        w.mint("lender", loans)
        w.approve("lender", w.loans, loans)

    def advance(self, until: str, deals: list[int] | None = None) -> None:
        for deal in deals or self.ids:
            for step in STEPS[: STEPS.index(until) + 1]:
                self.step(deal, step)

    def step(self, deal: int, step: str) -> Receipt:
        w, t = self.w, self.terms[deal]
        if step == "reported":
            return w.tx("registrar", w.escrow, "recordTransactionReport", deal, receipt(f"RPT-{deal}"))
        if step in ("deposit", "interim", "balance"):
            return w.tx("broker", w.escrow, f"pay{step.capitalize()}", deal)
        if step == "requested":
            return w.tx("broker", w.loans, "requestLoan", deal, t.loanAmount, t.lender, [])
        if step == "approved":
            return w.tx("lender", w.loans, "approveLoan", deal, *approval(t).values())
        if step == "disbursed":
            return w.tx("lender", w.loans, "disburse", deal)
        if step == "registration":
            return w.tx("broker", w.escrow, "requestRegistration", deal)
        assert step == "payoff"
        return w.tx("bank", w.loans, "statePayoff", deal, self.mortgage[deal], PAYOFF)


def approval(t: DealTerms) -> dict[str, int]:
    """approveLoan's arguments after the deal id: the whole loan, 채권최고액 120%."""
    return {
        "amount": t.loanAmount,
        "rateBps": 420,
        "termMonths": 360,
        "maxSecured": t.loanAmount * 12 // 10,
    }


def decision(deal: int, t: DealTerms, approve: bool = True, reason: int = 7) -> dict[str, Any]:
    if approve:
        return {"dealId": deal, **APPROVAL, **approval(t)}
    return {"dealId": deal, **REJECTION, "reasonCode": reason}


def regs(deals: list[int]) -> tuple[list[str], list[str]]:
    return [receipt(f"REG-{d}") for d in deals], [receipt(f"TAX-{d}") for d in deals]


# --------------------------------------------------------------------------- DealEscrow


def test_record_transaction_reports(world: World):
    w = world
    ds = Deals(w, 4)
    a, b, c, d = ds.ids
    receipts = [receipt(f"RPT-{x}") for x in (a, b, c)]

    same_events(
        w,
        lambda: [ds.step(x, "reported") for x in (a, b, c)],
        lambda: w.tx("registrar", w.escrow, "recordTransactionReports", [a, b, c], receipts),
    )
    assert all(w.escrow.call("reported", x) for x in (a, b, c))

    # d is not reported yet; b already is (middle); unknown id 999; d repeated
    r = w.tx(
        "registrar",
        w.escrow,
        "recordTransactionReports",
        [d, b, 999, d],
        [receipt("RPT-d"), receipt("RPT-b2"), receipt("RPT-x"), receipt("RPT-d2")],
    )
    failed = failures(w, w.escrow, r)
    assert {k: [(e.name, e.args_by_name) for e in v] for k, v in failed.items()} == {
        b: [("AlreadyReported", {"dealId": b})],
        999: [("UnknownDeal", {"dealId": 999})],
        d: [("AlreadyReported", {"dealId": d})],
    }
    reported = [e.args for e in w.escrow.events(r) if e.event == "TransactionReported"]
    assert reported == [{"dealId": d, "receipt": receipt("RPT-d")}]

    err = reverted(w, "broker", w.escrow, "recordTransactionReports", [d], [receipt("x")])
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name["account"] == w.addr("broker")
    err = reverted(w, "registrar", w.escrow, "recordTransactionReports", [a, b], [receipt("x")])
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 2, "items": 1})


def test_pay_many(world: World):
    w = world
    ds = Deals(w, 4)
    a, b, c, d = ds.ids
    ds.advance("deposit", [b])  # b: interim due; a, c, d: deposit due

    dep, inter = int(Payment.DEPOSIT), int(Payment.INTERIM)
    same_events(
        w,
        lambda: [ds.step(a, "deposit"), ds.step(b, "interim"), ds.step(c, "deposit")],
        lambda: w.tx("broker", w.escrow, "payMany", [a, b, c], [dep, inter, dep]),
    )
    assert [w.state(x) for x in (a, b, c, d)] == [
        State.DEPOSIT_PAID,
        State.INTERIM_PAID,
        State.DEPOSIT_PAID,
        State.SIGNED,
    ]

    # the deposit of d, then its interim in the same batch (items apply in order); a's deposit again
    # (middle), the loan (the lender's), an out-of-range payment; d's interim repeated
    r = w.tx("broker", w.escrow, "payMany", [d, a, c, c, d, d], [dep, dep, 3, 9, inter, inter])
    failed = failures(w, w.escrow, r)
    assert [(e.name, e.args_by_name) for e in failed[a]] == [
        ("DealNotInState", {"dealId": a, "expected": State.SIGNED, "actual": State.DEPOSIT_PAID})
    ]
    assert [(e.name, e.args_by_name) for e in failed[c]] == [
        ("PaymentNotDue", {"dealId": c, "payment": Payment.LOAN}),
        ("Panic", {"code": 0x21, "reason": "invalid enum value"}),
    ]
    assert [(e.name, e.args_by_name) for e in failed[d]] == [
        ("DealNotInState", {"dealId": d, "expected": State.DEPOSIT_PAID, "actual": State.INTERIM_PAID})
    ]
    paid = [(e.args["dealId"], e.args["payment"]) for e in w.escrow.events(r) if e.event == "PaymentReceived"]
    assert paid == [(d, Payment.DEPOSIT), (d, Payment.INTERIM)]
    assert w.state(d) == State.INTERIM_PAID

    # the seller may not pull the buyer's money (NotParty per item, as payDeposit); nothing reverts
    r = w.tx("seller", w.escrow, "payMany", [a], [inter])
    assert [(x.name, x.args_by_name) for x in failures(w, w.escrow, r)[a]] == [
        ("NotParty", {"dealId": a, "caller": w.addr("seller")})
    ]
    assert w.state(a) == State.DEPOSIT_PAID

    err = reverted(w, "broker", w.escrow, "payMany", [a, c], [inter])
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 2, "items": 1})


def test_a_failed_payment_item_leaves_no_trace(world: World):
    """The pull fails after the item wrote its state and event: the item's call frame is rolled back."""
    w = world
    ds = Deals(w, 3)
    a, b, c = ds.ids
    w.approve("buyer", w.escrow, 2 * ds.terms[a].deposit)  # enough for two deposits, not three
    before = w.balance("buyer")
    r = w.tx("broker", w.escrow, "payMany", [a, b, c], [0, 0, 0])
    (err,) = failures(w, w.escrow, r)[c]
    assert err.name == "ERC20InsufficientAllowance"
    assert [w.state(x) for x in (a, b, c)] == [State.DEPOSIT_PAID, State.DEPOSIT_PAID, State.SIGNED]
    assert [e.args["dealId"] for e in w.escrow.events(r) if e.event == "PaymentReceived"] == [a, b]
    assert w.balance("buyer") == before - 2 * ds.terms[a].deposit
    assert w.escrow.call("payments", c)[0] == 0 and w.escrow.call("heldBy", c) == 0
    assert w.invariant_holds(ds.ids)


def test_request_registrations(world: World):
    w = world
    ds = Deals(w, 4)
    ds.advance("balance")
    a, b, c, d = ds.ids
    same_events(
        w,
        lambda: [ds.step(x, "registration") for x in (a, b)],
        lambda: w.tx("broker", w.escrow, "requestRegistrations", [a, b]),
    )
    assert w.state(a) == w.state(b) == State.REGISTRATION_REQUESTED

    # the buyer files for c, a (already requested, middle), d, then c again
    r = w.tx("buyer", w.escrow, "requestRegistrations", [c, a, d, c])
    failed = failures(w, w.escrow, r)
    funded = {"expected": State.FUNDED, "actual": State.REGISTRATION_REQUESTED}
    assert {k: [(e.name, e.args_by_name) for e in v] for k, v in failed.items()} == {
        a: [("DealNotInState", {"dealId": a, **funded})],
        c: [("DealNotInState", {"dealId": c, **funded})],
    }
    requested = [e.args for e in w.escrow.events(r) if e.event == "RegistrationRequested"]
    assert requested == [
        {"dealId": c, "requester": w.addr("buyer")},
        {"dealId": d, "requester": w.addr("buyer")},
    ]

    # an outsider: NotParty per item, as requestRegistration
    r = w.tx("registrar", w.escrow, "requestRegistrations", [a])
    assert [(e.name, e.args_by_name) for e in failures(w, w.escrow, r)[a]] == [
        ("NotParty", {"dealId": a, "caller": w.addr("registrar")})
    ]


def test_settle_many(world: World):
    w = world
    ds = Deals(w, 4)
    ds.advance("payoff")
    a, b, c, d = ds.ids
    reg, tax = regs([a, b])
    same_events(
        w,
        lambda: [w.tx("registrar", w.escrow, "settle", x, reg[i], tax[i]) for i, x in enumerate((a, b))],
        lambda: w.tx("registrar", w.escrow, "settleMany", [a, b], reg, tax),
    )
    assert w.state(a) == w.state(b) == State.SETTLED
    assert w.land.call("ownerOf", ds.terms[a].parcelId) == w.addr("buyer")

    # c's payoff restated above the price (ProceedsShort, middle); c repeated after d
    w.tx("bank", w.loans, "statePayoff", c, ds.mortgage[c], ds.terms[c].price + 1)
    reg, tax = regs([d, c, d])
    r = w.tx("registrar", w.escrow, "settleMany", [d, c, d], reg, tax)
    failed = failures(w, w.escrow, r)
    price = ds.terms[c].price
    assert [(e.name, e.args_by_name) for e in failed[c]] == [
        ("ProceedsShort", {"dealId": c, "price": price, "payoffTotal": price + 1})
    ]
    assert [(e.name, e.args_by_name) for e in failed[d]] == [
        (
            "DealNotInState",
            {"dealId": d, "expected": State.REGISTRATION_REQUESTED, "actual": State.SETTLED},
        )
    ]
    assert w.state(c) == State.REGISTRATION_REQUESTED and w.state(d) == State.SETTLED
    assert w.land.call("ownerOf", ds.terms[c].parcelId) == w.addr("seller")
    assert [e.args["dealId"] for e in w.escrow.events(r) if e.event == "DealSettled"] == [d]
    assert w.invariant_holds([c])

    err = reverted(w, "lender", w.escrow, "settleMany", [c], *regs([c]))
    assert (err.name, err.args_by_name["neededRole"]) == ("AccessControlUnauthorizedAccount", REGISTRAR_ROLE)
    reg, tax = regs([c])
    err = reverted(w, "registrar", w.escrow, "settleMany", [c], reg, tax + tax)
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 1, "items": 2})
    err = reverted(w, "registrar", w.escrow, "settleMany", [c], reg + reg, tax)
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 1, "items": 2})


def test_refund_many(world: World):
    w = world
    ds = Deals(w, 4)
    a, b, c, d = ds.ids
    ds.advance("disbursed", [a])  # the loan goes back to the lender (LoanBook.recordReturned)
    ds.advance("deposit", [b, c])
    same_events(
        w,
        lambda: [w.tx("registrar", w.escrow, "refund", x, 5) for x in (a, b)],
        lambda: w.tx("registrar", w.escrow, "refundMany", [a, b], [5, 5]),
    )
    assert w.state(a) == w.state(b) == State.REFUNDED

    r = w.tx("registrar", w.escrow, "refundMany", [c, a, d, c], [1, 2, 3, 4])
    failed = failures(w, w.escrow, r)
    refunded = {"actual": State.REFUNDED}
    assert {k: [(e.name, e.args_by_name) for e in v] for k, v in failed.items()} == {
        a: [("DealNotActive", {"dealId": a, **refunded})],
        c: [("DealNotActive", {"dealId": c, **refunded})],
    }
    done = [(e.args["dealId"], e.args["reasonCode"]) for e in w.escrow.events(r) if e.event == "DealRefunded"]
    assert done == [(c, 1), (d, 3)]
    assert w.invariant_holds([])

    err = reverted(w, "broker", w.escrow, "refundMany", [d], [1])
    assert err.name == "AccessControlUnauthorizedAccount"
    err = reverted(w, "registrar", w.escrow, "refundMany", [d], [])
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 1, "items": 0})


# --------------------------------------------------------------------------- LoanBook


def test_request_loans(world: World):
    w = world
    ds = Deals(w, 4)
    ds.advance("interim")
    a, b, c, d = ds.ids
    t = ds.terms
    creds = ["0x" + keccak(text=f"cert-{i}").hex() for i in range(2)]

    def request(deal: int, **changes: Any) -> dict[str, Any]:
        return {
            "dealId": deal,
            "amount": t[deal].loanAmount,
            "lender": t[deal].lender,
            "credentials": creds,
            **changes,
        }

    same_events(
        w,
        lambda: [
            w.tx("broker", w.loans, "requestLoan", x, t[x].loanAmount, t[x].lender, creds) for x in (a, b)
        ],
        lambda: w.tx("broker", w.loans, "requestLoans", [request(a), request(b)]),
    )
    assert w.loans.call("loan", a)["status"] == w.loans.call("loan", b)["status"] == 1  # Requested

    # a wrong amount in the middle, a repeat of a, and 9 credentials: each fails alone, d applies
    r = w.tx(
        "broker",
        w.loans,
        "requestLoans",
        [request(c, amount=1), request(a), request(d), request(c, credentials=creds * 5)],
    )
    failed = failures(w, w.loans, r)
    assert {k: [e.name for e in v] for k, v in failed.items()} == {
        c: ["AmountMismatch", "TooManyCredentials"],
        a: ["LoanAlreadyRequested"],
    }
    assert [e.args["dealId"] for e in w.loans.events(r) if e.event == "LoanRequested"] == [d]
    assert w.loans.call("loan", c)["status"] == 0
    # each item is checked against the caller as its single call: the registrar is not the buyer's broker
    r = w.tx("registrar", w.loans, "requestLoans", [request(c)])
    assert [(e.name, e.args_by_name) for e in failures(w, w.loans, r)[c]] == [
        ("NotDealBuyer", {"dealId": c, "caller": w.addr("registrar")})
    ]


def test_record_loan_decisions(world: World):
    w = world
    ds = Deals(w, 4)
    ds.advance("requested")
    a, b, c, d = ds.ids
    t = ds.terms
    same_events(
        w,
        lambda: [
            ds.step(a, "approved"),
            w.tx("lender", w.loans, "rejectLoan", b, 7),
        ],
        lambda: w.tx("lender", w.loans, "recordLoanDecisions", [decision(a, t[a]), decision(b, t[b], False)]),
    )
    assert w.state(a) == State.LOAN_APPROVED and w.state(b) == State.INTERIM_PAID
    assert w.loans.call("loan", b)["rejectReason"] == 7

    bad = {**decision(c, t[c]), "maxSecured": t[c].loanAmount - 1}  # 채권최고액 below the loan
    r = w.tx("lender", w.loans, "recordLoanDecisions", [decision(d, t[d]), bad, decision(d, t[d], False)])
    failed = failures(w, w.loans, r)
    assert [(e.name, e.args_by_name) for e in failed[c]] == [
        (
            "InvalidLoanTerms",
            {"amount": t[c].loanAmount, "rateBps": 420, "termMonths": 360, "maxSecured": t[c].loanAmount - 1},
        )
    ]
    assert [(e.name, e.args_by_name) for e in failed[d]] == [
        ("LoanAlreadyDecided", {"dealId": d, "status": 2})  # LoanBook.Status.Approved
    ]
    assert w.escrow.call("loanDecision", c) == (False, 0) and w.loans.call("loan", c)["status"] == 1
    approved = [e.args for e in w.loans.events(r) if e.event == "LoanApproved"]
    assert [(e["dealId"], e["lender"]) for e in approved] == [(d, w.addr("lender"))]

    # a bank with LENDER_ROLE that is not the deal's lender: NotLoanLender per item
    r = w.tx("bank", w.loans, "recordLoanDecisions", [decision(c, t[c])])
    assert [(e.name, e.args_by_name) for e in failures(w, w.loans, r)[c]] == [
        ("NotLoanLender", {"dealId": c, "caller": w.addr("bank")})
    ]
    err = reverted(w, "broker", w.loans, "recordLoanDecisions", [decision(c, t[c])])
    assert (err.name, err.args_by_name["account"]) == ("AccessControlUnauthorizedAccount", w.addr("broker"))


def test_disburse_many(world: World):
    w = world
    ds = Deals(w, 4)
    ds.advance("approved")
    a, b, c, d = ds.ids
    same_events(
        w,
        lambda: [ds.step(x, "disbursed") for x in (a, b)],
        lambda: w.tx("lender", w.loans, "disburseMany", [a, b]),
    )
    assert w.state(a) == w.state(b) == State.LOAN_APPROVED  # the buyer's balance part is still due
    assert w.escrow.call("payments", a)[3] == ds.terms[a].loanAmount

    before = w.balance("lender")
    r = w.tx("lender", w.loans, "disburseMany", [c, a, 999, d, c])
    failed = failures(w, w.loans, r)
    approved, disbursed = 2, 4  # LoanBook.Status
    assert {k: [(e.name, e.args_by_name) for e in v] for k, v in failed.items()} == {
        a: [("LoanNotInStatus", {"dealId": a, "expected": approved, "actual": disbursed})],
        999: [("UnknownLoan", {"dealId": 999})],
        c: [("LoanNotInStatus", {"dealId": c, "expected": approved, "actual": disbursed})],
    }
    assert [e.args["dealId"] for e in w.loans.events(r) if e.event == "LoanDisbursed"] == [c, d]
    assert w.balance("lender") == before - ds.terms[c].loanAmount - ds.terms[d].loanAmount
    assert w.invariant_holds(ds.ids)

    err = reverted(w, "registrar", w.loans, "disburseMany", [a])
    assert err.name == "AccessControlUnauthorizedAccount"


def test_state_payoffs(world: World):
    w = world
    ds = Deals(w, 3)
    a, b, c = ds.ids
    m = ds.mortgage
    same_events(
        w,
        lambda: [ds.step(x, "payoff") for x in (a, b)],
        lambda: w.tx("bank", w.loans, "statePayoffs", [a, b], [m[a], m[b]], [PAYOFF, PAYOFF]),
    )
    assert w.loans.call("payoff", a, m[a]) == (w.addr("bank"), PAYOFF)

    # b's mortgage index on c's deal (not an active mortgage of c's parcel: middle); a too large
    # amount; c restated: restating replaces (as statePayoff), so both apply and the last one stands
    big = 2**96
    r = w.tx("bank", w.loans, "statePayoffs", [c, c, a, c], [m[c], m[c] + 7, m[a], m[c]], [1, 2, big, 3])
    failed = failures(w, w.loans, r)
    assert {k: [(e.name, e.args_by_name) for e in v] for k, v in failed.items()} == {
        c: [("NotActiveMortgage", {"dealId": c, "entryIndex": m[c] + 7})],
        a: [("AmountTooLarge", {"amount": big})],
    }
    stated = [(e.args["dealId"], e.args["amount"]) for e in w.loans.events(r) if e.event == "PayoffStated"]
    assert stated == [(c, 1), (c, 3)]
    assert w.loans.call("payoff", c, m[c]) == (w.addr("bank"), 3)
    assert w.loans.call("payoff", a, m[a]) == (w.addr("bank"), PAYOFF)

    # not the creditor: NotMortgageCreditor per item, as statePayoff
    r = w.tx("lender", w.loans, "statePayoffs", [b], [m[b]], [1])
    assert [(e.name, e.args_by_name) for e in failures(w, w.loans, r)[b]] == [
        ("NotMortgageCreditor", {"dealId": b, "entryIndex": m[b], "caller": w.addr("lender")})
    ]
    err = reverted(w, "bank", w.loans, "statePayoffs", [a, b], [m[a]], [1, 2])
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 2, "items": 1})
    err = reverted(w, "bank", w.loans, "statePayoffs", [a], [m[a]], [1, 2])
    assert (err.name, err.args_by_name) == ("LengthMismatch", {"dealIds": 1, "items": 2})


# --------------------------------------------------------------------------- both


ITEMS = [
    ("escrow", "payItem", lambda w: (w.addr("broker"), 1, 0)),
    ("escrow", "recordTransactionReportItem", lambda w: (1, receipt("x"))),
    ("escrow", "requestRegistrationItem", lambda w: (w.addr("broker"), 1)),
    ("escrow", "settleItem", lambda w: (1, receipt("x"), receipt("y"))),
    ("escrow", "refundItem", lambda w: (1, 0)),
    ("loans", "requestLoanItem", lambda w: (w.addr("broker"), (1, 1, w.addr("lender"), []))),
    ("loans", "recordLoanDecisionItem", lambda w: (w.addr("lender"), {"dealId": 1, **APPROVAL, **REJECTION})),
    ("loans", "disburseItem", lambda w: (w.addr("lender"), 1)),
    ("loans", "statePayoffItem", lambda w: (w.addr("bank"), 1, 0, 1)),
]


@pytest.mark.parametrize(("contract", "fn", "args"), ITEMS, ids=[i[1] for i in ITEMS])
def test_only_the_contract_itself_calls_an_item(world: World, contract: str, fn: str, args):
    """Items skip the role check (the batch made it once): nobody else may call them, not even the
    role holder they name."""
    w = world
    Deals(w, 1)
    target = getattr(w, contract)
    for who in ("registrar", "lender", "broker"):
        err = reverted(w, who, target, fn, *args(w))
        assert (err.name, err.args_by_name) == ("NotSelf", {"caller": w.addr(who)})


def test_an_empty_batch_does_nothing(world: World):
    w = world
    for contract, fn, args in [
        (w.escrow, "recordTransactionReports", ([], [])),
        (w.escrow, "settleMany", ([], [], [])),
        (w.escrow, "payMany", ([], [])),
        (w.loans, "disburseMany", ([],)),
        (w.loans, "recordLoanDecisions", ([],)),
        (w.loans, "requestLoans", ([],)),
    ]:
        who = {
            "payMany": "broker",
            "requestLoans": "broker",
            "disburseMany": "lender",
            "recordLoanDecisions": "lender",
        }.get(fn, "registrar")
        r = w.tx(who, contract, fn, *args)
        assert r.logs == []


def test_a_batch_short_of_gas_reverts_whole(world: World):
    """An item that runs out of gas reverts without data; were it reported as ItemFailed, a short gas
    limit (or eth_estimateGas, which looks for the least gas that does not revert) would drop items."""
    w = world
    ds = Deals(w, 2)
    ds.advance("payoff")
    reg, tax = regs(ds.ids)
    with rolled_back(w):
        used = w.tx("registrar", w.escrow, "settleMany", ds.ids, reg, tax).gas_used
    with pytest.raises(ContractRevert) as err:
        w.escrow.transact(w.sender("registrar"), "settleMany", ds.ids, reg, tax, gas=used * 2 // 3)
    assert err.value.name == "ItemRevertedWithoutReason"
    assert [w.state(d) for d in ds.ids] == [State.REGISTRATION_REQUESTED] * 2
    # the gas estimate covers every item
    r = w.tx("registrar", w.escrow, "settleMany", ds.ids, reg, tax)
    assert failures(w, w.escrow, r) == {}
    assert [w.state(d) for d in ds.ids] == [State.SETTLED] * 2
