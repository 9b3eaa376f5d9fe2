"""The fault campaign (issue 7): several deals in flight through the real pipeline while the
node stops, the chain reorganises, events arrive twice or an RPC endpoint dies.

`Campaign` sets deals up with scripts/bench.py's `Bench` (own parcel with the seller's mortgage,
fresh parties, e-certificates, cash paid in at the lender, one permit) and stops there: the
automation, the oracles and the institutions do the rest. Its checks say that each deal
settled and that every institution's effect happened exactly once, on chain and in the books.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text

from chain.session import ChainSession
from pipeline.domain import State
from pipeline.service import Services
from scripts.bench import OWED, PRICE, Bench

# Every event of one settled deal, by name (from the deal's timeline on chain). The institutions'
# effects are the ones counted 1; a repeated effect or a lost one changes this.
EXPECTED_TIMELINE = Counter(
    {
        "DealOpened": 1,
        "TermsAccepted": 2,
        "TransactionReported": 1,  # registry: 실거래 신고
        "PaymentReceived": 4,  # deposit, interim, the buyer's balance part, the loan
        "LoanRequested": 1,
        "LoanApproved": 1,  # lender: decision
        "LoanDecisionRecorded": 1,
        "LoanDisbursed": 1,  # lender: disbursement
        "RegistrationRequested": 1,
        "PayoffStated": 1,  # seller's bank: payoff statement
        "PayoffPaid": 1,
        "LoanSecured": 1,
        "DealSettled": 1,  # registry: settlement
    }
)
# The oracles' books for one deal: effect key prefix -> kind (two have no transaction: booking only)
EXPECTED_EFFECTS = {
    "report": "transaction_report",
    "decision": "loan_decision",
    "disburse": "disbursement",
    "payoff": "payoff",
    "settle": "settlement",
    "secured": "mortgage_booked",
    "repaid": "payoff_booked",
}


@pytest.fixture(autouse=True)
def _anvil(anvil_only: None) -> None:
    """Every fault test needs anvil (anvil_reorg, --state, evm_snapshot)."""


@dataclass(frozen=True)
class Deal:
    id: int
    parcel: str
    seller: str
    buyer: str


class Campaign:
    """Deals on `services` (built on `session`), set up by scripts/bench.py's Bench up to the permit."""

    def __init__(self, session: ChainSession, services: Services) -> None:
        self.s = session
        self.services = services
        self.b = services.brokerage
        self.inst = services.institutions
        self.bench = Bench(session, services, watch=False)  # the bench's world, set up the same way
        self.deals: list[Deal] = []

    def open(self) -> Deal:
        """Open, sign, certify and fund one deal; from here the pipeline runs it by itself."""
        p = self.bench.prepare()
        deal = Deal(self.bench.start(p), p.parcel, p.seller.address, p.buyer.address)
        self.deals.append(deal)
        return deal

    # --- watching -------------------------------------------------------------------------------
    def states(self, deals: Iterable[Deal] | None = None) -> dict[int, State]:
        return {d.id: State(self.b.escrow.call("dealState", d.id)) for d in deals or self.deals}

    def progress(self) -> tuple[Any, ...]:
        """What the run has achieved so far: the deals' states and the oracles' books."""
        books = tuple(tuple(sorted(self.books(d).items())) for d in self.deals)
        return tuple(self.states().values()), books

    def wait_settled(self, timeout: float = 60.0, stall: float | None = None) -> None:
        """Until every deal is terminal; fails after `timeout`, or after `stall` seconds in which
        nothing moved."""
        deadline = time.monotonic() + timeout
        last, since = self.progress(), time.monotonic()
        while not all(s.terminal for s in self.states().values()):
            now = time.monotonic()
            assert now < deadline, f"deals did not settle in {timeout:.0f}s: {self.stuck()}"
            if stall is not None:
                seen = self.progress()
                if seen != last:
                    last, since = seen, now
                assert now - since < stall, f"nothing moved for {stall:.0f}s: {self.stuck()}"
            time.sleep(0.05)

    def stuck(self) -> dict[int, Any]:
        """For each deal not done: its state, what it waits for, and the oracles' books."""
        return {
            d.id: (state.name, self.b.deal(d.id)["waiting"], self.books(d))
            for d, state in zip(self.deals, self.states().values(), strict=True)
            if not state.terminal
        }

    # --- exactly once ---------------------------------------------------------------------------
    def assert_each_effect_once(self) -> None:
        """Every deal settled; on chain each institution acted once; the back offices and the
        oracles' books agree, once each."""
        token, escrow = self.b.token, self.b.escrow
        lender, bank, registry = self.inst.lender, self.inst.bank, self.inst.registry
        lender_address = self.s.signers["lender"].address
        for deal in self.deals:
            assert self.states([deal])[deal.id] == State.SETTLED, deal.id
            timeline = Counter(step["step"] for step in self.b.timeline(deal.id))
            assert timeline == EXPECTED_TIMELINE, (deal.id, timeline - EXPECTED_TIMELINE)
            # money moved once: the seller may claim the price less the payoff, the escrow holds
            # nothing more for the deal, the buyer has no tokens left
            assert escrow.call("claimable", deal.seller) == PRICE - OWED, deal.id
            assert escrow.call("heldBy", deal.id) == 0, deal.id
            assert token.call("balanceOf", deal.buyer) == 0, deal.id
            # the back offices: one loan disbursed, the old mortgage repaid, title and the new
            # mortgage registered once
            loan = lender.loan(deal.id)
            assert loan is not None and loan["status"] == "disbursed", deal.id
            assert registry.report_record(deal.id) is not None, deal.id
            record = registry.read_parcel(deal.parcel)
            assert record is not None and record.owner == deal.buyer, deal.id
            owners = [e.holder for e in record.entries if e.section == "gapgu" and e.kind == "ownership"]
            assert owners == [deal.seller, deal.buyer], deal.id
            eulgu = [e for e in record.entries if e.section == "eulgu"]
            assert [e.kind for e in eulgu] == ["mortgage", "discharge", "mortgage"], (deal.id, eulgu)
            assert eulgu[2].holder == lender_address and eulgu[2].debtor == deal.buyer, deal.id
            with bank.engine.connect() as conn:
                held = conn.execute(
                    text("SELECT outstanding FROM bank_mortgages_held WHERE parcel_id = :p"),
                    {"p": deal.parcel.lower()},
                ).all()
            assert [row.outstanding for row in held] == [0], (deal.id, held)  # the payoff booked
            # the oracles' books: each effect once, and each mined (none left signed or failed)
            books = {e.key: e for o in self.inst.oracles for e in o.store.effects(deal_id=deal.id)}
            assert {k.split(":")[0]: e.kind for k, e in books.items()} == EXPECTED_EFFECTS, deal.id
            assert {e.status for e in books.values()} == {"mined"}, {
                k: (e.status, e.error) for k, e in books.items()
            }

    def books(self, deal: Deal) -> dict[str, str]:
        """The oracles' effects for a deal: key -> status."""
        return {e.key: e.status for o in self.inst.oracles for e in o.store.effects(deal_id=deal.id)}

    def books_complete(self) -> bool:
        """Every deal has all its effects in the books, none still on its way."""
        return all(_done(books) for books in map(self.books, self.deals))

    def wait_books(self, timeout: float = 30.0) -> None:
        """Until the oracles' books hold every deal's effects (the banks book after settlement)."""

        def incomplete() -> dict[int, dict[str, str]]:
            return {d.id: books for d in self.deals if not _done(books := self.books(d))}

        wait_for(self.books_complete, timeout, "the oracles' books complete", incomplete)

    def oracle_nonces(self) -> dict[str, int]:
        """How many transactions each institution's key has sent, by account name."""
        rpc = self.s.rpc
        return {
            name: int(rpc.call("eth_getTransactionCount", [self.s.signers[name].address, "latest"]), 16)
            for name in ("registrar", "lender", "bank")
        }

    def effect_txs(self) -> dict[str, int]:
        """How many transactions the oracles' books hold for the campaign's deals, by account (a
        batch transaction that several effects share counts once)."""
        names = {"registry:registrar": "registrar", "bank:lender": "lender", "bank:bank": "bank"}
        ids = {d.id for d in self.deals}
        out = dict.fromkeys(names.values(), 0)
        for oracle in self.inst.oracles:
            hashes = {t.hash for e in oracle.store.effects() if e.deal_id in ids for t in e.txs}
            out[names[oracle.store.oracle]] += len(hashes)
        return out

    def shared_txs(self) -> dict[str, int]:
        """The transactions that carry several of the campaign's effects: hash -> how many."""
        ids = {d.id for d in self.deals}
        carried = Counter(
            t.hash for o in self.inst.oracles for e in o.store.effects() if e.deal_id in ids for t in e.txs
        )
        return {h: n for h, n in carried.items() if n > 1}


def _done(books: dict[str, str]) -> bool:
    return len(books) == len(EXPECTED_EFFECTS) and "signed" not in books.values()


def wait_for(
    check: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    detail: Callable[[], Any] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout:.0f}s: {detail() if detail else ''}")
        time.sleep(0.05)
