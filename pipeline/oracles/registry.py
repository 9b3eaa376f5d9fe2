"""The registry oracle: the land registry's side of a deal.

After both signatures it files the transaction report (실거래 신고) and puts its receipt on
chain. On a registration request, once every mortgage on the parcel has a stated payoff,
it checks the transfer against the registry's own records, collects the acquisition-tax
receipt, files the registration and settles on chain in one transaction; a title that
cannot transfer (seized, or the seller no longer the owner) is refunded instead.
"""

from __future__ import annotations

from chain.contract import Contract
from chain.errors import ContractRevert
from chain.events import ChainEvent
from chain.sender import Sender
from pipeline.adapters.protocols import (
    LandRegistryAdapter,
    ParcelRecord,
    RegisterEntry,
    RegistrationRequest,
    TaxRequest,
    TransactionReport,
    TransferCheckRequest,
)
from pipeline.domain import GapguKind, LandUse, State, receipt
from pipeline.oracles.base import Action, Call, Oracle, Parked, Plan

GAS = {
    "recordTransactionReport": 90_000,
    "refund": 200_000,
    "settle_base": 420_000,
    "settle_per_mortgage": 90_000,
}
REFUND_REASON = {"unknown_parcel": 1, "seller_not_owner": 2, "blocked": 3}
ZERO = "0x" + "00" * 20


