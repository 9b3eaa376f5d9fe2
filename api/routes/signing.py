"""What the parties sign (EIP-712 typed data) and submitting their signatures."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api.deps import BrokerageDep, CurrentBroker, IdempotencyDep, OwnedDeal, done
from api.routes import COMMON, DEAL, TX_LINKS, WRITE, _link, log_event, ok, state_name
from api.schemas import (
    MAX_UINT64,
    MAX_WON,
    CancelIn,
    PartyName,
    PermitIn,
    SignatureIn,
    TxResult,
    TypedData,
)
from chain.sender import Receipt
from pipeline.brokerage import Brokerage
from pipeline.domain import Party

router = APIRouter(prefix="/deals", tags=["signatures"], responses={**COMMON, **DEAL})

DAY = 86_400
PartyPath = Annotated[PartyName, Path(description="buyer or seller")]
ExpiryQuery = Annotated[
    int | None,
    Query(ge=0, lt=MAX_UINT64, description="UTC seconds the signature expires (default: in a day)"),
]


def signed_by_party(operation_id: str) -> dict[str, Any]:
    """A link from a party's typed data to submitting the party's signature over it."""
    return _link(
        operation_id,
        "submit it once the party signed it (the signature is the client's)",
        {"party": "$request.path.party", "expiry": "$response.body#/message/expiry"},
        deal_id="$request.path.deal_id",
    )


def to_party(name: str) -> Party:
    return Party[name.upper()]


def tx_result(brokerage: Brokerage, deal_id: int, receipt: Receipt) -> TxResult:
    return TxResult(
        deal_id=deal_id,
        tx=receipt.tx_hash,
        block=receipt.block_number,
        gas_used=receipt.gas_used,
        state=state_name(brokerage.escrow.call("dealState", deal_id)),
    )


@router.get(
    "/{deal_id}/typed-data/{party}",
    response_model=TypedData,
    summary="The AcceptTerms typed data a party signs with eth_signTypedData_v4",
    responses=ok("the typed data", {"SubmitSignature": signed_by_party("submit_signature")}),
)
def acceptance_typed_data(
    brokerage: BrokerageDep, deal_id: OwnedDeal, party: PartyPath, expiry: ExpiryQuery = None
) -> TypedData:
    when = expiry if expiry is not None else brokerage.now() + DAY
    return TypedData.model_validate(brokerage.acceptance_typed_data(deal_id, to_party(party), when))


@router.post(
    "/{deal_id}/signatures",
    response_model=TxResult,
    summary="Submit a party's signature over the terms",
    responses={**WRITE, **TX_LINKS},
)
def submit_signature(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: SignatureIn,
) -> Any:
    receipt = brokerage.submit_acceptance(
        broker.address, deal_id, to_party(body.party), body.expiry, body.signature
    )
    log_event("terms_accepted", deal_id, receipt.tx_hash, party=body.party)
    return done(idem, 200, tx_result(brokerage, deal_id, receipt))


@router.get(
    "/{deal_id}/permit-typed-data",
    response_model=TypedData,
    summary="The buyer's EIP-2612 permit letting the escrow pull its deposit tokens as payments fall due",
    responses=ok(
        "the typed data",
        {
            "SubmitPermit": _link(
                "submit_permit",
                "submit the permit once the buyer signed it",
                {"value": "$response.body#/message/value", "deadline": "$response.body#/message/deadline"},
                deal_id="$request.path.deal_id",
            )
        },
    ),
)
def permit_typed_data(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    value: Annotated[int, Query(ge=0, lt=MAX_WON, description="won the escrow may pull")],
    deadline: Annotated[
        int | None, Query(ge=0, lt=MAX_UINT64, description="UTC seconds (default: in 90 days)")
    ] = None,
) -> TypedData:
    when = deadline if deadline is not None else brokerage.now() + 90 * DAY
    return TypedData.model_validate(brokerage.permit_typed_data(deal_id, value, when))


@router.post(
    "/{deal_id}/permit",
    response_model=TxResult,
    summary="Submit the buyer's signed permit",
    responses={**WRITE, **TX_LINKS},
)
def submit_permit(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: PermitIn,
) -> Any:
    receipt = brokerage.submit_permit(broker.address, deal_id, body.value, body.deadline, body.signature)
    log_event("permit", deal_id, receipt.tx_hash, value=body.value)
    return done(idem, 200, tx_result(brokerage, deal_id, receipt))


@router.get(
    "/{deal_id}/cancel-typed-data/{party}",
    response_model=TypedData,
    summary="The CancelDeal typed data a party signs to cancel under Civil Code §565",
    responses=ok("the typed data", {"Cancel": signed_by_party("cancel")}),
)
def cancel_typed_data(
    brokerage: BrokerageDep, deal_id: OwnedDeal, party: PartyPath, expiry: ExpiryQuery = None
) -> TypedData:
    when = expiry if expiry is not None else brokerage.now() + DAY
    return TypedData.model_validate(brokerage.cancel_typed_data(deal_id, to_party(party), when))


@router.post(
    "/{deal_id}/cancel",
    response_model=TxResult,
    summary="Cancel before performance began (§565): the buyer forfeits the deposit, the seller pays double",
    responses={**WRITE, **TX_LINKS},
)
def cancel(
    brokerage: BrokerageDep,
    deal_id: OwnedDeal,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: CancelIn,
) -> Any:
    receipt = brokerage.cancel(broker.address, deal_id, to_party(body.party), body.expiry, body.signature)
    log_event("cancelled", deal_id, receipt.tx_hash, party=body.party)
    return done(idem, 200, tx_result(brokerage, deal_id, receipt))
