"""DealEscrow: opening, the payment state machine, §565 cancellation, default, refund, payout."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_utils import keccak

from chain.errors import ContractRevert
from pipeline.domain import Party, Payment, State, receipt
from tests.contracts.conftest import DAY, World
from tests.contracts.test_settlement import fund_with_loan

ZERO = "0x" + "00" * 20
RETURNED = 6  # LoanBook.Status.Returned


def reverted(w: World, who, contract, fn: str, *args) -> ContractRevert:
    """The decoded revert of a transaction that must fail."""
    with pytest.raises(ContractRevert) as err:
        w.tx(who, contract, fn, *args)
    return err.value


def pay_reverted(w: World, deal: int, fn: str, amount: int) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.pay(deal, fn, "buyer", amount)
    return err.value


def approve_loan(w: World, deal: int, terms, amount: int | None = None) -> int:
    amount = terms.loanAmount if amount is None else amount
    w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    w.tx("lender", w.loans, "approveLoan", deal, amount, 420, 360, amount * 12 // 10)
    return amount


def disburse(w: World, deal: int, amount: int) -> None:
    w.mint("lender", amount)
    w.approve("lender", w.loans, amount)
    w.tx("lender", w.loans, "disburse", deal)


def claimable(w: World, who: str) -> int:
    return w.escrow.call("claimable", w.addr(who))


def assert_closed(w: World, deal: int, state: State) -> None:
    assert w.state(deal) == state
    assert w.escrow.call("heldBy", deal) == 0
    assert w.invariant_holds([])


# --------------------------------------------------------------------------- openDeal


def _bad_terms(case: str, t, w: World):
    """(terms, expected error name, expected args) for one invalid openDeal."""
    if case == "same_parties":
        t = replace(t, buyer=t.seller)
        return t, "InvalidParties", {"seller": t.seller, "buyer": t.seller}
    if case == "zero_seller":
        t = replace(t, seller=ZERO)
        return t, "InvalidParties", {"seller": ZERO, "buyer": t.buyer}
    if case == "zero_deposit":
        t = replace(t, price=t.price - t.deposit, deposit=0)
        return t, "InvalidAmounts", {"deposit": 0, "interim": t.interim, "balance": t.balance}
    if case == "zero_balance":
        t = replace(t, price=t.deposit + t.interim, balance=0, loanAmount=0, lender=ZERO)
        return t, "InvalidAmounts", {"deposit": t.deposit, "interim": t.interim, "balance": 0}
    if case == "price_mismatch":
        return (
            replace(t, price=t.price + 1),
            "PriceMismatch",
            {"price": t.price + 1, "sum": t.price},
        )
    if case == "loan_over_balance":
        t = replace(t, loanAmount=t.balance + 1)
        return t, "LoanExceedsBalance", {"loanAmount": t.balance + 1, "balance": t.balance}
    if case == "lender_without_loan":
        t = replace(t, loanAmount=0)
        return t, "LenderMismatch", {"loanAmount": 0, "lender": t.lender}
    if case == "loan_without_lender":
        t = replace(t, lender=ZERO)
        return t, "LenderMismatch", {"loanAmount": t.loanAmount, "lender": ZERO}
    if case == "deposit_deadline_past":
        t = replace(t, depositDeadline=w.now() - 1)
    elif case == "interim_deadline_after_balance":
        t = replace(t, interimDeadline=t.balanceDeadline + 1)
    elif case == "interim_deadline_without_interim":
        t = replace(t, interim=0, balance=t.balance + t.interim)
    elif case == "balance_deadline_over_uint40":
        t = replace(t, balanceDeadline=2**40)
    elif case == "seller_not_owner":
        t = replace(t, seller=t.buyer, buyer=t.seller)
        return t, "SellerNotOwner", {"parcelId": t.parcelId, "seller": t.seller, "owner": t.buyer}
    elif case == "amount_over_uint96":
        big = 2**96
        t = replace(t, price=t.price - t.deposit + big, deposit=big)
        return t, "AmountTooLarge", {"amount": t.price}
    else:
        raise AssertionError(case)
    args = {k: getattr(t, k) for k in ("depositDeadline", "interimDeadline", "balanceDeadline")}
    return t, "InvalidDeadlines", args


@pytest.mark.parametrize(
    "case",
    [
        "same_parties",
        "zero_seller",
        "zero_deposit",
        "zero_balance",
        "price_mismatch",
        "loan_over_balance",
        "lender_without_loan",
        "loan_without_lender",
        "deposit_deadline_past",
        "interim_deadline_after_balance",
        "interim_deadline_without_interim",
        "balance_deadline_over_uint40",
        "seller_not_owner",
        "amount_over_uint96",
    ],
)
def test_open_deal_rejects_invalid_terms(world: World, case: str):
    w = world
    terms, name, args = _bad_terms(case, w.terms(w.register_parcel("seller")), w)
    next_id = w.escrow.call("nextDealId")
    err = reverted(w, "broker", w.escrow, "openDeal", terms.to_abi())
    assert err.name == name
    assert err.args_by_name == args
    assert w.escrow.call("nextDealId") == next_id


def test_only_a_broker_opens_deals(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    err = reverted(w, "seller", w.escrow, "openDeal", terms.to_abi())
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name == {
        "account": w.addr("seller"),
        "neededRole": "0x" + keccak(text="BROKER_ROLE").hex(),
    }


def test_open_deal_records_the_terms(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.open_deal(terms)
    assert w.escrow.call("terms", deal) == terms.to_abi()
    assert w.escrow.call("broker", deal) == w.addr("broker")
    assert w.state(deal) == State.OPEN


def test_unknown_deal_reverts(world: World):
    w = world
    missing = w.escrow.call("nextDealId")
    err = reverted(w, "buyer", w.escrow, "payDeposit", missing)
    assert (err.name, err.args_by_name) == ("UnknownDeal", {"dealId": missing})
    with pytest.raises(ContractRevert) as view:
        w.escrow.call("heldBy", missing)
    assert view.value.name == "UnknownDeal"
    assert w.state(missing) == State.NONE


# --------------------------------------------------------------------------- the state machine


@pytest.mark.parametrize(
    ("interim", "loan"),
    [(300_000_000, 400_000_000), (0, 400_000_000), (300_000_000, 0), (0, 0)],
    ids=["interim+loan", "loan-only", "interim-only", "balance-only"],
)
def test_each_payment_advances_the_deal_to_settled(world: World, interim: int, loan: int):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=interim, loan=loan)
    base = State.INTERIM_PAID if interim else State.DEPOSIT_PAID
    deal = w.open_deal(terms)
    assert w.state(deal) == State.OPEN
    w.accept(deal, terms, Party.BUYER, "buyer")
    assert w.state(deal) == State.OPEN
    w.accept(deal, terms, Party.SELLER, "seller")
    assert w.state(deal) == State.SIGNED

    r = w.pay(deal, "payDeposit", "buyer", terms.deposit)
    assert w.state(deal) == State.DEPOSIT_PAID
    (ev,) = [e for e in w.escrow.events(r) if e.event == "PaymentReceived"]
    assert ev.args == {
        "dealId": deal,
        "payment": Payment.DEPOSIT,
        "payer": w.addr("buyer"),
        "amount": terms.deposit,
        "state": State.DEPOSIT_PAID,
    }
    if interim:
        w.pay(deal, "payInterim", "buyer", interim)
        assert w.state(deal) == State.INTERIM_PAID
    if loan:
        assert w.escrow.call("buyerBalanceDue", deal) == terms.balance - loan
        w.tx("buyer", w.loans, "requestLoan", deal, loan, terms.lender, [])
        assert w.state(deal) == base
        w.tx("lender", w.loans, "approveLoan", deal, loan, 420, 360, loan)
        assert w.state(deal) == State.LOAN_APPROVED
        disburse(w, deal, loan)
        assert w.state(deal) == State.LOAN_APPROVED  # the buyer's balance part is still due
    assert w.escrow.call("performanceBegun", deal) == bool(interim or loan)
    buyer_before = w.balance("buyer")
    w.pay(deal, "payBalance", "buyer", terms.balance - loan)
    assert w.balance("buyer") == buyer_before  # pay() minted exactly what was pulled
    assert w.state(deal) == State.FUNDED
    assert w.escrow.call("payments", deal) == (terms.deposit, interim, terms.balance - loan, loan)
    assert w.escrow.call("heldBy", deal) == terms.price
    assert w.invariant_holds([deal])

    w.tx("buyer", w.escrow, "requestRegistration", deal)
    assert w.state(deal) == State.REGISTRATION_REQUESTED
    err = reverted(w, "registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.name == "TransactionNotReported"  # 실거래 신고 comes first
    w.tx("registrar", w.escrow, "recordTransactionReport", deal, receipt("RPT-1"))
    w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert_closed(w, deal, State.SETTLED)
    assert claimable(w, "seller") == terms.price
    assert w.escrow.call("totalClaimable") == terms.price


def test_balance_before_disbursement_stays_loan_approved_until_the_loan_arrives(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    approve_loan(w, deal, terms)
    w.pay(deal, "payBalance", "buyer", terms.balance - terms.loanAmount)
    assert w.state(deal) == State.LOAN_APPROVED
    disburse(w, deal, terms.loanAmount)
    assert w.state(deal) == State.FUNDED
    assert w.escrow.call("heldBy", deal) == terms.price


def test_loan_decided_before_the_deposit_applies_once_it_is_paid(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0)
    deal = w.signed_deal(terms)
    approve_loan(w, deal, terms)
    assert w.state(deal) == State.SIGNED
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    assert w.state(deal) == State.LOAN_APPROVED


def test_a_fully_financed_balance_is_funded_by_the_loan_alone(world: World):
    w = world
    t = w.terms(w.register_parcel("seller"), interim=0)
    terms = replace(t, loanAmount=t.balance)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    approve_loan(w, deal, terms)
    err = reverted(w, "buyer", w.escrow, "payBalance", deal)
    assert (err.name, err.args_by_name) == (
        "PaymentNotDue",
        {"dealId": deal, "payment": Payment.BALANCE},
    )
    disburse(w, deal, terms.balance)
    assert w.state(deal) == State.FUNDED


@pytest.mark.parametrize(
    ("fn", "paid", "expected", "actual"),
    [
        ("payDeposit", [], State.SIGNED, State.OPEN),
        ("payDeposit", ["payDeposit"], State.SIGNED, State.DEPOSIT_PAID),
        ("payInterim", [], State.DEPOSIT_PAID, State.SIGNED),
        ("payInterim", ["payDeposit", "payInterim"], State.DEPOSIT_PAID, State.INTERIM_PAID),
        ("payBalance", [], State.LOAN_APPROVED, State.SIGNED),
        ("payBalance", ["payDeposit"], State.LOAN_APPROVED, State.DEPOSIT_PAID),
    ],
)
def test_out_of_order_payment_is_not_in_state(world: World, fn, paid, expected, actual):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.open_deal(terms) if actual == State.OPEN else w.signed_deal(terms)
    amounts = {"payDeposit": terms.deposit, "payInterim": terms.interim}
    for step in paid:
        w.pay(deal, step, "buyer", amounts[step])
    held = w.escrow.call("heldBy", deal)
    err = pay_reverted(w, deal, fn, terms.price)
    assert err.name == "DealNotInState"
    assert err.args_by_name == {"dealId": deal, "expected": expected, "actual": actual}
    assert w.escrow.call("heldBy", deal) == held


@pytest.mark.parametrize(
    ("fn", "paid", "deadline"),
    [
        ("payDeposit", [], "depositDeadline"),
        ("payInterim", ["payDeposit"], "interimDeadline"),
        ("payBalance", ["payDeposit", "payInterim"], "balanceDeadline"),
    ],
)
def test_late_payment_reverts_deadline_passed(world: World, fn, paid, deadline):
    w = world
    terms = w.terms(w.register_parcel("seller"), loan=0)
    deal = w.signed_deal(terms)
    amounts = {"payDeposit": terms.deposit, "payInterim": terms.interim}
    for step in paid:
        w.pay(deal, step, "buyer", amounts[step])
    due = getattr(terms, deadline)
    w.warp(due - w.now() + 1)
    amount = {"payBalance": terms.balance, **amounts}[fn]
    err = pay_reverted(w, deal, fn, amount)
    assert err.name == "DeadlinePassed"
    assert err.args_by_name["deadline"] == due and err.args_by_name["nowTime"] > due


def test_paying_the_balance_twice_is_already_paid(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    approve_loan(w, deal, terms)
    part = terms.balance - terms.loanAmount
    w.pay(deal, "payBalance", "buyer", part)
    err = pay_reverted(w, deal, "payBalance", part)
    assert (err.name, err.args_by_name) == (
        "AlreadyPaid",
        {"dealId": deal, "payment": Payment.BALANCE},
    )


def test_interim_of_a_deal_without_interim_is_not_due(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    err = pay_reverted(w, deal, "payInterim", 1)
    assert (err.name, err.args_by_name) == (
        "PaymentNotDue",
        {"dealId": deal, "payment": Payment.INTERIM},
    )


@pytest.mark.parametrize("requested", [False, True])
def test_balance_before_the_loan_decision_reverts(world: World, requested: bool):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    if requested:
        w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
    err = pay_reverted(w, deal, "payBalance", terms.balance)
    assert (err.name, err.args_by_name) == ("LoanNotDecided", {"dealId": deal})


# --------------------------------------------------------------------------- §565 cancellation


def test_buyer_cancelling_forfeits_the_deposit_to_the_seller(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    r = w.tx("buyer", w.escrow, "cancel", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealCancelled"]
    assert ev.args == {
        "dealId": deal,
        "party": Party.BUYER,
        "by": w.addr("buyer"),
        "toBuyer": 0,
        "toSeller": terms.deposit,
    }
    assert claimable(w, "seller") == terms.deposit
    assert claimable(w, "buyer") == 0
    assert w.balance(w.escrow) == terms.deposit
    assert_closed(w, deal, State.CANCELLED)


def test_seller_cancelling_pays_back_double_the_deposit(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.mint("seller", terms.deposit)
    w.approve("seller", w.escrow, terms.deposit)
    w.tx("seller", w.escrow, "cancel", deal)
    assert w.balance("seller") == 0
    assert claimable(w, "buyer") == 2 * terms.deposit
    assert claimable(w, "seller") == 0
    assert w.balance(w.escrow) == 2 * terms.deposit
    assert_closed(w, deal, State.CANCELLED)


def test_seller_cancelling_without_the_matching_deposit_reverts(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    with pytest.raises(ContractRevert):
        w.tx("seller", w.escrow, "cancel", deal)
    assert w.state(deal) == State.DEPOSIT_PAID
    assert claimable(w, "buyer") == 0


def test_cancelling_is_possible_after_loan_approval_before_disbursement(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    approve_loan(w, deal, terms)
    assert w.state(deal) == State.LOAN_APPROVED
    w.tx("buyer", w.escrow, "cancel", deal)
    assert claimable(w, "seller") == terms.deposit
    assert_closed(w, deal, State.CANCELLED)
    # the approved loan can no longer be disbursed into the cancelled deal
    w.mint("lender", terms.loanAmount)
    w.approve("lender", w.loans, terms.loanAmount)
    err = reverted(w, "lender", w.loans, "disburse", deal)
    assert err.name == "DealNotInState" and err.args_by_name["actual"] == State.CANCELLED
    assert w.balance("lender") == terms.loanAmount


@pytest.mark.parametrize("performed", ["interim", "balance", "loan"])
def test_cancel_after_performance_began_reverts(world: World, performed: str):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0 if performed != "interim" else 300_000_000)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    if performed == "interim":
        w.pay(deal, "payInterim", "buyer", terms.interim)
    else:
        approve_loan(w, deal, terms)
        if performed == "balance":
            w.pay(deal, "payBalance", "buyer", terms.balance - terms.loanAmount)
        else:
            disburse(w, deal, terms.loanAmount)
    assert w.state(deal) != State.FUNDED
    for who in ("buyer", "seller"):
        err = reverted(w, who, w.escrow, "cancel", deal)
        assert (err.name, err.args_by_name) == ("PerformanceBegun", {"dealId": deal})


def test_cancel_before_the_deposit_is_not_in_state(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    err = reverted(w, "buyer", w.escrow, "cancel", deal)
    assert err.name == "DealNotInState"
    assert err.args_by_name == {
        "dealId": deal,
        "expected": State.DEPOSIT_PAID,
        "actual": State.SIGNED,
    }


@pytest.mark.parametrize("who", ["broker", "lender", "issuer"])
def test_only_a_party_may_cancel(world: World, who: str):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    err = reverted(w, who, w.escrow, "cancel", deal)
    assert (err.name, err.args_by_name) == ("NotParty", {"dealId": deal, "caller": w.addr(who)})
    assert w.state(deal) == State.DEPOSIT_PAID


# --------------------------------------------------------------------------- default


def test_declaring_default_before_a_deadline_reverts(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    err = reverted(w, "seller", w.escrow, "declareDefault", deal)
    assert err.name == "NoDeadlineMissed"
    assert err.args_by_name == {"dealId": deal, "deadline": terms.depositDeadline}
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.warp(terms.depositDeadline - w.now() + 1)  # past the deposit deadline, paid in time
    err = reverted(w, "seller", w.escrow, "declareDefault", deal)
    assert err.args_by_name == {"dealId": deal, "deadline": terms.interimDeadline}


def test_missed_deposit_cancels_and_moves_nothing(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.warp(terms.depositDeadline - w.now() + 1)
    r = w.tx("issuer", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args == {
        "dealId": deal,
        "caller": w.addr("issuer"),
        "missed": Payment.DEPOSIT,
        "state": State.CANCELLED,
        "toSeller": 0,
        "toBuyer": 0,
        "toLender": 0,
    }
    assert w.escrow.call("totalClaimable") == 0
    assert w.balance(w.escrow) == 0
    assert_closed(w, deal, State.CANCELLED)


def test_missed_interim_defaults_and_forfeits_the_deposit(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.warp(terms.interimDeadline - w.now() + 1)
    r = w.tx("seller", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args["missed"] == Payment.INTERIM
    assert (ev.args["toSeller"], ev.args["toBuyer"], ev.args["toLender"]) == (terms.deposit, 0, 0)
    assert claimable(w, "seller") == terms.deposit
    assert claimable(w, "buyer") == 0
    assert_closed(w, deal, State.DEFAULTED)


def test_missed_balance_after_disbursement_returns_the_loan_to_the_lender(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    approve_loan(w, deal, terms)
    disburse(w, deal, terms.loanAmount)
    w.warp(terms.balanceDeadline - w.now() + 1)
    r = w.tx("buyer", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args["missed"] == Payment.BALANCE and ev.args["state"] == State.DEFAULTED
    assert claimable(w, "seller") == terms.deposit
    assert claimable(w, "buyer") == terms.interim
    assert claimable(w, "lender") == terms.loanAmount
    assert w.loans.call("loan", deal)["status"] == RETURNED
    assert w.balance(w.escrow) == terms.deposit + terms.interim + terms.loanAmount
    assert_closed(w, deal, State.DEFAULTED)


def test_missed_disbursement_is_the_lenders_default_not_the_buyers(world: World):
    # The buyer paid everything it owed; the lender approved but never disbursed: no damages.
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    approve_loan(w, deal, terms)
    part = terms.balance - terms.loanAmount
    w.pay(deal, "payBalance", "buyer", part)
    w.warp(terms.balanceDeadline - w.now() + 1)
    r = w.tx("seller", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args["missed"] == Payment.LOAN
    assert claimable(w, "seller") == 0
    assert claimable(w, "buyer") == terms.deposit + terms.interim + part
    assert_closed(w, deal, State.DEFAULTED)


def test_undecided_loan_at_the_balance_deadline_is_not_the_buyers_default(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])  # never decided
    w.warp(terms.balanceDeadline - w.now() + 1)
    r = w.tx("seller", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args["missed"] == Payment.LOAN and ev.args["toSeller"] == 0
    assert claimable(w, "buyer") == terms.deposit + terms.interim
    assert_closed(w, deal, State.DEFAULTED)


def test_buyer_missing_its_own_balance_part_forfeits_the_deposit(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payInterim", "buyer", terms.interim)
    approve_loan(w, deal, terms)
    w.warp(terms.balanceDeadline - w.now() + 1)
    r = w.tx("seller", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealDefaulted"]
    assert ev.args["missed"] == Payment.BALANCE
    assert claimable(w, "seller") == terms.deposit
    assert claimable(w, "buyer") == terms.interim
    assert_closed(w, deal, State.DEFAULTED)


def test_a_funded_deal_is_refunded_only_after_the_registration_window(world: World):
    w = world
    deal, terms = fund_with_loan(w, w.register_parcel("seller"), loan=0)
    window = int(w.escrow.call("REGISTRATION_WINDOW"))
    assert window == 60 * DAY
    w.warp(terms.balanceDeadline - w.now() + 1)
    err = reverted(w, "seller", w.escrow, "declareDefault", deal)
    assert err.name == "NoDeadlineMissed"
    assert err.args_by_name == {"dealId": deal, "deadline": terms.balanceDeadline + window}
    w.warp(window)
    r = w.tx("buyer", w.escrow, "declareDefault", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealRefunded"]
    assert ev.args["reasonCode"] == 2**16 - 1 and ev.args["toBuyer"] == terms.price
    assert_closed(w, deal, State.REFUNDED)


# --------------------------------------------------------------------------- refund


REFUND_STAGES = ["open", "signed", "deposit", "interim", "loan", "funded", "requested"]


@pytest.mark.parametrize("stage", REFUND_STAGES)
def test_refund_returns_every_payment_to_its_payer(world: World, stage: str):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    steps = REFUND_STAGES[: REFUND_STAGES.index(stage) + 1]
    deal = w.open_deal(terms)
    buyer_paid = lender_paid = 0
    if "signed" in steps:
        w.accept(deal, terms, Party.BUYER, "buyer")
        w.accept(deal, terms, Party.SELLER, "seller")
    if "deposit" in steps:
        w.pay(deal, "payDeposit", "buyer", terms.deposit)
        buyer_paid += terms.deposit
    if "interim" in steps:
        w.pay(deal, "payInterim", "buyer", terms.interim)
        buyer_paid += terms.interim
    if "loan" in steps:
        approve_loan(w, deal, terms)
        disburse(w, deal, terms.loanAmount)
        lender_paid = terms.loanAmount
    if "funded" in steps:
        w.pay(deal, "payBalance", "buyer", terms.balance - terms.loanAmount)
        buyer_paid += terms.balance - terms.loanAmount
    if "requested" in steps:
        w.tx("seller", w.escrow, "requestRegistration", deal)
    assert w.escrow.call("heldBy", deal) == buyer_paid + lender_paid

    r = w.tx("registrar", w.escrow, "refund", deal, 7)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "DealRefunded"]
    assert ev.args == {
        "dealId": deal,
        "reasonCode": 7,
        "toBuyer": buyer_paid,
        "toLender": lender_paid,
    }
    assert claimable(w, "buyer") == buyer_paid
    assert claimable(w, "lender") == lender_paid
    assert claimable(w, "seller") == 0
    assert w.balance(w.escrow) == buyer_paid + lender_paid
    if lender_paid:
        assert w.loans.call("loan", deal)["status"] == RETURNED
    assert_closed(w, deal, State.REFUNDED)


def test_only_the_registrar_refunds(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    for who in ("broker", "buyer", "deployer"):
        err = reverted(w, who, w.escrow, "refund", deal, 1)
        assert err.name == "AccessControlUnauthorizedAccount"
        assert err.args_by_name["neededRole"] == "0x" + keccak(text="REGISTRAR_ROLE").hex()
    assert w.state(deal) == State.SIGNED


def test_a_finished_deal_cannot_be_refunded(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.tx("buyer", w.escrow, "cancel", deal)
    err = reverted(w, "registrar", w.escrow, "refund", deal, 1)
    assert err.name == "DealNotActive"
    assert err.args_by_name == {"dealId": deal, "actual": State.CANCELLED}
    assert claimable(w, "buyer") == 0 and claimable(w, "seller") == terms.deposit


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize("who", ["buyer", "seller", "broker"])
def test_parties_and_the_broker_request_registration(world: World, who: str):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0, loan=0)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payBalance", "buyer", terms.balance)
    r = w.tx(who, w.escrow, "requestRegistration", deal)
    (ev,) = [e for e in w.escrow.events(r) if e.event == "RegistrationRequested"]
    assert ev.args == {"dealId": deal, "requester": w.addr(who)}
    assert w.state(deal) == State.REGISTRATION_REQUESTED


def test_registration_by_an_outsider_reverts(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0, loan=0)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.pay(deal, "payBalance", "buyer", terms.balance)
    for who in ("registrar", "lender"):
        err = reverted(w, who, w.escrow, "requestRegistration", deal)
        assert (err.name, err.args_by_name) == ("NotParty", {"dealId": deal, "caller": w.addr(who)})
    assert w.state(deal) == State.FUNDED


def test_registration_needs_a_funded_deal(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"), interim=0, loan=0)
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    err = reverted(w, "buyer", w.escrow, "requestRegistration", deal)
    assert err.name == "DealNotInState"
    assert err.args_by_name == {
        "dealId": deal,
        "expected": State.FUNDED,
        "actual": State.DEPOSIT_PAID,
    }


# --------------------------------------------------------------------------- withdrawal


def test_withdraw_pays_out_the_claimable_balance_once(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.tx("buyer", w.escrow, "cancel", deal)
    r = w.tx("seller", w.escrow, "withdraw")
    (ev,) = [e for e in w.escrow.events(r) if e.event == "Withdrawn"]
    assert ev.args == {"account": w.addr("seller"), "amount": terms.deposit}
    assert w.balance("seller") == terms.deposit
    assert w.balance(w.escrow) == 0
    assert claimable(w, "seller") == 0
    assert w.escrow.call("totalClaimable") == 0
    err = reverted(w, "seller", w.escrow, "withdraw")
    assert (err.name, err.args_by_name) == ("NothingToWithdraw", {"account": w.addr("seller")})
    assert w.balance("seller") == terms.deposit
    assert w.invariant_holds([])


def test_a_parcel_under_contract_cannot_be_sold_twice(world: World):
    w = world
    parcel = w.register_parcel("seller")
    first = w.signed_deal(w.terms(parcel))
    assert w.escrow.call("contractedDeal", parcel) == first
    # a second offer may be opened and signed by its buyer, but not become a second contract
    terms = w.terms(parcel, buyer="issuer")
    second = w.open_deal(terms)
    w.accept(second, terms, Party.BUYER, "issuer")
    expiry, sig = w.signature(second, terms, "seller")
    err = reverted(w, "broker", w.escrow, "acceptTerms", second, Party.SELLER, expiry, sig)
    assert err.name == "ParcelUnderContract"
    assert err.args_by_name == {"parcelId": parcel, "liveDealId": first}
    w.tx("registrar", w.escrow, "refund", first, 1)  # once the first deal ends, the parcel is free
    w.accept(second, terms, Party.SELLER, "seller")
    assert w.state(second) == State.SIGNED and w.escrow.call("contractedDeal", parcel) == second


def test_unsigned_offers_do_not_lock_the_parcel(world: World):
    w = world
    parcel = w.register_parcel("seller")
    offers = [w.open_deal(w.terms(parcel)), w.open_deal(w.terms(parcel, buyer="issuer"))]
    assert offers[1] == offers[0] + 1 and w.escrow.call("contractedDeal", parcel) == 0


def test_payments_are_pulled_from_the_buyer_by_the_buyer_or_its_broker(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.mint("buyer", terms.deposit)
    w.approve("buyer", w.escrow, terms.deposit)
    # the seller cannot push the buyer's money in (that would end §565 cancellation early)
    for outsider in ("seller", "bank"):
        err = reverted(w, outsider, w.escrow, "payDeposit", deal)
        assert err.name == "NotParty" and err.args_by_name["caller"] == w.addr(outsider)
    r = w.tx("broker", w.escrow, "payDeposit", deal)  # the deal's broker, on the buyer's signed terms
    (ev,) = [e for e in w.escrow.events(r) if e.event == "PaymentReceived"]
    assert ev.args["payer"] == w.addr("buyer")
    assert w.balance("buyer") == 0 and w.balance("broker") == 0
    assert w.state(deal) == State.DEPOSIT_PAID


def test_cancellation_by_signature(world: World):
    from chain.eip712 import read_domain, sign_typed_data, typed_data
    from pipeline.brokerage import CANCEL_TYPES

    w = world
    terms = w.terms(w.register_parcel("seller"))
    deal = w.signed_deal(terms)
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    w.mint("seller", terms.deposit)
    w.approve("seller", w.escrow, terms.deposit)
    nonce = int(w.escrow.call("nonces", w.addr("seller")))
    expiry = w.now() + DAY
    message = {"dealId": deal, "party": int(Party.SELLER), "nonce": nonce, "expiry": expiry}
    data = typed_data(read_domain(w.escrow), "CancelDeal", CANCEL_TYPES, message)
    forged = sign_typed_data(w.key("buyer"), data)
    err = reverted(w, "broker", w.escrow, "cancelWithSignature", deal, Party.SELLER, expiry, forged)
    assert err.name == "InvalidSigner"
    w.tx(
        "broker",
        w.escrow,
        "cancelWithSignature",
        deal,
        Party.SELLER,
        expiry,
        sign_typed_data(w.key("seller"), data),
    )
    assert claimable(w, "buyer") == 2 * terms.deposit
    assert w.balance("seller") == 0  # the matching amount came from the seller
    assert_closed(w, deal, State.CANCELLED)
