"""Drafts: a deal's terms signed by both parties before the deal exists, then opened with both
acceptances in one transaction (DealEscrow.openSignedDeal) instead of three.

The parties sign AcceptTerms over the terms with dealId 0 (the id is given at opening) and their
current nonce. Each acceptance is checked here when it is submitted (signer, expiry), so a wrong
one is refused at once and never reaches the chain; the second one opens the deal.
"""

from __future__ import annotations

from typing import Annotated, Any

from eth_keys.exceptions import BadSignature
from fastapi import APIRouter, Depends, Path, Request

from api.db import ApiStore, Draft
from api.deps import BrokerageDep, CurrentBroker, IdempotencyDep, ServicesDep, done
from api.errors import ApiError, ApiValueError
from api.routes import COMMON, WRITE, _error, _link, deal_links, log_event, ok
from api.routes.deals import deal_terms, deal_view, terms_view
from api.routes.signing import DAY, ExpiryQuery, PartyPath, to_party
from api.schemas import DealTermsIn, DraftView, SignatureIn, TypedData
from chain.eip712 import recover_typed_data
from pipeline.brokerage import ZERO, Brokerage, terms_json
from pipeline.domain import DealTerms, Party

router = APIRouter(prefix="/drafts", tags=["drafts"], responses=COMMON)
DRAFT: dict[int | str, dict[str, Any]] = {404: _error("no such draft among the caller's (`draft_not_found`)")}


class DraftNotFound(ApiError, LookupError):
    status = 404
    code = "draft_not_found"

    def __init__(self, draft_id: str) -> None:
        super().__init__(f"no draft {draft_id} among this broker's drafts", details={"draft_id": draft_id})


def owned_draft(
    request: Request,
    broker: CurrentBroker,
    draft_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the draft's id")],
) -> Draft:
    """The caller's draft; 404 for another broker's, as for one that does not exist."""
    draft = request.app.state.store.draft(broker.id, draft_id)
    if draft is None:
        raise DraftNotFound(draft_id)
    return draft


OwnedDraft = Annotated[Draft, Depends(owned_draft)]


def _reread(store: ApiStore, draft: Draft) -> Draft:
    found = store.draft(draft.broker_id, draft.id)
    assert found is not None  # drafts are never deleted
    return found


def draft_view(brokerage: Brokerage, draft: Draft) -> DraftView:
    return DraftView(
        draft_id=draft.id,
        terms=terms_view(terms_json(draft.terms)),
        buyer_accepted="buyer" in draft.acceptances,
        seller_accepted="seller" in draft.acceptances,
        deal=deal_view(brokerage.deal(draft.deal_id)) if draft.deal_id else None,
        tx=draft.tx,
    )


def draft_links() -> dict[str, dict[str, Any]]:
    expr = "$response.body#/draft_id"
    return {
        f"Get{who.capitalize()}DraftTypedData": _link(
            "draft_typed_data", f"what the {who} signs", draft_id=expr, party=who
        )
        for who in ("buyer", "seller")
    } | {"GetDraft": _link("get_draft", "the draft", draft_id=expr)}


@router.post(
    "",
    status_code=201,
    response_model=DraftView,
    summary="Draft a deal: terms for both parties to sign before it is opened",
    responses={
        **WRITE,
        404: _error("no such parcel (`parcel_not_found`)"),
        **ok("the draft", draft_links(), 201),
    },
)
def create_draft(
    request: Request,
    services: ServicesDep,
    brokerage: BrokerageDep,
    broker: CurrentBroker,
    idem: IdempotencyDep,
    body: DealTermsIn,
) -> Any:
    terms = deal_terms(services, body)
    # the terms as the escrow would take them now (a revert names what is wrong), before anyone signs
    brokerage.check_terms(broker.address, terms)
    draft = request.app.state.store.create_draft(broker.id, terms.to_abi())
    return done(idem, 201, draft_view(brokerage, draft))


@router.get(
    "/{draft_id}",
    response_model=DraftView,
    summary="A draft: its terms, who accepted them, the deal once opened",
    responses={**DRAFT, **ok("the draft", {})},
)
def get_draft(brokerage: BrokerageDep, draft: OwnedDraft) -> DraftView:
    return draft_view(brokerage, draft)


@router.get(
    "/{draft_id}/typed-data/{party}",
    response_model=TypedData,
    summary="The AcceptTerms typed data (dealId 0) a party signs with eth_signTypedData_v4",
    responses={
        **DRAFT,
        **ok(
            "the typed data",
            {
                "SubmitDraftAcceptance": _link(
                    "submit_draft_acceptance",
                    "submit it once the party signed it",
                    {"party": "$request.path.party", "expiry": "$response.body#/message/expiry"},
                    draft_id="$request.path.draft_id",
                )
            },
        ),
    },
)
def draft_typed_data(
    brokerage: BrokerageDep, draft: OwnedDraft, party: PartyPath, expiry: ExpiryQuery = None
) -> TypedData:
    when = expiry if expiry is not None else brokerage.now() + DAY
    data = brokerage.draft_typed_data(DealTerms.from_abi(draft.terms), to_party(party), when)
    return TypedData.model_validate(data)


@router.post(
    "/{draft_id}/acceptances",
    response_model=DraftView,
    summary="Submit a party's signature over the draft; the second one opens the deal, signed",
    responses={
        **WRITE,
        **DRAFT,
        **ok("the draft, and the deal if this opened it", deal_links("$response.body#/deal/deal_id")),
    },
)
def submit_draft_acceptance(
    request: Request,
    brokerage: BrokerageDep,
    broker: CurrentBroker,
    draft: OwnedDraft,
    idem: IdempotencyDep,
    body: SignatureIn,
) -> Any:
    store: ApiStore = request.app.state.store
    if draft.deal_id is not None:
        raise ApiError(f"draft {draft.id} is opened already", code="draft_opened", status=409)
    party = to_party(body.party)
    terms = DealTerms.from_abi(draft.terms)
    if body.expiry <= brokerage.now():
        raise ApiValueError(
            "the signature has expired", code="signature_expired", details={"expiry": body.expiry}
        )
    expected = terms.buyer if party == Party.BUYER else terms.seller
    try:
        signed = recover_typed_data(brokerage.draft_typed_data(terms, party, body.expiry), body.signature)
    except BadSignature:  # r and s in range, but no point on the curve: nobody's signature
        signed = ZERO
    if signed.lower() != expected.lower():
        raise ApiValueError(
            f"the signature is not the {body.party}'s over this draft (with its current nonce)",
            code="invalid_signer",
            details={"expected": expected, "recovered": signed},
        )
    store.accept_draft(draft, body.party, body.expiry, body.signature)
    draft = _reread(store, draft)
    if len(draft.acceptances) == 2 and store.claim_draft(draft):
        acceptances = {to_party(p): (int(e), str(s)) for p, (e, s) in draft.acceptances.items()}
        try:
            deal_id, receipt = brokerage.open_signed_deal(broker.address, terms, acceptances)
        except BaseException:
            store.release_draft(draft)
            raise
        store.draft_opened(draft, deal_id, receipt.tx_hash)
        log_event("deal_opened", deal_id, receipt.tx_hash, broker=broker.address, draft=draft.id)
        draft = _reread(store, draft)
    return done(idem, 200, draft_view(brokerage, draft))
