"""Idempotent requests for the reference back offices: the answer to a request id is stored
in the same transaction as the state change it caused, and a repeat returns it unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from pipeline.adapters.protocols import Payload
from pipeline.errors import PipelineValueError

A = TypeVar("A", bound=Payload)
ATTEMPTS = 3  # a lost race on a unique key is retried; the retry finds the winner's answer


def fingerprint(payload: Payload) -> str:
    return hashlib.sha256(payload.model_dump_json().encode()).hexdigest()


def run_once(
    engine: Engine,
    table: str,
    method: str,
    request_id: str,
    payload: Payload,
    answer_type: type[A],
    work: Callable[[Connection], A],
    *,
    now: int,
    invalid: type[PipelineValueError],
    reused: type[PipelineValueError],
) -> A:
    """Run `work` and store its answer under (request_id, method) in one transaction; a
    repeated id returns the stored answer, a repeated id with another payload raises `reused`."""
    if not 0 < len(request_id) <= 200:
        raise invalid(f"request id {request_id!r}: must be 1..200 characters")
    digest = fingerprint(payload)
    for attempt in range(ATTEMPTS):
        try:
            with engine.begin() as conn:
                row = conn.execute(
                    text(f"SELECT fingerprint, answer FROM {table} WHERE request_id = :r AND method = :m"),
                    {"r": request_id, "m": method},
                ).first()
                if row is not None:
                    if row.fingerprint != digest:
                        raise reused(f"request id {request_id!r} was used for another {method}")
                    return answer_type.model_validate_json(row.answer)
                answer = work(conn)
                conn.execute(
                    text(
                        f"INSERT INTO {table} (request_id, method, fingerprint, answer, created_at)"
                        " VALUES (:r, :m, :f, :a, :t)"
                    ),
                    {"r": request_id, "m": method, "f": digest, "a": answer.model_dump_json(), "t": now},
                )
                return answer
        except IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
