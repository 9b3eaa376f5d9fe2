"""LandRegister: 표제부, 갑구 (ownership and blocking entries) and 을구 (mortgages), append-only."""

from __future__ import annotations

from typing import Any

import pytest

from chain.deploy import role_id
from chain.errors import ContractRevert
from pipeline.domain import GapguKind, LandUse, parcel_id, receipt
from tests.contracts.conftest import DAY, World

ZERO = "0x" + "00" * 20
NO_PARCEL = parcel_id("no-such-parcel")
MORTGAGE, DISCHARGE = 0, 1
BLOCKING_KINDS = [GapguKind.PROVISIONAL_SEIZURE, GapguKind.INJUNCTION, GapguKind.AUCTION]
UINT96_MAX = 2**96 - 1


def hexrole(name: str) -> str:
    return "0x" + role_id(name).hex()


def reverts(w: World, who: Any, fn: str, *args: Any) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.tx(who, w.land, fn, *args)
    return err.value


def view_reverts(w: World, fn: str, *args: Any) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.land.call(fn, *args)
    return err.value


def event(w: World, r: Any, name: str) -> dict[str, Any]:
    (found,) = [e for e in w.land.events(r) if e.event == name]
    return dict(found.args)


def block(w: World, parcel: str, kind: int = GapguKind.PROVISIONAL_SEIZURE, amount: int = 0):
    r = w.tx(
        "registrar",
        w.land,
        "recordBlocking",
        parcel,
        kind,
        w.addr("lender"),
        amount,
        receipt("BLK"),
    )
    return int(event(w, r, "BlockingRecorded")["index"])


def cancel(w: World, parcel: str, index: int, who: Any = "registrar"):
    return w.tx(who, w.land, "cancelBlocking", parcel, index, receipt("CXL"))


def discharge(w: World, parcel: str, index: int):
    return w.tx("registrar", w.land, "dischargeMortgage", parcel, index, receipt("DIS"))


def gapgu(w: World, parcel: str, index: int) -> tuple[dict[str, Any], bool]:
    entry, active = w.land.call("gapguEntry", parcel, index)
    return entry, active


def eulgu(w: World, parcel: str, index: int) -> tuple[dict[str, Any], bool]:
    entry, active = w.land.call("eulguEntry", parcel, index)
    return entry, active


def settler(w: World):
    """A fresh account holding SETTLEMENT_ROLE (granted by the admin)."""
    account = w.new_account()
    w.tx("deployer", w.land, "grantRole", role_id("SETTLEMENT_ROLE"), account.address)
    return account


# --- 표제부 and first owner ----------------------------------------------------------------


def test_register_parcel_writes_description_and_first_owner(world: World):
    w = world
    number = "1168010600-1-0737-0001"
    r = w.tx(
        "registrar",
        w.land,
        "registerParcel",
        number,
        "서울특별시 강남구 역삼동 737",
        12_345,
        LandUse.FOREST,
        w.addr("seller"),
        receipt("2026-보존-1"),
    )
    now = w.now()
    pid = parcel_id(number)
    assert w.land.call("parcelIdOf", number) == pid
    assert w.land.call("exists", pid) is True
    assert w.land.call("parcel", pid) == (number, "서울특별시 강남구 역삼동 737", 12_345, 4)
    assert w.land.call("ownerOf", pid) == w.addr("seller")
    assert w.land.call("gapguLength", pid) == 1
    assert w.land.call("eulguLength", pid) == 0
    assert w.land.call("title", pid) == (w.addr("seller"), 0, [])
    entry, active = gapgu(w, pid, 0)
    assert active is True
    assert entry == {
        "holder": w.addr("seller"),
        "kind": GapguKind.OWNERSHIP,
        "time": now,
        "ref": 0,
        "cancelledBy": 0,
        "receipt": receipt("2026-보존-1"),
        "amount": 0,
    }
    assert event(w, r, "ParcelRegistered") == {
        "parcelId": pid,
        "parcelNumber": number,
        "location": "서울특별시 강남구 역삼동 737",
        "areaCentiM2": 12_345,
        "landUse": LandUse.FOREST,
    }
    assert event(w, r, "OwnershipRecorded") == {
        "parcelId": pid,
        "index": 0,
        "owner": w.addr("seller"),
        "receipt": receipt("2026-보존-1"),
        "time": now,
    }


