"""A throwaway PostgreSQL server for tests, like the anvil fixture: own data dir, free port.

Uses $DEEDCHAIN_TEST_PG_URL when set; else starts initdb/pg_ctl from the Debian packages
(as the `postgres` user when the tests run as root, since PostgreSQL refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from chain.node import free_port


def _pg_bin() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return os.path.dirname(candidates[-1])
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found else None


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """Yields a database URL, or None when no PostgreSQL can be had here."""
    if url := os.environ.get("DEEDCHAIN_TEST_PG_URL"):
        yield url
        return
    bindir = _pg_bin()
    if bindir is None:
        yield None
        return
    root = os.geteuid() == 0
    base = tempfile.mkdtemp(prefix="deedchain-pg-")
    data = os.path.join(base, "data")
    port = free_port()

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if root else list(cmd)
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    if root:
        shutil.chown(base, "postgres", "postgres")
    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-w", "-l", os.path.join(base, "log"), "start")
    try:  # pg_ctl -w returned only once the server accepts connections
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
