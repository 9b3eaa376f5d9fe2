"""The API's exceptions (one root, ApiError) and the handlers that turn every error into
`{"error": {"code": ..., "message": ..., "details": {...}}}` with the right status.

Reverts: input errors (the request was wrong) are 422, everything else (the deal is not in
a state that allows it) is 409; the code is `revert.<ErrorName>`, details are its arguments.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from chain.errors import ChainError, ContractRevert
from pipeline.adapters.http import AdapterError, AdapterRejected
from pipeline.brokerage import DepositRefused, NotABroker, UnknownDeal, UnknownParcel
from pipeline.errors import PipelineError, PipelineValueError

log = logging.getLogger("deedchain.api")

INPUT_REVERTS = frozenset(
    {
        "InvalidSigner",
        "SignatureExpired",
        "InvalidParties",
        "InvalidAmounts",
        "PriceMismatch",
        "LoanExceedsBalance",
        "LenderMismatch",
        "InvalidDeadlines",
        "AmountTooLarge",
        "AmountMismatch",
        "SellerNotOwner",
        "ZeroAddress",
        "ZeroAmount",
        "TooManyCredentials",
        "InvalidCredential",
        "InvalidLoanTerms",
        "NotDealBuyer",
        "NotParty",
        "ERC2612InvalidSigner",
        "ERC2612ExpiredSignature",
        "ECDSAInvalidSignature",
        "ECDSAInvalidSignatureLength",
        "ECDSAInvalidSignatureS",
        "InvalidAccountNonce",
    }
)


class ApiError(Exception):
    """Root of every error the API raises on purpose: carries its HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}


class ApiValueError(ApiError, ValueError):
    status = 422
    code = "invalid_request"


class Unauthenticated(ApiError):
    status = 401
    code = "unauthenticated"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"


class DealNotFound(ApiError, LookupError):
    status = 404
    code = "deal_not_found"

    def __init__(self, deal_id: int) -> None:
        # the same words whether the deal does not exist or is another broker's
        super().__init__(f"no deal {deal_id} among this broker's deals", details={"deal_id": deal_id})


IDEMPOTENCY_KEY = "Idempotency-Key"


class IdempotencyKeyRequired(ApiError):
    code = "idempotency_key_required"

    def __init__(self) -> None:
        super().__init__(f"this request moves money: send an {IDEMPOTENCY_KEY} header (e.g. a UUID)")


class IdempotentReplay(ApiError):
    """Not an error: the stored response of an earlier request with the same Idempotency-Key."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__("replayed", status=status)
        self.body = body


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# What a strict integer field got instead, for a message that says why `1.0` is no integer here.
NOT_AN_INTEGER = {
    bool: "true/false",
    float: "a number with a fraction or an exponent (1.0, 1e3)",
    str: "a string",
}


def _message(error: Any) -> str:
    got = NOT_AN_INTEGER.get(type(error.get("input"))) if error.get("type") == "int_type" else None
    return f"Input should be a JSON integer, not {got}" if got else str(error.get("msg", ""))


def _missing_idempotency_key(exc: RequestValidationError) -> bool:
    return any(
        e.get("type") == "missing" and tuple(e.get("loc", ())) == ("header", IDEMPOTENCY_KEY)
        for e in exc.errors()
    )


def describe(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """(status, body, headers) for an exception the API knows, else None."""
    if isinstance(exc, IdempotentReplay):
        return exc.status, exc.body, {"Idempotent-Replayed": "true"}
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.code, exc.message, _jsonable(exc.details)), exc.headers
    if isinstance(exc, RequestValidationError) and _missing_idempotency_key(exc):
        # the header is required in the spec; its absence stays the 400 it always was, whatever
        # else is wrong with the request
        return describe(IdempotencyKeyRequired())
    if isinstance(exc, RequestValidationError | ValidationError):
        errors = [
            {"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "request" for e in errors[:5])
        return 422, error_body("validation_error", f"invalid input at {where}", {"errors": errors}), {}
    if isinstance(exc, ContractRevert):
        status = 422 if exc.name in INPUT_REVERTS else 409
        details = _jsonable(exc.args_by_name)
        if exc.tx_hash:
            details["tx"] = exc.tx_hash
        return status, error_body(f"revert.{exc.name}", str(exc), details), {}
    if isinstance(exc, UnknownDeal):
        return 404, error_body("deal_not_found", f"no deal {exc.deal_id} among this broker's deals"), {}
    if isinstance(exc, UnknownParcel):
        return 404, error_body("parcel_not_found", str(exc)), {}
    if isinstance(exc, NotABroker):
        return 403, error_body("not_a_broker", str(exc)), {}
    if isinstance(exc, DepositRefused):
        return 422, error_body("refused", str(exc)), {}
    if isinstance(exc, AdapterRejected):
        return 422, error_body("institution_rejected", str(exc), {"code": exc.code}), {}
    if isinstance(exc, AdapterError):
        return 503, error_body("institution_unavailable", str(exc)), {"Retry-After": "5"}
    if isinstance(exc, PipelineValueError):
        return 422, error_body("invalid_request", str(exc)), {}
    if isinstance(exc, PipelineError):
        return 409, error_body("pipeline_error", str(exc)), {}
    if isinstance(exc, ChainError):
        return 503, error_body("chain_unavailable", str(exc)), {"Retry-After": "5"}
    if isinstance(exc, StarletteHTTPException):
        # FastAPI's only 400: a body it cannot decode (not JSON, not the declared charset)
        code = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return exc.status_code, error_body(code, str(exc.detail)), dict(exc.headers or {})
    return None


def respond(request: Request, exc: BaseException) -> JSONResponse:
    described = describe(exc)
    if described is None:
        log.error(
            json.dumps({"event": "unhandled", "path": request.url.path, "error": repr(exc)[:500]}),
            exc_info=exc,
        )
        described = (500, error_body("internal_error", "unexpected error; it was logged"), {})
    status, body, headers = described
    idem = getattr(request.state, "idempotency", None)
    if idem is not None and not isinstance(exc, IdempotentReplay):
        idem.finish(status, body)
    if status >= 400 and status != 404:
        log.info(
            json.dumps(
                {
                    "event": "error",
                    "path": request.url.path,
                    "status": status,
                    "code": body.get("error", {}).get("code") if isinstance(body, dict) else None,
                    "deal_id": request.path_params.get("deal_id"),
                }
            )
        )
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        if getattr(request.state, "idempotency", None) is not None:
            return await run_in_threadpool(respond, request, exc)  # it writes the stored response
        return respond(request, exc)

    for kind in (
        ApiError,
        RequestValidationError,
        ValidationError,
        ContractRevert,
        PipelineError,
        ChainError,
        DepositRefused,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handler)
