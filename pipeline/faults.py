"""Failpoints for the crash tests: `DEEDCHAIN_CRASH_AT=NAME` (or `NAME@KIND`) makes the process
SIGKILL itself when it reaches checkpoint NAME (for an effect of KIND), exactly like an
operator's `kill -9` at that moment."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DEEDCHAIN_CRASH_AT"


def checkpoint(name: str, kind: str = "") -> None:
    spec = os.environ.get(CRASH_ENV)
    if spec and spec in (name, f"{name}@{kind}"):
        os.kill(os.getpid(), signal.SIGKILL)
