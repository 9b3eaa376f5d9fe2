"""Random deal histories on the real chain keep the books straight (hypothesis stateful test).

A RuleBasedStateMachine opens deals on 3-4 parcels (distinct sellers, some parcels carrying a
seller mortgage held by `bank`; several unsigned offers may be open on a parcel, but only one
live deal may be signed on it) and drives them with random actions: signatures, payments
(pulled from the buyer by approve or permit, sent by the buyer or the deal's broker), loans
(requested by the buyer or the broker), payoff statements, transaction reports, registration,
settlement, cancellation (direct or by signature), default or registration-window refund after a
time warp, refunds, withdrawals and token redemptions. It keeps a model of what every deal,
parcel, account and the token supply should look like and, after EVERY step, compares the chain
with it:

- the escrow's token balance == sum of heldBy over non-terminal deals + totalClaimable;
- tokens are only created or destroyed by BANK_ROLE holders: totalSupply == what the machine
  minted minus what it burned through bank/lender, and no receipt carries a Transfer from/to the
  zero address unless it is a mint/burn sent by a BANK_ROLE holder;
- every parcel has exactly one non-zero owner, the model's (which changes only at settlement);
- a terminal deal (Settled, Cancelled, Defaulted, Refunded) holds nothing and stays terminal.

The batch entry points (recordTransactionReports, payMany, requestLoans, recordLoanDecisions, disburseMany,
statePayoffs, requestRegistrations, settleMany, refundMany) run on random items (repeats and
unknown ids included) and, in deals_through_batches, carry fresh deals from signing to settlement
with a noise item in every batch. Each item's outcome (its event, or ItemFailed with a decodable
custom error) must match the model's prediction made after the items before it.

Each action also predicts from the model whether the contracts must accept or reject it. A
rejected action must raise ContractRevert and leave the chain as it was; an accepted one is
applied to the model. Where a payment deadline is within SLACK seconds of the block time the
outcome is left open (the next block's timestamp is not known exactly) and the model follows
the chain.

DEEDCHAIN_HYPOTHESIS_EXAMPLES (default 25) and DEEDCHAIN_HYPOTHESIS_STEPS (default 25) size the
run; each example starts from a clean chain (evm_snapshot in __init__, evm_revert in teardown).
The benchmark job (scripts/bench_invariants.py) also sets DEEDCHAIN_HYPOTHESIS_ACTIONS: runs are
repeated until at least that many actions (rules run, the initialize step not counted) were
executed, and DEEDCHAIN_INVARIANT_STATS: a file the counts and timings are written to as JSON.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from chain.contract import Contract
from chain.eip712 import read_domain, sign_typed_data, typed_data
from chain.errors import ContractRevert
from chain.sender import Receipt
from pipeline.brokerage import CANCEL_TYPES, PERMIT_TYPES
from pipeline.domain import DealTerms, GapguKind, Party, Payment, State, receipt
from tests.contracts.conftest import DAY, World

EXAMPLES = int(os.environ.get("DEEDCHAIN_HYPOTHESIS_EXAMPLES", "25"))
STEPS = int(os.environ.get("DEEDCHAIN_HYPOTHESIS_STEPS", "25"))
ACTIONS = int(os.environ.get("DEEDCHAIN_HYPOTHESIS_ACTIONS", "0"))
STATS = os.environ.get("DEEDCHAIN_INVARIANT_STATS")

ZERO = "0x" + "00" * 20
SLACK = 120  # seconds around a deadline where the next block's timestamp decides
MAX_DEALS = 8
MAX_ACTIVE_MORTGAGES = 8
REGISTRATION_WINDOW = 60 * DAY  # DealEscrow.REGISTRATION_WINDOW: a funded deal may be refunded after it

SELLERS = ("S0", "S1", "S2", "S3")  # fresh accounts, one per parcel
BUYERS = ("B0", "B1", "B2")
PEOPLE = SELLERS + BUYERS
MINTERS = ("bank", "lender")  # BANK_ROLE on DepositToken (brownie-config.yaml)
CREDITORS = ("bank", "lender")  # LENDER_ROLE on LoanBook; mortgage creditors
EVERYONE = (*PEOPLE, "bank", "lender", "broker", "registrar")
PAYERS = ("buyer", "seller", "broker", "bank")  # who sends a payment (the buyer's tokens move)
PAYING = ("buyer", "broker")  # who may send it (DealEscrow._receive; anyone else: NotParty)
ALLOWANCES = ("approve", "permit", "none")  # how the buyer lets the escrow pull its payment

PULLED = (Payment.DEPOSIT, Payment.INTERIM, Payment.BALANCE)  # what payMany pulls from a buyer
UNKNOWN_DEAL = 10_000  # no deal has this id (MAX_DEALS are opened): a batch item that must fail
DEAL_PICK = st.integers(0, MAX_DEALS)  # a batch item's deal: one of the deals, MAX_DEALS: UNKNOWN_DEAL

# LoanBook.Status
L_NONE, L_REQUESTED, L_APPROVED, L_REJECTED, L_DISBURSED, L_SECURED, L_RETURNED = range(7)

Expect = bool | None  # True: must succeed, False: must revert, None: either (deadline edge)


def all_of(*conds: Expect) -> Expect:
    if any(c is False for c in conds):
        return False
    if any(c is None for c in conds):
        return None
    return True


def by_deadline(now: int, deadline: int) -> Expect:
    """The next block's `block.timestamp <= deadline`, given the latest block time `now`."""
    if now > deadline:
        return False
    if now + SLACK <= deadline:
        return True
    return None


def past_deadline(now: int, deadline: int) -> Expect:
    inside = by_deadline(now, deadline)
    return None if inside is None else not inside


# What a step must do, predicted from the model (shared by the single rules and the batches); each
# takes the latest block time `now` from before the transaction.
def payment_due(d: DealModel, payment: Payment, now: int) -> Expect:
    """Whether payDeposit / payInterim / payBalance is possible (the caller and allowance aside)."""
    t = d.terms
    if payment == Payment.DEPOSIT:
        return all_of(d.state() == State.SIGNED, by_deadline(now, t.depositDeadline))
    if payment == Payment.INTERIM:
        return all_of(t.interim > 0, d.state() == State.DEPOSIT_PAID, by_deadline(now, t.interimDeadline))
    if payment == Payment.BALANCE:
        return all_of(
            d.state() in (d.base(), State.LOAN_APPROVED),
            t.loanAmount == 0 or d.decided,
            not d.balance_paid,
            d.balance_due() > 0,
            by_deadline(now, t.balanceDeadline),
        )
    return False  # the loan is the lender's (LoanBook.disburse)


def payment_amount(d: DealModel, payment: Payment) -> int:
    amounts = {Payment.DEPOSIT: d.terms.deposit, Payment.INTERIM: d.terms.interim}
    return amounts.get(payment, d.balance_due())


def paid(d: DealModel, payment: Payment) -> None:
    if payment == Payment.DEPOSIT:
        d.deposit_paid = True
    elif payment == Payment.INTERIM:
        d.interim_paid = True
    else:
        d.balance_paid = True


def decision_due(d: DealModel, lender: str) -> bool:
    """approveLoan / rejectLoan by `lender` (a LENDER_ROLE holder): the deal's lender, once."""
    return (
        d.loan_status == L_REQUESTED
        and d.lender == lender
        and d.state() in (State.SIGNED, State.DEPOSIT_PAID, State.INTERIM_PAID)
    )


def decided(d: DealModel, approved: int) -> None:
    d.decided, d.approved, d.loan_status = True, approved, L_APPROVED if approved else L_REJECTED


def disbursement_due(d: DealModel, lender: str, now: int) -> Expect:
    return all_of(
        d.loan_status == L_APPROVED,
        d.lender == lender,
        d.state() == State.LOAN_APPROVED,
        by_deadline(now, d.terms.balanceDeadline),
    )


def registration_due(d: DealModel, caller: str) -> bool:
    """requestRegistration by `caller` (an account name): the buyer, the seller or the broker."""
    return caller in (d.buyer, d.seller, "broker") and d.state() == State.FUNDED


def report_due(d: DealModel) -> bool:
    """recordTransactionReport (by the registrar): once, on a signed deal that has not ended."""
    return d.terminal is None and d.state() != State.OPEN and not d.reported


