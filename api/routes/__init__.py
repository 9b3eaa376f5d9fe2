"""The API's routers, one module per resource."""

from __future__ import annotations

import json
import logging
from typing import Any

from api.schemas import ErrorBody, StateName

log = logging.getLogger("deedchain.api")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON: dict[int | str, dict[str, Any]] = {
    401: _error("no API key, or an unknown or revoked one (`unauthenticated`)"),
    413: _error("request body larger than the limit (`body_too_large`)"),
    422: _error("invalid input (`validation_error`, `invalid_request`, `revert.<InputError>`)"),
    429: _error("too many requests for this key (`rate_limited`; see Retry-After)"),
    503: _error("the node or an institution is unavailable; retry later"),
}
DEAL: dict[int | str, dict[str, Any]] = {
    404: _error("no such deal among the caller's deals (`deal_not_found`)")
}
WRITE: dict[int | str, dict[str, Any]] = {
    400: _error(
        "a money-moving POST without Idempotency-Key (`idempotency_key_required`), "
        "or a body that cannot be decoded (`malformed_body`)"
    ),
    403: _error("the caller's address is not a broker this service signs for (`not_a_broker`)"),
    409: _error("the deal's state does not allow this (`revert.<StateError>`, `idempotency_in_progress`)"),
}


# --- OpenAPI links: what a client (or schemathesis' stateful runs) can do next with a response --------
# Targets are operationIds, which are the route functions' names (create_app sets that).


def _link(
    operation_id: str, description: str, body: dict[str, Any] | None = None, **params: Any
) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": operation_id, "description": description, "parameters": params}
    if body is not None:
        link["requestBody"] = body
    return link


def deal_links(deal_id: str, terms: str | None = None) -> dict[str, dict[str, Any]]:
    """Links from a response naming a deal (`deal_id`: a runtime expression for its id) to the deal's
    reads; with `terms` (the expression of the deal's TermsView) also to its next writes."""
    links = {
        "GetDeal": _link("get_deal", "the deal's status and what it waits for", deal_id=deal_id),
        "GetTimeline": _link("get_timeline", "the deal's steps on chain", deal_id=deal_id),
    }
    if terms is not None:
        links |= {
            "GetBuyerTypedData": _link(
                "acceptance_typed_data", "what the buyer signs", deal_id=deal_id, party="buyer"
            ),
            "GetSellerTypedData": _link(
                "acceptance_typed_data", "what the seller signs", deal_id=deal_id, party="seller"
            ),
            "RecordDepositPayment": _link(
                "record_payment",
                "the buyer paid the deposit in at its bank",
                {"party": "buyer", "amount": f"{terms}/deposit"},
                deal_id=deal_id,
            ),
            "GetPermitTypedData": _link(
                "permit_typed_data",
                "the buyer's permit for the whole price",
                deal_id=deal_id,
                value=f"{terms}/price",
            ),
            "GetBuyerCancelTypedData": _link(
                "cancel_typed_data", "what the buyer signs to cancel", deal_id=deal_id, party="buyer"
            ),
            "ApplyForLoan": _link("apply_for_loan", "file the loan application", deal_id=deal_id),
            "RequestRegistration": _link("request_registration", "ask for registration", deal_id=deal_id),
        }
    return links


def ok(
    description: str, links: dict[str, dict[str, Any]], status: int = 200
) -> dict[int | str, dict[str, Any]]:
    """A success response's description and links (merged with its response_model's schema)."""
    return {status: {"description": description, "links": links}}


TX_LINKS = ok("the transaction, mined, and the deal's state after it", deal_links("$response.body#/deal_id"))


def state_name(value: int) -> StateName:
    from pipeline.domain import State

    name: StateName = State(value).name.lower()  # type: ignore[assignment]
    return name


def log_event(what: str, deal_id: int | None = None, tx: str | None = None, **fields: Any) -> None:
    log.info(json.dumps({"event": what, "deal_id": deal_id, "tx": tx, **fields}, default=str))
