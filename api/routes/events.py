"""A deal's progress as Server-Sent Events: `step` per timeline entry, `state` per state change."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import BrokerageDep, OwnedDeal, SettingsDep
from api.routes import COMMON, DEAL
from api.settings import Settings
from pipeline.brokerage import Brokerage

router = APIRouter(prefix="/deals", tags=["events"], responses={**COMMON, **DEAL})
TERMINAL = {"settled", "cancelled", "defaulted", "refunded"}


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
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
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