@dataclass
class ParcelModel:
    id: str
    owner: str
    mortgages: list[tuple[int, str]] = field(default_factory=list)  # (을구 index, creditor), rank order
    blocking: int | None = None  # 갑구 index of the active provisional seizure, if any
    contracted: int = 0  # DealEscrow.contractedDeal: the last deal signed on it (0: none); while live,
    # no other deal on the parcel can be signed (acceptTerms: ParcelUnderContract)


@dataclass
class DealModel:
    id: int
    parcel: int
    seller: str
    buyer: str
    lender: str | None
    terms: DealTerms
    signed: set[Party] = field(default_factory=set)
    deposit_paid: bool = False
    interim_paid: bool = False
    balance_paid: bool = False
    decided: bool = False
    approved: int = 0
    disbursed: bool = False
    loan_status: int = L_NONE
    registration: bool = False
    reported: bool = False  # 실거래 신고 recorded (recordTransactionReport); settle needs it
    terminal: State | None = None
    payoffs: dict[int, tuple[str, int]] = field(default_factory=dict)

    @property
    def price(self) -> int:
        return self.terms.price

    def buyer_paid(self) -> int:
        t = self.terms
        paid = t.deposit if self.deposit_paid else 0
        paid += t.interim if self.interim_paid else 0
        paid += t.balance - self.approved if self.balance_paid else 0
        return paid

    def lender_paid(self) -> int:
        return self.approved if self.disbursed else 0

    def held(self) -> int:
        return 0 if self.terminal else self.buyer_paid() + self.lender_paid()

    def base(self) -> State:
        return State.INTERIM_PAID if self.terms.interim else State.DEPOSIT_PAID

    def state(self) -> State:
        """The state the NatSpec table of DealEscrow says the deal is in."""
        t = self.terms
        if self.terminal is not None:
            return self.terminal
        if self.registration:
            return State.REGISTRATION_REQUESTED
        if self.signed != {Party.BUYER, Party.SELLER}:
            return State.OPEN
        if not self.deposit_paid:
            return State.SIGNED
        if t.interim and not self.interim_paid:
            return State.DEPOSIT_PAID
        if t.loanAmount and not self.decided:
            return self.base()
        balance_done = self.balance_paid or t.balance == self.approved
        loan_done = self.approved == 0 or self.disbursed
        if balance_done and loan_done:
            return State.FUNDED
        return State.LOAN_APPROVED if self.approved else self.base()

    def balance_due(self) -> int:
        """What payBalance pulls: balance - approved loan."""
        return self.terms.balance - self.approved

    def progress(self) -> tuple[Any, ...]:
        payoffs = tuple(sorted(self.payoffs.items()))
        return (self.state(), len(self.signed), self.balance_paid, self.loan_status, self.reported, payoffs)

    def performance_begun(self) -> bool:
        return self.interim_paid or self.balance_paid or self.disbursed

    def loan_missed(self) -> bool:
        """At the balance deadline: the lender, not the buyer, failed (declareDefault's `missed` = Loan):
        the loan was requested but never decided, or the buyer paid its part and only the approved loan
        is missing. A loan never requested is the buyer's omission (missed = Balance)."""
        undecided = self.terms.loanAmount > 0 and not self.decided and self.loan_status != L_NONE
        buyer_part_unpaid = not self.balance_paid and self.balance_due() > 0
        return undecided or not buyer_part_unpaid


@st.composite
def deal_amounts(draw: Any) -> tuple[int, int, int, int]:
    deposit = draw(st.integers(1, 100_000_000))
    interim = draw(st.one_of(st.just(0), st.integers(1, 300_000_000)))
    balance = draw(st.integers(1, 600_000_000))
    loan = draw(st.one_of(st.just(0), st.just(balance), st.integers(1, balance)))
    return deposit, interim, balance, loan


