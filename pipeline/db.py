"""Databases: SQLite by default (a file per system), PostgreSQL by URL.

SQLAlchemy Core with plain SQL; every statement here is portable between the two.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, event, text

from pipeline.errors import PipelineValueError


@lru_cache(maxsize=1024)
def sql(statement: str) -> TextClause:
    """`text(statement)`, built once per statement: SQLAlchemy then also keys its compiled
    cache once, where building it per execution parsed the SQL and hashed it every time."""
    return text(statement)


def sqlite_url(path: Path | str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str) -> Engine:
    """An engine for `url` (sqlite:///FILE or postgresql://...), tuned for many small writes."""
    if url.startswith("sqlite:"):
        file = url.removeprefix("sqlite:///")
        if file and file != ":memory:" and not url.startswith("sqlite:///:memory:"):
            Path(file).parent.mkdir(parents=True, exist_ok=True)
        # a pool keeps connections (and their pragmas) instead of reconnecting per statement
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            # WAL lets readers (the API, the auditor) run while an oracle writes.
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith(("postgresql:", "postgresql+psycopg:", "postgres:")):
        url = url.replace("postgres://", "postgresql+psycopg://", 1)
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return create_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)
    raise PipelineValueError(f"database URL {url!r}: use sqlite:///FILE or postgresql://...")
