"""Oracle metrics from the oracles' own tables: reaction latency, retries, parked, by oracle."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from pipeline.db import sql


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def oracle_metrics(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per oracle: effects by status, latency p50/p95 (ms, event seen -> answer mined), counters."""
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(
            sql("SELECT oracle, status, COUNT(*) AS n FROM oracle_effects GROUP BY oracle, status")
        ):
            out.setdefault(row.oracle, {"effects": {}, "counters": {}})["effects"][row.status] = int(row.n)
        latencies: dict[str, list[float]] = {}
        for row in conn.execute(
            sql(
                "SELECT oracle, latency_ms FROM oracle_effects "
                "WHERE status = 'mined' AND latency_ms IS NOT NULL"
            )
        ):
            latencies.setdefault(row.oracle, []).append(float(row.latency_ms))
        for row in conn.execute(sql("SELECT oracle, name, value FROM oracle_counters")):
            out.setdefault(row.oracle, {"effects": {}, "counters": {}})["counters"][row.name] = int(row.value)
    for oracle, values in latencies.items():
        out[oracle]["latency_ms"] = {
            "count": len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "max": max(values),
        }
    return out
