"""The broker API: `create_app(services, settings)`.

Thin: every route is a call to pipeline.brokerage.Brokerage. Around the routes: a body-size
limit (413), request counting and one JSON log line per request (with deal id and tx hash
when the route has them), and the error handlers of api.errors.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.db import ApiStore
from api.deps import RateLimiter
from api.routes import credentials, deals, drafts, events, money, ops, parcels, signing
from api.settings import Settings
from pipeline.service import Services

log = logging.getLogger("deedchain.api")

DESCRIPTION = """\
Broker API of deedchain: a Korean real-estate closing (sale → loan → land registration) on chain.

Open a deal, have the buyer and the seller sign its terms (EIP-712 typed data from
`/deals/{id}/typed-data/{party}`), record the buyer's money paid in at its bank, submit its
e-certificates and one EIP-2612 permit: the pipeline then pays each installment, files the loan
application, requests registration, and the bank and registry oracles do the institutions' part.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error is
`{"error": {"code", "message", "details"}}`. POSTs that move money or change a deal accept an
`Idempotency-Key`; `POST /deals/{id}/payments` requires one.
"""


def _send_json(status: int, body: dict[str, Any]) -> tuple[Message, Message]:
    raw = json.dumps(body).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
    }
    return start, {"type": "http.response.body", "body": raw}


class BodyLimit:
    """413 for a body over `limit` bytes, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = False
        if length is not None:
            try:
                too_large = int(length) > self.limit
            except ValueError:
                too_large = True
        if not too_large and length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # no declared length (chunked): read it all here, up to the limit
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    too_large = True
                    break
                chunks.append(chunk)
                more = message.get("more_body", False)
            if not too_large:
                body = b"".join(chunks)
                sent = False

                async def replay() -> Message:
                    nonlocal sent
                    if not sent:
                        sent = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.app(scope, replay, send)
                return
        if too_large:
            start, body_message = _send_json(
                413,
                errors.error_body(
                    "body_too_large",
                    f"request body over {self.limit} bytes",
                    {"limit": self.limit},
                ),
            )
            await send(start)
            await send(body_message)
            return
        await self.app(scope, receive, send)


class RequestLog:
    """Counts responses by status (for /metrics) and logs one JSON line per request."""

    def __init__(self, app: ASGIApp, counts: Counter[int]) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.counts[status] += 1
            state = scope.get("state") or {}
            log.info(
                json.dumps(
                    {
                        "event": "http",
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 1),
                        "broker": state.get("broker"),
                        "deal_id": state.get("deal_id"),
                    }
                )
            )


def create_app(services: Services, settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="deedchain broker API",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        # operationIds are the route functions' names (open_deal, get_deal...): the links name them
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.services = services
    app.state.settings = settings
    app.state.store = ApiStore(settings.database_url)
    app.state.limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.http_requests = Counter()
    for module in (parcels, deals, drafts, signing, money, credentials, events, ops):
        app.include_router(module.router)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = default_openapi()  # built on the first call, then cached
        for name, model in events.data_schemas().items():
            schema["components"]["schemas"].setdefault(name, model)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestLog, counts=app.state.http_requests)
    return app
