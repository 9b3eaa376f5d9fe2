"""A reference land registry (등기소) and tax office, keeping its own 등기부 in a database.

Per parcel: 표제부 (number, address, area in m² x 100, land use), 갑구 (ownership, 가압류,
가처분, 경매 and their cancellations) and 을구 (근저당 and their discharges). Entries are
append-only with the semantics of the LandRegister contract, so the two can be compared entry by
entry: a cancellation or discharge is a new entry whose `ref` is the old one, which becomes
inactive and stays in the history; ownership entries stay active (the owner is the last one);
mortgage rank = 1 + mortgages ever registered on the parcel; at most 8 active mortgages.

Every filing gets a receipt number "YYYY-KIND-NNNNNN" (ASCII, <= 32 bytes: REG registrations,
TAX acquisition tax, RPT transaction reports), numbered per kind per year (Korean time) from a
counter allocated in the same transaction as the record. All entries of one filing share its
receipt, as all entries of one on-chain settlement share the registration receipt.

Acquisition tax (취득세, the reference table; surtaxes and multi-home rates are out of scope):
housing (a parcel registered as housing, by default land use `building`) pays 1% up to
600,000,000 won, the statutory sliding rate (price x 2/300,000,000 - 3)% from 600,000,001 to
900,000,000 won — computed in integer basis points as price x 2 // 3,000,000 - 300, i.e.
rounded down to the basis point — and 3% above; other land pays 4%. The tax is
price x rate_bps // 10,000 (원 미만 절사). The table is data: HOUSING_TAX and LAND_TAX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from eth_utils import to_checksum_address
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.adapters.protocols import (
    ParcelRecord,
    Payload,
    RegisterEntry,
    RegistrationReceipt,
    RegistrationRequest,
    ReportReceipt,
    TaxReceipt,
    TaxRequest,
    TransactionReport,
    TransferCheck,
    TransferCheckRequest,
)
from pipeline.adapters.request_log import BackOffice
from pipeline.db import sql
from pipeline.domain import GapguKind, LandUse
from pipeline.domain import parcel_id as parcel_id_of
from pipeline.errors import PipelineValueError

A = TypeVar("A", bound=Payload)

MAX_WON = 10**18
MAX_ACTIVE_MORTGAGES = 8
REPORT_DEADLINE_DAYS = 30
KST = timezone(timedelta(hours=9))

BLOCKING_KINDS = (GapguKind.PROVISIONAL_SEIZURE, GapguKind.INJUNCTION, GapguKind.AUCTION)


@dataclass(frozen=True)
class TaxBracket:
    """Prices up to `upto` won (inclusive; None = no limit) pay
    rate_bps = price * slope_num // slope_den + offset_bps (a flat rate has slope 0)."""

    upto: int | None
    offset_bps: int
    slope_num: int = 0
    slope_den: int = 1

    def rate_bps(self, price: int) -> int:
        return price * self.slope_num // self.slope_den + self.offset_bps


HOUSING_TAX: tuple[TaxBracket, ...] = (
    TaxBracket(upto=600_000_000, offset_bps=100),
    # (price x 2/300,000,000 - 3) % = price x 2/3,000,000 - 300 bps, rounded down
    TaxBracket(upto=900_000_000, offset_bps=-300, slope_num=2, slope_den=3_000_000),
    TaxBracket(upto=None, offset_bps=300),
)
LAND_TAX: tuple[TaxBracket, ...] = (TaxBracket(upto=None, offset_bps=400),)


def tax_rate_bps(price: int, housing: bool) -> int:
    """The acquisition-tax rate for a price, from the bracket table."""
    for bracket in HOUSING_TAX if housing else LAND_TAX:
        if bracket.upto is None or price <= bracket.upto:
            return bracket.rate_bps(price)
    raise AssertionError("the last bracket has no limit")