def test_same_parcel_number_cannot_be_registered_twice(world: World):
    w = world
    w.register_parcel("seller", number="1168010600-1-0001-0001")
    err = reverts(
        w,
        "registrar",
        "registerParcel",
        "1168010600-1-0001-0001",
        "elsewhere",
        1,
        LandUse.ROAD,
        w.addr("buyer"),
        receipt("R"),
    )
    assert err.name == "ParcelAlreadyRegistered"
    assert err.args_by_name == {"parcelId": parcel_id("1168010600-1-0001-0001")}
    assert w.land.call("ownerOf", parcel_id("1168010600-1-0001-0001")) == w.addr("seller")


@pytest.mark.parametrize(
    ("number", "location", "area"),
    [("", "서울", 100), ("1168-1", "", 100), ("1168-1", "서울", 0)],
    ids=["empty-number", "empty-location", "zero-area"],
)
def test_invalid_description_is_rejected(world: World, number: str, location: str, area: int):
    w = world
    err = reverts(
        w,
        "registrar",
        "registerParcel",
        number,
        location,
        area,
        LandUse.BUILDING,
        w.addr("seller"),
        receipt("R"),
    )
    assert err.name == "InvalidDescription"
    assert err.args_by_name == {"parcelNumber": number, "areaCentiM2": area}


def test_first_owner_cannot_be_zero_address(world: World):
    w = world
    err = reverts(w, "registrar", "registerParcel", "1168-9", "서울", 1, LandUse.BUILDING, ZERO, receipt("R"))
    assert err.name == "ZeroAddress"
    assert w.land.call("exists", parcel_id("1168-9")) is False


# --- 갑구: ownership --------------------------------------------------------------------------


def test_ownership_transfer_appends_an_entry_and_moves_the_owner(world: World):
    w = world
    pid = w.register_parcel("seller")
    w.warp(DAY)
    r = w.tx("registrar", w.land, "recordOwnershipTransfer", pid, w.addr("buyer"), receipt("TR-1"))
    now = w.now()
    assert w.land.call("ownerOf", pid) == w.addr("buyer")
    assert w.land.call("gapguLength", pid) == 2
    entry, active = gapgu(w, pid, 1)
    assert active is True
    assert entry["holder"] == w.addr("buyer") and entry["kind"] == GapguKind.OWNERSHIP
    assert entry["receipt"] == receipt("TR-1") and entry["time"] == now
    first, _ = gapgu(w, pid, 0)
    assert first["holder"] == w.addr("seller") and first["time"] < now
    assert event(w, r, "OwnershipRecorded") == {
        "parcelId": pid,
        "index": 1,
        "owner": w.addr("buyer"),
        "receipt": receipt("TR-1"),
        "time": now,
    }


def test_ownership_transfer_to_zero_address_reverts(world: World):
    w = world
    pid = w.register_parcel("seller")
    err = reverts(w, "registrar", "recordOwnershipTransfer", pid, ZERO, receipt("R"))
    assert err.name == "ZeroAddress"
    assert w.land.call("ownerOf", pid) == w.addr("seller")


def test_registrar_may_transfer_a_blocked_parcel(world: World):
    w = world
    pid = w.register_parcel("seller")
    block(w, pid, GapguKind.AUCTION)
    w.tx("registrar", w.land, "recordOwnershipTransfer", pid, w.addr("buyer"), receipt("AUC"))
    assert w.land.call("ownerOf", pid) == w.addr("buyer")
    assert w.land.call("isBlocked", pid) is True


# --- 갑구: blocking entries -------------------------------------------------------------------


