"""Failpoints for the crash tests: `DEEDCHAIN_CRASH_AT=NAME` makes the process SIGKILL itself
when it reaches checkpoint NAME, exactly like an operator's `kill -9` at that moment."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "DEEDCHAIN_CRASH_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
