"""Check a replayed state against the chain's views, the registry's records and archived copies.

Three independent witnesses must agree with the events:

- the contracts' views now (at the pinned head): every parcel's title entry by entry, every
  deal's state / held amount / payments, every loan, the escrow's claimable balances and its
  token balance (read in JSON-RPC batches, so a large register costs few requests);
- the land registry's own books (`ReferenceRegistry` by database URL, or `HttpRegistry` over
  its hook): owner and each entry's kind / holder / amount / active per index;
- *off-chain copies*: the JSON an auditor exported with `audit property|deal --json` and
  archived (in a working paper, or handed to a bank). Such a copy is what people later rely on
  instead of the chain, so `verify --against FILE` checks that it still says what the chain
  says; an edited amount, holder or step is listed as a `snapshot` mismatch.

Every mismatch is one dict: {"kind": "chain"|"registry"|"snapshot"|"invariant",
"parcel"|"deal"|"account": ..., "field": ..., and the values: "chain", "rebuilt",
"registry" or "snapshot"}.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chain.contract import Contract
from chain.errors import RpcError
from chain.rpc import Rpc
from pipeline.audit.replay import (
    EULGU_KINDS,
    GAPGU_KINDS,
    LAND_USES,
    ZERO,
    AuditState,
    Entry,
    receipt_text,
)
from pipeline.audit.report import deal_report, property_report

BATCH = 500


class RegistryRecords(Protocol):
    """What verify needs of the land registry: its own record of a parcel (list_parcels optional)."""

    def read_parcel(self, parcel_id: str) -> Any: ...


@dataclass
class VerifyResult:
    events: int
    parcels: int
    deals: int
    head: int
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "events": self.events,
            "parcels": self.parcels,
            "deals": self.deals,
            "mismatches": self.mismatches,
            "head": self.head,
            "checked": self.checked,
        }


def _norm(value: Any) -> Any:
    """Addresses compare case-insensitively, the zero address as absent; tuples as lists."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return None if value.lower() == ZERO else value.lower()
    if isinstance(value, tuple):
        return [_norm(v) for v in value]
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


class ViewReader:
    """Many eth_calls at one block, sent in batches; a revert comes back as an RpcError."""

    def __init__(self, rpc: Rpc, block: int) -> None:
        self.rpc = rpc
        self.tag = hex(block)
        self.calls: list[tuple[Contract, str, tuple[Any, ...]]] = []

    def add(self, contract: Contract, fn: str, *args: Any) -> int:
        self.calls.append((contract, fn, args))
        return len(self.calls) - 1

    def run(self) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(self.calls), BATCH):
            chunk = self.calls[start : start + BATCH]
            answers = self.rpc.batch(
                [("eth_call", [{"to": c.address, "data": c.encode(fn, *a)}, self.tag]) for c, fn, a in chunk]
            )
            for (contract, fn, args), answer in zip(chunk, answers, strict=True):
                if isinstance(answer, Exception):
                    out.append(answer)
                else:
                    out.append(contract.abi.decode_output(fn, len(args), bytes.fromhex(str(answer)[2:])))
        self.calls = []
        return out


class _Diff:
    def __init__(self, result: VerifyResult) -> None:
        self.result = result

    def check(self, kind: str, where: dict[str, Any], name: str, ours: Any, theirs: Any, label: str) -> None:
        if _norm(ours) != _norm(theirs):
            if isinstance(theirs, RpcError):
                theirs = f"error: {theirs}"
            self.result.mismatches.append(
                {"kind": kind, **where, "field": name, "rebuilt": ours, label: theirs}
            )


def _gapgu_view(e: Entry) -> dict[str, Any]:
    return {
        "holder": e.holder or ZERO,
        "kind": GAPGU_KINDS.index(e.kind),
        "time": e.time,
        "ref": e.ref or 0,
        "cancelledBy": e.closed_by or 0,
        "receipt": e.receipt,
        "amount": e.amount,
    }


def _eulgu_view(e: Entry) -> dict[str, Any]:
    return {
        "creditor": e.holder or ZERO,
        "kind": EULGU_KINDS.index(e.kind),
        "time": e.time,
        "ref": e.ref or 0,
        "rank": e.rank,
        "debtor": e.debtor or ZERO,
        "maxSecured": e.amount,
        "receipt": e.receipt,
    }