class DealHistories(RuleBasedStateMachine):
    """Subclassed inside the test with `w` set to the test's World (see the test below)."""

    w: World
    outcomes: Counter[str]  # "<function> ok" / "<function> -> <error>", over all examples
    checks: Counter[str]
    deals = Bundle("deals")

    def __init__(self) -> None:
        super().__init__()
        w = self.w
        self.snapshot = w.chain.rpc.call("evm_snapshot")
        w.chain.resync()
        self.keys = {name: w.new_account() for name in PEOPLE}
        self.parcels: list[ParcelModel] = []
        self.model: dict[int, DealModel] = {}
        self.terminal_seen: dict[int, State] = {}
        self.claimable: Counter[str] = Counter()
        self.minted = 0
        self.burned = 0
        self.supply_base = int(w.token.call("totalSupply"))
        self.escrow_base = w.balance(w.escrow)  # tokens sent to the escrow before (none)
        self.token_domain: dict[str, Any] | None = None  # DepositToken's EIP-712 domain (permit)
        self.escrow_domain: dict[str, Any] | None = None  # DealEscrow's (cancelWithSignature)
        self.ready = False

    def teardown(self) -> None:
        self.checks["examples"] += 1
        self.w.revert(self.snapshot)

    # --- accounts, transactions, views -------------------------------------------------------
    def who(self, name: str) -> Any:
        return self.keys.get(name, name)

    def addr(self, name: str) -> str:
        return self.w.addr(self.who(name))

    def send(self, name: str, contract: Contract, fn: str, *args: Any) -> Receipt:
        r = self.w.tx(self.who(name), contract, fn, *args)
        for e in self.w.token.events(r):
            if e.event == "Transfer" and ZERO in (e.args["from"], e.args["to"]):
                assert contract.address == self.w.token.address and fn in ("mint", "burn"), (
                    f"{contract.name}.{fn} by {name} created or destroyed tokens: {e.args}"
                )
                assert name in MINTERS, f"{name} (not a BANK_ROLE holder) did {fn}: {e.args}"
        return r

    def mint(self, to: str, amount: int, minter: str = "bank") -> None:
        if amount:
            self.send(minter, self.w.token, "mint", self.addr(to), amount)
            self.minted += amount

    def fund(self, payer: str, spender: Contract, amount: int, minter: str = "bank") -> None:
        """Give `payer` `amount` fresh tokens and let `spender` pull them."""
        self.mint(payer, amount, minter)
        self.send(payer, self.w.token, "approve", spender.address, amount)

    def views(self, calls: list[tuple[Contract, str, tuple[Any, ...]]]) -> list[Any]:
        """Many eth_calls in one JSON-RPC batch."""
        batch = [
            ("eth_call", [{"to": c.address, "data": c.encode(fn, *args)}, "latest"]) for c, fn, args in calls
        ]
        out = []
        for (c, fn, args), raw in zip(calls, self.w.chain.rpc.batch(batch), strict=True):
            if isinstance(raw, Exception):
                raise raw
            out.append(c.abi.decode_output(fn, len(args), bytes.fromhex(raw[2:])))
        return out

    def observe(self) -> dict[str, Any]:
        w = self.w
        deals = sorted(self.model)
        calls: list[tuple[Contract, str, tuple[Any, ...]]] = [
            (w.token, "balanceOf", (w.escrow.address,)),
            (w.token, "totalSupply", ()),
            (w.escrow, "totalClaimable", ()),
        ]
        calls += [(w.escrow, "dealState", (d,)) for d in deals]
        calls += [(w.escrow, "heldBy", (d,)) for d in deals]
        calls += [(w.loans, "loan", (d,)) for d in deals]
        calls += [(w.escrow, "reported", (d,)) for d in deals]
        calls += [(w.land, "ownerOf", (p.id,)) for p in self.parcels]
        calls += [(w.land, "activeMortgages", (p.id,)) for p in self.parcels]
        calls += [(w.land, "activeBlockingCount", (p.id,)) for p in self.parcels]
        calls += [(w.escrow, "contractedDeal", (p.id,)) for p in self.parcels]
        calls += [(w.escrow, "claimable", (self.addr(a),)) for a in EVERYONE]
        values = iter(self.views(calls))
        n, m = len(deals), len(self.parcels)
        obs: dict[str, Any] = {
            "escrow": next(values),
            "supply": next(values),
            "claimable_total": next(values),
        }
        obs["state"] = dict(zip(deals, [State(next(values)) for _ in range(n)], strict=True))
        obs["held"] = dict(zip(deals, [next(values) for _ in range(n)], strict=True))
        obs["loan"] = dict(zip(deals, [next(values)["status"] for _ in range(n)], strict=True))
        obs["reported"] = dict(zip(deals, [next(values) for _ in range(n)], strict=True))
        obs["owner"] = [next(values) for _ in range(m)]
        obs["mortgages"] = [list(next(values)) for _ in range(m)]
        obs["blockings"] = [next(values) for _ in range(m)]
        obs["contracted"] = [next(values) for _ in range(m)]
        obs["claimable"] = {a: next(values) for a in EVERYONE}
        return obs

    def attempt(self, expect: Expect, name: str, contract: Contract, fn: str, *args: Any) -> Receipt | None:
        """Send; a revert must leave the chain unchanged. Returns the receipt, None if reverted."""
        before = self.observe()
        try:
            r = self.send(name, contract, fn, *args)
        except ContractRevert as err:
            after = self.observe()
            assert after == before, f"{fn} reverted ({err.name}) but changed the chain"
            outcome = f"{fn} -> {err.name}"
            note(f"{outcome} {err.args_by_name}")
            self.outcomes[outcome] += 1
            event(outcome)
            assert expect is not True, (
                f"{contract.name}.{fn}{args!r} by {name} should succeed but reverted with "
                f"{err.name}{err.args_by_name}"
            )
            return None
        self.outcomes[f"{fn} ok"] += 1
        event(f"{fn} ok")
        assert expect is not False, f"{contract.name}.{fn}{args!r} by {name} should have reverted"
        return r

    def parcel(self, index: int) -> ParcelModel:
        return self.parcels[index % len(self.parcels)]

    def live_contract(self, p: ParcelModel) -> int | None:
        """The parcel's signed deal that is not terminal yet (acceptTerms: ParcelUnderContract), if any."""
        if p.contracted and self.model[p.contracted].terminal is None:
            return p.contracted
        return None

    def credit(self, name: str | None, amount: int) -> None:
        if name is not None and amount:
            self.claimable[name] += amount

    # --- setup -------------------------------------------------------------------------------
    @initialize(n=st.integers(3, 4), mortgaged=st.lists(st.booleans(), min_size=3, max_size=3))
    def register_parcels(self, n: int, mortgaged: list[bool]) -> None:
        for i in range(n):
            owner = SELLERS[i]
            pid = self.w.register_parcel(self.who(owner))
            p = ParcelModel(pid, owner)
            if i == 0 or (i <= len(mortgaged) and mortgaged[i - 1]):  # parcel 0 always
                index = self.w.add_mortgage(pid, creditor="bank", debtor=self.who(owner))
                p.mortgages.append((index, "bank"))
            self.parcels.append(p)
        self.ready = True

    # --- opening and signing -----------------------------------------------------------------
    @precondition(lambda self: len(self.model) < MAX_DEALS)
    @rule(
        target=deals,
        parcel=st.integers(0, 3),
        buyer=st.sampled_from(PEOPLE),
        amounts=deal_amounts(),
        lender=st.sampled_from(CREDITORS),
        days=st.tuples(st.integers(1, 10), st.integers(1, 30), st.integers(1, 30)),
        progress=st.integers(0, 14),
        approve=st.booleans(),
        free=st.booleans(),
    )
    def open_deal(
        self,
        parcel: int,
        buyer: str,
        amounts: tuple[int, int, int, int],
        lender: str,
        days: tuple[int, int, int],
        progress: int,
        approve: bool,
        free: bool,
    ) -> Any:
        """Open a deal and take it `progress` steps towards settlement (see advance). With `free`,
        the first parcel from `parcel` on that is not under a live signed contract, so that the new
        deal can be signed too (unsigned offers do not lock a parcel; signing does)."""
        p = self.parcel(parcel)
        if free:
            start = self.parcels.index(p)
            order = self.parcels[start:] + self.parcels[:start]
            p = next((q for q in order if self.live_contract(q) is None), p)
        terms = self._terms(p, p.owner, buyer, amounts, lender, days)
        expect = buyer != p.owner
        r = self.attempt(expect, "broker", self.w.escrow, "openDeal", terms.to_abi())
        if r is None:
            return multiple()
        (opened,) = [e for e in self.w.escrow.events(r) if e.event == "DealOpened"]
        deal = int(opened.args["dealId"])
        assert deal not in self.model
        self.model[deal] = DealModel(
            deal,
            self.parcels.index(p),
            p.owner,
            buyer,
            lender if terms.loanAmount else None,
            terms,
        )
        self.books_balance()
        self.advance(deal, progress, approve, 50)
        return deal

    @rule(parcel=st.integers(0, 3), seller=st.sampled_from(PEOPLE), buyer=st.sampled_from(PEOPLE))
    def open_deal_for_non_owner(self, parcel: int, seller: str, buyer: str) -> None:
        p = self.parcel(parcel)
        if seller in (p.owner, buyer):
            return
        terms = self._terms(p, seller, buyer, (1, 0, 9, 0), "lender", (1, 1, 1))
        self.attempt(False, "broker", self.w.escrow, "openDeal", terms.to_abi())

    def _terms(
        self,
        p: ParcelModel,
        seller: str,
        buyer: str,
        amounts: tuple[int, int, int, int],
        lender: str,
        days: tuple[int, int, int],
    ) -> DealTerms:
        deposit, interim, balance, loan = amounts
        now = self.w.now()
        d_dep, d_int, d_bal = days
        return DealTerms(
            parcelId=p.id,
            seller=self.addr(seller),
            buyer=self.addr(buyer),
            price=deposit + interim + balance,
            deposit=deposit,
            interim=interim,
            balance=balance,
            depositDeadline=now + d_dep * DAY,
            interimDeadline=now + (d_dep + d_int) * DAY if interim else 0,
            balanceDeadline=now + (d_dep + d_int + d_bal) * DAY,
            loanAmount=loan,
            lender=self.addr(lender) if loan else ZERO,
        )

    @rule(deal=deals, party=st.sampled_from(Party), forged=st.booleans())
    def sign(self, deal: int, party: Party, forged: bool) -> None:
        d = self.model[deal]
        signer = d.buyer if party == Party.BUYER else d.seller
        other = d.seller if party == Party.BUYER else d.buyer
        key = self.keys[other if forged else signer]
        expiry, sig = self.w.signature(deal, d.terms, key)
        p = self.parcels[d.parcel]
        completes = d.signed | {party} == {Party.BUYER, Party.SELLER}
        expect = (
            not forged
            and d.state() == State.OPEN
            and party not in d.signed
            and not (completes and self.live_contract(p) is not None)  # ParcelUnderContract
        )
        args = (deal, party, expiry, sig)
        if self.attempt(expect, "broker", self.w.escrow, "acceptTerms", *args):
            d.signed.add(party)
            if completes:
                p.contracted = deal

    # --- payments ----------------------------------------------------------------------------
    # Payments pull from the deal's buyer and may be sent only by the buyer or the deal's broker (anyone
    # else: NotParty): the buyer gets the tokens and lets the escrow pull them by approve or by EIP-2612
    # permit ("none": allowance 0, the payment must fail).
    def pay(self, deal: int, fn: str, amount: int, expect: Expect, caller: str, allowance: str) -> bool:
        d = self.model[deal]
        self.mint(d.buyer, amount)
        if allowance == "permit":
            self.permit(d.buyer, amount)
        else:
            self.send(
                d.buyer,
                self.w.token,
                "approve",
                self.w.escrow.address,
                amount if allowance == "approve" else 0,
            )
        expect = all_of(expect, allowance != "none", caller in PAYING)
        name = {"buyer": d.buyer, "seller": d.seller}.get(caller, caller)
        r = self.attempt(expect, name, self.w.escrow, fn, deal)
        if r is None:
            return False
        buyer, escrow = self.addr(d.buyer), self.w.escrow.address
        (paid,) = [e for e in self.w.escrow.events(r) if e.event == "PaymentReceived"]
        assert (paid.args["payer"], paid.args["amount"]) == (buyer, amount), f"{fn} by {name}: {paid.args}"
        moved = [
            (e.args["from"], e.args["to"], e.args["value"])
            for e in self.w.token.events(r)
            if e.event == "Transfer"
        ]
        assert moved == [(buyer, escrow, amount)], f"{fn} by {name} moved {moved}, not the buyer's {amount}"
        return True

    def permit(self, owner: str, amount: int) -> None:
        """`owner` signs an EIP-2612 permit for the escrow; the broker submits it."""
        key = self.keys[owner]
        token = self.w.token
        if self.token_domain is None:
            self.token_domain = read_domain(token)
        message = {
            "owner": key.address,
            "spender": self.w.escrow.address,
            "value": amount,
            "nonce": int(token.call("nonces", key.address)),
            "deadline": self.w.now() + DAY,
        }
        raw = bytes.fromhex(
            sign_typed_data(key, typed_data(self.token_domain, "Permit", PERMIT_TYPES, message))[2:]
        )
        args = (
            key.address,
            self.w.escrow.address,
            amount,
            message["deadline"],
            raw[64],
            raw[:32],
            raw[32:64],
        )
        self.send("broker", token, "permit", *args)

    @rule(deal=deals, caller=st.sampled_from(PAYERS), allowance=st.sampled_from(ALLOWANCES))
    def pay_deposit(self, deal: int, caller: str = "buyer", allowance: str = "approve") -> None:
        self.pay_one(deal, Payment.DEPOSIT, caller, allowance)

    @rule(deal=deals, caller=st.sampled_from(PAYERS), allowance=st.sampled_from(ALLOWANCES))
    def pay_interim(self, deal: int, caller: str = "buyer", allowance: str = "approve") -> None:
        self.pay_one(deal, Payment.INTERIM, caller, allowance)

    @rule(deal=deals, caller=st.sampled_from(PAYERS), allowance=st.sampled_from(ALLOWANCES))
    def pay_balance(self, deal: int, caller: str = "buyer", allowance: str = "approve") -> None:
        self.pay_one(deal, Payment.BALANCE, caller, allowance)

    def pay_one(self, deal: int, payment: Payment, caller: str, allowance: str) -> None:
        d = self.model[deal]
        expect = payment_due(d, payment, self.w.now())
        fn = f"pay{payment.name.capitalize()}"
        if self.pay(deal, fn, payment_amount(d, payment), expect, caller, allowance):
            paid(d, payment)

    # --- loan --------------------------------------------------------------------------------
    @rule(deal=deals, by=st.sampled_from(["buyer", "broker", "seller", "lender"]))
    def request_loan(self, deal: int, by: str = "buyer") -> None:
        """The buyer, or the deal's broker for it, requests the loan; anyone else: NotDealBuyer."""
        d = self.model[deal]
        expect = (
            by in ("buyer", "broker")
            and d.terms.loanAmount > 0
            and d.state() in (State.SIGNED, State.DEPOSIT_PAID, State.INTERIM_PAID)
            and d.loan_status == L_NONE
        )
        args = (deal, d.terms.loanAmount, d.terms.lender, [])
        name = {"buyer": d.buyer, "seller": d.seller}.get(by, by)
        if self.attempt(expect, name, self.w.loans, "requestLoan", *args):
            d.loan_status = L_REQUESTED

    @rule(deal=deals, approve=st.booleans(), share=st.integers(1, 100))
    def decide_loan(self, deal: int, approve: bool, share: int) -> None:
        d = self.model[deal]
        lender = d.lender or "lender"
        expect = decision_due(d, lender)
        if approve:
            amount = max(1, d.terms.loanAmount * share // 100)
            args: tuple[Any, ...] = (deal, amount, 420, 360, amount * 12 // 10)
            if self.attempt(expect, lender, self.w.loans, "approveLoan", *args):
                decided(d, amount)
        elif self.attempt(expect, lender, self.w.loans, "rejectLoan", deal, 7):
            decided(d, 0)

    @rule(deal=deals)
    def disburse(self, deal: int) -> None:
        d = self.model[deal]
        lender = d.lender or "lender"
        expect = disbursement_due(d, lender, self.w.now())
        self.fund(lender, self.w.loans, d.approved, minter=lender)  # the bank issues its own
        if self.attempt(expect, lender, self.w.loans, "disburse", deal):
            d.disbursed, d.loan_status = True, L_DISBURSED

    # --- title -------------------------------------------------------------------------------
    @rule(
        deal=deals,
        pick=st.integers(0, 7),
        amount=st.integers(0, 400_000_000),
        who=st.sampled_from(CREDITORS),
    )
    def state_payoff(self, deal: int, pick: int, amount: int, who: str) -> None:
        d = self.model[deal]
        index, creditor = self.mortgage_pick(d, pick)
        expect = d.terminal is None and creditor == who
        if self.attempt(expect, who, self.w.loans, "statePayoff", deal, index, amount):
            d.payoffs[index] = (who, amount)

    def mortgage_pick(self, d: DealModel | None, pick: int) -> tuple[int, str | None]:
        """The (을구 index, creditor) of the deal's parcel's `pick`-th active mortgage; with none, index
        `pick` and no creditor (nothing to state)."""
        mortgages = self.parcels[d.parcel].mortgages if d is not None else []
        if mortgages:
            return mortgages[pick % len(mortgages)]
        return pick, None

    @rule(parcel=st.integers(0, 3), creditor=st.sampled_from(CREDITORS))
    def add_mortgage(self, parcel: int, creditor: str) -> None:
        p = self.parcel(parcel)
        args = (p.id, self.addr(creditor), self.addr(p.owner), 500_000_000, receipt("M"))
        expect = len(p.mortgages) < MAX_ACTIVE_MORTGAGES
        r = self.attempt(expect, "registrar", self.w.land, "registerMortgage", *args)
        if r:
            (ev,) = [e for e in self.w.land.events(r) if e.event == "MortgageRegistered"]
            p.mortgages.append((int(ev.args["index"]), creditor))

    @rule(parcel=st.integers(0, 3))
    def toggle_seizure(self, parcel: int) -> None:
        """가압류 recorded or cancelled: a blocked parcel cannot settle (but can be refunded)."""
        p = self.parcel(parcel)
        if p.blocking is None:
            kind = GapguKind.PROVISIONAL_SEIZURE
            args = (p.id, kind, self.addr("bank"), 1_000_000, receipt("SEIZE"))
            r = self.attempt(True, "registrar", self.w.land, "recordBlocking", *args)
            assert r is not None
            (ev,) = [e for e in self.w.land.events(r) if e.event == "BlockingRecorded"]
            p.blocking = int(ev.args["index"])
        else:
            args = (p.id, p.blocking, receipt("RELEASE"))
            self.attempt(True, "registrar", self.w.land, "cancelBlocking", *args)
            p.blocking = None

    # --- registration and settlement ---------------------------------------------------------
    @rule(deal=deals, caller=st.sampled_from(["buyer", "seller", "broker", "registrar"]))
    def request_registration(self, deal: int, caller: str) -> None:
        d = self.model[deal]
        name = {"buyer": d.buyer, "seller": d.seller}.get(caller, caller)
        expect = registration_due(d, name)
        if self.attempt(expect, name, self.w.escrow, "requestRegistration", deal):
            d.registration = True

    @rule(deal=deals, by=st.sampled_from(["registrar", "registrar", "broker", "buyer"]))
    def report_transaction(self, deal: int, by: str = "registrar") -> None:
        """The registrar records the 실거래 신고 receipt: once, on a signed deal that has not ended."""
        d = self.model[deal]
        expect = by == "registrar" and report_due(d)
        name = d.buyer if by == "buyer" else by
        args = (deal, receipt(f"RPT-{deal}"))
        if self.attempt(expect, name, self.w.escrow, "recordTransactionReport", *args):
            d.reported = True

    @rule(deal=deals)
    def settle(self, deal: int) -> None:
        d = self.model[deal]
        args = (deal, receipt(f"REG-{deal}"), receipt(f"TAX-{deal}"))
        r = self.attempt(self.settlement_due(d), "registrar", self.w.escrow, "settle", *args)
        if r is not None:
            self.settled(d, r)

    def stated_payoffs(self, d: DealModel) -> list[tuple[str, int] | None]:
        return [d.payoffs.get(index) for index, _ in self.parcels[d.parcel].mortgages]

    def settlement_due(self, d: DealModel) -> bool:
        p = self.parcels[d.parcel]
        stated = self.stated_payoffs(d)
        return (
            d.state() == State.REGISTRATION_REQUESTED
            and d.reported
            and p.owner == d.seller
            and p.blocking is None
            and None not in stated
            and sum(s[1] for s in stated if s is not None) <= d.price
        )

    def settled(self, d: DealModel, r: Receipt) -> None:
        """Payoffs and the rest of the price credited, title to the buyer, the lender's mortgage."""
        p = self.parcels[d.parcel]
        stated = self.stated_payoffs(d)
        total = 0
        for payoff in stated:
            assert payoff is not None
            self.credit(payoff[0], payoff[1])
            total += payoff[1]
        self.credit(d.seller, d.price - total)
        p.mortgages = []
        p.owner = d.buyer
        if d.approved:
            # the one registered on this parcel (a batch settles other parcels in the same receipt)
            (ev,) = [
                e
                for e in self.w.land.events(r)
                if e.event == "MortgageRegistered" and e.args["parcelId"] == p.id
            ]
            assert d.lender is not None
            p.mortgages.append((int(ev.args["index"]), d.lender))
            d.loan_status = L_SECURED
        d.terminal = State.SETTLED

    # --- cancellation, default, refund -------------------------------------------------------
    # Each way out may first take the deal to the paid deposit and `first` steps further (see
    # advance), so that deals leave from every stage, not only where the random walk left them.
    def prepare(self, deal: int, to_deposit: bool, first: int) -> None:
        if to_deposit:
            d = self.model[deal]
            while not d.deposit_paid and self._next_step(deal, True, 50):
                self.books_balance()
        self.advance(deal, first, True, 50)

    @rule(
        deal=deals,
        by=st.sampled_from(["buyer", "seller", "broker"]),
        to_deposit=st.booleans(),
        first=st.integers(0, 3),
    )
    def cancel(self, deal: int, by: str, to_deposit: bool, first: int) -> None:
        self.prepare(deal, to_deposit, first)
        d = self.model[deal]
        expect = (
            d.deposit_paid and d.terminal is None and not d.performance_begun() and by in ("buyer", "seller")
        )
        if by == "seller":  # the seller pays in as much as the deposit (배액상환)
            self.fund(d.seller, self.w.escrow, d.terms.deposit)
        name = {"buyer": d.buyer, "seller": d.seller}.get(by, by)
        if self.attempt(expect, name, self.w.escrow, "cancel", deal):
            self.cancelled(deal, Party.BUYER if by == "buyer" else Party.SELLER)

    def cancelled(self, deal: int, party: Party) -> None:
        """§565: the buyer forfeits the deposit to the seller, or the seller pays it back double."""
        d = self.model[deal]
        if party == Party.BUYER:
            self.credit(d.seller, d.terms.deposit)
        else:
            self.credit(d.buyer, 2 * d.terms.deposit)
        d.terminal = State.CANCELLED

    @rule(
        deal=deals,
        party=st.sampled_from(Party),
        flaw=st.sampled_from(["none", "none", "forged", "expired"]),
        by=st.sampled_from(["broker", "registrar", "B1"]),
        to_deposit=st.booleans(),
        first=st.integers(0, 3),
    )
    def cancel_with_signature(
        self, deal: int, party: Party, flaw: str, by: str, to_deposit: bool, first: int
    ) -> None:
        """The same §565 cancellation, signed by the party (CancelDeal, its acceptTerms nonce) and
        submitted by anyone; a seller's matching amount is pulled from the seller."""
        self.prepare(deal, to_deposit, first)
        d = self.model[deal]
        signer, other = (d.buyer, d.seller) if party == Party.BUYER else (d.seller, d.buyer)
        escrow = self.w.escrow
        if self.escrow_domain is None:
            self.escrow_domain = read_domain(escrow)
        now = self.w.now()
        message = {
            "dealId": deal,
            "party": int(party),
            "nonce": int(escrow.call("nonces", self.addr(signer))),
            "expiry": now - 1 if flaw == "expired" else now + DAY,
        }
        data = typed_data(self.escrow_domain, "CancelDeal", CANCEL_TYPES, message)
        sig = sign_typed_data(self.keys[other if flaw == "forged" else signer], data)
        expect = flaw == "none" and d.deposit_paid and d.terminal is None and not d.performance_begun()
        if party == Party.SELLER:
            self.fund(d.seller, escrow, d.terms.deposit)
        if self.attempt(expect, by, escrow, "cancelWithSignature", deal, party, message["expiry"], sig):
            self.cancelled(deal, party)

    @rule(
        deal=deals,
        days=st.one_of(st.integers(0, 40), st.integers(60, 130)),
        caller=st.sampled_from(["broker", "B0", "S1"]),
        to_deposit=st.booleans(),
        first=st.integers(0, 4),
    )
    def warp_and_declare_default(
        self, deal: int, days: int, caller: str, to_deposit: bool, first: int
    ) -> None:
        """Deposit missed: Cancelled. Interim or the buyer's balance part missed: Defaulted, the deposit
        to the seller. The loan missed (requested but never decided, or only the approved loan missing):
        Defaulted with no damages; a loan never requested is the buyer's omission (Balance missed, the
        deposit to the seller). Funded (or registration requested) past the registration window: Refunded."""
        self.prepare(deal, to_deposit, first)
        self.w.warp(days * DAY)
        d = self.model[deal]
        t = d.terms
        now = self.w.now()
        funded = d.terminal is None and d.state() >= State.FUNDED
        if d.terminal is not None:
            expect: Expect = False
        elif funded:
            expect = past_deadline(now, t.balanceDeadline + REGISTRATION_WINDOW)
        elif not d.deposit_paid:
            expect = past_deadline(now, t.depositDeadline)
        elif t.interim and not d.interim_paid:
            expect = past_deadline(now, t.interimDeadline)
        else:
            expect = past_deadline(now, t.balanceDeadline)
        r = self.attempt(expect, caller, self.w.escrow, "declareDefault", deal)
        if r is None:
            return
        if funded:
            (ev,) = [e for e in self.w.escrow.events(r) if e.event == "DealRefunded"]
            assert ev.args["reasonCode"] == 0xFFFF, ev.args
            self.refunded(deal)
            return
        if not d.deposit_paid:
            d.terminal = State.CANCELLED
            return
        if t.interim and not d.interim_paid:
            missed = Payment.INTERIM
        else:
            missed = Payment.LOAN if d.loan_missed() else Payment.BALANCE
        to_seller = 0 if missed == Payment.LOAN else t.deposit
        (ev,) = [e for e in self.w.escrow.events(r) if e.event == "DealDefaulted"]
        assert (ev.args["missed"], ev.args["toSeller"]) == (missed, to_seller), ev.args
        self.credit(d.seller, to_seller)
        self.credit(d.buyer, d.buyer_paid() - to_seller)
        self.credit(d.lender, d.lender_paid())
        if d.disbursed:
            d.loan_status = L_RETURNED
        d.terminal = State.DEFAULTED

    @rule(
        deal=deals,
        by=st.sampled_from(["registrar", "broker"]),
        reason=st.integers(0, 9),
        to_deposit=st.booleans(),
        first=st.integers(0, 10),
    )
    def refund(self, deal: int, by: str, reason: int, to_deposit: bool, first: int) -> None:
        self.prepare(deal, to_deposit, first)
        d = self.model[deal]
        expect = d.terminal is None and by == "registrar"
        if self.attempt(expect, by, self.w.escrow, "refund", deal, reason):
            self.refunded(deal)

    def refunded(self, deal: int) -> None:
        """Every payer gets back what it paid in."""
        d = self.model[deal]
        self.credit(d.buyer, d.buyer_paid())
        self.credit(d.lender, d.lender_paid())
        if d.disbursed:
            d.loan_status = L_RETURNED
        d.terminal = State.REFUNDED

    # --- money out ---------------------------------------------------------------------------
    @rule(who=st.sampled_from(EVERYONE), owed=st.booleans())
    def withdraw(self, who: str, owed: bool) -> None:
        """`who` withdraws; with `owed`, the first account (from `who` on) that is owed money."""
        if owed:
            start = EVERYONE.index(who)
            order = EVERYONE[start:] + EVERYONE[:start]
            who = next((a for a in order if self.claimable[a] > 0), who)
        if self.attempt(self.claimable[who] > 0, who, self.w.escrow, "withdraw"):
            self.claimable[who] = 0

    @rule(who=st.sampled_from(PEOPLE), bank=st.sampled_from(MINTERS), share=st.integers(0, 100))
    def redeem(self, who: str, bank: str, share: int) -> None:
        """A bank redeems (burns) part of a holder's tokens, with the holder's allowance."""
        amount = self.w.balance(self.who(who)) * share // 100
        self.send(who, self.w.token, "approve", self.addr(bank), amount)
        if self.attempt(amount > 0, bank, self.w.token, "burn", self.addr(who), amount):
            self.burned += amount

    @rule(who=st.sampled_from((*PEOPLE, "broker", "registrar")), amount=st.integers(1, 10**9))
    def mint_without_bank_role(self, who: str, amount: int) -> None:
        self.attempt(False, who, self.w.token, "mint", self.addr(who), amount)

    # --- the happy path, one step at a time --------------------------------------------------
    @rule(deal=deals, steps=st.integers(1, 14), approve=st.booleans(), share=st.integers(1, 100))
    def advance(self, deal: int, steps: int, approve: bool, share: int) -> None:
        """Take up to `steps` next steps towards settlement (random walks rarely get that far);
        the invariants are checked after each one."""
        for _ in range(steps):
            if not self._next_step(deal, approve, share):
                return
            self.books_balance()

    def _next_step(self, deal: int, approve: bool, share: int) -> bool:
        """Try the deal's next step; False when there is none or it was refused."""
        d = self.model[deal]
        s = d.state()
        before = d.progress()
        # who sends the buyer's payments and how the buyer allows the pull; who files the loan request
        payer, allowance = PAYING[share % len(PAYING)], "permit" if share % 3 == 0 else "approve"
        if s == State.OPEN:
            party = Party.BUYER if Party.BUYER not in d.signed else Party.SELLER
            self.sign(deal, party, False)
        elif s == State.SIGNED:
            self.pay_deposit(deal, payer, allowance)
        elif s == State.DEPOSIT_PAID and d.terms.interim:
            self.pay_interim(deal, payer, allowance)
        elif s in (d.base(), State.LOAN_APPROVED):
            if d.terms.loanAmount and d.loan_status == L_NONE:
                self.request_loan(deal, "buyer" if approve else "broker")
            elif d.loan_status == L_REQUESTED:
                self.decide_loan(deal, approve, share)
            elif not d.balance_paid and d.balance_due() > 0:
                self.pay_balance(deal, payer, allowance)
            else:
                self.disburse(deal)
        elif s == State.FUNDED:
            self.request_registration(deal, "broker")
        elif s == State.REGISTRATION_REQUESTED:
            p = self.parcels[d.parcel]
            missing = [(i, c) for i, c in p.mortgages if i not in d.payoffs]
            if missing:
                index, creditor = missing[0]
                amount = d.price * share // 100 // (len(p.mortgages) + 1)
                self.state_payoff(deal, p.mortgages.index((index, creditor)), amount, creditor)
            elif not d.reported:
                self.report_transaction(deal)
            else:
                self.settle(deal)
        else:
            return False
        return d.progress() != before

    # --- batches: one transaction per institution step across deals --------------------------
    # Items are drawn from the deals (repeats included) and, now and then, an id no deal has. The
    # batch is sent, then its items are walked in order: each one's outcome (its key event, or
    # ItemFailed with a decodable custom error) must match the model's prediction at that point,
    # and an item that applied is applied to the model before the next one is predicted. The
    # invariants, checked after the rule, show that failed items left nothing behind.
    def deal_at(self, pick: int, live: bool = False) -> int:
        """The deal a batch item's DEAL_PICK names (the rules below run once a deal exists); with
        `live`, among the deals that have not ended, if any (most random deals end early)."""
        if pick == MAX_DEALS:
            return UNKNOWN_DEAL
        ids = sorted(self.model)
        if live:
            ids = [deal for deal in ids if self.model[deal].terminal is None] or ids
        return ids[pick % len(ids)]

    def get_ready(self, items: list[int], wants: Any) -> None:
        """Take each deal of a batch (up to 14 steps) to where `wants(deal)` says the batch has work."""
        for deal in dict.fromkeys(items):
            if deal not in self.model:
                continue
            for _ in range(14):
                if wants(self.model[deal]) or not self._next_step(deal, True, 50):
                    break
                self.books_balance()

    def batch(
        self,
        expect: bool,
        name: str,
        contract: Contract,
        fn: str,
        args: tuple[Any, ...],
        items: list[int],
        applied: tuple[str, ...],
    ) -> tuple[Receipt, list[Any]] | None:
        """Send a batch (only the whole call's rule, the role, is `expect`); returns the receipt and
        each item's outcome: its `applied` event, or the ContractRevert its ItemFailed carries."""
        r = self.attempt(expect, name, contract, fn, *args)
        if r is None:
            return None
        outcomes: list[tuple[int, Any]] = []
        for e in contract.events(r):
            if e.event == "ItemFailed":
                err = self.w.chain.errors.decode(bytes.fromhex(e.args["reason"][2:]))
                assert err.name != "Unknown", f"{fn}: item {e.args['dealId']} failed with {err}"
                outcomes.append((e.args["dealId"], err))
            elif e.event in applied:
                outcomes.append((e.args["dealId"], e))
        assert [deal for deal, _ in outcomes] == items, f"{fn}: outcomes {outcomes} for items {items}"
        return r, [outcome for _, outcome in outcomes]

    def item(self, fn: str, expect: Expect, outcome: Any) -> bool:
        """One item's outcome against its prediction; True if it applied."""
        failed = isinstance(outcome, ContractRevert)
        label = f"{fn}[] -> {outcome.name}" if failed else f"{fn}[] ok"
        self.outcomes[label] += 1
        event(label)
        if failed:
            note(f"{label} {outcome.args_by_name}")
            assert expect is not True, f"{fn} item should apply but failed: {outcome}"
        else:
            assert expect is not False, f"{fn} item {outcome.args} should have failed"
        return not failed

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=5),
        by=st.sampled_from(["registrar", "registrar", "broker"]),
        ready=st.booleans(),
    )
    def report_transactions(self, items: list[int], by: str, ready: bool) -> None:
        deals = [self.deal_at(i, ready) for i in items]
        if ready:
            self.get_ready(deals, lambda d: d.state() != State.OPEN)
        self.report_batch(deals, by)

    def report_batch(self, deals: list[int], by: str) -> None:
        args = (deals, [receipt(f"RPT-{deal}") for deal in deals])
        fn = "recordTransactionReports"
        sent = self.batch(by == "registrar", by, self.w.escrow, fn, args, deals, ("TransactionReported",))
        if sent is None:
            return
        for deal, outcome in zip(deals, sent[1], strict=True):
            d = self.model.get(deal)
            if self.item(fn, d is not None and report_due(d), outcome):
                assert d is not None
                d.reported = True

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(
            st.tuples(DEAL_PICK, st.sampled_from([None, None, None, 0, 1, 2, 3, 9])),
            min_size=1,
            max_size=5,
        ),
        caller=st.sampled_from(["broker", "broker", "bank", "B0"]),
        allowance=st.sampled_from(["approve", "approve", "none"]),
        ready=st.booleans(),
    )
    def pay_many(self, items: list[tuple[int, int | None]], caller: str, allowance: str, ready: bool) -> None:
        """payMany: each item a deal and a payment (None: the one due per the model; 3 is the loan's,
        9 no Payment)."""
        picked = [(self.deal_at(i, ready), payment) for i, payment in items]
        if ready:
            self.get_ready(
                [deal for deal, _ in picked], lambda d: any(payment_due(d, p, self.w.now()) for p in PULLED)
            )
        self.pay_batch(picked, caller, allowance)

    def pay_batch(self, items: list[tuple[int, int | None]], caller: str, allowance: str) -> None:
        """Every buyer gets the tokens of its items and approves them all ("none": 0)."""
        now = self.w.now()
        deals, payments = [], []
        for deal, payment in items:
            d = self.model.get(deal)
            if payment is None:
                due = [p for p in PULLED if d is not None and payment_due(d, p, now) is not False]
                payment = int(due[0]) if due else int(Payment.DEPOSIT)
            deals.append(deal)
            payments.append(payment)
        owed: Counter[str] = Counter()
        for deal, payment in zip(deals, payments, strict=True):
            if deal in self.model and payment in PULLED:
                owed[self.model[deal].buyer] += payment_amount(self.model[deal], Payment(payment))
        for buyer, amount in owed.items():
            self.mint(buyer, amount)
            self.send(
                buyer, self.w.token, "approve", self.w.escrow.address, amount if allowance == "approve" else 0
            )
        now = self.w.now()
        sent = self.batch(
            True, caller, self.w.escrow, "payMany", (deals, payments), deals, ("PaymentReceived",)
        )
        assert sent is not None
        r, outcomes = sent
        pulled = []
        for deal, payment, outcome in zip(deals, payments, outcomes, strict=True):
            d = self.model.get(deal)
            expect: Expect = False
            if d is not None and payment in PULLED:
                p = Payment(payment)
                expect = all_of(payment_due(d, p, now), allowance == "approve", caller in ("broker", d.buyer))
            if self.item("payMany", expect, outcome):
                assert d is not None
                p = Payment(payment)
                pulled.append((self.addr(d.buyer), self.w.escrow.address, payment_amount(d, p)))
                assert (outcome.args["payer"], outcome.args["amount"]) == pulled[-1][::2]
                paid(d, p)
        # only the applied items moved tokens, each exactly its payment from its buyer
        moved = [
            (e.args["from"], e.args["to"], e.args["value"])
            for e in self.w.token.events(r)
            if e.event == "Transfer"
        ]
        assert moved == pulled, f"payMany moved {moved}, applied items pulled {pulled}"

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=5),
        caller=st.sampled_from(["broker", "broker", "B0", "S0", "registrar"]),
        ready=st.booleans(),
    )
    def request_registrations(self, items: list[int], caller: str, ready: bool) -> None:
        deals = [self.deal_at(i, ready) for i in items]
        if ready:
            self.get_ready(deals, lambda d: d.state() >= State.FUNDED)
        self.registration_batch(deals, caller)

    def registration_batch(self, deals: list[int], caller: str) -> None:
        applied = ("RegistrationRequested",)
        sent = self.batch(True, caller, self.w.escrow, "requestRegistrations", (deals,), deals, applied)
        assert sent is not None
        for deal, outcome in zip(deals, sent[1], strict=True):
            d = self.model.get(deal)
            if self.item("requestRegistrations", d is not None and registration_due(d, caller), outcome):
                assert d is not None
                assert outcome.args["requester"] == self.addr(caller)
                d.registration = True

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=4),
        by=st.sampled_from(["registrar", "registrar", "lender"]),
        ready=st.booleans(),
    )
    def settle_many(self, items: list[int], by: str, ready: bool) -> None:
        deals = [self.deal_at(i, ready) for i in items]
        if ready:
            self.get_ready(
                deals, lambda d: d.state() > State.REGISTRATION_REQUESTED or self.settlement_due(d)
            )
        self.settle_batch(deals, by)

    def settle_batch(self, deals: list[int], by: str) -> None:
        args = (deals, [receipt(f"REG-{deal}") for deal in deals], [receipt(f"TAX-{deal}") for deal in deals])
        sent = self.batch(by == "registrar", by, self.w.escrow, "settleMany", args, deals, ("DealSettled",))
        if sent is None:
            return
        r, outcomes = sent
        for deal, outcome in zip(deals, outcomes, strict=True):
            d = self.model.get(deal)
            if self.item("settleMany", d is not None and self.settlement_due(d), outcome):
                assert d is not None
                self.settled(d, r)

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=5),
        by=st.sampled_from(["registrar", "registrar", "broker"]),
        reason=st.integers(0, 9),
        live=st.booleans(),
    )
    def refund_many(self, items: list[int], by: str, reason: int, live: bool) -> None:
        deals = [self.deal_at(i, live) for i in items]
        args = (deals, [reason] * len(deals))
        sent = self.batch(by == "registrar", by, self.w.escrow, "refundMany", args, deals, ("DealRefunded",))
        if sent is None:
            return
        for deal, outcome in zip(deals, sent[1], strict=True):
            d = self.model.get(deal)
            if self.item("refundMany", d is not None and d.terminal is None, outcome):
                self.refunded(deal)

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(
            st.tuples(DEAL_PICK, st.booleans(), st.integers(1, 100), st.booleans()),
            min_size=1,
            max_size=5,
        ),
        by=st.sampled_from(["lender", "lender", "bank", "broker"]),
        ready=st.booleans(),
    )
    def record_loan_decisions(self, items: list[tuple[int, bool, int, bool]], by: str, ready: bool) -> None:
        picked = [(self.deal_at(i, ready), *rest) for i, *rest in items]
        if ready:
            self.get_ready(
                [deal for deal, *_ in picked], lambda d: d.loan_status != L_NONE or not d.terms.loanAmount
            )
        self.decision_batch(picked, by)

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=5),
        by=st.sampled_from(["broker", "broker", "registrar"]),
        ready=st.booleans(),
    )
    def request_loans(self, items: list[int], by: str, ready: bool) -> None:
        """requestLoans: each item as request_loan by the broker (anyone else: NotDealBuyer)."""
        deals = [self.deal_at(i, ready) for i in items]
        if ready:
            self.get_ready(deals, lambda d: d.state() != State.OPEN)
        self.loan_request_batch(deals, by)

    def loan_request_batch(self, deals: list[int], by: str) -> None:
        requests = [
            {
                "dealId": deal,
                "amount": self.model[deal].terms.loanAmount if deal in self.model else 0,
                "lender": self.model[deal].terms.lender if deal in self.model else self.addr("lender"),
                "credentials": [],
            }
            for deal in deals
        ]
        sent = self.batch(True, by, self.w.loans, "requestLoans", (requests,), deals, ("LoanRequested",))
        assert sent is not None  # no role: only the items check their caller
        for deal, outcome in zip(deals, sent[1], strict=True):
            d = self.model.get(deal)
            expect = (
                d is not None
                and by == "broker"
                and d.terms.loanAmount > 0
                and d.state() in (State.SIGNED, State.DEPOSIT_PAID, State.INTERIM_PAID)
                and d.loan_status == L_NONE
            )
            if self.item("requestLoans", expect, outcome):
                assert d is not None
                d.loan_status = L_REQUESTED

    def decision_batch(self, items: list[tuple[int, bool, int, bool]], by: str) -> None:
        """Each item approves `share`% of the loan (with `flawed`, a 채권최고액 below the amount:
        InvalidLoanTerms) or rejects it."""
        deals, decisions, amounts = [], [], []
        for deal, approve, share, flawed in items:
            d = self.model.get(deal)
            amount = max(1, d.terms.loanAmount * share // 100) if d is not None else 1
            deals.append(deal)
            amounts.append(amount if approve else 0)
            decisions.append(
                {
                    "dealId": deal,
                    "approve": approve,
                    "amount": amount,
                    "rateBps": 420,
                    "termMonths": 360,
                    "maxSecured": amount - 1 if flawed else amount * 12 // 10,
                    "reasonCode": 7,
                }
            )
        applied = ("LoanApproved", "LoanRejected")
        fn = "recordLoanDecisions"
        sent = self.batch(by in CREDITORS, by, self.w.loans, fn, (decisions,), deals, applied)
        if sent is None:
            return
        for (deal, approve, _, flawed), amount, outcome in zip(items, amounts, sent[1], strict=True):
            d = self.model.get(deal)
            expect = d is not None and decision_due(d, by) and not (approve and flawed)
            if self.item(fn, expect, outcome):
                assert d is not None
                assert outcome.args["lender"] == self.addr(by)
                decided(d, amount)

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(DEAL_PICK, min_size=1, max_size=5),
        by=st.sampled_from(["lender", "lender", "bank", "registrar"]),
        ready=st.booleans(),
    )
    def disburse_many(self, items: list[int], by: str, ready: bool) -> None:
        deals = [self.deal_at(i, ready) for i in items]
        if ready:
            self.get_ready(
                deals, lambda d: d.loan_status not in (L_NONE, L_REQUESTED) or not d.terms.loanAmount
            )
        self.disbursement_batch(deals, by)

    def disbursement_batch(self, deals: list[int], by: str) -> None:
        if by in MINTERS:  # the bank issues the tokens it lends and lets the LoanBook pull them all
            self.fund(
                by, self.w.loans, sum(self.model[deal].approved for deal in deals if deal in self.model), by
            )
        now = self.w.now()
        sent = self.batch(
            by in CREDITORS, by, self.w.loans, "disburseMany", (deals,), deals, ("LoanDisbursed",)
        )
        if sent is None:
            return
        for deal, outcome in zip(deals, sent[1], strict=True):
            d = self.model.get(deal)
            if self.item("disburseMany", disbursement_due(d, by, now) if d is not None else False, outcome):
                assert d is not None
                d.disbursed, d.loan_status = True, L_DISBURSED

    @precondition(lambda self: bool(self.model))
    @rule(
        items=st.lists(
            st.tuples(DEAL_PICK, st.integers(0, 7), st.integers(0, 400_000_000)),
            min_size=1,
            max_size=5,
        ),
        by=st.sampled_from(CREDITORS),
        live=st.booleans(),
    )
    def state_payoffs(self, items: list[tuple[int, int, int]], by: str, live: bool) -> None:
        self.payoff_batch([(self.deal_at(i, live), pick, amount) for i, pick, amount in items], by)

    def payoff_batch(self, items: list[tuple[int, int, int]], by: str) -> None:
        """statePayoffs by a creditor; restating replaces, so a repeated item applies again."""
        deals = [deal for deal, _, _ in items]
        picks = [self.mortgage_pick(self.model.get(deal), pick) for deal, pick, _ in items]
        args = (deals, [index for index, _ in picks], [amount for _, _, amount in items])
        sent = self.batch(True, by, self.w.loans, "statePayoffs", args, deals, ("PayoffStated",))
        assert sent is not None
        for (deal, _, amount), (index, creditor), outcome in zip(items, picks, sent[1], strict=True):
            d = self.model.get(deal)
            if self.item("statePayoffs", d is not None and d.terminal is None and creditor == by, outcome):
                assert d is not None
                d.payoffs[index] = (by, amount)

    @precondition(lambda self: len(self.model) <= MAX_DEALS - 3)
    @rule(
        target=deals,
        n=st.integers(2, 3),
        amounts=st.lists(deal_amounts(), min_size=3, max_size=3),
        lenders=st.lists(st.sampled_from(CREDITORS), min_size=3, max_size=3),
        noise=st.lists(DEAL_PICK, min_size=13, max_size=13),  # one per batch below
        share=st.integers(1, 100),
    )
    def deals_through_batches(
        self,
        n: int,
        amounts: list[tuple[int, int, int, int]],
        lenders: list[str],
        noise: list[int],
        share: int,
    ) -> Any:
        """Open `n` deals on free parcels and take them from signing to settlement by batches only
        (the parties' signatures stay single calls): each institution step is
        one batch over the deals plus one noise item (another deal, a repeat, or an unknown id), by
        each lender and creditor for its own items."""
        opened = []
        for i in range(n):
            deal = self.open_deal(i, BUYERS[i], amounts[i], lenders[i], (5, 10, 10), 0, True, True)
            if not isinstance(deal, int):
                continue
            opened.append(deal)
            for party in Party:
                self.sign(deal, party, False)
        if not opened:
            return multiple()
        extra = iter(self.deal_at(pick) for pick in noise)
        self.report_batch([*opened, next(extra)], "registrar")
        for _ in range(2):  # the deposits, then the interims (or the balances of deals without)
            self.pay_batch([(deal, None) for deal in [*opened, next(extra)]], "broker", "approve")
        self.loan_request_batch(
            [*(deal for deal in opened if self.model[deal].terms.loanAmount), next(extra)], "broker"
        )
        for lender in CREDITORS:
            mine = [deal for deal in opened if self.model[deal].lender == lender]
            self.decision_batch([(deal, share > 20, share, False) for deal in [*mine, next(extra)]], lender)
            self.disbursement_batch([*mine, next(extra)], lender)
        self.pay_batch([(deal, None) for deal in [*opened, next(extra)]], "broker", "approve")
        self.registration_batch([*opened, next(extra)], "broker")
        for creditor in CREDITORS:  # each creditor states a quarter of the price over its mortgages
            items = []
            for deal in opened:
                mortgages = self.parcels[self.model[deal].parcel].mortgages
                share_each = self.model[deal].price // 4 // len(mortgages) if mortgages else 0
                items += [(deal, k, share_each) for k, (_, held) in enumerate(mortgages) if held == creditor]
            self.payoff_batch([*items, (next(extra), 0, 1)], creditor)
        self.settle_batch([*opened, next(extra)], "registrar")
        return multiple(*opened)

    # --- invariants --------------------------------------------------------------------------
    @invariant()
    def count_steps(self) -> None:
        """Hypothesis runs the invariants after every step, the initialize step included (not before
        it): actions = steps - runs."""
        self.checks["steps"] += 1

    @invariant()
    def books_balance(self) -> None:
        if not self.ready:
            return
        self.checks["invariant checks"] += 1
        obs = self.observe()
        live = [d for d, s in obs["state"].items() if not s.terminal]
        # 1. escrow balance == sum of heldBy over live deals + totalClaimable
        held = sum(obs["held"][d] for d in live)
        assert obs["escrow"] == held + obs["claimable_total"], (
            f"escrow holds {obs['escrow']}, deals {held} + claimable {obs['claimable_total']}"
        )
        assert obs["escrow"] == self.escrow_base + sum(m.held() for m in self.model.values()) + sum(
            self.claimable.values()
        )
        assert obs["claimable_total"] == sum(self.claimable.values())
        assert obs["claimable"] == {a: self.claimable[a] for a in EVERYONE}
        # 2. only BANK_ROLE holders create or destroy tokens
        assert obs["supply"] == self.supply_base + self.minted - self.burned
        # 3. each parcel has exactly one owner, the model's; the register's rights match
        for p, owner, mortgages, blockings, contracted in zip(
            self.parcels, obs["owner"], obs["mortgages"], obs["blockings"], obs["contracted"], strict=True
        ):
            assert int(owner, 16) != 0
            assert owner == self.addr(p.owner), f"parcel owned by {owner}, model says {p.owner}"
            assert mortgages == [i for i, _ in p.mortgages]
            assert blockings == (0 if p.blocking is None else 1)
            assert contracted == p.contracted, f"contracted deal {contracted}, model {p.contracted}"
        # 4. deals: the model's state; terminal deals hold nothing and stay terminal
        for deal, m in self.model.items():
            state = obs["state"][deal]
            assert state == m.state(), f"deal {deal} is {state.name}, model {m.state().name}"
            assert obs["held"][deal] == m.held(), f"deal {deal} holds {obs['held'][deal]}"
            assert obs["loan"][deal] == m.loan_status, f"deal {deal} loan {obs['loan'][deal]}"
            assert obs["reported"][deal] == m.reported, f"deal {deal} reported {obs['reported'][deal]}"
            if deal in self.terminal_seen:
                assert state == self.terminal_seen[deal], f"deal {deal} left terminal state"
            if state.terminal:
                assert obs["held"][deal] == 0
                self.terminal_seen[deal] = state


