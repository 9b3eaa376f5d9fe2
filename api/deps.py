"""Every dependency of the routes, with `Annotated[..., Depends(...)]` aliases.

- the Services / Brokerage / ApiStore / Settings kept on app.state;
- the current broker from `Authorization: Bearer <key>` or `X-API-Key` (401 otherwise),
  rate limited per key (token bucket in memory, 429 with Retry-After);
- a deal id the current broker owns (404 `deal_not_found` otherwise, same words whether the
  deal does not exist or is another broker's);
- Idempotency-Key handling for POSTs that move money or change state.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from api.db import ApiStore, Broker, split_key
from api.errors import (
    IDEMPOTENCY_KEY,
    ApiError,
    DealNotFound,
    IdempotentReplay,
    RateLimited,
    Unauthenticated,
)
from api.settings import Settings
from pipeline.brokerage import Brokerage
from pipeline.service import Services

# --- app state -------------------------------------------------------------------------------


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_brokerage(request: Request) -> Brokerage:
    return get_services(request).brokerage


def get_store(request: Request) -> ApiStore:
    store: ApiStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(get_services)]
BrokerageDep = Annotated[Brokerage, Depends(get_brokerage)]
StoreDep = Annotated[ApiStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

# --- authentication and rate limiting ----------------------------------------------------------

UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}
KEY_FORM = "`dc_<key_id>_<secret>`"


def _key(value: str, header: str) -> str:
    """The key a present auth header carries: a malformed one is refused, never passed over for the
    other header (a client would not learn which of its keys acted)."""
    token = value.strip()
    if split_key(token) is None:
        raise Unauthenticated(f"{header} does not carry an API key ({KEY_FORM})", headers=UNAUTHENTICATED)
    return token


class StrictBearer(HTTPBearer):
    """HTTPBearer, but an Authorization header of another scheme or without a key is a 401
    instead of no credentials."""

    async def __call__(self, request: HTTPConnection) -> HTTPAuthorizationCredentials | None:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthenticated(
                "the Authorization header must be `Bearer <key>` (no other scheme)", headers=UNAUTHENTICATED
            )
        return HTTPAuthorizationCredentials(
            scheme=scheme, credentials=_key(credentials, "Authorization: Bearer")
        )


class StrictAPIKeyHeader(APIKeyHeader):
    """APIKeyHeader, but a header that is present and empty or malformed is a 401."""

    def check_api_key(self, api_key: str | None) -> str | None:
        return None if api_key is None else _key(api_key, self.model.name)


# scheme names as FastAPI's own classes have them: the OpenAPI security schemes keep their names
bearer = StrictBearer(
    auto_error=False, scheme_name="HTTPBearer", description="`Authorization: Bearer dc_<key_id>_<secret>`"
)
api_key_header = StrictAPIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="APIKeyHeader", description="the same key in X-API-Key"
)


def authenticate(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)],
) -> Broker:
    bearer_key = credentials.credentials if credentials is not None else None
    if bearer_key is not None and api_key is not None and bearer_key != api_key:
        raise Unauthenticated(
            "Authorization and X-API-Key carry different keys: send one", headers=UNAUTHENTICATED
        )
    token = bearer_key or api_key
    if not token:
        raise Unauthenticated(
            "send your API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            headers=UNAUTHENTICATED,
        )
    broker = store.authenticate(token)
    if broker is None:
        raise Unauthenticated("unknown or revoked API key", headers=UNAUTHENTICATED)
    return broker


class RateLimiter:
    """A token bucket per API key, in memory: `rate` tokens a second, up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def current_broker(request: Request, broker: Annotated[Broker, Depends(authenticate)]) -> Broker:
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(broker.key_id)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise RateLimited(
            f"more than {limiter.burst} requests at once or {limiter.rate:g}/s for this key; "
            f"retry in {retry} s",
            headers={"Retry-After": str(retry)},
            details={"retry_after": retry},
        )
    request.state.broker = broker.address
    return broker


CurrentBroker = Annotated[Broker, Depends(current_broker)]

# --- deal ownership ----------------------------------------------------------------------------

DEAL_ID_MAX = 2**64


def owned_deal(
    request: Request,
    brokerage: BrokerageDep,
    broker: CurrentBroker,
    deal_id: Annotated[int, Path(ge=1, lt=DEAL_ID_MAX, description="the deal's id on chain", examples=[1])],
) -> int:
    """The deal id when the caller's broker opened the deal; 404 otherwise."""
    owner = brokerage.broker_of(deal_id)
    if owner is None or owner.lower() != broker.address.lower():
        raise DealNotFound(deal_id)
    request.state.deal_id = deal_id
    return deal_id


OwnedDeal = Annotated[int, Depends(owned_deal)]

# --- idempotency -------------------------------------------------------------------------------


@dataclass
class Idempotency:
    """A claimed Idempotency-Key: finish() stores the response (or releases the key on 5xx)."""

    store: ApiStore
    broker_id: str
    key: str
    done: bool = False

    def finish(self, status: int, body: Any) -> None:
        if self.done:
            return
        self.done = True
        if status >= 500:
            self.store.release(self.broker_id, self.key)
        else:
            self.store.complete(self.broker_id, self.key, status, json.dumps(body))

    def ok(self, status: int, model: BaseModel) -> BaseModel:
        self.finish(status, model.model_dump(mode="json"))
        return model


def _request_hash(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


IdempotencyKeyHeader = Header(
    alias=IDEMPOTENCY_KEY,
    min_length=1,
    max_length=200,
    pattern=r"^[\x21-\x7e]+$",
    description="any unique string (a UUID): a retry with the same key and body replays the first "
    "response; the same key with another body is refused",
    examples=["3f1c0f9e-6b7a-4c7e-9a43-0c9f6f0a1b2c"],
)


async def _idempotency(request: Request, store: ApiStore, broker: Broker, key: str) -> Idempotency:
    scope = f"{request.method} {request.url.path}"
    digest = _request_hash(request.method, request.url.path, await request.body())
    existing = await run_in_threadpool(store.claim, broker.id, key, scope, digest)
    if existing is None:
        idem = Idempotency(store, broker.id, key)
        request.state.idempotency = idem
        return idem
    if existing.request_hash != digest:
        raise ApiError(
            "this Idempotency-Key was used for a different request; use a new key",
            code="idempotency_key_reused",
            status=422,
            details={"first_request": existing.scope},
        )
    if existing.status is None or existing.response_json is None:
        raise ApiError(
            "a request with this Idempotency-Key is still running; retry shortly",
            code="idempotency_in_progress",
            status=409,
            headers={"Retry-After": "1"},
        )
    raise IdempotentReplay(existing.status, json.loads(existing.response_json))


async def optional_idempotency(
    request: Request,
    store: StoreDep,
    broker: CurrentBroker,
    key: Annotated[str | None, IdempotencyKeyHeader] = None,
) -> Idempotency | None:
    return None if key is None else await _idempotency(request, store, broker, key)


async def required_idempotency(
    request: Request, store: StoreDep, broker: CurrentBroker, key: Annotated[str, IdempotencyKeyHeader]
) -> Idempotency:
    """Required in the spec too: a request without the header gets api.errors' 400."""
    return await _idempotency(request, store, broker, key)


IdempotencyDep = Annotated[Idempotency | None, Depends(optional_idempotency)]
RequiredIdempotency = Annotated[Idempotency, Depends(required_idempotency)]


def done(idem: Idempotency | None, status: int, model: BaseModel) -> Any:
    """Store the response under the request's Idempotency-Key (if any) and return it."""
    return idem.ok(status, model) if idem is not None else model