def acquisition_tax_of(price: int, housing: bool) -> tuple[int, int]:
    """(tax in won, rate in bps); the tax is rounded down to the won."""
    rate = tax_rate_bps(price, housing)
    return price * rate // 10_000, rate


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS registry_parcels (
        parcel_id TEXT PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,
        address TEXT NOT NULL,
        area_m2_x100 BIGINT NOT NULL,
        land_use TEXT NOT NULL,
        housing INTEGER NOT NULL,
        owner TEXT NOT NULL,
        gapgu_length INTEGER NOT NULL,
        eulgu_length INTEGER NOT NULL,
        mortgages_registered INTEGER NOT NULL,
        registered_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS registry_entries (
        parcel_id TEXT NOT NULL REFERENCES registry_parcels (parcel_id),
        section TEXT NOT NULL CHECK (section IN ('gapgu', 'eulgu')),
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL,
        holder TEXT,
        debtor TEXT,
        amount BIGINT NOT NULL,
        rank INTEGER NOT NULL,
        ref INTEGER,
        receipt TEXT NOT NULL,
        recorded_at BIGINT NOT NULL,
        active INTEGER NOT NULL,
        closed_by INTEGER,
        PRIMARY KEY (parcel_id, section, idx)
    )""",
    """CREATE TABLE IF NOT EXISTS registry_counters (
        kind TEXT NOT NULL,
        year INTEGER NOT NULL,
        value BIGINT NOT NULL,
        PRIMARY KEY (kind, year)
    )""",
    """CREATE TABLE IF NOT EXISTS registry_taxes (
        receipt_no TEXT PRIMARY KEY,
        deal_id BIGINT NOT NULL UNIQUE,
        parcel_id TEXT NOT NULL,
        buyer TEXT NOT NULL,
        price BIGINT NOT NULL,
        rate_bps INTEGER NOT NULL,
        tax BIGINT NOT NULL,
        issued_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS registry_reports (
        receipt_no TEXT PRIMARY KEY,
        deal_id BIGINT NOT NULL UNIQUE,
        parcel_id TEXT NOT NULL,
        seller TEXT NOT NULL,
        buyer TEXT NOT NULL,
        price BIGINT NOT NULL,
        contract_time BIGINT NOT NULL,
        filed_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS registry_registrations (
        receipt_no TEXT PRIMARY KEY,
        deal_id BIGINT NOT NULL UNIQUE,
        parcel_id TEXT NOT NULL,
        seller TEXT NOT NULL,
        buyer TEXT NOT NULL,
        price BIGINT NOT NULL,
        tax_receipt TEXT NOT NULL,
        registered_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS registry_requests (
        request_id TEXT NOT NULL,
        method TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        answer TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (request_id, method)
    )""",
]


class RegistryValueError(PipelineValueError):
    """The registry refuses a filing; the message names the rule."""


class UnknownParcel(RegistryValueError):
    """No register is open under this parcel id."""


class ParcelAlreadyRegistered(RegistryValueError):
    """register_parcel for a number that already has a register."""


class EntryRefused(RegistryValueError):
    """An entry cannot be cancelled, discharged or added (range, kind, not active, limits)."""


class ReportDeadlinePassed(RegistryValueError):
    """A transaction report filed more than 30 days after the contract."""


class FilingConflict(RegistryValueError):
    """A deal's report, tax or registration was filed before with different particulars."""


class RegistrationRefused(RegistryValueError):
    """file_registration refused: the transfer check failed or the tax receipt is wrong."""


class RequestIdReused(RegistryValueError):
    """The same request id came back with a different payload."""


def _checksum(address: str) -> str:
    return to_checksum_address(address)


def _land_use_name(land_use: LandUse | str) -> str:
    if isinstance(land_use, LandUse):
        return land_use.name.lower()
    try:
        return LandUse[land_use.upper()].name.lower()
    except KeyError:
        raise RegistryValueError(f"land use {land_use!r}: not one of {list(LandUse)}") from None


def _blocking_kind(kind: GapguKind | str) -> GapguKind:
    try:
        value = kind if isinstance(kind, GapguKind) else GapguKind[kind.upper()]
    except KeyError:
        raise EntryRefused(f"갑구 kind {kind!r}: unknown") from None
    if value not in BLOCKING_KINDS:
        raise EntryRefused(f"갑구 kind {value.name}: not a blocking kind (가압류, 가처분, 경매)")
    return value


class ReferenceRegistry(BackOffice):
    """The land registry's own records (tables registry_*), implementing LandRegistryAdapter."""

    SCHEMA = _SCHEMA
    REQUESTS_TABLE = "registry_requests"
    INVALID = RegistryValueError
    REUSED = RequestIdReused

    def __init__(self, engine_or_url: Engine | str, *, clock: Callable[[], int] | None = None) -> None:
        super().__init__(engine_or_url, clock)

    # ------------------------------------------------------------------ registrar (setup)

    def register_parcel(
        self,
        number: str,
        address: str,
        area_m2_x100: int,
        land_use: LandUse | str,
        owner: str,
        *,
        housing: bool | None = None,
    ) -> str:
        """Open a register (표제부) and record the first owner (소유권보존) as 갑구 entry 0.

        `housing` selects the tax table; by default a `building` parcel is housing.
        """
        if not number or not address or area_m2_x100 <= 0:
            raise RegistryValueError(
                f"parcel {number!r} at {address!r}, area {area_m2_x100}: number and address"
                " must be non-empty and the area positive"
            )
        use = _land_use_name(land_use)
        is_housing = use == "building" if housing is None else housing
        pid = parcel_id_of(number)
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                receipt = self._next_receipt(conn, "REG", now)
                conn.execute(
                    sql(
                        "INSERT INTO registry_parcels (parcel_id, number, address, area_m2_x100,"
                        " land_use, housing, owner, gapgu_length, eulgu_length,"
                        " mortgages_registered, registered_at)"
                        " VALUES (:p, :n, :a, :area, :use, :h, :o, 0, 0, 0, :t)"
                    ),
                    {
                        "p": pid,
                        "n": number,
                        "a": address,
                        "area": area_m2_x100,
                        "use": use,
                        "h": int(is_housing),
                        "o": _checksum(owner),
                        "t": now,
                    },
                )
                self._append_ownership(conn, pid, _checksum(owner), receipt, now)
        except IntegrityError:
            raise ParcelAlreadyRegistered(f"parcel {number!r} ({pid}) is already registered") from None
        return pid

    def add_blocking(self, parcel_id: str, kind: GapguKind | str, claimant: str, amount: int = 0) -> int:
        """Record a 가압류 / 가처분 / 경매 entry in 갑구; returns its index."""
        blocking = _blocking_kind(kind)
        if not 0 <= amount <= MAX_WON:
            raise EntryRefused(f"claimed amount {amount}: must be 0..{MAX_WON} won")
        with self.engine.begin() as conn:
            self._lock(conn, parcel_id)
            now = self.clock()
            return self._append(
                conn,
                parcel_id,
                "gapgu",
                blocking.name.lower(),
                receipt=self._next_receipt(conn, "REG", now),
                now=now,
                holder=_checksum(claimant),
                amount=amount,
            )

    def cancel_blocking(self, parcel_id: str, index: int) -> int:
        """Cancel active blocking entry `index` with a new cancellation entry; returns its index."""
        with self.engine.begin() as conn:
            self._lock(conn, parcel_id)
            target = self._entry(conn, parcel_id, "gapgu", index)
            if target["kind"] not in {k.name.lower() for k in BLOCKING_KINDS}:
                raise EntryRefused(f"갑구 entry {index} of {parcel_id} is not a blocking entry")
            if not target["active"]:
                raise EntryRefused(f"갑구 entry {index} of {parcel_id} is already cancelled")
            now = self.clock()
            return self._close(
                conn, parcel_id, "gapgu", index, "cancellation", self._next_receipt(conn, "REG", now), now
            )

    def add_mortgage(self, parcel_id: str, creditor: str, debtor: str, max_secured: int) -> int:
        """Register a 근저당 in 을구 (rank assigned); returns its index."""
        with self.engine.begin() as conn:
            self._lock(conn, parcel_id)
            now = self.clock()
            return self._append_mortgage(
                conn,
                parcel_id,
                _checksum(creditor),
                _checksum(debtor),
                max_secured,
                self._next_receipt(conn, "REG", now),
                now,
            )

    def discharge(self, parcel_id: str, index: int) -> int:
        """Discharge active mortgage `index` with a new discharge entry; returns its index."""
        with self.engine.begin() as conn:
            self._lock(conn, parcel_id)
            self._check_discharge(conn, parcel_id, index)
            now = self.clock()
            return self._close(
                conn, parcel_id, "eulgu", index, "discharge", self._next_receipt(conn, "REG", now), now
            )

    def transfer_owner(self, parcel_id: str, new_owner: str) -> int:
        """Record a transfer of ownership (the registrar is authoritative: no blocking check,
        as for an auction sale); returns the 갑구 index."""
        with self.engine.begin() as conn:
            self._lock(conn, parcel_id)
            now = self.clock()
            return self._append_ownership(
                conn, parcel_id, _checksum(new_owner), self._next_receipt(conn, "REG", now), now
            )

    # ------------------------------------------------------------------ reading

    def read_parcel(self, parcel_id: str) -> ParcelRecord | None:
        """The whole register of a parcel (both sections, history included), or None."""
        with self.engine.connect() as conn:
            return self._read(conn, parcel_id.lower())

    def read_history(self, parcel_id: str) -> list[tuple[RegisterEntry, int]]:
        """Every entry with the time it was recorded (갑구 then 을구, by index)."""
        with self.engine.connect() as conn:
            rows = self._entry_rows(conn, parcel_id.lower())
        return [(_to_entry(r), int(r["recorded_at"])) for r in rows]

    def list_parcels(self) -> list[ParcelRecord]:
        """Every register, by parcel number."""
        with self.engine.connect() as conn:
            ids = conn.execute(sql("SELECT parcel_id FROM registry_parcels ORDER BY number")).scalars()
            records = [self._read(conn, pid) for pid in list(ids)]
        return [r for r in records if r is not None]

    def tax_record(self, receipt_no: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sql("SELECT * FROM registry_taxes WHERE receipt_no = :r"), {"r": receipt_no})
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def report_record(self, deal_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sql("SELECT * FROM registry_reports WHERE deal_id = :d"), {"d": deal_id})
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    # ------------------------------------------------------------------ LandRegistryAdapter

    def check_transfer(self, request_id: str, request: TransferCheckRequest) -> TransferCheck:
        """Whether the seller can transfer the parcel now, from the registry's own records."""

        def work(conn: Connection) -> TransferCheck:
            return self._transfer_check(conn, request.parcel_id, request.seller)

        return self._idempotent("check_transfer", request_id, request, TransferCheck, work)

    def acquisition_tax(self, request_id: str, request: TaxRequest) -> TaxReceipt:
        """Assess and receipt the acquisition tax of a deal (once per deal)."""

        def work(conn: Connection) -> TaxReceipt:
            pid = request.parcel_id.lower()
            buyer = _checksum(request.buyer)
            previous = self._previous_filing(
                conn,
                "registry_taxes",
                request.deal_id,
                {"parcel_id": pid, "buyer": buyer, "price": request.price},
            )
            if previous is not None:
                return TaxReceipt(
                    receipt_no=previous["receipt_no"],
                    tax=previous["tax"],
                    rate_bps=previous["rate_bps"],
                )
            parcel = self._parcel_row(conn, pid)
            if parcel is None:
                raise UnknownParcel(f"parcel {pid} is not registered")
            tax, rate = acquisition_tax_of(request.price, bool(parcel["housing"]))
            now = self.clock()
            receipt = self._next_receipt(conn, "TAX", now)
            conn.execute(
                sql(
                    "INSERT INTO registry_taxes (receipt_no, deal_id, parcel_id, buyer, price,"
                    " rate_bps, tax, issued_at) VALUES (:r, :d, :p, :b, :price, :rate, :tax, :t)"
                ),
                {
                    "r": receipt,
                    "d": request.deal_id,
                    "p": pid,
                    "b": buyer,
                    "price": request.price,
                    "rate": rate,
                    "tax": tax,
                    "t": now,
                },
            )
            return TaxReceipt(receipt_no=receipt, tax=tax, rate_bps=rate)

        return self._idempotent("acquisition_tax", request_id, request, TaxReceipt, work)

    def file_transaction_report(self, request_id: str, report: TransactionReport) -> ReportReceipt:
        """실거래 신고: within 30 days of the contract (부동산 거래신고 등에 관한 법률 §3)."""

        def work(conn: Connection) -> ReportReceipt:
            pid = report.parcel_id.lower()
            particulars = {
                "parcel_id": pid,
                "seller": _checksum(report.seller),
                "buyer": _checksum(report.buyer),
                "price": report.price,
                "contract_time": report.contract_time,
            }
            previous = self._previous_filing(conn, "registry_reports", report.deal_id, particulars)
            if previous is not None:
                return ReportReceipt(receipt_no=previous["receipt_no"])
            if self._parcel_row(conn, pid) is None:
                raise UnknownParcel(f"parcel {pid} is not registered")
            now = self.clock()
            deadline = report.contract_time + REPORT_DEADLINE_DAYS * 86_400
            if now > deadline:
                raise ReportDeadlinePassed(
                    f"deal {report.deal_id}: a transaction report must be filed within"
                    f" {REPORT_DEADLINE_DAYS} days of the contract (contract time"
                    f" {report.contract_time}, deadline {deadline}, now {now})"
                )
            receipt = self._next_receipt(conn, "RPT", now)
            conn.execute(
                sql(
                    "INSERT INTO registry_reports (receipt_no, deal_id, parcel_id, seller, buyer,"
                    " price, contract_time, filed_at)"
                    " VALUES (:r, :d, :p, :s, :b, :price, :ct, :t)"
                ),
                {
                    "r": receipt,
                    "d": report.deal_id,
                    "p": pid,
                    "s": particulars["seller"],
                    "b": particulars["buyer"],
                    "price": report.price,
                    "ct": report.contract_time,
                    "t": now,
                },
            )
            return ReportReceipt(receipt_no=receipt)

        return self._idempotent("file_transaction_report", request_id, report, ReportReceipt, work)

    def file_registration(self, request_id: str, request: RegistrationRequest) -> RegistrationReceipt:
        """Register a sale in one transaction and under one receipt: the discharges of
        `discharged_entries` (을구), the buyer's ownership (갑구), then the new mortgage (을구)."""

        def work(conn: Connection) -> RegistrationReceipt:
            pid = request.parcel_id.lower()
            seller, buyer = _checksum(request.seller), _checksum(request.buyer)
            previous = self._previous_filing(
                conn,
                "registry_registrations",
                request.deal_id,
                {"parcel_id": pid, "seller": seller, "buyer": buyer},
            )
            if previous is not None:
                return RegistrationReceipt(receipt_no=previous["receipt_no"])
            if self._parcel_row(conn, pid) is not None:
                self._lock(conn, pid)
            check = self._transfer_check(conn, pid, seller)
            if not check.ok:
                raise RegistrationRefused(
                    f"deal {request.deal_id}: transfer refused ({check.reason}): {check.detail}"
                )
            tax = (
                conn.execute(
                    sql("SELECT * FROM registry_taxes WHERE receipt_no = :r"),
                    {"r": request.tax_receipt},
                )
                .mappings()
                .first()
            )
            if tax is None or (tax["deal_id"], tax["parcel_id"], tax["buyer"], tax["price"]) != (
                request.deal_id,
                pid,
                buyer,
                request.price,
            ):
                raise RegistrationRefused(
                    f"deal {request.deal_id}: tax receipt {request.tax_receipt!r} was not issued"
                    " by this office for this deal, parcel, buyer and price"
                )
            if len(set(request.discharged_entries)) != len(request.discharged_entries):
                raise EntryRefused(f"discharged entries {request.discharged_entries} repeat")
            for index in request.discharged_entries:
                self._check_discharge(conn, pid, index)
            mortgage = request.new_mortgage
            if mortgage is not None and (
                mortgage.section != "eulgu"
                or mortgage.kind != "mortgage"
                or mortgage.holder is None
                or mortgage.debtor is None
            ):
                raise EntryRefused(
                    "new_mortgage must be an 을구 'mortgage' entry with a holder (the creditor) and a debtor"
                )
            now = self.clock()
            receipt = self._next_receipt(conn, "REG", now)
            for index in request.discharged_entries:
                self._close(conn, pid, "eulgu", index, "discharge", receipt, now)
            self._append_ownership(conn, pid, buyer, receipt, now)
            if mortgage is not None:
                assert mortgage.holder is not None and mortgage.debtor is not None
                self._append_mortgage(
                    conn,
                    pid,
                    _checksum(mortgage.holder),
                    _checksum(mortgage.debtor),
                    mortgage.amount,
                    receipt,
                    now,
                )
            conn.execute(
                sql(
                    "INSERT INTO registry_registrations (receipt_no, deal_id, parcel_id, seller,"
                    " buyer, price, tax_receipt, registered_at)"
                    " VALUES (:r, :d, :p, :s, :b, :price, :tax, :t)"
                ),
                {
                    "r": receipt,
                    "d": request.deal_id,
                    "p": pid,
                    "s": seller,
                    "b": buyer,
                    "price": request.price,
                    "tax": request.tax_receipt,
                    "t": now,
                },
            )
            return RegistrationReceipt(receipt_no=receipt)

        return self._idempotent("file_registration", request_id, request, RegistrationReceipt, work)

    # ------------------------------------------------------------------ internals

    def _previous_filing(
        self, conn: Connection, table: str, deal_id: int, particulars: dict[str, Any]
    ) -> Any:
        """A deal's earlier filing of this kind (a repeat answers with it), or None; one with
        other particulars is a conflict."""
        row = (
            conn.execute(sql(f"SELECT * FROM {table} WHERE deal_id = :d"), {"d": deal_id}).mappings().first()
        )
        if row is not None and any(row[k] != v for k, v in particulars.items()):
            raise FilingConflict(
                f"deal {deal_id}: already filed as {row['receipt_no']} with other {', '.join(particulars)}"
            )
        return row

    def _transfer_check(self, conn: Connection, parcel_id: str, seller: str) -> TransferCheck:
        pid = parcel_id.lower()
        parcel = self._parcel_row(conn, pid)
        if parcel is None:
            return TransferCheck(ok=False, reason="unknown_parcel", detail=f"parcel {pid} is not registered")
        seller = _checksum(seller)
        if parcel["owner"] != seller:
            return TransferCheck(
                ok=False,
                reason="seller_not_owner",
                detail=f"the register names {parcel['owner']} as owner, not {seller}",
            )
        blocking = conn.execute(
            sql(
                "SELECT idx, kind FROM registry_entries WHERE parcel_id = :p"
                " AND section = 'gapgu' AND active = 1 AND kind <> 'ownership' ORDER BY idx"
            ),
            {"p": pid},
        ).all()
        if blocking:
            listed = ", ".join(f"갑구 {r.idx} {r.kind}" for r in blocking)
            return TransferCheck(ok=False, reason="blocked", detail=f"active entries: {listed}")
        return TransferCheck(ok=True, reason="ok")

    def _parcel_row(self, conn: Connection, parcel_id: str) -> Any:
        return (
            conn.execute(
                sql("SELECT * FROM registry_parcels WHERE parcel_id = :p"),
                {"p": parcel_id.lower()},
            )
            .mappings()
            .first()
        )

    def _lock(self, conn: Connection, parcel_id: str) -> None:
        """Take the parcel's row lock (PostgreSQL) / the write lock (SQLite) before reading
        what a write depends on; raises UnknownParcel."""
        touched = conn.execute(
            sql("UPDATE registry_parcels SET gapgu_length = gapgu_length WHERE parcel_id = :p"),
            {"p": parcel_id.lower()},
        ).rowcount
        if touched == 0:
            raise UnknownParcel(f"parcel {parcel_id} is not registered")

    def _entry(self, conn: Connection, parcel_id: str, section: str, index: int) -> Any:
        row = (
            conn.execute(
                sql("SELECT * FROM registry_entries WHERE parcel_id = :p AND section = :s AND idx = :i"),
                {"p": parcel_id.lower(), "s": section, "i": index},
            )
            .mappings()
            .first()
        )
        if row is None:
            raise EntryRefused(f"{section} entry {index} of {parcel_id} does not exist")
        return row

    def _check_discharge(self, conn: Connection, parcel_id: str, index: int) -> None:
        target = self._entry(conn, parcel_id, "eulgu", index)
        if target["kind"] != "mortgage":
            raise EntryRefused(f"을구 entry {index} of {parcel_id} is not a mortgage")
        if not target["active"]:
            raise EntryRefused(f"을구 entry {index} of {parcel_id} is already discharged")

    def _append(
        self,
        conn: Connection,
        parcel_id: str,
        section: str,
        kind: str,
        *,
        receipt: str,
        now: int,
        holder: str | None = None,
        debtor: str | None = None,
        amount: int = 0,
        rank: int = 0,
        ref: int | None = None,
        active: bool = True,
    ) -> int:
        pid = parcel_id.lower()
        column = "gapgu_length" if section == "gapgu" else "eulgu_length"
        conn.execute(
            sql(f"UPDATE registry_parcels SET {column} = {column} + 1 WHERE parcel_id = :p"),
            {"p": pid},
        )
        index = (
            int(
                conn.execute(
                    sql(f"SELECT {column} FROM registry_parcels WHERE parcel_id = :p"),
                    {"p": pid},
                ).scalar_one()
            )
            - 1
        )
        conn.execute(
            sql(
                "INSERT INTO registry_entries (parcel_id, section, idx, kind, holder, debtor,"
                " amount, rank, ref, receipt, recorded_at, active, closed_by)"
                " VALUES (:p, :s, :i, :k, :h, :d, :a, :rank, :ref, :r, :t, :active, NULL)"
            ),
            {
                "p": pid,
                "s": section,
                "i": index,
                "k": kind,
                "h": holder,
                "d": debtor,
                "a": amount,
                "rank": rank,
                "ref": ref,
                "r": receipt,
                "t": now,
                "active": int(active),
            },
        )
        return index

    def _append_ownership(self, conn: Connection, parcel_id: str, owner: str, receipt: str, now: int) -> int:
        index = self._append(conn, parcel_id, "gapgu", "ownership", receipt=receipt, now=now, holder=owner)
        conn.execute(
            sql("UPDATE registry_parcels SET owner = :o WHERE parcel_id = :p"),
            {"o": owner, "p": parcel_id.lower()},
        )
        return index

    def _append_mortgage(
        self,
        conn: Connection,
        parcel_id: str,
        creditor: str,
        debtor: str,
        max_secured: int,
        receipt: str,
        now: int,
    ) -> int:
        if not 0 < max_secured <= MAX_WON:
            raise EntryRefused(f"채권최고액 {max_secured}: must be 1..{MAX_WON} won")
        pid = parcel_id.lower()
        active = conn.execute(
            sql(
                "SELECT COUNT(*) FROM registry_entries WHERE parcel_id = :p AND section = 'eulgu'"
                " AND kind = 'mortgage' AND active = 1"
            ),
            {"p": pid},
        ).scalar_one()
        if int(active) >= MAX_ACTIVE_MORTGAGES:
            raise EntryRefused(f"parcel {pid} already has {MAX_ACTIVE_MORTGAGES} active mortgages")
        conn.execute(
            sql(
                "UPDATE registry_parcels SET mortgages_registered = mortgages_registered + 1"
                " WHERE parcel_id = :p"
            ),
            {"p": pid},
        )
        rank = int(
            conn.execute(
                sql("SELECT mortgages_registered FROM registry_parcels WHERE parcel_id = :p"),
                {"p": pid},
            ).scalar_one()
        )
        return self._append(
            conn,
            pid,
            "eulgu",
            "mortgage",
            receipt=receipt,
            now=now,
            holder=creditor,
            debtor=debtor,
            amount=max_secured,
            rank=rank,
        )

    def _close(
        self,
        conn: Connection,
        parcel_id: str,
        section: str,
        index: int,
        kind: str,
        receipt: str,
        now: int,
    ) -> int:
        """Append a cancellation / discharge entry referring to `index` and deactivate it."""
        closing = self._append(
            conn, parcel_id, section, kind, receipt=receipt, now=now, ref=index, active=False
        )
        conn.execute(
            sql(
                "UPDATE registry_entries SET active = 0, closed_by = :c"
                " WHERE parcel_id = :p AND section = :s AND idx = :i"
            ),
            {"c": closing, "p": parcel_id.lower(), "s": section, "i": index},
        )
        return closing

    def _next_receipt(self, conn: Connection, kind: str, now: int) -> str:
        year = datetime.fromtimestamp(now, UTC).astimezone(KST).year
        params = {"k": kind, "y": year}
        conn.execute(
            sql(
                "INSERT INTO registry_counters (kind, year, value) VALUES (:k, :y, 0)"
                " ON CONFLICT (kind, year) DO NOTHING"
            ),
            params,
        )
        conn.execute(
            sql("UPDATE registry_counters SET value = value + 1 WHERE kind = :k AND year = :y"),
            params,
        )
        value = conn.execute(
            sql("SELECT value FROM registry_counters WHERE kind = :k AND year = :y"), params
        ).scalar_one()
        receipt = f"{year}-{kind}-{int(value):06d}"
        assert len(receipt.encode("ascii")) <= 32
        return receipt

    def _entry_rows(self, conn: Connection, parcel_id: str) -> Sequence[Any]:
        return (
            conn.execute(
                sql(
                    "SELECT * FROM registry_entries WHERE parcel_id = :p"
                    " ORDER BY CASE section WHEN 'gapgu' THEN 0 ELSE 1 END, idx"
                ),
                {"p": parcel_id},
            )
            .mappings()
            .all()
        )

    def _read(self, conn: Connection, parcel_id: str) -> ParcelRecord | None:
        parcel = self._parcel_row(conn, parcel_id)
        if parcel is None:
            return None
        return ParcelRecord(
            parcel_id=parcel["parcel_id"],
            number=parcel["number"],
            address=parcel["address"],
            area_m2_x100=parcel["area_m2_x100"],
            land_use=parcel["land_use"],
            owner=parcel["owner"],
            entries=[_to_entry(r) for r in self._entry_rows(conn, parcel["parcel_id"])],
        )


def _to_entry(row: Any) -> RegisterEntry:
    return RegisterEntry(
        section=row["section"],
        index=row["idx"],
        kind=row["kind"],
        holder=row["holder"],
        debtor=row["debtor"],
        amount=row["amount"],
        rank=row["rank"],
        ref=row["ref"],
        receipt=row["receipt"],
        active=bool(row["active"]),
    )