# about 0.02 s per step on anvil; the benchmark job's larger runs must not hit the 300 s default
@pytest.mark.timeout(max(300, max(EXAMPLES * STEPS, ACTIONS) // 10))
def test_random_deal_histories_keep_the_books(world: World):
    outcomes: Counter[str] = Counter()
    checks: Counter[str] = Counter()

    class Machine(DealHistories):
        w = world

    Machine.outcomes, Machine.checks = outcomes, checks
    started = time.perf_counter()
    examples = EXAMPLES
    try:
        while True:  # once, unless the benchmark asks for more actions than these examples gave
            run_state_machine_as_test(
                Machine,
                settings=settings(
                    max_examples=examples,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                ),
            )
            actions = checks["steps"] - checks["examples"]
            if actions >= ACTIONS:
                break
            # Hypothesis ends many runs before STEPS: top up by the actions per run seen so far
            examples = max(1, math.ceil((ACTIONS - actions) * checks["examples"] / max(1, actions)))
    finally:
        if STATS:
            stats = {
                "actions": checks["steps"] - checks["examples"],
                "runs": checks["examples"],
                "steps_per_run": STEPS,
                "seconds": round(time.perf_counter() - started, 3),
                "invariant_checks": checks["invariant checks"],
                "contract_calls": outcomes.total(),
            }
            with open(STATS, "w") as f:
                json.dump(stats, f)
    width = max(map(len, outcomes), default=0)
    print(
        f"\n{checks['examples']} runs (max_examples={EXAMPLES}, up to {STEPS} steps), "
        f"{checks['steps'] - checks['examples']} actions, "
        f"{checks['invariant checks']} invariant checks; outcomes of the calls:"
    )
    for name, count in sorted(outcomes.items()):
        print(f"  {name:<{width}}  {count}")
    assert checks["steps"] - checks["examples"] >= max(ACTIONS, 1)  # the runs did run actions
