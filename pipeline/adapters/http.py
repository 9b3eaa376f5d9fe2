"""HTTP hooks: an institution runs its own service; the oracle talks to it over signed JSON.

Request:  POST {"id": REQUEST_ID, "data": {"method": NAME, "params": {...}}}
Answer:   {"id": REQUEST_ID, "data": {...}}   or   {"id": ..., "error": {"code", "message"}}
Both directions carry `X-Deedchain-Timestamp` and `X-Deedchain-Signature` =
hex(HMAC-SHA256(secret, timestamp + "." + body)), one secret per institution. The oracle
accepts only a signed answer that validates against the expected model; anything else is
retried with backoff and, when retries run out, raised so the oracle parks the item.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError

from pipeline.adapters.protocols import (
    CashAnswer,
    CashRequest,
    DisbursementAnswer,
    DisbursementRequest,
    LoanApplication,
    LoanDecision,
    MortgageBooked,
    MortgageUpdate,
    ParcelRecord,
    PayoffQuote,
    PayoffRequest,
    RegistrationReceipt,
    RegistrationRequest,
    ReportReceipt,
    TaxReceipt,
    TaxRequest,
    TransactionReport,
    TransferCheck,
    TransferCheckRequest,
)
from pipeline.errors import PipelineError

log = logging.getLogger("deedchain.hooks")
T = TypeVar("T", bound=BaseModel)
MAX_SKEW = 300  # seconds a signed message stays acceptable


class AdapterError(PipelineError):
    """An institution could not give a usable answer."""


class AdapterUnavailable(AdapterError, ConnectionError):
    """Timeouts, 5xx, unsigned or malformed answers: retried, then the item is parked."""


class AdapterRejected(AdapterError, ValueError):
    """The institution answered, signed, with an error: not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes) -> bool:
    if not timestamp or not signature:
        return False
    try:
        if abs(time.time() - int(timestamp)) > MAX_SKEW:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class HookClient:
    """POSTs signed requests to one institution's service and validates its answers."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.on_retry = on_retry
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, request_id: str, method: str, params: BaseModel | dict[str, Any], answer: type[T]) -> T:
        payload = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
        body = json.dumps({"id": request_id, "data": {"method": method, "params": payload}}).encode()
        delay = self.backoff
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                if self.on_retry:
                    self.on_retry(problem)
                time.sleep(delay)
                delay *= 2
            try:
                return self._once(request_id, body, answer)
            except AdapterUnavailable as exc:
                problem = str(exc)
                log.warning(
                    json.dumps(
                        {
                            "event": "hook_retry",
                            "url": self.url,
                            "id": request_id,
                            "attempt": attempt + 1,
                            "problem": problem,
                        }
                    )
                )
        raise AdapterUnavailable(f"{self.url} {method} failed {self.retries + 1} times: {problem}")

    def _once(self, request_id: str, body: bytes, answer: type[T]) -> T:
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Deedchain-Timestamp": stamp,
            "X-Deedchain-Signature": sign(self.secret, stamp, body),
        }
        try:
            response = self._session().post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise AdapterUnavailable(f"no answer: {type(exc).__name__}") from None
        raw = response.content
        if response.status_code >= 500:
            raise AdapterUnavailable(f"HTTP {response.status_code}")
        if not verify(
            self.secret,
            response.headers.get("X-Deedchain-Timestamp"),
            response.headers.get("X-Deedchain-Signature"),
            raw,
        ):
            raise AdapterUnavailable(f"unsigned or badly signed answer (HTTP {response.status_code})")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise AdapterUnavailable("answer is not JSON") from None
        if not isinstance(doc, dict) or doc.get("id") != request_id:
            raise AdapterUnavailable("answer is for another request id")
        if "error" in doc:
            err = doc["error"] if isinstance(doc["error"], dict) else {}
            raise AdapterRejected(str(err.get("code", "error")), str(err.get("message", "")))
        try:
            return answer.model_validate(doc.get("data"))
        except ValidationError as exc:
            raise AdapterUnavailable(
                f"answer does not match {answer.__name__}: {exc.error_count()} errors"
            ) from None


class HttpBank:
    """A bank reached through its HTTP hook (implements BankAdapter)."""

    def __init__(self, client: HookClient) -> None:
        self.client = client

    def assess_loan(self, request_id: str, application: LoanApplication) -> LoanDecision:
        return self.client.call(request_id, "assess_loan", application, LoanDecision)

    def disburse(self, request_id: str, request: DisbursementRequest) -> DisbursementAnswer:
        return self.client.call(request_id, "disburse", request, DisbursementAnswer)

    def payoff_quote(self, request_id: str, request: PayoffRequest) -> PayoffQuote:
        return self.client.call(request_id, "payoff_quote", request, PayoffQuote)

    def cash(self, request_id: str, request: CashRequest) -> CashAnswer:
        return self.client.call(request_id, "cash", request, CashAnswer)

    def update_mortgage(self, request_id: str, update: MortgageUpdate) -> MortgageBooked:
        return self.client.call(request_id, "update_mortgage", update, MortgageBooked)


class _Found(BaseModel):
    record: ParcelRecord | None


class HttpRegistry:
    """The land registry reached through its HTTP hook (implements LandRegistryAdapter)."""

    def __init__(self, client: HookClient) -> None:
        self.client = client

    def read_parcel(self, parcel_id: str) -> ParcelRecord | None:
        rid = f"read:{parcel_id}:{time.time_ns()}"
        return self.client.call(rid, "read_parcel", {"parcel_id": parcel_id}, _Found).record

    def check_transfer(self, request_id: str, request: TransferCheckRequest) -> TransferCheck:
        return self.client.call(request_id, "check_transfer", request, TransferCheck)

    def acquisition_tax(self, request_id: str, request: TaxRequest) -> TaxReceipt:
        return self.client.call(request_id, "acquisition_tax", request, TaxReceipt)

    def file_transaction_report(self, request_id: str, report: TransactionReport) -> ReportReceipt:
        return self.client.call(request_id, "file_transaction_report", report, ReportReceipt)

    def file_registration(self, request_id: str, request: RegistrationRequest) -> RegistrationReceipt:
        return self.client.call(request_id, "file_registration", request, RegistrationReceipt)


# --- the service side --------------------------------------------------------------------

BANK_METHODS: dict[str, type[BaseModel]] = {
    "assess_loan": LoanApplication,
    "disburse": DisbursementRequest,
    "payoff_quote": PayoffRequest,
    "cash": CashRequest,
    "update_mortgage": MortgageUpdate,
}
REGISTRY_METHODS: dict[str, type[BaseModel]] = {
    "check_transfer": TransferCheckRequest,
    "acquisition_tax": TaxRequest,
    "file_transaction_report": TransactionReport,
    "file_registration": RegistrationRequest,
}


def make_service(adapter: Any, secret: bytes, methods: dict[str, type[BaseModel]], title: str) -> FastAPI:
    """A FastAPI app exposing `adapter` as an HTTP hook (the reference bank and registry)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    def signed(status: int, doc: dict[str, Any]) -> Response:
        body = json.dumps(doc).encode()
        stamp = str(int(time.time()))
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers={
                "X-Deedchain-Timestamp": stamp,
                "X-Deedchain-Signature": sign(secret, stamp, body),
            },
        )

    @app.post("/")
    async def hook(request: Request) -> Response:
        body = await request.body()
        if not verify(
            secret,
            request.headers.get("X-Deedchain-Timestamp"),
            request.headers.get("X-Deedchain-Signature"),
            body,
        ):
            return Response(b'{"error":"unsigned"}', status_code=401, media_type="application/json")
        try:
            doc = json.loads(body)
            rid = str(doc["id"])
            method = str(doc["data"]["method"])
            params = doc["data"]["params"]
        except (ValueError, KeyError, TypeError):
            return signed(
                400,
                {
                    "id": None,
                    "error": {"code": "bad_request", "message": "need id and data.method"},
                },
            )
        if method == "read_parcel" and hasattr(adapter, "read_parcel"):
            record = adapter.read_parcel(str(params.get("parcel_id", "")))
            return signed(
                200,
                {"id": rid, "data": {"record": record.model_dump(mode="json") if record else None}},
            )
        model = methods.get(method)
        if model is None:
            return signed(404, {"id": rid, "error": {"code": "unknown_method", "message": method}})
        try:
            parsed = model.model_validate(params)
        except ValidationError as exc:
            return signed(422, {"id": rid, "error": {"code": "invalid_params", "message": str(exc)[:500]}})
        try:
            answer = getattr(adapter, method)(rid, parsed)
        except PipelineError as exc:
            return signed(409, {"id": rid, "error": {"code": type(exc).__name__, "message": str(exc)}})
        return signed(200, {"id": rid, "data": answer.model_dump(mode="json")})

    return app


class ServiceThread:
    """Runs an ASGI app with uvicorn on a loopback port in a background thread."""

    def __init__(self, app: Any, port: int, host: str = "127.0.0.1") -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://{host}:{port}/"
        self.thread = threading.Thread(target=self.server.run, daemon=True, name=f"service:{port}")

    def start(self, timeout: float = 10.0) -> ServiceThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AdapterUnavailable(f"service on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
