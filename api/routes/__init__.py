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
    400: _error("a money-moving POST without Idempotency-Key (`idempotency_key_required`)"),
    403: _error("the caller's address is not a broker this service signs for (`not_a_broker`)"),
    409: _error("the deal's state does not allow this (`revert.<StateError>`, `idempotency_in_progress`)"),
}


def state_name(value: int) -> StateName:
    from pipeline.domain import State

    name: StateName = State(value).name.lower()  # type: ignore[assignment]
    return name


def log_event(what: str, deal_id: int | None = None, tx: str | None = None, **fields: Any) -> None:
    log.info(json.dumps({"event": what, "deal_id": deal_id, "tx": tx, **fields}, default=str))
