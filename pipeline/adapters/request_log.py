"""The reference back offices' common plumbing: their database, clock and schema, and
idempotent requests (the answer to a request id is stored in the same transaction as the state
change it caused, and a repeat returns it unchanged)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import ClassVar, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline.adapters.protocols import Payload
from pipeline.db import make_engine, sql
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
                    sql(f"SELECT fingerprint, answer FROM {table} WHERE request_id = :r AND method = :m"),
                    {"r": request_id, "m": method},
                ).first()
                if row is not None:
                    if row.fingerprint != digest:
                        raise reused(f"request id {request_id!r} was used for another {method}")
                    return answer_type.model_validate_json(row.answer)
                answer = work(conn)
                conn.execute(
                    sql(
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


class BackOffice:
    """A reference institution's own system: owns its engine when given a URL."""

    SCHEMA: ClassVar[list[str]]
    REQUESTS_TABLE: ClassVar[str]
    INVALID: ClassVar[type[PipelineValueError]]
    REUSED: ClassVar[type[PipelineValueError]]

    def __init__(self, engine_or_url: Engine | str, clock: Callable[[], int] | None = None) -> None:
        self._owns_engine = isinstance(engine_or_url, str)
        self.engine: Engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.clock: Callable[[], int] = clock or (lambda: int(time.time()))
        self.create_schema()

    def create_schema(self) -> None:
        with self.engine.begin() as conn:
            for statement in self.SCHEMA:
                conn.execute(sql(statement))

    def close(self) -> None:
        """Dispose of the engine if this back office created it from a URL."""
        if self._owns_engine:
            self.engine.dispose()

    def _idempotent(
        self,
        method: str,
        request_id: str,
        payload: Payload,
        answer_type: type[A],
        work: Callable[[Connection], A],
    ) -> A:
        return run_once(
            self.engine, self.REQUESTS_TABLE, method, request_id, payload, answer_type, work,
            now=self.clock(), invalid=self.INVALID, reused=self.REUSED,
        )  # fmt: skip
