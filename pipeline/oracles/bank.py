"""The bank oracle: loan decisions, disbursements and payoff statements for one bank.

It acts with its bank's own key (LENDER_ROLE on LoanBook, BANK_ROLE on the token) and asks
its bank's adapter (the reference bank, or the bank's HTTP hook).
"""

from __future__ import annotations

from chain.events import ChainEvent
from pipeline.adapters.protocols import (
    BankAdapter,
    CashRequest,
    CredentialDocument,
    DisbursementRequest,
    LoanApplication,
    MortgageUpdate,
    PayoffRequest,
    PresentedCredential,
)
from pipeline.domain import State
from pipeline.oracles.base import Action, Call, Oracle, Parked, Plan
from pipeline.store import Effect, WalletStore

MAX_UINT = 2**256 - 1
GAS = {
    "approveLoan": 160_000,
    "rejectLoan": 130_000,
    "mint": 110_000,
    "disburse": 180_000,
    "statePayoff": 130_000,
}


class BankOracle(Oracle):
    name = "bank"

    events = frozenset(
        {
            "LoanRequested",
            "LoanDecisionRecorded",
            "PaymentReceived",
            "LoanSecured",
            "PayoffPaid",
            "RegistrationRequested",
        }
    )

    def __init__(self, *, adapter: BankAdapter, wallet: WalletStore, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.adapter = adapter
        self.wallet = wallet
        self.escrow = self.contracts["DealEscrow"]
        self.loans = self.contracts["LoanBook"]
        self.token = self.contracts["DepositToken"]
        self.land = self.contracts["LandRegister"]
        self.creds = self.contracts["CredentialRegistry"]

    def recover(self) -> None:
        super().recover()
        # One standing allowance lets every disbursement be two transactions, not three.
        if int(self.token.call("allowance", self.me, self.loans.address)) < MAX_UINT // 2:
            self.token.transact(self.sender, "approve", self.loans.address, MAX_UINT)

    def plan(self, event: ChainEvent) -> Plan | None:
        a = event.args
        if event.contract == "LoanBook" and event.event == "LoanRequested":
            if a["lender"] != self.me:
                return None
            return Plan(f"decision:{a['dealId']}", a["dealId"], "loan_decision")
        if event.contract == "DealEscrow" and event.event in ("LoanDecisionRecorded", "PaymentReceived"):
            if a["state"] != State.LOAN_APPROVED:
                return None
            if self.terms(a["dealId"])["lender"] != self.me:
                return None
            return Plan(f"disburse:{a['dealId']}", a["dealId"], "disbursement")
        if event.contract == "LoanBook" and event.event == "LoanSecured":
            if self.loans.call("loan", a["dealId"])["lender"] != self.me:
                return None
            return Plan(
                f"secured:{a['dealId']}", a["dealId"], "mortgage_booked", {"entry": a["mortgageEntry"]}
            )
        if event.contract == "DealEscrow" and event.event == "PayoffPaid" and a["creditor"] == self.me:
            entry, amount = a["entryIndex"], a["amount"]
            context = {"entry": entry, "amount": amount}
            return Plan(f"repaid:{a['dealId']}:{entry}", a["dealId"], "payoff_booked", context)
        if event.contract == "DealEscrow" and event.event == "RegistrationRequested":
            # The parcel's mortgages, all read at one block where the deal still awaits
            # settlement: once settled (an event read again, or settlement landing between two
            # reads) they include the buyer's new one, the lender's, which is nobody's to pay off.
            block = int(self.escrow.rpc.call("eth_blockNumber"), 16)
            if self.escrow.call("dealState", a["dealId"], block=block) != State.REGISTRATION_REQUESTED:
                return None
            parcel = self.terms(a["dealId"])["parcelId"]
            mine = [
                i for i in self.land.call("activeMortgages", parcel, block=block)
                if self.land.call("activeMortgageCreditor", parcel, i, block=block) == self.me
            ]  # fmt: skip
            if not mine:
                return None
            return Plan(f"payoff:{a['dealId']}", a["dealId"], "payoff", {"parcel": parcel, "entries": mine})
        return None

    def execute(self, plan: Plan, event: ChainEvent) -> Action | None:
        deal = int(plan.deal_id or 0)
        if plan.kind == "loan_decision":
            return self._decide(plan, event, deal)
        if plan.kind in ("mortgage_booked", "payoff_booked"):
            return self._book(plan, deal)
        if plan.kind == "disbursement":
            loan = self.loans.call("loan", deal)
            terms = self.terms(deal)
            answer = self.adapter.disburse(
                plan.effect_key,
                DisbursementRequest(deal_id=deal, borrower=terms["buyer"], amount=loan["approvedAmount"]),
            )
            if answer.amount != loan["approvedAmount"]:
                raise Parked(f"bank booked {answer.amount} won, the chain approved {loan['approvedAmount']}")
            return Action(
                answer.model_dump(),
                [
                    Call(self.token, "mint", (self.me, answer.amount), GAS["mint"]),
                    Call(self.loans, "disburse", (deal,), GAS["disburse"]),
                ],
            )
        # payoff statements for each of this bank's mortgages on the parcel being sold
        calls, quotes = [], {}
        for entry in plan.context["entries"]:
            mortgage, _active = self.land.call("eulguEntry", plan.context["parcel"], entry)
            quote = self.adapter.payoff_quote(
                f"{plan.effect_key}:{entry}",
                PayoffRequest(
                    deal_id=deal,
                    parcel_id=plan.context["parcel"],
                    mortgage_entry=entry,
                    debtor=mortgage["debtor"],
                ),
            )
            quotes[str(entry)] = quote.model_dump()
            calls.append(Call(self.loans, "statePayoff", (deal, entry, quote.amount), GAS["statePayoff"]))
        return Action({"quotes": quotes}, calls)

    def issue_deposit(self, request_id: str, customer: str, amount: int) -> Effect:
        """A customer paid `amount` won in at the bank: the bank issues that many deposit tokens
        to the customer's address. Exactly once per request id (the API's Idempotency-Key)."""
        answer = self.adapter.cash(
            request_id, CashRequest(customer=customer, amount=amount, direction="deposit")
        )
        if not answer.accepted:
            raise Parked(f"the bank refused the deposit: {answer.detail or 'not a customer'}")
        call = Call(self.token, "mint", (customer, amount), GAS["mint"])
        return self.submit(f"cash:{request_id}", None, "cash_deposit", Action(answer.model_dump(), [call]))

    def _book(self, plan: Plan, deal: int) -> Action:
        """Settlement registered this bank's new mortgage, or paid one of its mortgages off:
        its books follow (no transaction: the chain already says it)."""
        if plan.kind == "mortgage_booked":
            source = self.store.effect(f"disburse:{deal}")
            answer = source.answer if source else {}
            change = {"registry_entry": plan.context["entry"]}
        else:
            source = self.store.effect(f"payoff:{deal}")
            answer = (source.answer if source else {}).get("quotes", {}).get(str(plan.context["entry"]), {})
            change = {"repaid": plan.context["amount"]}
        account = answer.get("loan_account", "")
        if not account:  # checked first: MortgageUpdate refuses an empty account with a ValidationError
            raise Parked(f"no booked loan account for {plan.effect_key}: this bank's books miss the loan")
        booked = self.adapter.update_mortgage(plan.effect_key, MortgageUpdate(loan_account=account, **change))
        return Action(booked.model_dump(), [])

    def _decide(self, plan: Plan, event: ChainEvent, deal: int) -> Action:
        terms = self.terms(deal)
        presented = []
        for h in event.args["credentials"]:
            stored = self.wallet.get(h)
            if stored is None:
                continue  # never submitted online: the bank cannot see it, so it does not count
            document = CredentialDocument.model_validate(stored[0])
            valid = bool(self.creds.call("isValid", h, document.subject, int(document.kind)))
            presented.append(
                PresentedCredential(hash=h, document=document, signature=stored[1], anchored_valid=valid)
            )
        decision = self.adapter.assess_loan(
            plan.effect_key,
            LoanApplication(
                deal_id=deal,
                buyer=terms["buyer"],
                amount=event.args["amount"],
                price=terms["price"],
                parcel_id=terms["parcelId"],
                credentials=presented,
            ),
        )
        if decision.approved:
            call = Call(
                self.loans,
                "approveLoan",
                (deal, decision.amount, decision.rate_bps, decision.term_months, decision.max_secured),
                GAS["approveLoan"],
            )
        else:
            call = Call(self.loans, "rejectLoan", (deal, int(decision.reason)), GAS["rejectLoan"])
        return Action(decision.model_dump(mode="json"), [call])
