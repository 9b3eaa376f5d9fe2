"""Money paid in at the bank, the loan application and registration (manual overrides)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from api.deps import BrokerageDep, CurrentBroker, IdempotencyDep, OwnedDeal, RequiredIdempotency, done
from api.routes import COMMON, DEAL, TX_LINKS, WRITE, _link, deal_links, log_event, ok
from api.routes.signing import to_party, tx_result
from api.schemas import EmptyIn, LoanIn, PaymentIn, PaymentResult, TxResult

router = APIRouter(prefix="/deals", tags=["money"], responses={**COMMON, **DEAL, **WRITE})


@router.post(
    "/{deal_id}/payments",
    response_model=PaymentResult,
    summary="A party paid this much in at its bank: the bank issues that many deposit tokens "
    "(Idempotency-Key required)",
    responses=ok(
        "the deposit tokens issued (or why not)",
        {
            **deal_links("$response.body#/deal_id"),
            "GetPermitTypedData": _link(
                "permit_typed_data",
                "the buyer's permit for what was paid in",
                deal_id="$response.body#/deal_id",
                value="$response.body#/amount",
            ),
        },
    ),
)
def record_payment(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: RequiredIdempotency,
    body: PaymentIn,
) -> Any:
    result = brokerage.record_cash_deposit(
        f"api:{broker.id}:{idem.key}", deal_id, to_party(body.party), body.amount
    )
    for tx in result["txs"]:
        log_event("cash_deposit", deal_id, tx, amount=body.amount, status=result["status"])
    return done(idem, 200, PaymentResult(deal_id=deal_id, **result))


@router.post(
    "/{deal_id}/loan",
    response_model=TxResult,
    summary="File the loan application with the buyer's e-certificates (the pipeline does this itself "
    "once both certificates are in; this is the manual override)",
    responses=TX_LINKS,
)
def apply_for_loan(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: LoanIn,
) -> Any:
    receipt = brokerage.apply_for_loan(broker.address, deal_id, body.credentials)
    log_event("loan_applied", deal_id, receipt.tx_hash, credentials=len(body.credentials))
    return done(idem, 200, tx_result(brokerage, deal_id, receipt))


@router.post(
    "/{deal_id}/registration",
    response_model=TxResult,
    summary="Ask the registry to register the transfer (the pipeline does this itself once funded)",
    responses=TX_LINKS,
)
def request_registration(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    _body: Annotated[EmptyIn | None, Body(description="nothing, or {}")] = None,
) -> Any:
    receipt = brokerage.request_registration(broker.address, deal_id)
    log_event("registration_requested", deal_id, receipt.tx_hash)
    return done(idem, 200, tx_result(brokerage, deal_id, receipt))
