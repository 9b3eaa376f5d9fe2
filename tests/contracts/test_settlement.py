"""Settlement: title, payoffs, the new mortgage and the seller's proceeds in one transaction."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from chain.errors import ContractRevert
from pipeline.deals import accept_terms_type_string
from pipeline.domain import GapguKind, State, receipt
from tests.contracts.conftest import World

PAYOFF = 250_000_000


def fund_with_loan(w: World, parcel: str, **terms_kw) -> tuple[int, object]:
    """A signed deal taken to RegistrationRequested: deposit, interim, loan, balance."""
    terms = w.terms(parcel, **terms_kw)
    deal = w.signed_deal(terms)
    w.tx("registrar", w.escrow, "recordTransactionReport", deal, receipt(f"RPT-{deal}"))
    w.pay(deal, "payDeposit", "buyer", terms.deposit)
    if terms.interim:
        w.pay(deal, "payInterim", "buyer", terms.interim)
    if terms.loanAmount:
        w.tx("buyer", w.loans, "requestLoan", deal, terms.loanAmount, terms.lender, [])
        w.tx(
            "lender",
            w.loans,
            "approveLoan",
            deal,
            terms.loanAmount,
            420,
            360,
            terms.loanAmount * 12 // 10,
        )
        w.mint("lender", terms.loanAmount)
        w.approve("lender", w.loans, terms.loanAmount)
        w.tx("lender", w.loans, "disburse", deal)
    w.pay(deal, "payBalance", "buyer", terms.balance - terms.loanAmount)
    assert w.state(deal) == State.FUNDED
    w.tx("broker", w.escrow, "requestRegistration", deal)
    return deal, terms


def test_full_deal_settles_atomically(world: World):
    w = world
    parcel = w.register_parcel("seller")
    old = w.add_mortgage(parcel, creditor="bank", debtor="seller")
    deal, terms = fund_with_loan(w, parcel)
    w.tx("bank", w.loans, "statePayoff", deal, old, PAYOFF)
    eulgu_before = int(w.land.call("eulguLength", parcel))
    gapgu_before = int(w.land.call("gapguLength", parcel))

    r = w.tx("registrar", w.escrow, "settle", deal, receipt("2026-등기-00042"), receipt("TAX-77"))

    assert w.state(deal) == State.SETTLED
    assert w.land.call("ownerOf", parcel) == w.addr("buyer")
    active = w.land.call("activeMortgages", parcel)
    assert old not in active and len(active) == 1
    entry, is_active = w.land.call("eulguEntry", parcel, active[0])
    assert is_active
    assert entry["creditor"] == w.addr("lender") and entry["debtor"] == w.addr("buyer")
    assert entry["maxSecured"] == terms.loanAmount * 12 // 10
    # history is append-only: a discharge entry and a new mortgage; a new ownership entry
    assert int(w.land.call("eulguLength", parcel)) == eulgu_before + 2
    assert int(w.land.call("gapguLength", parcel)) == gapgu_before + 1
    assert w.escrow.call("claimable", w.addr("bank")) == PAYOFF
    assert w.escrow.call("claimable", w.addr("seller")) == terms.price - PAYOFF
    assert w.escrow.call("heldBy", deal) == 0
    names = [e.event for e in w.escrow.events(r)]
    assert names.count("PayoffPaid") == 1 and names[-1] == "DealSettled"
    assert w.loans.call("loan", deal)["status"] == 5  # Secured

    for who in ("bank", "seller"):
        w.tx(who, w.escrow, "withdraw")
    assert w.balance(w.escrow) == 0
    assert w.balance("seller") == terms.price - PAYOFF


def test_missing_payoff_statement_reverts(world: World):
    w = world
    parcel = w.register_parcel("seller")
    old = w.add_mortgage(parcel)
    deal, _ = fund_with_loan(w, parcel)
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "PayoffNotStated"
    assert err.value.args_by_name == {"dealId": deal, "entryIndex": old}


def test_proceeds_short_of_mortgages_moves_nothing(world: World):
    w = world
    parcel = w.register_parcel("seller")
    first = w.add_mortgage(parcel, creditor="bank")
    second = w.add_mortgage(parcel, creditor="lender")
    deal, terms = fund_with_loan(w, parcel)
    w.tx("bank", w.loans, "statePayoff", deal, first, 700_000_000)
    w.tx("lender", w.loans, "statePayoff", deal, second, 400_000_000)
    escrow_before = w.balance(w.escrow)
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "ProceedsShort"
    assert err.value.args_by_name["payoffTotal"] == 1_100_000_000
    assert err.value.args_by_name["price"] == terms.price
    assert w.state(deal) == State.REGISTRATION_REQUESTED
    assert w.land.call("ownerOf", parcel) == w.addr("seller")
    assert set(w.land.call("activeMortgages", parcel)) == {first, second}
    assert w.balance(w.escrow) == escrow_before
    assert w.escrow.call("claimable", w.addr("seller")) == 0


def test_blocked_title_cannot_settle_and_is_refunded(world: World):
    w = world
    parcel = w.register_parcel("seller")
    deal, terms = fund_with_loan(w, parcel)
    w.tx(
        "registrar",
        w.land,
        "recordBlocking",
        parcel,
        GapguKind.PROVISIONAL_SEIZURE,
        w.addr("issuer"),
        50_000_000,
        receipt("SEIZE-1"),
    )
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "ParcelBlocked"
    w.tx("registrar", w.escrow, "refund", deal, 3)
    assert w.state(deal) == State.REFUNDED
    assert w.escrow.call("claimable", w.addr("buyer")) == terms.price - terms.loanAmount
    assert w.escrow.call("claimable", w.addr("lender")) == terms.loanAmount
    assert w.escrow.call("heldBy", deal) == 0
    assert w.loans.call("loan", deal)["status"] == 6  # Returned


def test_seller_no_longer_owner_cannot_settle(world: World):
    w = world
    parcel = w.register_parcel("seller")
    deal, _ = fund_with_loan(w, parcel, loan=0)
    w.tx(
        "registrar",
        w.land,
        "recordOwnershipTransfer",
        parcel,
        w.addr("issuer"),
        receipt("AUCTION-SALE"),
    )
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "SellerNotOwner"


def test_only_registrar_settles(world: World):
    w = world
    deal, _ = fund_with_loan(w, w.register_parcel("seller"), loan=0)
    with pytest.raises(ContractRevert) as err:
        w.tx("broker", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "AccessControlUnauthorizedAccount"


def test_settle_twice_reverts(world: World):
    w = world
    deal, _ = fund_with_loan(w, w.register_parcel("seller"), interim=0, loan=0)
    w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.escrow, "settle", deal, receipt("R"), receipt("T"))
    assert err.value.name == "DealNotInState"
    assert err.value.args_by_name["actual"] == State.SETTLED


def test_python_type_string_matches_the_contract(world: World):
    # The typed data the API hands to wallets must hash to the contract's own typehash.
    typehash = world.escrow.call("ACCEPT_TERMS_TYPEHASH")
    assert typehash == "0x" + keccak(text=accept_terms_type_string()).hex()


@pytest.mark.parametrize("mortgages", [0, 1, 2])
def test_every_register_entry_of_a_settlement_reads_back_in_full(world: World, mortgages: int):
    """Discharges, the ownership entry and the lender's mortgage all show the registration receipt,
    their own kind, time and refs (the register stores a settlement's receipt once and shares it)."""
    w = world
    parcel = w.register_parcel("seller")
    creditors = [w.new_account() for _ in range(mortgages)]
    old = [w.add_mortgage(parcel, creditor=c.address) for c in creditors]
    deal, terms = fund_with_loan(w, parcel)
    for creditor, index in zip(creditors, old, strict=True):
        w.tx(creditor, w.loans, "statePayoff", deal, index, 100_000_000)
    eulgu0 = int(w.land.call("eulguLength", parcel))
    gapgu0 = int(w.land.call("gapguLength", parcel))
    owner_before, _ = w.land.call("gapguEntry", parcel, gapgu0 - 1)
    mortgages_before = [w.land.call("eulguEntry", parcel, index)[0] for index in old]
    rct = receipt("2026-등기-SHARED")

    w.tx("registrar", w.escrow, "settle", deal, rct, receipt("TAX"))
    now = w.now()

    zero = "0x" + "00" * 20
    for i, index in enumerate(old):
        assert w.land.call("eulguEntry", parcel, eulgu0 + i) == (
            {
                "creditor": zero,
                "kind": 1,  # Discharge
                "time": now,
                "ref": index,
                "rank": 0,
                "debtor": zero,
                "maxSecured": 0,
                "receipt": rct,
            },
            False,
        )
        assert w.land.call("eulguEntry", parcel, index) == (mortgages_before[i], False)
    assert w.land.call("gapguEntry", parcel, gapgu0) == (
        {
            "holder": w.addr("buyer"),
            "kind": GapguKind.OWNERSHIP,
            "time": now,
            "ref": 0,
            "cancelledBy": 0,
            "receipt": rct,
            "amount": 0,
        },
        True,
    )
    assert w.land.call("gapguEntry", parcel, gapgu0 - 1) == (owner_before, True)
    new = eulgu0 + mortgages
    assert w.land.call("eulguLength", parcel) == new + 1
    assert w.land.call("eulguEntry", parcel, new) == (
        {
            "creditor": w.addr("lender"),
            "kind": 0,  # Mortgage
            "time": now,
            "ref": 0,
            "rank": mortgages + 1,
            "debtor": w.addr("buyer"),
            "maxSecured": terms.loanAmount * 12 // 10,
            "receipt": rct,
        },
        True,
    )
    assert w.land.call("title", parcel) == (w.addr("buyer"), 0, [new])
    assert w.loans.call("loan", deal)["mortgageEntry"] == new

    # the entries behave as any others: the shared-receipt mortgage can be discharged, the ownership
    # entry is no blocking entry
    w.tx("registrar", w.land, "dischargeMortgage", parcel, new, receipt("DIS"))
    assert w.land.call("eulguEntry", parcel, new)[1] is False
    assert w.land.call("eulguEntry", parcel, new + 1)[0]["receipt"] == receipt("DIS")
    assert w.land.call("eulguEntry", parcel, new + 1)[0]["ref"] == new
    with pytest.raises(ContractRevert) as err:
        w.tx("registrar", w.land, "cancelBlocking", parcel, gapgu0, receipt("CXL"))
    assert err.value.name == "NotABlockingEntry"
    assert w.land.call("eulguEntry", parcel, new)[0]["receipt"] == rct
