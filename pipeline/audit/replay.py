"""Fold the deployment's events, in chain order, into the state an auditor needs.

Only state is kept, never the event list: each batch of an `EventStream` (bounded by the
network's `block_range`) is folded and dropped, so memory is the size of the register and
the deals, not of the history. Events carry everything written (the register's own events
carry their block time), so a verify needs no block or transaction lookups; the deal report
fetches tx senders, gas and block times lazily through `Lookups` (bounded caches).
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak, to_checksum_address

from chain.errors import ChainError
from chain.events import ChainEvent, EventStream
from chain.rpc import Rpc
from pipeline.audit.source import AuditChain
from pipeline.domain import GapguKind, LandUse, State

ZERO = "0x" + "00" * 20
GAPGU_KINDS = [k.name.lower() for k in GapguKind]
EULGU_KINDS = ["mortgage", "discharge"]
LAND_USES = [u.name.lower() for u in LandUse]
STATES = [s.name.lower() for s in State]
SETTLED = int(State.SETTLED)
PAYMENTS = ["deposit", "interim", "balance", "loan"]
PARTIES = ["buyer", "seller"]
LOAN_STATUS = ["none", "requested", "approved", "rejected", "disbursed", "secured", "returned"]
ROLE_NAMES = {
    "0x" + "00" * 32: "DEFAULT_ADMIN_ROLE",
    **{
        "0x" + keccak(text=r).hex(): r
        for r in (
            "BROKER_ROLE",
            "REGISTRAR_ROLE",
            "LENDER_ROLE",
            "BANK_ROLE",
            "ISSUER_ROLE",
            "SETTLEMENT_ROLE",
        )
    },
}


def receipt_text(b32: str) -> str:
    """A bytes32 receipt number as the registry wrote it (UTF-8, NUL-padded)."""
    return bytes.fromhex(b32.removeprefix("0x")).rstrip(b"\0").decode("utf-8", "replace")


def iso(ts: int | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


def _a(address: str) -> str:
    """Addresses interned: the same few accounts recur in every entry."""
    return sys.intern(address)


class ReorgDuringAudit(ChainError):
    """A block the replay had read left the canonical chain (use more confirmations)."""


@dataclass(slots=True)
class Entry:
    """One 갑구 or 을구 entry as the register events wrote it."""

    section: str
    index: int
    kind: str
    holder: str | None
    amount: int
    receipt: str
    time: int
    tx: str
    block: int
    debtor: str | None = None
    rank: int = 0
    ref: int | None = None
    closed_by: int | None = None  # the cancellation / discharge entry that ended it

    @property
    def active(self) -> bool:
        if self.section == "gapgu":
            return self.kind != "cancellation" and self.closed_by is None
        return self.kind == "mortgage" and self.closed_by is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "index": self.index,
            "kind": self.kind,
            "holder": self.holder,
            "debtor": self.debtor,
            "amount": self.amount,
            "rank": self.rank,
            "ref": self.ref,
            "closed_by": self.closed_by,
            "active": self.active,
            "receipt": self.receipt,
            "time": iso(self.time),
            "tx": self.tx,
            "block": self.block,
        }


@dataclass(slots=True)
class Parcel:
    parcel_id: str
    number: str
    address: str
    area_m2_x100: int
    land_use: str
    owner: str = ZERO
    gapgu: list[Entry] = field(default_factory=list)
    eulgu: list[Entry] = field(default_factory=list)
    deals: list[int] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(e.active and e.kind not in ("ownership", "cancellation") for e in self.gapgu)

    def active_mortgages(self) -> list[int]:
        """을구 indexes of active mortgages in ascending rank, as LandRegister.activeMortgages."""
        return [e.index for e in sorted(self.eulgu, key=lambda e: e.rank) if e.active]


@dataclass(slots=True)
class Step:
    """One event of a deal: what happened, in which tx, and the amounts it names."""

    step: str
    contract: str
    tx: str
    block: int
    log_index: int
    actor: str | None  # the address the event names as acting (signer, payer, lender, ...)
    details: dict[str, Any]


@dataclass(slots=True)
class Flow:
    """Money that moved (a token transfer) or was credited (claimable) for a deal."""

    kind: str  # "transfer" | "credit"
    source: str
    target: str
    amount: int
    tx: str
    block: int
    step: str


@dataclass(slots=True)
class Deal:
    deal_id: int
    parcel_id: str
    broker: str
    terms: dict[str, Any]
    state: int = 1
    signed: list[bool] = field(default_factory=lambda: [False, False])
    paid: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # deposit, interim, balance, loan
    approved_loan: int = 0
    loan_decided: bool = False
    reported: bool = False
    report_receipt: str | None = None
    steps: list[Step] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)

    @property
    def held(self) -> int:
        """DealEscrow.heldBy: what the buyer side and the lender paid in while the deal is live."""
        return 0 if self.state >= SETTLED else sum(self.paid)

    def role_of(self, address: str | None) -> str | None:
        if address is None:
            return None
        for role in ("buyer", "seller", "lender"):
            if str(self.terms.get(role, "")).lower() == address.lower():
                return role
        return "broker" if self.broker.lower() == address.lower() else None


@dataclass(slots=True)
class Loan:
    lender: str
    status: int = 1
    rate_bps: int = 0
    term_months: int = 0
    reject_reason: int = 0
    mortgage_entry: int = 0
    approved_amount: int = 0
    max_secured: int = 0


@dataclass
class AuditState:
    parcels: dict[str, Parcel] = field(default_factory=dict)
    deals: dict[int, Deal] = field(default_factory=dict)
    loans: dict[int, Loan] = field(default_factory=dict)
    payoffs: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    credentials: dict[str, dict[str, Any]] = field(default_factory=dict)
    claimable: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    total_supply: int = 0
    roles: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # contract -> address -> roles
    addresses: dict[str, str] = field(default_factory=dict)  # contract name -> address
    events: int = 0
    head: int = 0

    @property
    def total_claimable(self) -> int:
        return sum(self.claimable.values())

    def roles_of(self, address: str) -> list[str]:
        """Every AccessControl role the address holds, as ROLE@Contract, plus contract names."""
        out = [f"{r}@{c}" for c, holders in self.roles.items() for r in sorted(holders.get(address, ()))]
        out += [f"contract:{n}" for n, a in self.addresses.items() if a.lower() == address.lower()]
        return out

    def parcel(self, key: str) -> Parcel | None:
        """By parcel id (0x...) or registry number."""
        if key.lower() in self.parcels:
            return self.parcels[key.lower()]
        pid = "0x" + keccak(text=key).hex()
        return self.parcels.get(pid)


class Replayer:
    """Folds ChainEvents into an AuditState. Feed it with `run` (streams from the chain) or
    `apply` (any iterable of events, in chain order)."""

    def __init__(self, state: AuditState | None = None) -> None:
        self.state = state or AuditState()
        self._tx: str | None = None
        self._tx_deal: int | None = None  # the deal the current transaction acts on
        self._handlers: dict[tuple[str, str], Callable[[ChainEvent], None]] = {}
        for name in dir(self):
            if name.startswith("_on_"):
                contract, event = name[4:].split("__")
                self._handlers[(contract, event)] = getattr(self, name)

    # ------------------------------------------------------------------ driving
    def run(
        self, chain: AuditChain, head: int | None = None, *, block_range: int | None = None
    ) -> AuditState:
        """Replay every event from the deployment block up to `head` (default: now)."""
        head = chain.head() if head is None else head
        self.state.head = head
        self.state.addresses = {n: c.address for n, c in chain.contracts.items()}
        stream = EventStream(
            chain.pinned(head),
            {c.address: (n, c.abi) for n, c in chain.contracts.items()},
            start_block=chain.start_block,
            block_range=block_range or chain.block_range,
        )
        while stream.cursor.next_block <= head:
            batch = stream.poll()
            if batch.rewound_to is not None:  # folded state cannot be unfolded: start again
                raise ReorgDuringAudit(f"blocks after {batch.rewound_to} were replaced; run the audit again")
            self.apply(batch.events)
        return self.state

    def apply(self, events: Iterable[ChainEvent]) -> None:
        handlers = self._handlers
        for ev in events:
            tx = ev.id.tx_hash
            if tx != self._tx:
                self._tx, self._tx_deal = tx, None
            handler = handlers.get((ev.contract, ev.event))
            if handler is not None:
                handler(ev)
            self.state.events += 1

    # ------------------------------------------------------------------ helpers
    def _step(self, ev: ChainEvent, deal_id: int, actor: str | None = None, **details: Any) -> Deal | None:
        deal = self.state.deals.get(deal_id)
        if deal is None:
            return None
        self._tx_deal = deal_id
        deal.steps.append(
            Step(ev.event, ev.contract, ev.id.tx_hash, ev.block_number, ev.id.log_index, actor, details)
        )
        return deal

    def _credit(self, ev: ChainEvent, deal: Deal, account: str, amount: int) -> None:
        if amount == 0:
            return
        account = _a(account)
        self.state.claimable[account] = self.state.claimable.get(account, 0) + amount
        deal.flows.append(Flow("credit", "escrow", account, amount, ev.id.tx_hash, ev.block_number, ev.event))

    def _entry(self, ev: ChainEvent, section: str, kind: str, holder: str | None, **kw: Any) -> Entry:
        args = ev.args
        parcel = self.state.parcels[args["parcelId"]]
        entries = parcel.gapgu if section == "gapgu" else parcel.eulgu
        entry = Entry(
            section,
            int(args["index"]),
            kind,
            _a(holder) if holder else None,
            kw.pop("amount", 0),
            receipt_text(args["receipt"]),
            int(args["time"]),
            ev.id.tx_hash,
            ev.block_number,
            **kw,
        )
        entries.append(entry)
        if self._tx_deal is not None:
            self._step(
                ev,
                self._tx_deal,
                holder,
                section=section,
                index=entry.index,
                kind=kind,
                parcel=args["parcelId"],
            )
        return entry

    # ------------------------------------------------------------------ access control (every contract)
    def _role(self, ev: ChainEvent, granted: bool) -> None:
        name = ROLE_NAMES.get(ev.args["role"], ev.args["role"])
        holders = self.state.roles.setdefault(ev.contract, {}).setdefault(_a(ev.args["account"]), set())
        (holders.add if granted else holders.discard)(name)

    # ------------------------------------------------------------------ LandRegister
    def _on_LandRegister__ParcelRegistered(self, ev: ChainEvent) -> None:
        a = ev.args
        pid = a["parcelId"]
        use = int(a["landUse"])
        self.state.parcels[pid] = Parcel(
            pid,
            a["parcelNumber"],
            a["location"],
            int(a["areaCentiM2"]),
            LAND_USES[use] if use < len(LAND_USES) else str(use),
        )

    def _on_LandRegister__OwnershipRecorded(self, ev: ChainEvent) -> None:
        self._entry(ev, "gapgu", "ownership", ev.args["owner"])
        self.state.parcels[ev.args["parcelId"]].owner = _a(ev.args["owner"])

    def _on_LandRegister__BlockingRecorded(self, ev: ChainEvent) -> None:
        a = ev.args
        self._entry(ev, "gapgu", GAPGU_KINDS[int(a["kind"])], a["claimant"], amount=int(a["amount"]))

    def _on_LandRegister__BlockingCancelled(self, ev: ChainEvent) -> None:
        target = int(ev.args["cancelledIndex"])
        entry = self._entry(ev, "gapgu", "cancellation", None, ref=target)
        self.state.parcels[ev.args["parcelId"]].gapgu[target].closed_by = entry.index

    def _on_LandRegister__MortgageRegistered(self, ev: ChainEvent) -> None:
        a = ev.args
        self._entry(
            ev,
            "eulgu",
            "mortgage",
            a["creditor"],
            amount=int(a["maxSecured"]),
            debtor=_a(a["debtor"]),
            rank=int(a["rank"]),
        )

    def _on_LandRegister__MortgageDischarged(self, ev: ChainEvent) -> None:
        target = int(ev.args["mortgageIndex"])
        entry = self._entry(ev, "eulgu", "discharge", None, ref=target)
        self.state.parcels[ev.args["parcelId"]].eulgu[target].closed_by = entry.index

    # ------------------------------------------------------------------ DealEscrow
    def _on_DealEscrow__DealOpened(self, ev: ChainEvent) -> None:
        a = ev.args
        deal_id = int(a["dealId"])
        terms = dict(a["terms"])
        self.state.deals[deal_id] = Deal(deal_id, a["parcelId"], _a(a["broker"]), terms)
        parcel = self.state.parcels.get(a["parcelId"])
        if parcel is not None:
            parcel.deals.append(deal_id)
        self._step(
            ev,
            deal_id,
            a["broker"],
            price=terms["price"],
            deposit=terms["deposit"],
            interim=terms["interim"],
            balance=terms["balance"],
            loan=terms["loanAmount"],
        )

    def _on_DealEscrow__TermsAccepted(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(ev, int(a["dealId"]), a["signer"], party=PARTIES[int(a["party"])])
        if deal:
            deal.signed[int(a["party"])] = True
            deal.state = int(a["state"])

    def _on_DealEscrow__PaymentReceived(self, ev: ChainEvent) -> None:
        a = ev.args
        payment = int(a["payment"])
        deal = self._step(
            ev, int(a["dealId"]), a["payer"], payment=PAYMENTS[payment], amount=int(a["amount"])
        )
        if deal:
            deal.paid[payment] += int(a["amount"])
            deal.state = int(a["state"])

    def _on_DealEscrow__LoanDecisionRecorded(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(ev, int(a["dealId"]), a["lender"], approved=int(a["approvedAmount"]))
        if deal:
            deal.approved_loan = int(a["approvedAmount"])
            deal.loan_decided = True
            deal.state = int(a["state"])

    def _on_DealEscrow__RegistrationRequested(self, ev: ChainEvent) -> None:
        deal = self._step(ev, int(ev.args["dealId"]), ev.args["requester"])
        if deal:
            deal.state = 7

    def _on_DealEscrow__TransactionReported(self, ev: ChainEvent) -> None:
        text = receipt_text(ev.args["receipt"])
        deal = self._step(ev, int(ev.args["dealId"]), None, receipt=text)
        if deal:
            deal.reported, deal.report_receipt = True, text

    def _on_DealEscrow__DealCancelled(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(
            ev,
            int(a["dealId"]),
            a["by"],
            party=PARTIES[int(a["party"])],
            to_buyer=int(a["toBuyer"]),
            to_seller=int(a["toSeller"]),
        )
        if deal:
            deal.state = 9
            self._credit(ev, deal, deal.terms["buyer"], int(a["toBuyer"]))
            self._credit(ev, deal, deal.terms["seller"], int(a["toSeller"]))

    def _on_DealEscrow__DealDefaulted(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(
            ev,
            int(a["dealId"]),
            a["caller"],
            missed=PAYMENTS[int(a["missed"])],
            to_seller=int(a["toSeller"]),
            to_buyer=int(a["toBuyer"]),
            to_lender=int(a["toLender"]),
        )
        if deal:
            deal.state = int(a["state"])
            self._credit(ev, deal, deal.terms["seller"], int(a["toSeller"]))
            self._credit(ev, deal, deal.terms["buyer"], int(a["toBuyer"]))
            self._credit(ev, deal, deal.terms["lender"], int(a["toLender"]))

    def _on_DealEscrow__DealRefunded(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(
            ev,
            int(a["dealId"]),
            None,
            reason=int(a["reasonCode"]),
            to_buyer=int(a["toBuyer"]),
            to_lender=int(a["toLender"]),
        )
        if deal:
            deal.state = 11
            self._credit(ev, deal, deal.terms["buyer"], int(a["toBuyer"]))
            self._credit(ev, deal, deal.terms["lender"], int(a["toLender"]))

    def _on_DealEscrow__PayoffPaid(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(
            ev, int(a["dealId"]), a["creditor"], entry=int(a["entryIndex"]), amount=int(a["amount"])
        )
        if deal:
            self._credit(ev, deal, a["creditor"], int(a["amount"]))

    def _on_DealEscrow__DealSettled(self, ev: ChainEvent) -> None:
        a = ev.args
        deal = self._step(
            ev,
            int(a["dealId"]),
            None,
            registration_receipt=receipt_text(a["registrationReceipt"]),
            tax_receipt=receipt_text(a["taxReceipt"]),
            payoff_total=int(a["payoffTotal"]),
            seller_proceeds=int(a["sellerProceeds"]),
        )
        if deal:
            deal.state = SETTLED
            self._credit(ev, deal, deal.terms["seller"], int(a["sellerProceeds"]))

    def _on_DealEscrow__Withdrawn(self, ev: ChainEvent) -> None:
        account = _a(ev.args["account"])
        self.state.claimable[account] = self.state.claimable.get(account, 0) - int(ev.args["amount"])

    # ------------------------------------------------------------------ LoanBook
    def _on_LoanBook__LoanRequested(self, ev: ChainEvent) -> None:
        a = ev.args
        deal_id = int(a["dealId"])
        self.state.loans[deal_id] = Loan(_a(a["lender"]))
        self._step(
            ev,
            deal_id,
            a["buyer"],
            amount=int(a["amount"]),
            lender=a["lender"],
            credentials=len(a["credentials"]),
        )

    def _on_LoanBook__LoanApproved(self, ev: ChainEvent) -> None:
        a = ev.args
        deal_id = int(a["dealId"])
        loan = self.state.loans.get(deal_id)
        if loan:
            loan.status, loan.approved_amount = 2, int(a["amount"])
            loan.rate_bps, loan.term_months, loan.max_secured = (
                int(a["rateBps"]),
                int(a["termMonths"]),
                int(a["maxSecured"]),
            )
        self._step(
            ev,
            deal_id,
            a["lender"],
            amount=int(a["amount"]),
            rate_bps=int(a["rateBps"]),
            term_months=int(a["termMonths"]),
            max_secured=int(a["maxSecured"]),
        )

    def _on_LoanBook__LoanRejected(self, ev: ChainEvent) -> None:
        deal_id = int(ev.args["dealId"])
        loan = self.state.loans.get(deal_id)
        if loan:
            loan.status, loan.reject_reason = 3, int(ev.args["reasonCode"])
        self._step(ev, deal_id, ev.args["lender"], reason=int(ev.args["reasonCode"]))

    def _on_LoanBook__LoanDisbursed(self, ev: ChainEvent) -> None:
        deal_id = int(ev.args["dealId"])
        loan = self.state.loans.get(deal_id)
        if loan:
            loan.status = 4
        self._step(ev, deal_id, ev.args["lender"], amount=int(ev.args["amount"]))

    def _on_LoanBook__LoanSecured(self, ev: ChainEvent) -> None:
        deal_id = int(ev.args["dealId"])
        loan = self.state.loans.get(deal_id)
        if loan:
            loan.status, loan.mortgage_entry = 5, int(ev.args["mortgageEntry"])
        self._step(ev, deal_id, None, mortgage_entry=int(ev.args["mortgageEntry"]))

    def _on_LoanBook__LoanReturned(self, ev: ChainEvent) -> None:
        deal_id = int(ev.args["dealId"])
        loan = self.state.loans.get(deal_id)
        if loan:
            loan.status = 6
        self._step(ev, deal_id, None)

    def _on_LoanBook__PayoffStated(self, ev: ChainEvent) -> None:
        a = ev.args
        deal_id = int(a["dealId"])
        self.state.payoffs[(deal_id, int(a["entryIndex"]))] = (_a(a["creditor"]), int(a["amount"]))
        self._step(ev, deal_id, a["creditor"], entry=int(a["entryIndex"]), amount=int(a["amount"]))

    # ------------------------------------------------------------------ CredentialRegistry
    def _on_CredentialRegistry__CredentialAnchored(self, ev: ChainEvent) -> None:
        a = ev.args
        self.state.credentials[a["hash"]] = {
            "issuer": a["issuer"],
            "subject": a["subject"],
            "kind": int(a["kind"]),
            "expiry": int(a["expiry"]),
            "revoked": False,
            "anchoredAt": int(a["anchoredAt"]),
        }

    def _on_CredentialRegistry__CredentialRevoked(self, ev: ChainEvent) -> None:
        record = self.state.credentials.get(ev.args["hash"])
        if record is not None:
            record["revoked"] = True

    # ------------------------------------------------------------------ DepositToken
    def _on_DepositToken__Transfer(self, ev: ChainEvent) -> None:
        a = ev.args
        source, target, value = _a(a["from"]), _a(a["to"]), int(a["value"])
        balances = self.state.balances
        if source == ZERO:
            self.state.total_supply += value
        else:
            balances[source] = balances.get(source, 0) - value
        if target == ZERO:
            self.state.total_supply -= value
        else:
            balances[target] = balances.get(target, 0) + value
        if self._tx_deal is not None:
            deal = self.state.deals[self._tx_deal]
            deal.flows.append(
                Flow("transfer", source, target, value, ev.id.tx_hash, ev.block_number, deal.steps[-1].step)
            )


def _bind_role_handlers(replayer_cls: type[Replayer]) -> None:
    """RoleGranted / RoleRevoked come from every AccessControl contract."""

    def granted(self: Replayer, ev: ChainEvent) -> None:
        self._role(ev, True)

    def revoked(self: Replayer, ev: ChainEvent) -> None:
        self._role(ev, False)

    for contract in ("DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook"):
        setattr(replayer_cls, f"_on_{contract}__RoleGranted", granted)
        setattr(replayer_cls, f"_on_{contract}__RoleRevoked", revoked)


_bind_role_handlers(Replayer)


def replay(chain: AuditChain, head: int | None = None) -> AuditState:
    return Replayer().run(chain, head)


class Lookups:
    """Block times and transaction senders/gas, fetched lazily in JSON-RPC batches and kept in
    bounded LRU caches (only reports need them; a verify never calls this)."""

    def __init__(self, rpc: Rpc, size: int = 4096) -> None:
        self.rpc = rpc
        self.size = size
        self._blocks: OrderedDict[int, int] = OrderedDict()
        self._txs: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def _put(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self.size:
            cache.popitem(last=False)

    def prefetch(self, blocks: Iterable[int], txs: Iterable[str]) -> None:
        want_b = sorted({b for b in blocks if b not in self._blocks})
        want_t = sorted({t for t in txs if t not in self._txs})
        for i in range(0, len(want_b), 200):
            chunk = want_b[i : i + 200]
            for number, block in zip(
                chunk, self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk]), strict=True
            ):
                if isinstance(block, dict):
                    self._put(self._blocks, number, int(block["timestamp"], 16))
        for i in range(0, len(want_t), 200):
            tx_chunk = want_t[i : i + 200]
            for tx, rec in zip(
                tx_chunk, self.rpc.batch([("eth_getTransactionReceipt", [t]) for t in tx_chunk]), strict=True
            ):
                if isinstance(rec, dict):
                    self._put(self._txs, tx, (to_checksum_address(rec["from"]), int(rec["gasUsed"], 16)))

    def block_time(self, number: int) -> int | None:
        if number not in self._blocks:
            self.prefetch([number], [])
        return self._blocks.get(number)

    def tx(self, tx_hash: str) -> tuple[str | None, int | None]:
        if tx_hash not in self._txs:
            self.prefetch([], [tx_hash])
        return self._txs.get(tx_hash, (None, None))
