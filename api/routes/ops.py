"""Health and Prometheus metrics (no API key: for the operator's probes and scraper)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from api.deps import ServicesDep
from api.schemas import Health, NodeHealth
from pipeline.metrics import oracle_metrics
from pipeline.service import Services

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=Health,
    summary="Node reachable, its block number, oracles and the automation running",
    responses={503: {"model": Health, "description": "something is down"}},
)
def healthz(services: ServicesDep, response: Response) -> Health:
    try:
        block = int(services.session.rpc.call("eth_blockNumber"), 16)
        node = NodeHealth(reachable=True, block_number=block, chain_id=services.session.chain_id)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        node = NodeHealth(reachable=False, block_number=None, chain_id=None, error=str(exc)[:200])
    running = services.running()
    driver = running.pop("automation")
    oracles = running
    ok = node.reachable and bool(oracles) and all(oracles.values()) and driver
    if not ok:
        response.status_code = 503
    return Health(ok=ok, node=node, oracles=oracles, driver=driver)


def _labels(**labels: Any) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), "/").replace(chr(34), chr(39))}"' for k, v in labels.items()
    )
    return "{" + inner + "}"


def _deals_by_state(services: Services) -> dict[str, int]:
    """From the deal index (brought up to the chain's head first): one SQL count, the same with
    ten deals on chain as with ten thousand, and right after a reorg too."""
    index = services.brokerage.index
    index.sync()
    return {state.name.lower(): n for state, n in index.counts().items()}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics: oracle latency, retries, parked, orphaned, deals by state, HTTP requests",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(services: ServicesDep, request: Request) -> PlainTextResponse:
    out: list[str] = []

    def family(name: str, kind: str, text: str) -> None:
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")

    data = oracle_metrics(services.institutions.engine)
    family("deedchain_oracle_latency_ms", "gauge", "oracle reaction latency (event seen -> answer mined)")
    for oracle, m in sorted(data.items()):
        latency = m.get("latency_ms")
        if latency:
            for q, key in (("0.5", "p50"), ("0.95", "p95")):
                out.append(f"deedchain_oracle_latency_ms{_labels(oracle=oracle, quantile=q)} {latency[key]}")
    family("deedchain_oracle_effects", "gauge", "oracle effects by status")
    for oracle, m in sorted(data.items()):
        for status, n in sorted(m["effects"].items()):
            out.append(f"deedchain_oracle_effects{_labels(oracle=oracle, status=status)} {n}")
    for counter, text in (
        ("retries", "institution calls retried"),
        ("parked", "effects parked (institution failed or refused)"),
        ("orphaned", "effects orphaned by a reorg"),
        ("reverted", "oracle transactions that reverted"),
    ):
        family(f"deedchain_oracle_{counter}_total", "counter", text)
        for oracle, m in sorted(data.items()):
            out.append(
                f"deedchain_oracle_{counter}_total{_labels(oracle=oracle)} {m['counters'].get(counter, 0)}"
            )
    family("deedchain_deals", "gauge", "deals on chain by state")
    for state, n in sorted(_deals_by_state(services).items()):
        out.append(f"deedchain_deals{_labels(state=state)} {n}")
    family("deedchain_http_requests_total", "counter", "HTTP requests served, by status")
    counts: Counter[int] = request.app.state.http_requests
    for status, n in sorted(counts.items()):
        out.append(f"deedchain_http_requests_total{_labels(status=status)} {n}")
    return PlainTextResponse("\n".join(out) + "\n", media_type="text/plain; version=0.0.4")