def check_views(state: AuditState, contracts: dict[str, Contract], rpc: Rpc, result: VerifyResult) -> None:
    """Rebuilt state against the contracts' views at state.head."""
    diff = _Diff(result)
    reader = ViewReader(rpc, state.head)
    land, escrow, loans, token = (
        contracts[n] for n in ("LandRegister", "DealEscrow", "LoanBook", "DepositToken")
    )
    creds = contracts["CredentialRegistry"]
    expected: list[tuple[dict[str, Any], str, Any]] = []

    def want(where: dict[str, Any], name: str, value: Any, contract: Contract, fn: str, *args: Any) -> None:
        reader.add(contract, fn, *args)
        expected.append((where, name, value))

    for pid, p in state.parcels.items():
        at: dict[str, Any] = {"parcel": pid}
        want(at, "owner", p.owner, land, "ownerOf", pid)
        want(
            at,
            "description",
            [p.number, p.address, p.area_m2_x100, LAND_USES.index(p.land_use)],
            land,
            "parcel",
            pid,
        )
        want(at, "gapgu_length", len(p.gapgu), land, "gapguLength", pid)
        want(at, "eulgu_length", len(p.eulgu), land, "eulguLength", pid)
        want(at, "blocked", p.blocked, land, "isBlocked", pid)
        want(at, "active_mortgages", p.active_mortgages(), land, "activeMortgages", pid)
        for e in p.gapgu:
            want(at, f"gapgu[{e.index}]", (_gapgu_view(e), e.active), land, "gapguEntry", pid, e.index)
        for e in p.eulgu:
            want(at, f"eulgu[{e.index}]", (_eulgu_view(e), e.active), land, "eulguEntry", pid, e.index)
    want({"contract": "DealEscrow"}, "next_deal_id", max(state.deals, default=0) + 1, escrow, "nextDealId")
    for deal_id, d in state.deals.items():
        at = {"deal": deal_id}
        want(at, "state", d.state, escrow, "dealState", deal_id)
        want(at, "held", d.held, escrow, "heldBy", deal_id)
        payments = [d.paid[0], d.paid[1], d.paid[2], d.paid[3]]
        want(at, "payments", payments, escrow, "payments", deal_id)
        want(at, "signatures", list(d.signed), escrow, "signatures", deal_id)
        want(at, "reported", d.reported, escrow, "reported", deal_id)
        want(at, "loan_decision", [d.loan_decided, d.approved_loan], escrow, "loanDecision", deal_id)
        want(at, "terms", d.terms, escrow, "terms", deal_id)
    for deal_id, loan in state.loans.items():
        record: dict[str, Any] = {
            "lender": loan.lender,
            "status": loan.status,
            "rateBps": loan.rate_bps,
            "termMonths": loan.term_months,
            "rejectReason": loan.reject_reason,
            "mortgageEntry": loan.mortgage_entry,
            "approvedAmount": loan.approved_amount,
            "maxSecured": loan.max_secured,
        }
        want({"deal": deal_id}, "loan", record, loans, "loan", deal_id)
    for (deal_id, entry), (creditor, amount) in state.payoffs.items():
        want({"deal": deal_id}, f"payoff[{entry}]", [creditor, amount], loans, "payoff", deal_id, entry)
    for account, amount in state.claimable.items():
        want({"account": account}, "claimable", amount, escrow, "claimable", account)
    want({"contract": "DealEscrow"}, "total_claimable", state.total_claimable, escrow, "totalClaimable")
    escrow_balance = state.balances.get(escrow.address, 0)
    want({"contract": "DealEscrow"}, "token_balance", escrow_balance, token, "balanceOf", escrow.address)
    want({"contract": "DepositToken"}, "total_supply", state.total_supply, token, "totalSupply")
    for account, amount in state.balances.items():
        if account != escrow.address:
            want({"account": account}, "balance", amount, token, "balanceOf", account)
    for h, c in state.credentials.items():
        value = [c["issuer"], c["subject"], c["kind"], c["expiry"], c["revoked"], c["anchoredAt"]]
        want({"credential": h}, "credential", value, creds, "credential", h)

    for (where, name, ours), theirs in zip(expected, reader.run(), strict=True):
        if isinstance(theirs, dict):  # structs: receipts come back as bytes32
            theirs = _struct(theirs)
        elif isinstance(theirs, tuple):
            theirs = [_struct(t) if isinstance(t, dict) else t for t in theirs]
        diff.check("chain", where, name, ours, theirs, "chain")
    result.checked["view_calls"] = len(expected)

    # The escrow's invariant, from the events alone: its tokens = held for live deals + claimable.
    held = sum(d.held for d in state.deals.values())
    if escrow_balance != held + state.total_claimable:
        result.mismatches.append(
            {
                "kind": "invariant",
                "contract": "DealEscrow",
                "field": "balance = held + claimable",
                "rebuilt": escrow_balance,
                "chain": held + state.total_claimable,
            }
        )


def _struct(value: dict[str, Any]) -> dict[str, Any]:
    return {k: receipt_text(v) if k == "receipt" else v for k, v in value.items()}


