"""Databases: SQLite by default (a file per system), PostgreSQL by URL.

SQLAlchemy Core with plain SQL; every statement here is portable between the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from pipeline.errors import PipelineValueError


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