@pytest.mark.parametrize("kind", BLOCKING_KINDS, ids=lambda k: k.name)
def test_each_blocking_kind_blocks_the_parcel(world: World, kind: GapguKind):
    w = world
    pid = w.register_parcel("seller")
    assert w.land.call("isBlocked", pid) is False
    r = w.tx(
        "registrar",
        w.land,
        "recordBlocking",
        pid,
        kind,
        w.addr("lender"),
        50_000_000,
        receipt(f"BLK-{kind.name}"),
    )
    now = w.now()
    assert w.land.call("isBlocked", pid) is True
    assert w.land.call("activeBlockingCount", pid) == 1
    entry, active = gapgu(w, pid, 1)
    assert active is True
    assert entry == {
        "holder": w.addr("lender"),
        "kind": kind,
        "time": now,
        "ref": 0,
        "cancelledBy": 0,
        "receipt": receipt(f"BLK-{kind.name}"),
        "amount": 50_000_000,
    }
    assert event(w, r, "BlockingRecorded") == {
        "parcelId": pid,
        "index": 1,
        "kind": kind,
        "claimant": w.addr("lender"),
        "amount": 50_000_000,
        "receipt": receipt(f"BLK-{kind.name}"),
        "time": now,
    }
    assert w.land.call("ownerOf", pid) == w.addr("seller")


def test_blocking_count_tracks_each_active_entry(world: World):
    w = world
    pid = w.register_parcel("seller")
    first = block(w, pid, GapguKind.PROVISIONAL_SEIZURE)
    second = block(w, pid, GapguKind.INJUNCTION)
    assert w.land.call("activeBlockingCount", pid) == 2
    cancel(w, pid, first)
    assert w.land.call("activeBlockingCount", pid) == 1
    assert w.land.call("isBlocked", pid) is True
    cancel(w, pid, second)
    assert w.land.call("activeBlockingCount", pid) == 0
    assert w.land.call("isBlocked", pid) is False


@pytest.mark.parametrize("kind", [GapguKind.OWNERSHIP, GapguKind.CANCELLATION], ids=lambda k: k.name)
def test_record_blocking_rejects_non_blocking_kinds(world: World, kind: GapguKind):
    w = world
    pid = w.register_parcel("seller")
    err = reverts(w, "registrar", "recordBlocking", pid, kind, w.addr("lender"), 0, receipt("R"))
    assert err.name == "NotABlockingKind"
    assert err.args_by_name == {"kind": kind}
    assert w.land.call("gapguLength", pid) == 1


def test_blocking_needs_a_claimant(world: World):
    w = world
    pid = w.register_parcel("seller")
    err = reverts(w, "registrar", "recordBlocking", pid, GapguKind.INJUNCTION, ZERO, 0, receipt("R"))
    assert err.name == "ZeroAddress"


def test_blocking_amount_must_fit_in_96_bits(world: World):
    w = world
    pid = w.register_parcel("seller")
    args = (pid, GapguKind.PROVISIONAL_SEIZURE, w.addr("lender"))
    err = reverts(w, "registrar", "recordBlocking", *args, UINT96_MAX + 1, receipt("R"))
    assert err.name == "AmountTooLarge"
    assert err.args_by_name == {"amount": UINT96_MAX + 1}
    index = block(w, pid, amount=UINT96_MAX)
    assert gapgu(w, pid, index)[0]["amount"] == UINT96_MAX


def test_cancel_blocking_appends_a_cancellation_pointing_at_the_old_entry(world: World):
    w = world
    pid = w.register_parcel("seller")
    seized = block(w, pid, GapguKind.PROVISIONAL_SEIZURE, 70_000_000)
    before, _ = gapgu(w, pid, seized)
    w.warp(DAY)
    r = w.tx("registrar", w.land, "cancelBlocking", pid, seized, receipt("CXL-1"))
    now = w.now()
    assert w.land.call("gapguLength", pid) == 3
    cancellation, active = gapgu(w, pid, 2)
    assert active is False
    assert cancellation == {
        "holder": ZERO,
        "kind": GapguKind.CANCELLATION,
        "time": now,
        "ref": seized,
        "cancelledBy": 0,
        "receipt": receipt("CXL-1"),
        "amount": 0,
    }
    old, old_active = gapgu(w, pid, seized)
    assert old_active is False
    assert old == {**before, "cancelledBy": 2}
    assert w.land.call("isBlocked", pid) is False
    assert event(w, r, "BlockingCancelled") == {
        "parcelId": pid,
        "index": 2,
        "cancelledIndex": seized,
        "receipt": receipt("CXL-1"),
        "time": now,
    }