def check_registry(state: AuditState, registry: RegistryRecords, result: VerifyResult) -> None:
    """Rebuilt register against the registry's own books, parcel by parcel, entry by entry."""
    diff = _Diff(result)
    seen: set[str] = set()
    listed: Iterable[Any] | None = None
    if hasattr(registry, "list_parcels"):
        listed = registry.list_parcels()
        records = {r.parcel_id.lower(): r for r in listed}
    else:
        records = {pid: registry.read_parcel(pid) for pid in state.parcels}
    for pid, p in state.parcels.items():
        at = {"parcel": pid}
        record = records.get(pid)
        seen.add(pid)
        if record is None:
            result.mismatches.append(
                {"kind": "registry", **at, "field": "exists", "rebuilt": True, "registry": False}
            )
            continue
        diff.check("registry", at, "owner", p.owner, record.owner, "registry")
        diff.check(
            "registry",
            at,
            "description",
            [p.number, p.address, p.area_m2_x100, p.land_use],
            [record.number, record.address, record.area_m2_x100, record.land_use],
            "registry",
        )
        theirs = {(e.section, e.index): e for e in record.entries}
        ours = {(e.section, e.index): e for e in [*p.gapgu, *p.eulgu]}
        for key in sorted(set(theirs) | set(ours)):
            name = f"{key[0]}[{key[1]}]"
            mine, their = ours.get(key), theirs.get(key)
            if mine is None or their is None:
                diff.check("registry", at, name, mine is not None, their is not None, "registry")
                continue
            for attr, a, b in (
                ("kind", mine.kind, their.kind),
                ("holder", mine.holder, their.holder),
                ("debtor", mine.debtor, their.debtor),
                ("amount", mine.amount, their.amount),
                ("rank", mine.rank, their.rank),
                ("ref", mine.ref, their.ref),
                ("active", mine.active, their.active),
                ("receipt", mine.receipt, their.receipt),
            ):
                diff.check("registry", at, f"{name}.{attr}", a, b, "registry")
    for pid in set(records) - seen:
        result.mismatches.append(
            {"kind": "registry", "parcel": pid, "field": "exists", "rebuilt": False, "registry": True}
        )
    result.checked["registry_parcels"] = len(records)


def check_snapshot(state: AuditState, path: Path, result: VerifyResult) -> None:
    """An archived `audit property|deal --json` export against the same report rebuilt now."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    doc = json.loads(lines[-1])
    diff = _Diff(result)
    if "deal_id" in doc:
        deal_id = int(doc["deal_id"])
        at: dict[str, Any] = {"deal": deal_id, "file": str(path)}
        if deal_id not in state.deals:
            diff.check("snapshot", at, "exists", False, True, "snapshot")
            return
        now = deal_report(state, deal_id, None)
        for key in ("state", "parcel_id", "terms", "held"):
            diff.check("snapshot", at, key, now[key], doc.get(key), "snapshot")
        _compare_rows(
            diff, at, "steps", now["steps"], doc.get("steps", []), ("step", "tx", "block", "actor", "details")
        )
        _compare_rows(
            diff,
            at,
            "money_flows",
            now["money_flows"],
            doc.get("money_flows", []),
            ("kind", "from", "to", "amount", "tx"),
        )
    else:
        pid = str(doc.get("parcel_id", ""))
        at = {"parcel": pid, "file": str(path)}
        if state.parcel(pid) is None:
            diff.check("snapshot", at, "exists", False, True, "snapshot")
            return
        now = property_report(state, pid)
        for key in ("number", "address", "area_m2", "land_use", "owner", "blocked"):
            diff.check("snapshot", at, key, now[key], doc.get(key), "snapshot")
        _compare_rows(
            diff,
            at,
            "history",
            now["history"],
            doc.get("history", []),
            ("section", "index", "kind", "holder", "debtor", "amount", "active", "receipt", "tx", "block"),
        )
    result.checked["snapshots"] = result.checked.get("snapshots", 0) + 1


def _compare_rows(
    diff: _Diff,
    at: dict[str, Any],
    table: str,
    ours: list[dict[str, Any]],
    theirs: list[Any],
    keys: tuple[str, ...],
) -> None:
    diff.check("snapshot", at, f"{table}.rows", len(ours), len(theirs), "snapshot")
    for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        for key in keys:
            diff.check(
                "snapshot",
                at,
                f"{table}[{i}].{key}",
                a.get(key),
                b.get(key) if isinstance(b, dict) else None,
                "snapshot",
            )


def verify(
    state: AuditState,
    contracts: dict[str, Contract],
    rpc: Rpc,
    *,
    registry: RegistryRecords | None = None,
    snapshots: Iterable[Path] = (),
) -> VerifyResult:
    result = VerifyResult(state.events, len(state.parcels), len(state.deals), state.head)
    check_views(state, contracts, rpc, result)
    if registry is not None:
        check_registry(state, registry, result)
    for path in snapshots:
        check_snapshot(state, Path(path), result)
    return result
