"""Opening deals and reading them: status (with what the deal waits for) and timeline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import (
    BrokerageDep,
    CurrentBroker,
    IdempotencyDep,
    OwnedDeal,
    ServicesDep,
    done,
)
from api.routes import COMMON, DEAL, WRITE, _error, _link, deal_links, log_event, ok
from api.routes.parcels import resolve
from api.schemas import DealOpened, DealPage, DealTermsIn, DealView, StateName, Step, TermsView, Timeline
from pipeline.brokerage import ZERO
from pipeline.domain import DealTerms

router = APIRouter(prefix="/deals", tags=["deals"], responses=COMMON)


def deal_view(d: dict[str, Any]) -> DealView:
    return DealView.model_validate({**d, "terms": terms_view(d["terms"])})


def terms_view(t: dict[str, Any]) -> TermsView:
    return TermsView(
        parcel_id=t["parcelId"],
        seller=t["seller"],
        buyer=t["buyer"],
        price=t["price"],
        deposit=t["deposit"],
        interim=t["interim"],
        balance=t["balance"],
        deposit_deadline=t["depositDeadline"],
        interim_deadline=t["interimDeadline"],
        balance_deadline=t["balanceDeadline"],
        loan_amount=t["loanAmount"],
        lender=None if int(t["lender"], 16) == 0 else t["lender"],
    )


def deal_terms(services: ServicesDep, body: DealTermsIn) -> DealTerms:
    """The terms of a request, in the escrow's units (the parcel resolved: 404 if unknown)."""
    return DealTerms(
        parcelId=resolve(services, body.parcel),
        seller=body.seller,
        buyer=body.buyer,
        price=body.price,
        deposit=body.deposit,
        interim=body.interim,
        balance=body.balance,
        depositDeadline=int(body.deposit_deadline.timestamp()),
        interimDeadline=int(body.interim_deadline.timestamp()) if body.interim_deadline else 0,
        balanceDeadline=int(body.balance_deadline.timestamp()),
        loanAmount=body.loan_amount,
        lender=body.lender or ZERO,
    )


@router.post(
    "",
    status_code=201,
    response_model=DealOpened,
    summary="Open a deal on a parcel the seller owns (the caller's broker signs the transaction)",
    responses={
        **WRITE,
        404: _error("no such parcel (`parcel_not_found`)"),
        **ok(
            "the deal, opened", deal_links("$response.body#/deal/deal_id", "$response.body#/deal/terms"), 201
        ),
    },
)
def open_deal(
    services: ServicesDep,
    brokerage: BrokerageDep,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: DealTermsIn,
) -> Any:
    deal_id, receipt = brokerage.open_deal(broker.address, deal_terms(services, body))
    log_event("deal_opened", deal_id, receipt.tx_hash, broker=broker.address)
    result = DealOpened(
        tx=receipt.tx_hash,
        block=receipt.block_number,
        gas_used=receipt.gas_used,
        deal=deal_view(brokerage.deal(deal_id)),
    )
    return done(idem, 201, result)


@router.get(
    "",
    response_model=DealPage,
    summary="The caller's deals, newest first",
    responses=ok(
        "a page of the caller's deals",
        {
            "GetNewestDeal": _link(
                "get_deal", "the newest deal on the page", deal_id="$response.body#/items/0/deal_id"
            )
        },
    ),
)
def list_deals(
    brokerage: BrokerageDep,
    broker: CurrentBroker,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, lt=2**31)] = 0,
    state: Annotated[StateName | None, Query(description="only deals in this state")] = None,
) -> DealPage:
    page = brokerage.deals_of(broker.address, state=state, limit=limit, offset=offset)
    return DealPage(
        total=page["total"],
        limit=page["limit"],
        offset=page["offset"],
        items=[deal_view(d) for d in page["items"]],
    )


@router.get(
    "/{deal_id}",
    response_model=DealView,
    summary="A deal's status, and what it waits for now",
    responses={**DEAL, **ok("the deal", deal_links("$response.body#/deal_id", "$response.body#/terms"))},
)
def get_deal(brokerage: BrokerageDep, deal_id: OwnedDeal) -> DealView:
    return deal_view(brokerage.deal(deal_id))


@router.get(
    "/{deal_id}/timeline",
    response_model=Timeline,
    summary="Every step of the deal on chain: what, who, tx, block, time, gas",
    responses={
        **DEAL,
        **ok(
            "the deal's steps", {"GetDeal": _link("get_deal", "the deal", deal_id="$response.body#/deal_id")}
        ),
    },
)
def get_timeline(brokerage: BrokerageDep, deal_id: OwnedDeal) -> Timeline:
    return Timeline(deal_id=deal_id, steps=[Step.model_validate(s) for s in brokerage.timeline(deal_id)])