def test_cancelling_twice_reverts_entry_not_active(world: World):
    w = world
    pid = w.register_parcel("seller")
    seized = block(w, pid)
    cancel(w, pid, seized)
    with pytest.raises(ContractRevert) as err:
        cancel(w, pid, seized)
    assert err.value.name == "EntryNotActive"
    assert err.value.args_by_name == {"parcelId": pid, "index": seized}
    assert w.land.call("gapguLength", pid) == 3


def test_only_blocking_entries_can_be_cancelled(world: World):
    w = world
    pid = w.register_parcel("seller")
    cancellation = int(event(w, cancel(w, pid, block(w, pid)), "BlockingCancelled")["index"])
    for index in (0, cancellation):  # the ownership entry, then the cancellation itself
        with pytest.raises(ContractRevert) as err:
            cancel(w, pid, index)
        assert err.value.name == "NotABlockingEntry"
        assert err.value.args_by_name == {"parcelId": pid, "index": index}


def test_cancel_beyond_gapgu_reverts_entry_out_of_range(world: World):
    w = world
    pid = w.register_parcel("seller")
    with pytest.raises(ContractRevert) as err:
        cancel(w, pid, 1)
    assert err.value.name == "EntryOutOfRange"
    assert err.value.args_by_name == {"parcelId": pid, "index": 1, "length": 1}


# --- 을구: mortgages --------------------------------------------------------------------------


def test_register_mortgage_assigns_increasing_ranks(world: World):
    w = world
    pid = w.register_parcel("seller")
    r = w.tx(
        "registrar",
        w.land,
        "registerMortgage",
        pid,
        w.addr("bank"),
        w.addr("seller"),
        360_000_000,
        receipt("M-1"),
    )
    now = w.now()
    assert event(w, r, "MortgageRegistered") == {
        "parcelId": pid,
        "index": 0,
        "creditor": w.addr("bank"),
        "debtor": w.addr("seller"),
        "maxSecured": 360_000_000,
        "rank": 1,
        "receipt": receipt("M-1"),
        "time": now,
    }
    entry, active = eulgu(w, pid, 0)
    assert active is True
    assert entry == {
        "creditor": w.addr("bank"),
        "kind": MORTGAGE,
        "time": now,
        "ref": 0,
        "rank": 1,
        "debtor": w.addr("seller"),
        "maxSecured": 360_000_000,
        "receipt": receipt("M-1"),
    }
    second = w.add_mortgage(pid, creditor="lender")
    third = w.add_mortgage(pid, creditor="broker")
    assert [eulgu(w, pid, i)[0]["rank"] for i in (0, second, third)] == [1, 2, 3]
    assert w.land.call("activeMortgages", pid) == [0, 1, 2]
    assert w.land.call("eulguLength", pid) == 3
    assert w.land.call("activeMortgageCreditor", pid, second) == w.addr("lender")


def test_rank_counts_every_mortgage_ever_registered(world: World):
    w = world
    pid = w.register_parcel("seller")
    first = w.add_mortgage(pid)
    w.add_mortgage(pid)
    discharge(w, pid, first)
    latest = w.add_mortgage(pid)
    assert latest == 3  # 을구: mortgage, mortgage, discharge, mortgage
    assert eulgu(w, pid, latest)[0]["rank"] == 3
    assert w.land.call("activeMortgages", pid) == [1, 3]


