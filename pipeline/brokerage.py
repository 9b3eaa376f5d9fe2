"""What a broker can do and see, on chain and with the institutions (no HTTP here).

The API is a thin layer over this class. Brokers act on chain with their own key (held by
the service for each registered broker address); parties act by signing typed data in their
wallets: the deal's terms (AcceptTerms), a §565 cancellation (CancelDeal), and one EIP-2612
permit that lets the escrow pull the buyer's deposit tokens as each payment falls due.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils import to_checksum_address

from chain.contract import Contract, call_many
from chain.eip712 import read_domain, typed_data
from chain.errors import ContractRevert
from chain.events import Batch
from chain.rpc import raise_errors
from chain.sender import Receipt
from chain.session import ChainSession
from pipeline.adapters.protocols import CredentialDocument, PresentedCredential
from pipeline.credentials import credential_hash, verify_presented
from pipeline.deal_index import DealIndex
from pipeline.deals import accept_terms_typed_data
from pipeline.domain import DealTerms, GapguKind, LandUse, Party, State, parcel_id
from pipeline.errors import PipelineError, PipelineValueError
from pipeline.institutions import LENDER, Institutions
from pipeline.journal import deal_memo
from pipeline.oracles.bank import BankOracle
from pipeline.oracles.base import Parked
from pipeline.runtime import deployed_contracts

ZERO = "0x" + "00" * 20
GAPGU_KINDS = [k.name.lower() for k in GapguKind]
LAND_USES = [u.name.lower() for u in LandUse]
PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ]
}
CANCEL_TYPES = {
    "CancelDeal": [
        {"name": "dealId", "type": "uint256"},
        {"name": "party", "type": "uint8"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint64"},
    ]
}


SNAPSHOT_VIEWS = 11  # views read per deal by Brokerage.snapshots
PROGRESS_VIEWS = 6  # and by Brokerage.progress


class UnknownDeal(PipelineValueError, LookupError):
    def __init__(self, deal_id: int) -> None:
        super().__init__(f"no deal {deal_id}")
        self.deal_id = deal_id


class UnknownParcel(PipelineValueError, LookupError):
    def __init__(self, parcel: str) -> None:
        super().__init__(f"no parcel {parcel!r} on the register")


class NotABroker(PipelineError, PermissionError):
    pass


class DepositRefused(PipelineValueError):
    """The bank did not take the party's money in (not its customer, say)."""


