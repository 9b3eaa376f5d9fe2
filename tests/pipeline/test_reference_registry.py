"""The reference land registry on SQLite and PostgreSQL: 등기부, checks, tax, report, registration."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_utils import keccak

from pipeline.adapters.protocols import (
    PayoffRequest,
    RegisterEntry,
    RegistrationRequest,
    TaxRequest,
    TransactionReport,
    TransferCheckRequest,
)
from pipeline.adapters.reference_bank import ReferenceBank
from pipeline.adapters.reference_registry import (
    HOUSING_TAX,
    LAND_TAX,
    EntryRefused,
    FilingConflict,
    ParcelAlreadyRegistered,
    ReferenceRegistry,
    RegistrationRefused,
    ReportDeadlinePassed,
    RequestIdReused,
    UnknownParcel,
    acquisition_tax_of,
)
from pipeline.adapters.sample_data import (
    SAMPLE_PARCELS,
    SEIZURE_CREDITOR,
    outstanding_of,
    seed_bank,
    seed_registry,
)
from pipeline.domain import GapguKind, LandUse, parcel_id, receipt

NOW = int(datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp())
DAY = 86_400


def addr(label: str) -> str:
    return Account.from_key(keccak(text=f"registry test {label}")).address


SELLER, OWNER2, BUYER = addr("seller"), addr("owner2"), addr("buyer")
BANK, BANK2, CLAIMANT = addr("bank"), addr("bank2"), addr("claimant")
RECEIPT = re.compile(r"^\d{4}-(REG|TAX|RPT)-\d{6}$")


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(db_url: str, clock: Clock) -> Iterator[ReferenceRegistry]:
    r = ReferenceRegistry(db_url, clock=clock)
    yield r
    r.close()


@pytest.fixture
def parcels(registry: ReferenceRegistry) -> dict[str, str]:
    return seed_registry(registry, {"seller": SELLER, "owner2": OWNER2}, {"bank": BANK, "bank2": BANK2})


def fresh(registry: ReferenceRegistry, number: str = "1168010600-10001-0000") -> str:
    return registry.register_parcel(number, "서울특별시 강남구 대치동 1", 8497, "building", SELLER)


def actives(registry: ReferenceRegistry, pid: str, section: str) -> list[int]:
    record = registry.read_parcel(pid)
    assert record is not None
    return [e.index for e in record.entries if e.section == section and e.active]


# --- seeding and reading ---------------------------------------------------------------


def test_seeding(registry: ReferenceRegistry, parcels: dict[str, str]) -> None:
    assert len(parcels) == len(SAMPLE_PARCELS) == 7
    records = registry.list_parcels()
    assert {r.parcel_id for r in records} == set(parcels.values())
    uses = [r.land_use for r in records]
    assert uses.count("building") == 5 and {"field", "forest"} <= set(uses)
    eunma = registry.read_parcel(parcels["eunma"])
    assert eunma is not None and eunma.owner == SELLER
    assert eunma.parcel_id == parcel_id("1168010600-10316-0000")
    assert "은마" in eunma.address and eunma.area_m2_x100 == 7679
    mortgage = eunma.entries[1]
    assert (mortgage.section, mortgage.kind, mortgage.holder, mortgage.debtor) == (
        "eulgu",
        "mortgage",
        BANK,
        SELLER,
    )
    jamsil = registry.read_parcel(parcels["jamsil"])
    assert jamsil is not None
    assert [(e.holder, e.rank) for e in jamsil.entries if e.section == "eulgu"] == [
        (BANK, 1),
        (BANK2, 2),
    ]
    oksu = registry.read_parcel(parcels["oksu"])
    assert oksu is not None and oksu.entries[1].kind == "provisional_seizure"
    assert oksu.entries[1].holder == SEIZURE_CREDITOR and oksu.entries[1].active
    # seeding again changes nothing
    before = [r.model_dump() for r in registry.list_parcels()]
    again = seed_registry(registry, {"seller": SELLER, "owner2": OWNER2}, {"bank": BANK})
    assert again == parcels
    assert [r.model_dump() for r in registry.list_parcels()] == before


def test_read_parcel_shape(registry: ReferenceRegistry) -> None:
    pid = fresh(registry)
    record = registry.read_parcel(pid)
    assert record is not None
    assert record.number == "1168010600-10001-0000" and record.land_use == "building"
    assert record.entries == [
        RegisterEntry(
            section="gapgu",
            index=0,
            kind="ownership",
            holder=SELLER,
            receipt="2026-REG-000001",
            active=True,
        )
    ]
    assert registry.read_parcel(parcel_id("no such number")) is None
    history = registry.read_history(pid)
    assert history == [(record.entries[0], NOW)]
    with pytest.raises(ParcelAlreadyRegistered):
        fresh(registry)


def test_blocking_and_cancellation_history(registry: ReferenceRegistry, clock: Clock) -> None:
    pid = fresh(registry)
    seizure = registry.add_blocking(pid, GapguKind.PROVISIONAL_SEIZURE, CLAIMANT, 50_000_000)
    injunction = registry.add_blocking(pid, "injunction", CLAIMANT)
    assert (seizure, injunction) == (1, 2)
    clock.now += DAY
    cancel = registry.cancel_blocking(pid, seizure)
    assert cancel == 3
    record = registry.read_parcel(pid)
    assert record is not None
    entries = {e.index: e for e in record.entries}
    assert not entries[1].active and entries[1].amount == 50_000_000
    assert entries[2].active and entries[2].kind == "injunction"
    assert entries[3].kind == "cancellation" and entries[3].ref == 1 and not entries[3].active
    assert registry.read_history(pid)[3][1] == NOW + DAY
    with pytest.raises(EntryRefused, match="already cancelled"):
        registry.cancel_blocking(pid, seizure)
    with pytest.raises(EntryRefused, match="not a blocking"):
        registry.cancel_blocking(pid, 0)
    with pytest.raises(EntryRefused, match="not a blocking"):
        registry.cancel_blocking(pid, cancel)
    with pytest.raises(EntryRefused, match="does not exist"):
        registry.cancel_blocking(pid, 99)
    with pytest.raises(EntryRefused, match="not a blocking kind"):
        registry.add_blocking(pid, GapguKind.OWNERSHIP, CLAIMANT)
    with pytest.raises(UnknownParcel):
        registry.add_blocking(parcel_id("nowhere"), "auction", CLAIMANT)
    assert actives(registry, pid, "gapgu") == [0, 2]


def test_mortgage_ranks_and_discharge(registry: ReferenceRegistry) -> None:
    pid = fresh(registry)
    first = registry.add_mortgage(pid, BANK, SELLER, 360_000_000)
    second = registry.add_mortgage(pid, BANK2, SELLER, 120_000_000)
    discharge = registry.discharge(pid, first)
    third = registry.add_mortgage(pid, BANK, SELLER, 60_000_000)
    assert (first, second, discharge, third) == (0, 1, 2, 3)
    record = registry.read_parcel(pid)
    assert record is not None
    eulgu = {e.index: e for e in record.entries if e.section == "eulgu"}
    assert [eulgu[i].rank for i in (0, 1, 3)] == [1, 2, 3]  # ranks never reused
    assert eulgu[2].kind == "discharge" and eulgu[2].ref == 0
    assert actives(registry, pid, "eulgu") == [1, 3]
    with pytest.raises(EntryRefused, match="already discharged"):
        registry.discharge(pid, first)
    with pytest.raises(EntryRefused, match="not a mortgage"):
        registry.discharge(pid, discharge)
    with pytest.raises(EntryRefused, match="채권최고액"):
        registry.add_mortgage(pid, BANK, SELLER, 0)


def test_at_most_eight_active_mortgages(registry: ReferenceRegistry) -> None:
    pid = fresh(registry)
    for _ in range(8):
        registry.add_mortgage(pid, BANK, SELLER, 1_000_000)
    with pytest.raises(EntryRefused, match="8 active"):
        registry.add_mortgage(pid, BANK, SELLER, 1_000_000)
    registry.discharge(pid, 0)
    assert registry.add_mortgage(pid, BANK, SELLER, 1_000_000) == 9


def test_concurrent_entries_get_distinct_indexes(registry: ReferenceRegistry) -> None:
    pid = fresh(registry)
    with ThreadPoolExecutor(6) as pool:
        indexes = list(pool.map(lambda _: registry.add_blocking(pid, "auction", CLAIMANT), range(6)))
    assert sorted(indexes) == [1, 2, 3, 4, 5, 6]
    record = registry.read_parcel(pid)
    assert record is not None and len({e.receipt for e in record.entries}) == 7


# --- transfer check --------------------------------------------------------------------


def test_check_transfer_reasons(registry: ReferenceRegistry, parcels: dict[str, str]) -> None:
    def check(rid: str, pid: str, seller: str = SELLER) -> tuple[bool, str]:
        answer = registry.check_transfer(rid, TransferCheckRequest(parcel_id=pid, seller=seller, buyer=BUYER))
        return answer.ok, answer.reason

    assert check("c1", parcels["eunma"]) == (True, "ok")  # a mortgage does not block
    assert check("c2", parcel_id("nowhere")) == (False, "unknown_parcel")
    assert check("c3", parcels["eunma"], OWNER2) == (False, "seller_not_owner")
    oksu = parcels["oksu"]
    owner = registry.read_parcel(oksu)
    assert owner is not None
    assert check("c4", oksu, owner.owner) == (False, "blocked")
    registry.cancel_blocking(oksu, 1)
    assert check("c4", oksu, owner.owner) == (False, "blocked")  # same id, same answer
    assert check("c5", oksu, owner.owner) == (True, "ok")


# --- tax -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "housing", "rate", "tax"),
    [
        (600_000_000, True, 100, 6_000_000),
        (600_000_001, True, 100, 6_000_000),
        (700_000_000, True, 166, 11_620_000),  # 1.6667% rounded down to 166 bps
        (750_000_000, True, 200, 15_000_000),
        (900_000_000, True, 300, 27_000_000),
        (900_000_001, True, 300, 27_000_000),
        (1_500_000_000, True, 300, 45_000_000),
        (100_000_000, False, 400, 4_000_000),
        (900_000_001, False, 400, 36_000_000),
    ],
)
def test_tax_brackets(price: int, housing: bool, rate: int, tax: int) -> None:
    assert acquisition_tax_of(price, housing) == (tax, rate)


def test_tax_table_is_data() -> None:
    assert [b.upto for b in HOUSING_TAX] == [600_000_000, 900_000_000, None]
    assert [b.upto for b in LAND_TAX] == [None]


def test_acquisition_tax_receipts(registry: ReferenceRegistry, parcels: dict[str, str]) -> None:
    ask = TaxRequest(deal_id=1, parcel_id=parcels["eunma"], buyer=BUYER, price=750_000_000)
    housing = registry.acquisition_tax("t1", ask)
    assert (housing.tax, housing.rate_bps, housing.receipt_no) == (
        15_000_000,
        200,
        "2026-TAX-000001",
    )
    assert registry.acquisition_tax("t1", ask) == housing
    assert registry.acquisition_tax("t2", ask) == housing  # one assessment per deal
    with pytest.raises(FilingConflict):
        registry.acquisition_tax("t3", ask.model_copy(update={"price": 800_000_000}))
    with pytest.raises(RequestIdReused):
        registry.acquisition_tax("t1", ask.model_copy(update={"deal_id": 2}))
    land = registry.acquisition_tax(
        "t4",
        TaxRequest(deal_id=2, parcel_id=parcels["yongin_forest"], buyer=BUYER, price=200_000_000),
    )
    assert (land.tax, land.rate_bps, land.receipt_no) == (8_000_000, 400, "2026-TAX-000002")
    with pytest.raises(UnknownParcel):
        registry.acquisition_tax("t5", ask.model_copy(update={"deal_id": 3, "parcel_id": parcel_id("x")}))


# --- transaction report ----------------------------------------------------------------


def _report(pid: str, contract_time: int, deal_id: int = 1) -> TransactionReport:
    return TransactionReport(
        deal_id=deal_id,
        parcel_id=pid,
        seller=SELLER,
        buyer=BUYER,
        price=750_000_000,
        contract_time=contract_time,
    )


def test_report_deadline(registry: ReferenceRegistry, parcels: dict[str, str]) -> None:
    pid = parcels["eunma"]
    with pytest.raises(ReportDeadlinePassed, match="within 30 days of the contract"):
        registry.file_transaction_report("r1", _report(pid, NOW - 30 * DAY - 1))
    on_time = registry.file_transaction_report("r2", _report(pid, NOW - 30 * DAY))
    assert on_time.receipt_no == "2026-RPT-000001"
    assert registry.file_transaction_report("r2", _report(pid, NOW - 30 * DAY)) == on_time
    assert registry.file_transaction_report("r3", _report(pid, NOW - 30 * DAY)) == on_time
    with pytest.raises(FilingConflict):
        registry.file_transaction_report("r4", _report(pid, NOW - DAY))
    filed = registry.report_record(1)
    assert filed is not None and filed["filed_at"] == NOW and filed["price"] == 750_000_000
    with pytest.raises(UnknownParcel):
        registry.file_transaction_report("r5", _report(parcel_id("x"), NOW, deal_id=2))


# --- registration ----------------------------------------------------------------------


def _registration(
    registry: ReferenceRegistry,
    pid: str,
    *,
    discharged: list[int],
    deal_id: int = 1,
    price: int = 750_000_000,
) -> RegistrationRequest:
    tax = registry.acquisition_tax(
        f"tax-{deal_id}", TaxRequest(deal_id=deal_id, parcel_id=pid, buyer=BUYER, price=price)
    )
    mortgage = RegisterEntry(
        section="eulgu",
        index=0,
        kind="mortgage",
        holder=BANK2,
        debtor=BUYER,
        amount=480_000_000,
        receipt="pending",
        active=True,
    )
    record = registry.read_parcel(pid)
    assert record is not None
    return RegistrationRequest(
        deal_id=deal_id,
        parcel_id=pid,
        seller=record.owner,
        buyer=BUYER,
        price=price,
        tax_receipt=tax.receipt_no,
        discharged_entries=discharged,
        new_mortgage=mortgage,
    )


def test_file_registration_effects_and_idempotency(
    registry: ReferenceRegistry, parcels: dict[str, str], clock: Clock
) -> None:
    pid = parcels["eunma"]
    request = _registration(registry, pid, discharged=[0])
    clock.now += DAY
    answer = registry.file_registration("g1", request)
    assert RECEIPT.match(answer.receipt_no) and "REG" in answer.receipt_no
    record = registry.read_parcel(pid)
    assert record is not None and record.owner == BUYER
    new = [e for e in record.entries if e.receipt == answer.receipt_no]
    assert [(e.section, e.index, e.kind) for e in new] == [
        ("gapgu", 1, "ownership"),
        ("eulgu", 1, "discharge"),
        ("eulgu", 2, "mortgage"),
    ]
    eulgu0 = next(e for e in record.entries if e.section == "eulgu" and e.index == 0)
    assert new[1].ref == 0 and not eulgu0.active  # 을구 0 discharged
    assert (new[2].holder, new[2].debtor, new[2].amount, new[2].rank) == (
        BANK2,
        BUYER,
        480_000_000,
        2,
    )
    assert all(t == NOW + DAY for e, t in registry.read_history(pid) if e.receipt == answer.receipt_no)
    snapshot = record.model_dump()
    assert registry.file_registration("g1", request) == answer
    assert registry.file_registration("g2", request) == answer  # the deal is registered once
    after = registry.read_parcel(pid)
    assert after is not None and after.model_dump() == snapshot
    check = registry.check_transfer("c1", TransferCheckRequest(parcel_id=pid, seller=SELLER, buyer=BUYER))
    assert check.reason == "seller_not_owner"


def test_file_registration_refusals_change_nothing(
    registry: ReferenceRegistry, parcels: dict[str, str]
) -> None:
    pid = parcels["jamsil"]
    before = registry.read_parcel(pid)
    request = _registration(registry, pid, discharged=[0, 1])
    with pytest.raises(EntryRefused):
        registry.file_registration("g1", request.model_copy(update={"discharged_entries": [0, 7]}))
    with pytest.raises(EntryRefused, match="repeat"):
        registry.file_registration("g2", request.model_copy(update={"discharged_entries": [0, 0]}))
    with pytest.raises(RegistrationRefused, match="tax receipt"):
        registry.file_registration("g3", request.model_copy(update={"tax_receipt": "2026-TAX-999999"}))
    with pytest.raises(RegistrationRefused, match="tax receipt"):
        registry.file_registration("g4", request.model_copy(update={"price": 1}))
    bad_mortgage = request.new_mortgage.model_copy(update={"kind": "discharge"})  # type: ignore[union-attr]
    with pytest.raises(EntryRefused, match="new_mortgage"):
        registry.file_registration("g5", request.model_copy(update={"new_mortgage": bad_mortgage}))
    assert registry.read_parcel(pid) == before
    # the blocked parcel cannot be registered to a buyer
    oksu = parcels["oksu"]
    owner = registry.read_parcel(oksu)
    assert owner is not None
    blocked = _registration(registry, oksu, discharged=[], deal_id=2)
    with pytest.raises(RegistrationRefused, match="blocked"):
        registry.file_registration("g6", blocked)
    # and the same request succeeds once everything is in order
    assert registry.file_registration("g7", request).receipt_no


def test_registration_without_mortgage_or_discharges(
    registry: ReferenceRegistry, parcels: dict[str, str]
) -> None:
    pid = parcels["banpo"]
    owner = registry.read_parcel(pid)
    assert owner is not None and owner.owner == OWNER2
    request = _registration(registry, pid, discharged=[]).model_copy(update={"new_mortgage": None})
    registry.file_registration("g1", request)
    record = registry.read_parcel(pid)
    assert record is not None and record.owner == BUYER
    assert [e.kind for e in record.entries] == ["ownership", "ownership"]


# --- receipts and persistence ----------------------------------------------------------


def test_receipt_numbers_unique_ascii_and_short(registry: ReferenceRegistry, parcels: dict[str, str]) -> None:
    registry.file_transaction_report("r1", _report(parcels["eunma"], NOW))
    request = _registration(registry, parcels["eunma"], discharged=[0])
    registration = registry.file_registration("g1", request)
    seeded: list[str] = []
    for record in registry.list_parcels():
        seeded += [e.receipt for e in record.entries if e.receipt != registration.receipt_no]
    assert len(seeded) == len(set(seeded))  # one filing per seeded entry
    everything = [*seeded, registration.receipt_no, request.tax_receipt, "2026-RPT-000001"]
    assert len(set(everything)) == len(everything)
    for number in everything:
        assert RECEIPT.match(number) and len(number.encode("ascii")) <= 32
        receipt(number)  # fits the register's bytes32


def test_receipt_year_follows_korean_time(db_url: str) -> None:
    # 2026-12-31 15:00 UTC is 2027-01-01 00:00 in Seoul
    clock = Clock(int(datetime(2026, 12, 31, 14, 59, 59, tzinfo=UTC).timestamp()))
    registry = ReferenceRegistry(db_url, clock=clock)
    try:
        first = fresh(registry, "1")
        clock.now += 1
        second = fresh(registry, "2")
        receipts = [
            r.entries[0].receipt
            for r in (registry.read_parcel(first), registry.read_parcel(second))
            if r is not None
        ]
        assert receipts == ["2026-REG-000001", "2027-REG-000001"]
    finally:
        registry.close()


def test_state_persists_across_instances(db_url: str, clock: Clock) -> None:
    first = ReferenceRegistry(db_url, clock=clock)
    ids = seed_registry(first, {"seller": SELLER}, {"bank": BANK})
    first.acquisition_tax("t1", TaxRequest(deal_id=1, parcel_id=ids["eunma"], buyer=BUYER, price=1))
    before = first.list_parcels()
    first.close()
    second = ReferenceRegistry(db_url, clock=clock)
    try:
        assert second.list_parcels() == before
        again = second.acquisition_tax(
            "t1", TaxRequest(deal_id=1, parcel_id=ids["eunma"], buyer=BUYER, price=1)
        )
        assert again.receipt_no == "2026-TAX-000001"
        assert second.add_mortgage(ids["banpo"], BANK, SELLER, 10) == 0
        record = second.read_parcel(ids["banpo"])
        assert record is not None
        assert record.entries[-1].receipt == f"2026-REG-{sum(len(r.entries) for r in before) + 1:06d}"
    finally:
        second.close()


def test_land_use_names(registry: ReferenceRegistry) -> None:
    pid = registry.register_parcel("f-1", "경기도 용인시", 100, LandUse.PADDY, SELLER)
    record = registry.read_parcel(pid)
    assert record is not None and record.land_use == "paddy"
    tax = registry.acquisition_tax("t1", TaxRequest(deal_id=1, parcel_id=pid, buyer=BUYER, price=100_000_000))
    assert tax.rate_bps == 400


# --- seeded bank -----------------------------------------------------------------------


def test_seed_bank_books_the_registers_mortgages(
    db_url: str, registry: ReferenceRegistry, parcels: dict[str, str]
) -> None:
    bank = ReferenceBank(db_url, bank_name="한빛은행", known_issuers=set())
    try:
        opened = seed_bank(bank, {"seller": SELLER, "buyer": BUYER}, registry=registry, creditor=BANK)
        assert opened == {"seller": SELLER, "buyer": BUYER}
        seller = bank.customer(SELLER)
        assert seller is not None and seller["annual_income"] > 0
        quote = bank.payoff_quote(
            "p1",
            PayoffRequest(deal_id=1, parcel_id=parcels["eunma"], mortgage_entry=0, debtor=SELLER),
        )
        assert quote.amount == outstanding_of(360_000_000) == 270_000_000
        seed_bank(bank, {"seller": SELLER}, registry=registry, creditor=BANK)  # repeatable
        gongdeok = bank.held_mortgage(parcels["gongdeok"], 0)
        assert gongdeok is not None and gongdeok["outstanding"] == outstanding_of(240_000_000)
        assert bank.held_mortgage(parcels["yongin_field"], 0) is None  # bank2's
    finally:
        bank.close()