def test_discharge_appends_an_entry_referring_to_the_mortgage(world: World):
    w = world
    pid = w.register_parcel("seller")
    indexes = [w.add_mortgage(pid, creditor=c) for c in ("bank", "lender", "broker")]
    mortgage_before, _ = eulgu(w, pid, indexes[1])
    w.warp(DAY)
    r = w.tx("registrar", w.land, "dischargeMortgage", pid, indexes[1], receipt("DIS-1"))
    now = w.now()
    assert event(w, r, "MortgageDischarged") == {
        "parcelId": pid,
        "index": 3,
        "mortgageIndex": indexes[1],
        "receipt": receipt("DIS-1"),
        "time": now,
    }
    entry, active = eulgu(w, pid, 3)
    assert active is False
    assert entry == {
        "creditor": ZERO,
        "kind": DISCHARGE,
        "time": now,
        "ref": indexes[1],
        "rank": 0,
        "debtor": ZERO,
        "maxSecured": 0,
        "receipt": receipt("DIS-1"),
    }
    assert eulgu(w, pid, indexes[1]) == (mortgage_before, False)
    # the remaining active mortgages keep ascending rank order
    assert w.land.call("activeMortgages", pid) == [indexes[0], indexes[2]]
    assert w.land.call("activeMortgageCreditor", pid, indexes[1]) == ZERO
    assert w.land.call("activeMortgageCreditor", pid, 3) == ZERO
    assert w.land.call("eulguLength", pid) == 4


def test_discharging_twice_reverts_entry_not_active(world: World):
    w = world
    pid = w.register_parcel("seller")
    index = w.add_mortgage(pid)
    discharge(w, pid, index)
    with pytest.raises(ContractRevert) as err:
        discharge(w, pid, index)
    assert err.value.name == "EntryNotActive"
    assert err.value.args_by_name == {"parcelId": pid, "index": index}
    assert w.land.call("eulguLength", pid) == 2


def test_discharging_a_discharge_entry_reverts_not_a_mortgage(world: World):
    w = world
    pid = w.register_parcel("seller")
    discharge(w, pid, w.add_mortgage(pid))
    with pytest.raises(ContractRevert) as err:
        discharge(w, pid, 1)
    assert err.value.name == "NotAMortgage"
    assert err.value.args_by_name == {"parcelId": pid, "index": 1}


def test_discharge_beyond_eulgu_reverts_entry_out_of_range(world: World):
    w = world
    pid = w.register_parcel("seller")
    w.add_mortgage(pid)
    with pytest.raises(ContractRevert) as err:
        discharge(w, pid, 1)
    assert err.value.name == "EntryOutOfRange"
    assert err.value.args_by_name == {"parcelId": pid, "index": 1, "length": 1}


def test_ninth_active_mortgage_reverts_too_many_mortgages(world: World):
    w = world
    pid = w.register_parcel("seller")
    indexes = [w.add_mortgage(pid) for _ in range(8)]
    assert w.land.call("activeMortgages", pid) == indexes
    with pytest.raises(ContractRevert) as err:
        w.add_mortgage(pid)
    assert err.value.name == "TooManyMortgages"
    assert err.value.args_by_name == {"parcelId": pid, "max": 8}
    discharge(w, pid, indexes[0])  # a free slot admits the next one
    ninth = w.add_mortgage(pid)
    assert eulgu(w, pid, ninth)[0]["rank"] == 9
    assert w.land.call("activeMortgages", pid) == [*indexes[1:], ninth]


@pytest.mark.parametrize("zero", ["creditor", "debtor"])
def test_mortgage_needs_creditor_and_debtor(world: World, zero: str):
    w = world
    pid = w.register_parcel("seller")
    creditor = ZERO if zero == "creditor" else w.addr("bank")
    debtor = ZERO if zero == "debtor" else w.addr("seller")
    err = reverts(w, "registrar", "registerMortgage", pid, creditor, debtor, 1, receipt("R"))
    assert err.name == "ZeroAddress"


@pytest.mark.parametrize("amount", [0, UINT96_MAX + 1], ids=["zero", "over-96-bits"])
def test_mortgage_max_secured_must_be_positive_and_fit_96_bits(world: World, amount: int):
    w = world
    pid = w.register_parcel("seller")
    args = (pid, w.addr("bank"), w.addr("seller"), amount, receipt("R"))
    err = reverts(w, "registrar", "registerMortgage", *args)
    assert err.name == "InvalidMaxSecured"
    assert err.args_by_name == {"maxSecured": amount}
    assert w.land.call("eulguLength", pid) == 0


# --- views and unknown parcels ----------------------------------------------------------------