class Brokerage:
    def __init__(self, session: ChainSession, inst: Institutions, brokers: dict[str, str]) -> None:
        """`brokers` maps each broker's on-chain address to the account name holding its key."""
        self.session = session
        self.inst = inst
        self.brokers: dict[str, str] = {to_checksum_address(a): n for a, n in brokers.items()}
        self.c, self.start_block = deployed_contracts(session)
        self.escrow: Contract = self.c["DealEscrow"]
        self.loans: Contract = self.c["LoanBook"]
        self.land: Contract = self.c["LandRegister"]
        self.token: Contract = self.c["DepositToken"]
        self.wallet = inst.wallet
        self._credential_listeners: list[Callable[[str], None]] = []
        self._buyers: dict[int, str] = {}  # deal id -> buyer, for the token views of a snapshot
        # The automation's token triggers (money paid in, a permit) ride on the index's stream.
        self.index = DealIndex(
            inst.engine,
            session.rpc,
            self.escrow,
            start_block=self.start_block,
            block_range=session.network.block_range,
            forward=[(self.token, "Transfer"), (self.token, "Approval")],
            hub=inst.hub,
        )
        self._terms_kept: dict[int, dict[str, Any]] = {}  # the automation's, see `progress`
        self.index.listen(self._note_batch)
        self.lender_oracle = next(
            o for o in inst.oracles if isinstance(o, BankOracle) and o.store.oracle == f"bank:{LENDER}"
        )

    def on_credential(self, listener: Callable[[str], None]) -> None:
        """Call `listener(subject)` after each e-certificate kept for the banks."""
        self._credential_listeners.append(listener)

    # --- helpers ---------------------------------------------------------------------------------
    def _broker(self, broker: str) -> Any:
        name = self.brokers.get(to_checksum_address(broker))
        if name is None:
            raise NotABroker(f"{broker} is not a broker this service signs for")
        return self.session.sender(name)

    def now(self) -> int:
        block = self.session.rpc.call("eth_getBlockByNumber", ["latest", False])
        return int(block["timestamp"], 16)

    def _deal_view(self, fn: str, deal_id: int) -> Any:
        """A view of one deal; the escrow itself refuses an unknown one (UnknownDeal), so one
        call both checks and reads."""
        if deal_id < 1:
            raise UnknownDeal(deal_id)
        try:
            return self.escrow.call(fn, deal_id)
        except ContractRevert as exc:
            if exc.name == "UnknownDeal":
                raise UnknownDeal(deal_id) from None
            raise

    def _terms(self, deal_id: int) -> dict[str, Any]:
        terms: dict[str, Any] = self._deal_view("terms", deal_id)
        self._buyers[deal_id] = terms["buyer"]
        return terms

    def broker_of(self, deal_id: int) -> str | None:
        """The broker who opened the deal, or None when there is no such deal."""
        try:
            return str(self._deal_view("broker", deal_id))
        except UnknownDeal:
            return None

    # --- parcels ---------------------------------------------------------------------------------
    def resolve_parcel(self, parcel: str) -> str:
        pid = parcel if parcel.startswith("0x") and len(parcel) == 66 else parcel_id(parcel)
        if not self.land.call("exists", pid):
            raise UnknownParcel(parcel)
        return pid

    def title(self, parcel: str) -> dict[str, Any]:
        """The title as the chain has it: description, owner, active encumbrances, full history."""
        pid = self.resolve_parcel(parcel)
        number, location, area, use = self.land.call("parcel", pid)
        history = []
        for i in range(int(self.land.call("gapguLength", pid))):
            entry, active = self.land.call("gapguEntry", pid, i)
            history.append(
                {
                    "section": "gapgu",
                    "index": i,
                    "kind": GAPGU_KINDS[entry["kind"]],
                    "holder": entry["holder"],
                    "amount": entry["amount"],
                    "ref": entry["ref"],
                    "receipt": _text(entry["receipt"]),
                    "time": _iso(entry["time"]),
                    "active": active,
                }
            )
        for i in range(int(self.land.call("eulguLength", pid))):
            entry, active = self.land.call("eulguEntry", pid, i)
            history.append(
                {
                    "section": "eulgu",
                    "index": i,
                    "kind": ["mortgage", "discharge"][entry["kind"]],
                    "holder": entry["creditor"] if entry["kind"] == 0 else None,
                    "debtor": entry["debtor"] if entry["kind"] == 0 else None,
                    "amount": entry["maxSecured"],
                    "rank": entry["rank"],
                    "ref": entry["ref"],
                    "receipt": _text(entry["receipt"]),
                    "time": _iso(entry["time"]),
                    "active": active,
                }
            )
        encumbrances = [
            e
            for e in history
            if e["active"] and e["kind"] in ("provisional_seizure", "injunction", "auction", "mortgage")
        ]
        return {
            "parcel_id": pid,
            "number": number,
            "address": location,
            "area_m2": area / 100,
            "land_use": LAND_USES[use],
            "owner": self.land.call("ownerOf", pid),
            "blocked": bool(self.land.call("isBlocked", pid)),
            "encumbrances": encumbrances,
            "history": history,
        }

    # --- deals -----------------------------------------------------------------------------------
    def open_deal(self, broker: str, terms: DealTerms) -> tuple[int, Receipt]:
        receipt = self.escrow.transact(self._broker(broker), "openDeal", terms.to_abi(), memo="openDeal")
        opened = [e for e in self.escrow.events(receipt) if e.event == "DealOpened"]
        return int(opened[0].args["dealId"]), receipt

    def check_terms(self, broker: str, terms: DealTerms) -> None:
        """Raise the escrow's revert if it would not open a deal on these terms now."""
        self.escrow.call("openDeal", terms.to_abi(), sender=self._broker(broker).address)

    def draft_typed_data(self, terms: DealTerms, party: Party, expiry: int) -> dict[str, Any]:
        """A party's acceptance of a deal not opened yet: AcceptTerms over `terms` with dealId 0
        and the signer's current nonce, for openSignedDeal."""
        signer = terms.buyer if party == Party.BUYER else terms.seller
        nonce = int(self.escrow.call("nonces", signer))
        return accept_terms_typed_data(read_domain(self.escrow), 0, terms, nonce, expiry)

    def open_signed_deal(
        self, broker: str, terms: DealTerms, acceptances: dict[Party, tuple[int, str]]
    ) -> tuple[int, Receipt]:
        """Open a deal together with both parties' acceptances (party -> expiry, signature over
        draft_typed_data): one transaction, and the deal is Signed."""
        (buyer_expiry, buyer_sig), (seller_expiry, seller_sig) = (
            acceptances[Party.BUYER],
            acceptances[Party.SELLER],
        )
        receipt = self.escrow.transact(
            self._broker(broker), "openSignedDeal", terms.to_abi(), buyer_expiry, buyer_sig, seller_expiry,
            seller_sig, memo="openSignedDeal",
        )  # fmt: skip
        opened = [e for e in self.escrow.events(receipt) if e.event == "DealOpened"]
        return int(opened[0].args["dealId"]), receipt

    def snapshot(self, deal_id: int) -> Snapshot:
        """Everything the deal's status depends on, read in one batch of views."""
        return self.snapshots([deal_id])[0]

    def snapshots(self, deal_ids: list[int]) -> list[Snapshot]:
        """`snapshot` of several deals in one JSON-RPC batch. The buyer (for the token views) is
        remembered per deal; the terms are read again in the batch, so a deal id that a reorg gave
        to other terms is noticed and read once more."""
        buyers = {i: self._buyers.get(i) or self._terms(i)["buyer"] for i in deal_ids}
        calls: list[tuple[Contract, str, tuple[Any, ...]]] = []
        for i in deal_ids:
            calls += [
                (self.escrow, "terms", (i,)),
                (self.escrow, "dealState", (i,)),
                (self.escrow, "broker", (i,)),
                (self.escrow, "signatures", (i,)),
                (self.escrow, "payments", (i,)),
                (self.escrow, "loanDecision", (i,)),
                (self.loans, "loan", (i,)),
                (self.escrow, "reported", (i,)),
                (self.escrow, "heldBy", (i,)),
                (self.token, "balanceOf", (buyers[i],)),
                (self.token, "allowance", (buyers[i], self.escrow.address)),
            ]
        values = call_many(calls)
        out = []
        for n, i in enumerate(deal_ids):
            terms, state, broker, signatures, payments, decision, loan, reported, held, funds, allowance = (
                values[n * SNAPSHOT_VIEWS : (n + 1) * SNAPSHOT_VIEWS]
            )
            if state == State.NONE:
                self._buyers.pop(i, None)
                raise UnknownDeal(i)
            if terms["buyer"] != buyers[i]:
                self._buyers[i] = terms["buyer"]
                out.append(self.snapshot(i))
                continue
            snap = Snapshot(
                i, terms, State(state), broker, signatures, payments, decision, loan, bool(reported),
                int(held), int(funds), int(allowance),
            )  # fmt: skip
            out.append(snap)
        return out

    def progress(self, deals: dict[int, tuple[str, str]]) -> list[Progress]:
        """What the automation needs of each deal (deal id -> its broker and buyer, as the index
        has them), in one batch of PROGRESS_VIEWS views a deal. A deal's terms do not change after
        it opens, so they are read once and kept, until a reorg (see `_note_batch`)."""
        missing = [i for i in deals if i not in self._terms_kept]
        for i, terms in zip(missing, call_many([(self.escrow, "terms", (i,)) for i in missing]), strict=True):
            self._terms_kept[i] = terms
        calls: list[tuple[Contract, str, tuple[Any, ...]]] = []
        for i, (_broker, buyer) in deals.items():
            calls += [
                (self.escrow, "dealState", (i,)),
                (self.escrow, "payments", (i,)),
                (self.escrow, "loanDecision", (i,)),
                (self.loans, "loan", (i,)),
                (self.token, "balanceOf", (buyer,)),
                (self.token, "allowance", (buyer, self.escrow.address)),
            ]
        values = call_many(calls)
        out = []
        for n, (i, (broker, _buyer)) in enumerate(deals.items()):
            state, payments, decision, loan, funds, allowance = values[
                n * PROGRESS_VIEWS : (n + 1) * PROGRESS_VIEWS
            ]
            terms = self._terms_kept[i]
            out.append(
                Progress(
                    i,
                    terms,
                    State(state),
                    broker,
                    payments,
                    decision,
                    int(loan["status"]),
                    int(funds),
                    int(allowance),
                )
            )
        return out

    def _note_batch(self, batch: Batch) -> None:
        if batch.rewound_to is not None:  # a reorg may have given a deal id to other terms
            self._terms_kept.clear()

    def deal(self, deal_id: int) -> dict[str, Any]:
        return self._views([self.snapshot(deal_id)])[0]

    def _views(self, snaps: list[Snapshot]) -> list[dict[str, Any]]:
        notices = self.inst.journal.notices([s.deal_id for s in snaps])
        return [{**_deal_view(s), "recovery": notices[s.deal_id]} for s in snaps]

    def timeline(self, deal_id: int) -> list[dict[str, Any]]:
        """Every event of the deal on chain, in order: what, who sent it, tx, block, time, gas.
        Logs are read over the deal's own blocks (from the index); over the whole chain only for a
        deal the index does not know."""
        self._terms(deal_id)
        self.index.sync()
        indexed = self.index.get(deal_id)
        span = (hex(self.start_block), "latest")
        if indexed is not None:
            end = indexed.ended_block
            span = (hex(indexed.opened_block), "latest" if end is None else hex(end))
        topic = "0x" + deal_id.to_bytes(32, "big").hex()
        by_address = {c.address.lower(): c for c in (self.escrow, self.loans)}
        query = {
            "fromBlock": span[0],
            "toBlock": span[1],
            "address": list(by_address),
            "topics": [None, topic],
        }
        found = []
        time_of: dict[str, int] = {}
        for log in self.session.rpc.call("eth_getLogs", [query]):
            contract = by_address[log["address"].lower()]
            decoded = contract.abi.decode_log(log)
            if decoded is not None:
                found.append((contract, decoded))
                if log.get("blockTimestamp"):  # newer nodes put it in the log: no block to fetch
                    time_of[decoded.block_hash] = int(log["blockTimestamp"], 16)
        # one batched request for the receipts and one for any blocks (SSE streams poll this)
        txs = sorted({d.tx_hash for _c, d in found})
        hashes = sorted({d.block_hash for _c, d in found} - set(time_of))
        rpc = self.session.rpc
        receipts = raise_errors(rpc.batch([("eth_getTransactionReceipt", [t]) for t in txs]))
        blocks = raise_errors(rpc.batch([("eth_getBlockByHash", [h, False]) for h in hashes]))
        receipt_of = dict(zip(txs, receipts, strict=True))
        time_of |= {h: int(b["timestamp"], 16) for h, b in zip(hashes, blocks, strict=True)}
        steps = [
            {
                "step": d.event,
                "contract": contract.name,
                "by": to_checksum_address(receipt_of[d.tx_hash]["from"]),
                "tx": d.tx_hash,
                "block": d.block_number,
                "log_index": d.log_index,
                "time": _iso(time_of[d.block_hash]),
                "gas": int(receipt_of[d.tx_hash]["gasUsed"], 16),
                "details": {k: v for k, v in d.args.items() if k != "dealId"},
            }
            for contract, d in found
        ]
        steps.sort(key=lambda s: (s["block"], s["log_index"]))
        return steps

    # --- signatures --------------------------------------------------------------------------------
    def party_address(self, deal_id: int, party: Party) -> str:
        terms = self._terms(deal_id)
        return str(terms["buyer"] if party == Party.BUYER else terms["seller"])

    def acceptance_typed_data(self, deal_id: int, party: Party, expiry: int) -> dict[str, Any]:
        terms = DealTerms.from_abi(self._terms(deal_id))
        signer = terms.buyer if party == Party.BUYER else terms.seller
        nonce = int(self.escrow.call("nonces", signer))
        return accept_terms_typed_data(read_domain(self.escrow), deal_id, terms, nonce, expiry)

    def submit_acceptance(
        self, broker: str, deal_id: int, party: Party, expiry: int, signature: str
    ) -> Receipt:
        self._terms(deal_id)
        return self.escrow.transact(
            self._broker(broker), "acceptTerms", deal_id, int(party), expiry, signature,
            memo=deal_memo(deal_id, "acceptTerms"),
        )  # fmt: skip

    def cancel_typed_data(self, deal_id: int, party: Party, expiry: int) -> dict[str, Any]:
        signer = self.party_address(deal_id, party)
        message = {
            "dealId": deal_id,
            "party": int(party),
            "nonce": int(self.escrow.call("nonces", signer)),
            "expiry": expiry,
        }
        return typed_data(read_domain(self.escrow), "CancelDeal", CANCEL_TYPES, message)

    def cancel(self, broker: str, deal_id: int, party: Party, expiry: int, signature: str) -> Receipt:
        self._terms(deal_id)
        return self.escrow.transact(
            self._broker(broker), "cancelWithSignature", deal_id, int(party), expiry, signature,
            memo=deal_memo(deal_id, "cancelWithSignature"),
        )  # fmt: skip

    def permit_typed_data(self, deal_id: int, value: int, deadline: int) -> dict[str, Any]:
        """EIP-2612: the buyer lets the escrow pull up to `value` won of its deposit tokens."""
        return self.owner_permit_typed_data(self.party_address(deal_id, Party.BUYER), value, deadline)

    def owner_permit_typed_data(self, owner: str, value: int, deadline: int) -> dict[str, Any]:
        """The same permit by `owner`, for a deal not opened yet (a buyer's draft)."""
        message = {
            "owner": owner,
            "spender": self.escrow.address,
            "value": value,
            "nonce": int(self.token.call("nonces", owner)),
            "deadline": deadline,
        }
        return typed_data(read_domain(self.token), "Permit", PERMIT_TYPES, message)

    def submit_permit(self, broker: str, deal_id: int, value: int, deadline: int, signature: str) -> Receipt:
        owner = self.party_address(deal_id, Party.BUYER)
        return self.submit_owner_permit(
            broker, owner, value, deadline, signature, deal_memo(deal_id, "permit")
        )

    def submit_owner_permit(
        self, broker: str, owner: str, value: int, deadline: int, signature: str, memo: str = "permit"
    ) -> Receipt:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        if len(raw) != 65:
            raise PipelineValueError("a permit signature is 65 bytes (r, s, v)")
        v = raw[64] if raw[64] >= 27 else raw[64] + 27
        return self.token.transact(
            self._broker(broker),
            "permit",
            owner,
            self.escrow.address,
            value,
            deadline,
            v,
            raw[:32],
            raw[32:64],
            memo=memo,
        )

    # --- money, loan, registration ---------------------------------------------------------------
    def record_cash_deposit(self, request_id: str, deal_id: int, party: Party, amount: int) -> dict[str, Any]:
        """The party paid `amount` won in at the lender bank; it issues that many deposit tokens."""
        customer = self.party_address(deal_id, party)
        try:
            effect = self.lender_oracle.issue_deposit(request_id, customer, amount)
        except Parked as exc:
            raise DepositRefused(str(exc)) from None
        return {
            "status": effect.status,
            "txs": [t.hash for t in effect.txs],
            "customer": customer,
            "amount": amount,
            "error": effect.error,
        }

    def apply_for_loan(self, broker: str, deal_id: int, credentials: list[str]) -> Receipt:
        terms = self._terms(deal_id)
        if not terms["loanAmount"]:
            raise PipelineValueError(f"deal {deal_id} has no loan in its terms")
        for h in credentials:
            if self.wallet.get(h) is None:
                raise PipelineValueError(f"credential {h} was not submitted: POST it to /credentials first")
        return self.loans.transact(
            self._broker(broker), "requestLoan", deal_id, terms["loanAmount"], terms["lender"], credentials,
            memo=deal_memo(deal_id, "requestLoan"),
        )  # fmt: skip

    def submit_credential(self, document: dict[str, Any], signature: str) -> dict[str, Any]:
        """Keep a party's e-certificate for the banks: the hash must match the document, the
        signature its issuer. Whether it is anchored and unrevoked is checked when it is used."""
        doc = CredentialDocument.model_validate(document)
        h = credential_hash(doc)
        presented = PresentedCredential(hash=h, document=doc, signature=signature, anchored_valid=True)
        problem = verify_presented(presented)
        if problem:
            raise PipelineValueError(f"credential rejected: {problem}")
        self.wallet.put(h, doc.subject, doc.model_dump(mode="json"), signature)
        for listener in self._credential_listeners:
            listener(doc.subject)
        valid = bool(self.c["CredentialRegistry"].call("isValid", h, doc.subject, int(doc.kind)))
        return {"hash": h, "subject": doc.subject, "kind": doc.kind.name.lower(), "anchored_valid": valid}

    def deals_of(
        self, broker: str, *, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """The broker's deals, newest first. Which deals, how many and in what order come from the
        deal index, brought up to the chain's head first (so a deal just opened or a state just
        changed is counted at once); each item is read from the chain's views, so its contents
        are never stale. Only a state change mined between the two reads can make an item's state
        differ from the `state` asked for."""
        self.index.sync()
        wanted = None if state is None else State[state.upper()]
        total, rows = self.index.page(to_checksum_address(broker), state=wanted, limit=limit, offset=offset)
        for row in rows:
            self._buyers.setdefault(row.deal_id, row.buyer)  # saves a terms read per deal
        items = self._views(self.snapshots([row.deal_id for row in rows]))
        return {"total": total, "limit": limit, "offset": offset, "items": items}

    def request_registration(self, broker: str, deal_id: int) -> Receipt:
        self._terms(deal_id)
        memo = deal_memo(deal_id, "requestRegistration")
        return self.escrow.transact(self._broker(broker), "requestRegistration", deal_id, memo=memo)


@dataclass(frozen=True)
class Snapshot:
    deal_id: int
    terms: dict[str, Any]
    state: State
    broker: str
    signatures: tuple[bool, bool]
    payments: tuple[int, int, int, int]  # deposit, interim, the buyer's balance part, loan
    decision: tuple[bool, int]  # decided, approved amount
    loan: dict[str, Any]
    reported: bool
    held: int
    buyer_funds: int
    buyer_allowance: int


def terms_json(terms: dict[str, Any]) -> dict[str, Any]:
    """DealTerms as the views show them: deadlines in ISO 8601 (no interim: None)."""
    return {
        **terms,
        "depositDeadline": _iso(terms["depositDeadline"]),
        "interimDeadline": _iso(terms["interimDeadline"]) if terms["interim"] else None,
        "balanceDeadline": _iso(terms["balanceDeadline"]),
    }


@dataclass(frozen=True)
class Progress:
    """A deal as far as the automation's next step goes (see Brokerage.progress)."""

    deal_id: int
    terms: dict[str, Any]
    state: State
    broker: str
    payments: tuple[int, int, int, int]
    decision: tuple[bool, int]
    loan_status: int
    buyer_funds: int
    buyer_allowance: int


def _deal_view(snap: Snapshot) -> dict[str, Any]:
    terms, state, loan = snap.terms, snap.state, snap.loan
    buyer_signed, seller_signed = snap.signatures
    deposit, interim, buyer_balance, loan_paid = snap.payments
    decided, approved = snap.decision
    return {
        "deal_id": snap.deal_id,
        "state": state.name.lower(),
        "broker": snap.broker,
        "terms": terms_json(terms),
        "signatures": {"buyer": buyer_signed, "seller": seller_signed},
        "payments": {
            "deposit": deposit,
            "interim": interim,
            "buyer_balance": buyer_balance,
            "loan": loan_paid,
        },
        "loan": {
            "decided": decided,
            "approved_amount": approved,
            "status": ["none", "requested", "approved", "rejected", "disbursed", "secured", "returned"][
                loan["status"]
            ],
            "rate_bps": loan["rateBps"],
            "term_months": loan["termMonths"],
            "reject_reason": loan["rejectReason"],
        },
        "reported": snap.reported,
        "held": snap.held,
        "waiting": None if state.terminal else waiting(snap),
    }


def next_payment(snap: Snapshot | Progress) -> tuple[str, int] | None:
    """The buyer's payment due now, if any: (kind, amount)."""
    terms, state = snap.terms, snap.state
    if state == State.SIGNED:
        return "deposit", int(terms["deposit"])
    if state == State.DEPOSIT_PAID and terms["interim"]:
        return "interim", int(terms["interim"])
    base = State.INTERIM_PAID if terms["interim"] else State.DEPOSIT_PAID
    if state in (base, State.LOAN_APPROVED):
        buyer_balance = snap.payments[2]
        decided, approved = snap.decision
        if buyer_balance or (terms["loanAmount"] and not decided):
            return None
        amount = int(terms["balance"]) - int(approved)
        return ("balance", amount) if amount > 0 else None
    return None


def waiting(snap: Snapshot) -> dict[str, str]:
    """What the deal waits for now, and why: a party's signature or money, or an institution."""
    terms, state = snap.terms, snap.state
    if state == State.OPEN:
        missing = [p for p, done in zip(("buyer", "seller"), snap.signatures, strict=True) if not done]
        return {"step": "signatures", "reason": f"waiting for the {' and '.join(missing)}'s signature"}
    due = next_payment(snap)
    if due is not None:
        kind, amount = due
        if snap.buyer_funds < amount:
            return {
                "step": kind,
                "reason": f"waiting for the buyer's funds: {amount:,} won due, {snap.buyer_funds:,} won held",
            }
        if snap.buyer_allowance < amount:
            return {"step": kind, "reason": "waiting for the buyer's payment authorization (permit)"}
        return {"step": kind, "reason": "payment ready; the pipeline pays it now"}
    if terms["loanAmount"] and snap.loan["status"] == 0:
        return {"step": "loan", "reason": "waiting for the loan application (the buyer's e-certificates)"}
    if terms["loanAmount"] and snap.loan["status"] == 1:
        return {"step": "loan", "reason": "waiting for the lender's decision"}
    if state == State.LOAN_APPROVED:
        return {"step": "disbursement", "reason": "waiting for the lender's disbursement"}
    if state == State.FUNDED:
        return {"step": "registration", "reason": "funded; the pipeline requests registration now"}
    if state == State.REGISTRATION_REQUESTED:
        if not snap.reported:
            return {"step": "report", "reason": "waiting for the transaction report (실거래 신고)"}
        return {"step": "settlement", "reason": "waiting for payoff statements and the registry's settlement"}
    return {"step": state.name.lower(), "reason": "waiting for the next deadline"}


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


def _text(b32: str) -> str:
    return bytes.fromhex(b32.removeprefix("0x")).rstrip(b"\0").decode("utf-8", "replace")


__all__ = ["Brokerage", "ContractRevert", "NotABroker", "UnknownDeal", "UnknownParcel"]