class RegistryOracle(Oracle):
    name = "registry"

    events = frozenset({"TermsAccepted", "RegistrationRequested", "PayoffStated"})

    def __init__(self, *, adapter: LandRegistryAdapter, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.adapter = adapter
        self.escrow = self.contracts["DealEscrow"]
        self.loans = self.contracts["LoanBook"]
        self.land = self.contracts["LandRegister"]

    def plan(self, event: ChainEvent) -> Plan | None:
        a = event.args
        if event.contract == "DealEscrow" and event.event == "TermsAccepted" and a["state"] == State.SIGNED:
            return Plan(
                f"report:{a['dealId']}", a["dealId"], "transaction_report", {"block": event.block_number}
            )
        if (event.contract, event.event) in (
            ("DealEscrow", "RegistrationRequested"),
            ("LoanBook", "PayoffStated"),
        ):
            deal = a["dealId"]
            if self.escrow.call("dealState", deal) != State.REGISTRATION_REQUESTED:
                return None
            parcel = self.terms(deal)["parcelId"]
            mortgages = self.land.call("activeMortgages", parcel)
            if any(self.loans.call("payoff", deal, m)[0] == ZERO for m in mortgages):
                return None  # a creditor has not stated its payoff yet: wait for PayoffStated
            return Plan(f"settle:{deal}", deal, "settlement", {"parcel": parcel, "mortgages": mortgages})
        return None

    def after(self, plan: Plan) -> tuple[str, ...]:
        # a deal's report and its settlement can be due in one poll (a registry behind the
        # deals): the settlement's dry run needs the report on chain
        return (f"report:{plan.deal_id}",) if plan.kind == "settlement" else ()

    def execute(self, plan: Plan, event: ChainEvent) -> Action | None:
        deal = int(plan.deal_id or 0)
        terms = self.terms(deal)
        if plan.kind == "transaction_report":
            block = self.escrow.rpc.call("eth_getBlockByNumber", [hex(event.block_number), False])
            report = self.adapter.file_transaction_report(
                plan.effect_key,
                TransactionReport(
                    deal_id=deal,
                    parcel_id=terms["parcelId"],
                    seller=terms["seller"],
                    buyer=terms["buyer"],
                    price=terms["price"],
                    contract_time=int(block["timestamp"], 16),
                ),
            )
            call = Call(
                self.escrow,
                "recordTransactionReport",
                (deal, receipt(report.receipt_no)),
                GAS["recordTransactionReport"],
            )
            return Action(report.model_dump(), [call])
        return self._settle(plan, deal, terms)

    def _settle(self, plan: Plan, deal: int, terms: dict) -> Action:
        check = self.adapter.check_transfer(
            f"{plan.effect_key}:check",
            TransferCheckRequest(parcel_id=terms["parcelId"], seller=terms["seller"], buyer=terms["buyer"]),
        )
        if not check.ok:
            code = REFUND_REASON[check.reason]
            return Action(check.model_dump(), [Call(self.escrow, "refund", (deal, code), GAS["refund"])])
        # Dry run on chain before the registry files anything: a settlement that would revert
        # (payoffs above the price, a seizure recorded since) must not leave the registry ahead.
        try:
            self.escrow.call("settle", deal, receipt("dry-run"), receipt("dry-run"), sender=self.me)
        except ContractRevert as exc:
            raise Parked(f"settlement would revert: {exc.name}({exc.args_by_name})") from None
        tax = self.adapter.acquisition_tax(
            f"{plan.effect_key}:tax",
            TaxRequest(deal_id=deal, parcel_id=terms["parcelId"], buyer=terms["buyer"], price=terms["price"]),
        )
        loan = self.loans.call("loan", deal)
        new_mortgage = None
        if terms["loanAmount"] and loan["approvedAmount"]:
            new_mortgage = RegisterEntry(
                section="eulgu", index=0, kind="mortgage", holder=terms["lender"], debtor=terms["buyer"],
                amount=loan["maxSecured"], receipt="pending", active=True,
            )  # fmt: skip
        registration = self.adapter.file_registration(
            f"{plan.effect_key}:registration",
            RegistrationRequest(
                deal_id=deal,
                parcel_id=terms["parcelId"],
                seller=terms["seller"],
                buyer=terms["buyer"],
                price=terms["price"],
                tax_receipt=tax.receipt_no,
                discharged_entries=list(plan.context["mortgages"]),
                new_mortgage=new_mortgage,
            ),
        )
        gas = GAS["settle_base"] + GAS["settle_per_mortgage"] * len(plan.context["mortgages"])
        call = Call(
            self.escrow, "settle", (deal, receipt(registration.receipt_no), receipt(tax.receipt_no)), gas
        )
        return Action({"tax": tax.model_dump(), "registration": registration.model_dump()}, [call])


def publish_parcel(land: Contract, sender: Sender, record: ParcelRecord) -> bool:
    """Mirror a register the registry keeps onto the chain register, entry for entry.

    Each section is replayed in index order, so entry i on chain is entry i in the
    registry's books (the audit compares them). Returns False when already on chain.
    """
    if land.call("exists", record.parcel_id):
        return False
    gapgu = sorted((e for e in record.entries if e.section == "gapgu"), key=lambda e: e.index)
    eulgu = sorted((e for e in record.entries if e.section == "eulgu"), key=lambda e: e.index)
    first = gapgu[0]
    land.transact(
        sender, "registerParcel", record.number, record.address, record.area_m2_x100,
        int(LandUse[record.land_use.upper()]), first.holder, receipt(first.receipt),
    )  # fmt: skip
    for e in gapgu[1:]:
        if e.kind == "ownership":
            land.transact(sender, "recordOwnershipTransfer", record.parcel_id, e.holder, receipt(e.receipt))
        elif e.kind == "cancellation":
            land.transact(sender, "cancelBlocking", record.parcel_id, e.ref, receipt(e.receipt))
        else:
            kind = int(GapguKind[e.kind.upper()])
            land.transact(
                sender, "recordBlocking", record.parcel_id, kind, e.holder, e.amount, receipt(e.receipt)
            )
    for e in eulgu:
        if e.kind == "mortgage":
            land.transact(
                sender, "registerMortgage", record.parcel_id, e.holder, e.debtor, e.amount, receipt(e.receipt)
            )
        else:
            land.transact(sender, "dischargeMortgage", record.parcel_id, e.ref, receipt(e.receipt))
    return True
