"""A realistic sample of registers and bank customers, for the demo and the tests.

Parcel numbers follow the 19-digit PNU layout (10-digit 법정동 code, 1 = land / 2 = 산,
4-digit 본번, 4-digit 부번), written "DDDDDDDDDD-BMMMM-SSSS". Apartments are registered as
`building` (housing for the acquisition tax) with their exclusive area (전용면적).
Seeding is repeatable: a parcel or customer that already exists is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address

from pipeline.adapters.protocols import ParcelRecord
from pipeline.adapters.reference_bank import ReferenceBank
from pipeline.adapters.reference_registry import ReferenceRegistry
from pipeline.domain import GapguKind, LandUse
from pipeline.domain import parcel_id as parcel_id_of
from pipeline.errors import PipelineValueError


@dataclass(frozen=True)
class SampleParcel:
    label: str
    number: str
    address: str
    area_m2_x100: int
    land_use: LandUse
    mortgages: tuple[tuple[int, int], ...] = ()  # (bank position in `banks`, 채권최고액)
    seizure: int = 0  # 가압류 claimed amount; 0 = none


SAMPLE_PARCELS: tuple[SampleParcel, ...] = (
    SampleParcel(
        "eunma",
        "1168010600-10316-0000",
        "서울특별시 강남구 대치동 316 은마아파트 제28동 제1004호",
        7679,
        LandUse.BUILDING,
        mortgages=((0, 360_000_000),),
    ),
    SampleParcel(
        "banpo",
        "1165010700-10020-0043",
        "서울특별시 서초구 반포동 20-43 반포자이 제112동 제2101호",
        8494,
        LandUse.BUILDING,
    ),
    SampleParcel(
        "gongdeok",
        "1144010200-10476-0000",
        "서울특별시 마포구 공덕동 476 공덕자이 제105동 제803호",
        5992,
        LandUse.BUILDING,
        mortgages=((0, 240_000_000),),
    ),
    SampleParcel(
        "jamsil",
        "1171010100-10019-0000",
        "서울특별시 송파구 잠실동 19 잠실엘스 제131동 제1502호",
        8497,
        LandUse.BUILDING,
        mortgages=((0, 420_000_000), (1, 120_000_000)),
    ),
    SampleParcel(
        "oksu",
        "1120011400-10553-0000",
        "서울특별시 성동구 옥수동 553 래미안옥수리버젠 제107동 제1203호",
        11480,
        LandUse.BUILDING,
        seizure=85_000_000,
    ),
    SampleParcel(
        "yongin_field",
        "4146135021-10456-0002",
        "경기도 용인시 처인구 원삼면 독성리 456-2",
        165_200,
        LandUse.FIELD,
        mortgages=((1, 180_000_000),),
    ),
    SampleParcel(
        "yongin_forest",
        "4146135021-20123-0000",
        "경기도 용인시 처인구 원삼면 독성리 산123",
        991_700,
        LandUse.FOREST,
    ),
)

# A creditor outside the system, holder of the sample 가압류.
SEIZURE_CREDITOR = to_checksum_address(keccak(text="deedchain sample 가압류 채권자")[-20:])


@dataclass(frozen=True)
class SampleCustomer:
    name: str
    annual_income: int
    cash: int
    other_annual_debt_service: int


SAMPLE_CUSTOMERS: tuple[SampleCustomer, ...] = (
    SampleCustomer("김민준", 96_000_000, 150_000_000, 6_000_000),
    SampleCustomer("이서연", 72_000_000, 80_000_000, 0),
    SampleCustomer("박지훈", 130_000_000, 300_000_000, 12_000_000),
    SampleCustomer("최수아", 54_000_000, 30_000_000, 3_600_000),
    SampleCustomer("정우진", 180_000_000, 520_000_000, 24_000_000),
)


def seed_registry(
    registry: ReferenceRegistry, owners: dict[str, str], banks: dict[str, str]
) -> dict[str, str]:
    """Register SAMPLE_PARCELS; returns {label: parcel_id}.

    Owners are taken from `owners` in order, one per parcel, cycling (so the first owner label,
    e.g. 'seller', owns 은마); a mortgage's creditor is the bank at its position in `banks`
    (modulo its length) and its debtor the owner. 옥수 carries an active 가압류, so it cannot
    be sold. Parcels already registered are left untouched.
    """
    if not owners or not banks:
        raise PipelineValueError("seed_registry needs at least one owner and one bank")
    owner_addresses = list(owners.values())
    bank_addresses = list(banks.values())
    ids: dict[str, str] = {}
    for position, sample in enumerate(SAMPLE_PARCELS):
        pid = parcel_id_of(sample.number)
        ids[sample.label] = pid
        if registry.read_parcel(pid) is not None:
            continue
        owner = owner_addresses[position % len(owner_addresses)]
        registry.register_parcel(sample.number, sample.address, sample.area_m2_x100, sample.land_use, owner)
        for bank_position, max_secured in sample.mortgages:
            creditor = bank_addresses[bank_position % len(bank_addresses)]
            registry.add_mortgage(pid, creditor, owner, max_secured)
        if sample.seizure:
            registry.add_blocking(pid, GapguKind.PROVISIONAL_SEIZURE, SEIZURE_CREDITOR, sample.seizure)
    return ids


def outstanding_of(max_secured: int) -> int:
    """The sample's outstanding balance of a mortgage: the loan was 채권최고액 / 1.2, and
    10% of it has been repaid."""
    return max_secured * 10 // 12 * 9 // 10


def seed_bank(
    bank: ReferenceBank,
    customers: dict[str, str],
    *,
    registry: ReferenceRegistry | None = None,
    creditor: str | None = None,
) -> dict[str, str]:
    """Open SAMPLE_CUSTOMERS (cycling) for the addresses in `customers`; returns
    {label: checksummed address}. With `registry` and `creditor` (this bank's address),
    also books every active mortgage the register shows for that creditor, so payoff
    quotes work (outstanding = outstanding_of(채권최고액)). Existing records are skipped."""
    opened: dict[str, str] = {}
    for position, (label, address) in enumerate(customers.items()):
        profile = SAMPLE_CUSTOMERS[position % len(SAMPLE_CUSTOMERS)]
        checksummed = to_checksum_address(address)
        if bank.customer(checksummed) is None:
            bank.open_customer(
                checksummed,
                profile.name,
                profile.annual_income,
                cash=profile.cash,
                other_annual_debt_service=profile.other_annual_debt_service,
            )
        opened[label] = checksummed
    if registry is not None and creditor is not None:
        lender = to_checksum_address(creditor)
        for record in registry.list_parcels():
            _book_mortgages(bank, record, lender)
    return opened


def _book_mortgages(bank: ReferenceBank, record: ParcelRecord, lender: str) -> None:
    for entry in record.entries:
        if not (entry.section == "eulgu" and entry.kind == "mortgage" and entry.active):
            continue
        if entry.holder != lender or entry.debtor is None:
            continue
        if bank.held_mortgage(record.parcel_id, entry.index) is None:
            bank.book_existing_mortgage(
                record.parcel_id, entry.debtor, outstanding_of(entry.amount), entry.index
            )
