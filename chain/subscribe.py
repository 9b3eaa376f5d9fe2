"""The node's new heads pushed over a WebSocket subscription (eth_subscribe "newHeads").

A LogHub with a feed answers head reads from the newest pushed header instead of asking the
node: a process whose streams poll every few milliseconds then sends nothing while the chain
stands still. Polling stays the fallback: while the feed is not connected (the node has no
WebSocket endpoint, it restarts, a ping goes unanswered) `head()` is None and the hub asks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

log = logging.getLogger("deedchain.chain")
PING_S = 5.0  # a connection that does not answer a ping within this is dropped: back to polling
RETRY_S = (0.5, 1.0, 2.0, 5.0)  # waits before connecting again, growing


def ws_url(http_url: str) -> str:
    """The WebSocket URL of a node that serves both on one port (anvil, hardhat, ganache)."""
    parts = urlsplit(http_url)
    return urlunsplit(parts._replace(scheme="wss" if parts.scheme == "https" else "ws"))


class HeadFeed:
    """A thread holding one subscription to newHeads; reconnects on its own, growing its waits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._head: dict[str, Any] | None = None
        self._received = 0.0  # time.monotonic() of the header held
        self._live = False
        self.pushes = 0  # headers received, for measurements
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="head-feed")
        self._thread.start()

    def head(self) -> tuple[dict[str, Any], float] | None:
        """The newest header and when it came, while subscribed; None: ask the node."""
        with self._lock:
            return (self._head, self._received) if self._live and self._head is not None else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=PING_S + 1)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._follow()
                failures = 0
            except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                if failures == 0:
                    log.info(json.dumps({"event": "head_feed_down", "url": self.url, "error": str(exc)}))
                failures += 1
            finally:
                with self._lock:
                    self._live = False
            self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])

    def _follow(self) -> None:
        with connect(
            self.url, open_timeout=3, ping_interval=PING_S, ping_timeout=PING_S, max_size=2**22
        ) as ws:
            ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]})
            )
            # the head as of now: a subscription pushes only the blocks that come after it
            ws.send(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["latest", False]}
                )
            )
            subscribed, pushed = False, False
            while not self._stop.is_set():
                try:
                    message = json.loads(ws.recv(timeout=1.0))
                except TimeoutError:
                    continue
                if "error" in message:
                    raise ValueError(f"the node refused {message.get('id')}: {message['error']}")
                if message.get("id") == 1:
                    subscribed = True
                elif message.get("id") == 2 and not pushed:
                    self._take(message["result"], live=subscribed)
                elif message.get("method") == "eth_subscription":
                    pushed = True
                    self._take(message["params"]["result"], live=subscribed)
                with self._lock:
                    self._live = subscribed and self._head is not None

    def _take(self, header: dict[str, Any], *, live: bool) -> None:
        with self._lock:
            self._head, self._received = header, time.monotonic()
            self.pushes += 1
            self._live = live
