"""A deal's progress as Server-Sent Events: `step` per timeline entry, `state` per state change."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic.json_schema import models_json_schema
from starlette.concurrency import run_in_threadpool

from api.deps import BrokerageDep, OwnedDeal, SettingsDep
from api.routes import COMMON, DEAL
from api.schemas import StateEvent, StepEvent
from api.settings import Settings
from pipeline.brokerage import Brokerage

router = APIRouter(prefix="/deals", tags=["events"], responses={**COMMON, **DEAL})
TERMINAL = {"settled", "cancelled", "defaulted", "refunded"}
COMPONENTS = "#/components/schemas/{model}"
STEP_ID = {"type": "string", "pattern": "^[0-9]+:[0-9]+$", "description": "the step's `<block>:<log_index>`"}

WIRE_FORMAT = """\
One event per frame, frames separated by a blank line, `data:` one line of JSON:

    event: step
    id: 812:3
    data: {"deal_id": 7, "step": "PaymentReceived", "contract": "DealEscrow", "by": "0x...", ...}

    event: state
    data: {"deal_id": 7, "state": "deposit_paid", "waiting": {"step": "interim", "reason": "..."}}

`step` (data: StepEvent): one per timeline entry, in chain order; its `id:` is `<block>:<log_index>`.
`state` (data: StateEvent, no `id:`): first, then on each change of the state or of what it waits for.
A `: keepalive` comment line comes when nothing happened for a while. The stream ends after a
`state` event with a terminal state (settled, cancelled, defaulted, refunded)."""


def _frame(
    event: str, data: type[StepEvent | StateEvent], event_id: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One event as OpenAPI 3.2 describes SSE items: its fields, `data` as JSON of `data`'s schema."""
    properties: dict[str, Any] = {
        "event": {"type": "string", "const": event},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": COMPONENTS.format(model=data.__name__)},
        },
    }
    if event_id is not None:
        properties["id"] = event_id
    return {"type": "object", "required": sorted(properties), "properties": properties}


def data_schemas() -> dict[str, Any]:
    """The events' data models for components/schemas: no response_model names them, so FastAPI
    would leave them out."""
    _, schema = models_json_schema(
        [(StepEvent, "serialization"), (StateEvent, "serialization")], ref_template=COMPONENTS
    )
    defs: dict[str, Any] = schema["$defs"]
    return defs


def sse(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, default=str))
    return ("\n".join(lines) + "\n\n").encode()


async def deal_events(
    request: Request, brokerage: Brokerage, deal_id: int, settings: Settings
) -> AsyncIterator[bytes]:
    seen: set[tuple[str, int]] = set()
    last: tuple[str, str | None] | None = None
    quiet_since = time.monotonic()
    while True:
        if await request.is_disconnected():
            return
        # the state first: when it is terminal, the timeline read after it has every step
        deal = await run_in_threadpool(brokerage.deal, deal_id)
        steps = await run_in_threadpool(brokerage.timeline, deal_id)
        sent = False
        for step in steps:
            key = (step["tx"], step["log_index"])
            if key not in seen:
                seen.add(key)
                yield sse("step", {"deal_id": deal_id, **step}, f"{step['block']}:{step['log_index']}")
                sent = True
        waiting = deal["waiting"]
        now = (deal["state"], waiting["reason"] if waiting else None)
        if now != last:
            last = now
            yield sse("state", {"deal_id": deal_id, "state": deal["state"], "waiting": waiting})
            sent = True
        if deal["state"] in TERMINAL:
            return
        if sent:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > settings.sse_keepalive_seconds:
            quiet_since = time.monotonic()
            yield b": keepalive\n\n"
        await asyncio.sleep(settings.sse_poll_interval)


@router.get(
    "/{deal_id}/events",
    summary="Server-Sent Events: one `step` per timeline entry, a `state` on each change; "
    "the stream ends after a terminal state",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream of `step` and `state` events",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string", "description": WIRE_FORMAT},
                    "itemSchema": {
                        "oneOf": [_frame("step", StepEvent, STEP_ID), _frame("state", StateEvent)]
                    },
                }
            },
        }
    },
)
async def deal_event_stream(
    request: Request, brokerage: BrokerageDep, settings: SettingsDep, deal_id: OwnedDeal
) -> StreamingResponse:
    return StreamingResponse(
        deal_events(request, brokerage, deal_id, settings),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
