"""LoanBook: the buyer's request, the lender's one decision, disbursement, payoff statements."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from pipeline.domain import State, receipt
from tests.contracts.conftest import World
from tests.contracts.test_escrow import disburse, reverted

REQUESTED, APPROVED, REJECTED, DISBURSED = 1, 2, 3, 4  # LoanBook.Status
RATE, TERM = 420, 360


def loan_deal(w: World, *, paid: bool = True, request: bool = True, **terms_kw):
    """A signed deal, deposit and interim paid (if `paid`), its loan requested (if `request`)."""
    terms = w.terms(w.register_parcel("seller"), **terms_kw)
    deal = w.signed_deal(terms)
    if paid:
        w.pay(deal, "payDeposit", "buyer", terms.deposit)
        if terms.interim:
            w.pay(deal, "payInterim", "buyer", terms.interim)
    if request:
        w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    return deal, terms


def approve(w: World, deal: int, amount: int, who: str = "lender"):
    return w.tx(who, w.loans, "approveLoan", deal, amount, RATE, TERM, amount * 12 // 10)


# --------------------------------------------------------------------------- requestLoan


def test_request_records_the_loan_and_emits_the_credentials(world: World):
    w = world
    deal, terms = loan_deal(w, request=False)
    creds = ["0x" + keccak(text=f"cert-{i}").hex() for i in range(8)]
    r = w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, creds)
    (ev,) = [e for e in w.loans.events(r) if e.event == "LoanRequested"]
    assert ev.args == {
        "dealId": deal,
        "buyer": w.addr("buyer"),
        "lender": w.addr("lender"),
        "amount": terms.loanAmount,
        "credentials": creds,
    }
    loan = w.loans.call("loan", deal)
    assert (loan["lender"], loan["status"]) == (w.addr("lender"), REQUESTED)
    assert w.state(deal) == State.INTERIM_PAID


def test_request_rules(world: World):
    w = world
    deal, terms = loan_deal(w, request=False)
    amount, lender = terms.loanAmount, terms.lender

    err = reverted(w, "seller", w.loans, "requestLoan", deal, amount, lender, [])
    assert (err.name, err.args_by_name) == (
        "NotDealBuyer",
        {"dealId": deal, "caller": w.addr("seller")},
    )
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, amount, w.addr("bank"), [])
    assert (err.name, err.args_by_name) == (
        "LenderMismatch",
        {"dealId": deal, "expected": lender, "lender": w.addr("bank")},
    )
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, amount + 1, lender, [])
    assert (err.name, err.args_by_name) == (
        "AmountMismatch",
        {"dealId": deal, "expected": amount, "amount": amount + 1},
    )
    nine = ["0x" + keccak(text=str(i)).hex() for i in range(9)]
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, amount, lender, nine)
    assert (err.name, err.args_by_name) == ("TooManyCredentials", {"count": 9, "max": 8})
    assert w.loans.call("loan", deal)["status"] == 0

    w.tx("buyer", w.loans, "requestLoan", deal, amount, lender, [])
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, amount, lender, [])
    assert (err.name, err.args_by_name) == ("LoanAlreadyRequested", {"dealId": deal})


def test_no_loan_can_be_requested_on_a_deal_without_one(world: World):
    w = world
    deal, _ = loan_deal(w, request=False, loan=0)
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, 0, "0x" + "00" * 20, [])
    assert err.name == "LenderMismatch"


def test_no_loan_can_be_requested_before_signing(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.open_deal(terms)
    err = reverted(w, "buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    assert (err.name, err.args_by_name) == (
        "DealNotAcceptingLoan",
        {"dealId": deal, "state": State.OPEN},
    )


# --------------------------------------------------------------------------- the decision


def test_only_the_named_lender_decides(world: World):
    w = world
    deal, terms = loan_deal(w)
    # bank holds LENDER_ROLE but is not this deal's lender
    err = reverted(w, "bank", w.loans, "approveLoan", deal, terms.loanAmount, RATE, TERM, 10**9)
    assert (err.name, err.args_by_name) == (
        "NotLoanLender",
        {"dealId": deal, "caller": w.addr("bank")},
    )
    err = reverted(w, "bank", w.loans, "rejectLoan", deal, 1)
    assert err.name == "NotLoanLender"
    err = reverted(w, "buyer", w.loans, "approveLoan", deal, terms.loanAmount, RATE, TERM, 10**9)
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name == {
        "account": w.addr("buyer"),
        "neededRole": "0x" + keccak(text="LENDER_ROLE").hex(),
    }
    assert w.loans.call("loan", deal)["status"] == REQUESTED


def test_deciding_an_unrequested_loan_is_unknown(world: World):
    w = world
    deal, _ = loan_deal(w, request=False)
    err = reverted(w, "lender", w.loans, "rejectLoan", deal, 1)
    assert (err.name, err.args_by_name) == ("UnknownLoan", {"dealId": deal})


@pytest.mark.parametrize(
    ("amount", "rate", "term", "max_secured"),
    [
        (0, RATE, TERM, 1),
        (400_000_000, 10_001, TERM, 480_000_000),
        (400_000_000, RATE, 0, 480_000_000),
        (400_000_000, RATE, TERM, 399_999_999),
        (400_000_000, RATE, TERM, 2**96),
    ],
    ids=["zero-amount", "rate-over-100pct", "zero-term", "max-below-amount", "max-over-uint96"],
)
def test_invalid_approval_terms_revert(world: World, amount, rate, term, max_secured):
    w = world
    deal, _ = loan_deal(w)
    err = reverted(w, "lender", w.loans, "approveLoan", deal, amount, rate, term, max_secured)
    assert err.name == "InvalidLoanTerms"
    assert err.args_by_name == {
        "amount": amount,
        "rateBps": rate,
        "termMonths": term,
        "maxSecured": max_secured,
    }
    assert w.loans.call("loan", deal)["status"] == REQUESTED


def test_approving_more_than_the_terms_reverts(world: World):
    w = world
    deal, terms = loan_deal(w)
    err = reverted(w, "lender", w.loans, "approveLoan", deal, terms.loanAmount + 1, RATE, TERM, 10**9)
    assert err.name == "LoanExceedsTerms"
    assert err.args_by_name == {
        "dealId": deal,
        "approved": terms.loanAmount + 1,
        "loanAmount": terms.loanAmount,
    }


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        ("approve", "approve", APPROVED),
        ("approve", "reject", APPROVED),
        ("reject", "approve", REJECTED),
    ],
)
def test_a_loan_is_decided_once(world: World, first: str, second: str, status: int):
    w = world
    deal, terms = loan_deal(w)
    calls = {
        "approve": ("approveLoan", (terms.loanAmount, RATE, TERM, terms.loanAmount)),
        "reject": ("rejectLoan", (9,)),
    }
    fn, args = calls[first]
    w.tx("lender", w.loans, fn, deal, *args)
    fn, args = calls[second]
    err = reverted(w, "lender", w.loans, fn, deal, *args)
    assert (err.name, err.args_by_name) == (
        "LoanAlreadyDecided",
        {"dealId": deal, "status": status},
    )
    assert w.loans.call("loan", deal)["status"] == status


def test_approval_records_the_terms(world: World):
    w = world
    deal, terms = loan_deal(w)
    r = approve(w, deal, terms.loanAmount)
    loan = w.loans.call("loan", deal)
    assert loan["status"] == APPROVED
    assert (loan["approvedAmount"], loan["rateBps"], loan["termMonths"]) == (
        terms.loanAmount,
        RATE,
        TERM,
    )
    assert loan["maxSecured"] == terms.loanAmount * 12 // 10
    assert w.escrow.call("loanDecision", deal) == (True, terms.loanAmount)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "LoanDecisionRecorded"]
    assert ev.args["state"] == State.LOAN_APPROVED


def test_a_rejected_loan_leaves_the_whole_balance_to_the_buyer(world: World):
    w = world
    deal, terms = loan_deal(w)
    w.tx("lender", w.loans, "rejectLoan", deal, 42)
    loan = w.loans.call("loan", deal)
    assert (loan["status"], loan["rejectReason"]) == (REJECTED, 42)
    assert w.escrow.call("loanDecision", deal) == (True, 0)
    assert w.escrow.call("buyerBalanceDue", deal) == terms.balance
    assert w.state(deal) == State.INTERIM_PAID
    escrow_before = w.balance(w.escrow)
    w.pay(deal, "payBalance", "buyer", terms.balance)
    assert w.balance("buyer") == 0
    assert w.balance(w.escrow) == escrow_before + terms.balance
    assert w.state(deal) == State.FUNDED
    assert w.escrow.call("heldBy", deal) == terms.price
    err = reverted(w, "lender", w.loans, "disburse", deal)
    assert err.name == "LoanNotInStatus" and err.args_by_name["actual"] == REJECTED


def test_approving_less_leaves_the_difference_to_the_buyer(world: World):
    w = world
    deal, terms = loan_deal(w)
    approved = terms.loanAmount - 100_000_000
    approve(w, deal, approved)
    part = terms.balance - approved
    assert w.escrow.call("buyerBalanceDue", deal) == part
    w.pay(deal, "payBalance", "buyer", part)
    assert w.balance("buyer") == 0
    assert w.state(deal) == State.LOAN_APPROVED
    disburse(w, deal, approved)
    assert w.balance("lender") == 0
    assert w.state(deal) == State.FUNDED
    assert w.escrow.call("payments", deal) == (terms.deposit, terms.interim, part, approved)
    assert w.escrow.call("heldBy", deal) == terms.price == w.balance(w.escrow)
    assert w.invariant_holds([deal])


# --------------------------------------------------------------------------- disburse


def test_disburse_moves_the_approved_amount_from_lender_to_escrow(world: World):
    w = world
    deal, terms = loan_deal(w)
    approve(w, deal, terms.loanAmount)
    w.mint("lender", terms.loanAmount + 5)
    w.approve("lender", w.loans, terms.loanAmount + 5)
    escrow_before = w.balance(w.escrow)
    r = w.tx("lender", w.loans, "disburse", deal)
    assert w.balance("lender") == 5
    assert w.balance(w.escrow) == escrow_before + terms.loanAmount
    assert w.balance(w.loans) == 0
    (ev,) = [e for e in w.loans.events(r) if e.event == "LoanDisbursed"]
    assert ev.args == {"dealId": deal, "lender": w.addr("lender"), "amount": terms.loanAmount}
    assert w.loans.call("loan", deal)["status"] == DISBURSED
    assert w.escrow.call("payments", deal)[3] == terms.loanAmount
    assert w.invariant_holds([deal])


def test_disburse_rules(world: World):
    w = world
    deal, terms = loan_deal(w, request=False)
    err = reverted(w, "lender", w.loans, "disburse", deal)
    assert (err.name, err.args_by_name) == ("UnknownLoan", {"dealId": deal})

    w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    err = reverted(w, "bank", w.loans, "disburse", deal)
    assert (err.name, err.args_by_name) == (
        "NotLoanLender",
        {"dealId": deal, "caller": w.addr("bank")},
    )
    err = reverted(w, "lender", w.loans, "disburse", deal)
    assert err.name == "LoanNotInStatus"
    assert err.args_by_name == {"dealId": deal, "expected": APPROVED, "actual": REQUESTED}

    approve(w, deal, terms.loanAmount)
    disburse(w, deal, terms.loanAmount)
    w.mint("lender", terms.loanAmount)
    w.approve("lender", w.loans, terms.loanAmount)
    err = reverted(w, "lender", w.loans, "disburse", deal)
    assert err.args_by_name == {"dealId": deal, "expected": APPROVED, "actual": DISBURSED}
    assert w.balance("lender") == terms.loanAmount


# --------------------------------------------------------------------------- payoffs


def test_state_payoff_rules(world: World):
    w = world
    parcel = w.register_parcel("seller")
    entry = w.add_mortgage(parcel, creditor="bank")
    deal = w.signed_deal(w.terms(parcel))

    err = reverted(w, "lender", w.loans, "statePayoff", deal, entry, 1)
    assert (err.name, err.args_by_name) == (
        "NotMortgageCreditor",
        {"dealId": deal, "entryIndex": entry, "caller": w.addr("lender")},
    )
    r = w.tx("bank", w.loans, "statePayoff", deal, entry, 250_000_000)
    (ev,) = [e for e in w.loans.events(r) if e.event == "PayoffStated"]
    assert ev.args == {
        "dealId": deal,
        "entryIndex": entry,
        "creditor": w.addr("bank"),
        "amount": 250_000_000,
    }
    w.tx("bank", w.loans, "statePayoff", deal, entry, 180_000_000)
    assert w.loans.call("payoff", deal, entry) == (w.addr("bank"), 180_000_000)


def test_payoff_needs_an_active_mortgage(world: World):
    w = world
    parcel = w.register_parcel("seller")
    entry = w.add_mortgage(parcel, creditor="bank")
    deal = w.signed_deal(w.terms(parcel))
    w.tx("registrar", w.land, "dischargeMortgage", parcel, entry, receipt("DISCHARGE"))
    discharge_entry = int(w.land.call("eulguLength", parcel)) - 1
    for index in (entry, discharge_entry, discharge_entry + 1):
        err = reverted(w, "bank", w.loans, "statePayoff", deal, index, 1)
        assert (err.name, err.args_by_name) == (
            "NotActiveMortgage",
            {"dealId": deal, "entryIndex": index},
        )
    assert w.loans.call("payoff", deal, entry) == ("0x" + "00" * 20, 0)


@pytest.mark.parametrize("fn, args", [("recordSecured", (0,)), ("recordReturned", ())])
@pytest.mark.parametrize("who", ["deployer", "lender", "registrar"])
def test_settlement_records_need_the_settlement_role(world: World, fn, args, who):
    w = world
    deal, terms = loan_deal(w)
    approve(w, deal, terms.loanAmount)
    disburse(w, deal, terms.loanAmount)
    err = reverted(w, who, w.loans, fn, deal, *args)
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name == {
        "account": w.addr(who),
        "neededRole": "0x" + keccak(text="SETTLEMENT_ROLE").hex(),
    }
    assert w.loans.call("loan", deal)["status"] == DISBURSED


def test_the_loan_record_reads_back_in_full_at_every_status(world: World):
    """`loan()` returns every field as recorded: lender, rate or reject reason, amounts, entry."""
    w = world
    zero = "0x" + "00" * 20
    record = {
        "lender": zero,
        "status": 0,
        "rateBps": 0,
        "termMonths": 0,
        "rejectReason": 0,
        "mortgageEntry": 0,
        "approvedAmount": 0,
        "maxSecured": 0,
    }
    deal, terms = loan_deal(w, request=False)
    assert w.loans.call("loan", deal) == record
    assert w.loans.call("loan", 10**9) == record  # no such deal: nothing recorded, no revert
    w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    record |= {"lender": w.addr("lender"), "status": REQUESTED}
    assert w.loans.call("loan", deal) == record
    approve(w, deal, terms.loanAmount - 1)
    record |= {
        "status": APPROVED,
        "rateBps": RATE,
        "termMonths": TERM,
        "approvedAmount": terms.loanAmount - 1,
        "maxSecured": (terms.loanAmount - 1) * 12 // 10,
    }
    assert w.loans.call("loan", deal) == record

    rejected, terms = loan_deal(w)
    w.tx("lender", w.loans, "rejectLoan", rejected, 65_535)
    assert w.loans.call("loan", rejected) == {
        "lender": w.addr("lender"),
        "status": REJECTED,
        "rateBps": 0,
        "termMonths": 0,
        "rejectReason": 65_535,
        "mortgageEntry": 0,
        "approvedAmount": 0,
        "maxSecured": 0,
    }