def test_title_reports_owner_blockings_and_mortgages(world: World):
    w = world
    pid = w.register_parcel("seller")
    first = w.add_mortgage(pid)
    second = w.add_mortgage(pid, creditor="lender")
    block(w, pid)
    block(w, pid, GapguKind.AUCTION)
    assert w.land.call("title", pid) == (w.addr("seller"), 2, [first, second])


@pytest.mark.parametrize("fn", ["gapguEntry", "eulguEntry"])
def test_entry_views_revert_beyond_the_section(world: World, fn: str):
    w = world
    pid = w.register_parcel("seller")
    length = 1 if fn == "gapguEntry" else 0
    err = view_reverts(w, fn, pid, 5)
    assert err.name == "EntryOutOfRange"
    assert err.args_by_name == {"parcelId": pid, "index": 5, "length": length}


def test_active_mortgage_creditor_is_zero_beyond_eulgu(world: World):
    w = world
    pid = w.register_parcel("seller")
    assert w.land.call("activeMortgageCreditor", pid, 0) == ZERO


@pytest.mark.parametrize(
    ("fn", "extra"),
    [
        ("ownerOf", ()),
        ("parcel", ()),
        ("isBlocked", ()),
        ("activeBlockingCount", ()),
        ("activeMortgages", ()),
        ("title", ()),
        ("gapguLength", ()),
        ("eulguLength", ()),
        ("gapguEntry", (0,)),
        ("eulguEntry", (0,)),
        ("activeMortgageCreditor", (0,)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_views_of_an_unknown_parcel_revert(world: World, fn: str, extra: tuple):
    err = view_reverts(world, fn, NO_PARCEL, *extra)
    assert err.name == "UnknownParcel"
    assert err.args_by_name == {"parcelId": NO_PARCEL}


def test_exists_is_false_for_an_unknown_parcel(world: World):
    assert world.land.call("exists", NO_PARCEL) is False


def _writes(w: World) -> dict[str, tuple]:
    return {
        "recordOwnershipTransfer": (NO_PARCEL, w.addr("buyer"), receipt("R")),
        "recordBlocking": (NO_PARCEL, GapguKind.AUCTION, w.addr("bank"), 0, receipt("R")),
        "cancelBlocking": (NO_PARCEL, 1, receipt("R")),
        "registerMortgage": (NO_PARCEL, w.addr("bank"), w.addr("seller"), 1, receipt("R")),
        "dischargeMortgage": (NO_PARCEL, 0, receipt("R")),
    }


@pytest.mark.parametrize(
    "fn",
    [
        "recordOwnershipTransfer",
        "recordBlocking",
        "cancelBlocking",
        "registerMortgage",
        "dischargeMortgage",
    ],
)
def test_writes_to_an_unknown_parcel_revert(world: World, fn: str):
    err = reverts(world, "registrar", fn, *_writes(world)[fn])
    assert err.name == "UnknownParcel"
    assert err.args_by_name == {"parcelId": NO_PARCEL}


# --- access control --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        "registerParcel",
        "recordOwnershipTransfer",
        "recordBlocking",
        "cancelBlocking",
        "registerMortgage",
        "dischargeMortgage",
    ],
)
def test_registrar_functions_need_registrar_role(world: World, fn: str):
    w = world
    pid = w.register_parcel("seller")
    w.add_mortgage(pid)
    index = block(w, pid)
    args = {
        "registerParcel": ("X-1", "서울", 1, LandUse.BUILDING, w.addr("buyer"), receipt("R")),
        "recordOwnershipTransfer": (pid, w.addr("buyer"), receipt("R")),
        "recordBlocking": (pid, GapguKind.AUCTION, w.addr("bank"), 0, receipt("R")),
        "cancelBlocking": (pid, index, receipt("R")),
        "registerMortgage": (pid, w.addr("bank"), w.addr("buyer"), 1, receipt("R")),
        "dischargeMortgage": (pid, 0, receipt("R")),
    }[fn]
    for who in ("broker", settler(w)):  # a settlement account is no registrar either
        err = reverts(w, who, fn, *args)
        assert err.name == "AccessControlUnauthorizedAccount"
        assert err.args_by_name == {"account": w.addr(who), "neededRole": hexrole("REGISTRAR_ROLE")}
    assert w.land.call("REGISTRAR_ROLE") == hexrole("REGISTRAR_ROLE")


@pytest.mark.parametrize("fn", ["settleOwnershipTransfer", "settleDischarge", "settleMortgage"])
def test_settlement_functions_need_settlement_role(world: World, fn: str):
    w = world
    pid = w.register_parcel("seller")
    w.add_mortgage(pid)
    args = {
        "settleOwnershipTransfer": (pid, w.addr("seller"), w.addr("buyer"), receipt("R")),
        "settleDischarge": (pid, 0, receipt("R")),
        "settleMortgage": (pid, w.addr("lender"), w.addr("buyer"), 1, receipt("R")),
    }[fn]
    for who in ("registrar", "deployer", "buyer"):
        err = reverts(w, who, fn, *args)
        assert err.name == "AccessControlUnauthorizedAccount"
        assert err.args_by_name == {
            "account": w.addr(who),
            "neededRole": hexrole("SETTLEMENT_ROLE"),
        }
    assert w.land.call("title", pid) == (w.addr("seller"), 0, [0])


# --- settlement role --------------------------------------------------------------------------


def test_settlement_transfers_discharges_and_registers(world: World):
    w = world
    pid = w.register_parcel("seller")
    old = w.add_mortgage(pid)
    escrow = settler(w)
    r = w.tx(escrow, w.land, "settleDischarge", pid, old, receipt("S-DIS"))
    assert event(w, r, "MortgageDischarged")["mortgageIndex"] == old
    r = w.tx(
        escrow,
        w.land,
        "settleOwnershipTransfer",
        pid,
        w.addr("seller"),
        w.addr("buyer"),
        receipt("S-OWN"),
    )
    assert event(w, r, "OwnershipRecorded")["owner"] == w.addr("buyer")
    r = w.tx(
        escrow,
        w.land,
        "settleMortgage",
        pid,
        w.addr("lender"),
        w.addr("buyer"),
        480_000_000,
        receipt("S-MTG"),
    )
    registered = event(w, r, "MortgageRegistered")
    assert (registered["index"], registered["rank"]) == (2, 2)
    assert w.land.call("title", pid) == (w.addr("buyer"), 0, [2])
    entry, active = eulgu(w, pid, 2)
    assert active and entry["creditor"] == w.addr("lender") and entry["debtor"] == w.addr("buyer")
    assert gapgu(w, pid, 1)[0]["receipt"] == receipt("S-OWN")


@pytest.mark.parametrize("same_receipt", [True, False])
def test_settlement_entries_keep_their_receipts(world: World, same_receipt: bool):
    """Separate settlement calls, with one receipt or three: every entry reads back its own."""
    w = world
    pid = w.register_parcel("seller")
    old = w.add_mortgage(pid)
    escrow = settler(w)
    receipts = [receipt("S")] * 3 if same_receipt else [receipt("S-DIS"), receipt("S-OWN"), receipt("S-MTG")]
    w.tx(escrow, w.land, "settleDischarge", pid, old, receipts[0])
    w.tx(escrow, w.land, "settleOwnershipTransfer", pid, w.addr("seller"), w.addr("buyer"), receipts[1])
    w.tx(escrow, w.land, "settleMortgage", pid, w.addr("lender"), w.addr("buyer"), 480_000_000, receipts[2])
    discharge_entry, _ = eulgu(w, pid, 1)
    owner_entry, owner_active = gapgu(w, pid, 1)
    mortgage_entry, mortgage_active = eulgu(w, pid, 2)
    assert (discharge_entry["receipt"], discharge_entry["ref"], discharge_entry["kind"]) == (
        receipts[0],
        old,
        1,
    )
    assert (owner_entry["receipt"], owner_entry["ref"], owner_entry["kind"]) == (receipts[1], 0, 0)
    assert (mortgage_entry["receipt"], mortgage_entry["ref"], mortgage_entry["kind"]) == (receipts[2], 0, 0)
    assert owner_active and mortgage_active
    assert gapgu(w, pid, 0)[0]["receipt"] != receipts[1]  # the first owner's entry is untouched


def test_settlement_transfer_requires_the_named_owner(world: World):
    w = world
    pid = w.register_parcel("seller")
    err = reverts(
        w,
        settler(w),
        "settleOwnershipTransfer",
        pid,
        w.addr("broker"),
        w.addr("buyer"),
        receipt("R"),
    )
    assert err.name == "OwnerMismatch"
    assert err.args_by_name == {
        "parcelId": pid,
        "expected": w.addr("broker"),
        "actual": w.addr("seller"),
    }


def test_settlement_transfer_refuses_a_blocked_parcel(world: World):
    w = world
    pid = w.register_parcel("seller")
    block(w, pid, GapguKind.INJUNCTION)
    block(w, pid, GapguKind.AUCTION)
    err = reverts(
        w,
        settler(w),
        "settleOwnershipTransfer",
        pid,
        w.addr("seller"),
        w.addr("buyer"),
        receipt("R"),
    )
    assert err.name == "ParcelIsBlocked"
    assert err.args_by_name == {"parcelId": pid, "activeBlockings": 2}
    assert w.land.call("ownerOf", pid) == w.addr("seller")


def test_settlement_transfer_to_zero_address_reverts(world: World):
    w = world
    pid = w.register_parcel("seller")
    err = reverts(w, settler(w), "settleOwnershipTransfer", pid, w.addr("seller"), ZERO, receipt("R"))
    assert err.name == "ZeroAddress"


# --- append-only history ----------------------------------------------------------------------


def test_register_is_append_only(world: World):
    w = world
    pid = w.register_parcel("seller")
    seen_gapgu: list[dict[str, Any]] = []
    seen_eulgu: list[dict[str, Any]] = []

    def check_history() -> None:
        """Earlier entries are unchanged except active/cancelledBy; new ones are appended."""
        for i, old in enumerate(seen_gapgu):
            now, _ = gapgu(w, pid, i)
            if old["cancelledBy"] == 0 and now["cancelledBy"] != 0:
                assert old["kind"] in BLOCKING_KINDS
                assert gapgu(w, pid, now["cancelledBy"])[0]["ref"] == i
                now = {**now, "cancelledBy": 0}
            assert now == old
        for i, old in enumerate(seen_eulgu):
            assert eulgu(w, pid, i)[0] == old
        for i in range(len(seen_gapgu), w.land.call("gapguLength", pid)):
            seen_gapgu.append(gapgu(w, pid, i)[0])
        for i in range(len(seen_eulgu), w.land.call("eulguLength", pid)):
            seen_eulgu.append(eulgu(w, pid, i)[0])

    check_history()
    steps = [
        lambda: w.add_mortgage(pid, creditor="bank"),
        lambda: block(w, pid, GapguKind.PROVISIONAL_SEIZURE, 10),
        lambda: w.add_mortgage(pid, creditor="lender"),
        lambda: block(w, pid, GapguKind.AUCTION),
        lambda: cancel(w, pid, 1),
        lambda: discharge(w, pid, 0),
        lambda: w.tx("registrar", w.land, "recordOwnershipTransfer", pid, w.addr("buyer"), receipt("T")),
        lambda: cancel(w, pid, 2),
        lambda: discharge(w, pid, 1),
        lambda: w.add_mortgage(pid, creditor="broker", debtor="buyer"),
    ]
    for step in steps:
        w.warp(60)
        step()
        check_history()
    assert len(seen_gapgu) == 6 and len(seen_eulgu) == 5
    assert [e["kind"] for e in seen_gapgu] == [0, 1, 3, 4, 0, 4]
    assert [e["kind"] for e in seen_eulgu] == [0, 0, 1, 1, 0]
    assert [gapgu(w, pid, i)[1] for i in range(6)] == [True, False, False, False, True, False]
    assert [eulgu(w, pid, i)[1] for i in range(5)] == [False, False, False, False, True]
    times = [e["time"] for e in seen_gapgu]
    assert times == sorted(times) and len(set(times)) == 6
