"""Waiting for a `deedchain serve` process to answer, shared by the CLI tests."""

from __future__ import annotations

import subprocess
import time

import requests


def wait_healthy(proc: subprocess.Popen[str], port: int, timeout: float) -> subprocess.Popen[str]:
    """`proc` once its API answers /healthz on `port`; fails if it exits or takes longer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)
    raise AssertionError("serve did not become healthy")
