"""A lean JSON-RPC client: keep-alive HTTP, retries with backoff, batches, host failover.

web3.py stays in use for ABI work; hot paths talk JSON-RPC here so that one call is one
request (web3.py 8 asks eth_chainId around every eth_call). The transport is http.client on
one kept-alive connection per thread and endpoint: a request through `requests` cost ~4x the
Python time (hooks, netrc lookups, adapters), and every step of the pipeline is RPC-bound.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from chain.errors import RpcError

_ids = itertools.count(1)


class Rpc:
    """Calls one endpoint, failing over to the next on transport errors."""

    def __init__(
        self,
        urls: list[str] | str,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.1,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise RpcError("no RPC URL given")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._active = 0
        self._local = threading.local()
        self.requests = 0  # how many HTTP requests were sent, for measurements

    @property
    def url(self) -> str:
        return self.urls[self._active]

    def _connection(self, url: str) -> http.client.HTTPConnection:
        # One keep-alive connection per thread and endpoint: connections are not thread-safe.
        pool: dict[str, http.client.HTTPConnection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(url)
        if conn is None:
            parts = urlsplit(url)
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = pool[url] = kind(parts.netloc, timeout=self.timeout)
        return conn

    def _drop(self, url: str) -> None:
        conn = getattr(self._local, "pool", {}).pop(url, None)
        if conn is not None:
            conn.close()

    def _send(self, url: str, body: bytes) -> Any:
        path = urlsplit(url).path or "/"
        headers = {"Content-Type": "application/json"}
        for fresh in (False, True):
            conn = self._connection(url)
            reused = conn.sock is not None
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(url)
                if reused and not fresh:
                    continue  # the server closed an idle keep-alive connection: reconnect once
                raise
            except (OSError, http.client.HTTPException):
                self._drop(url)
                raise
            if response.status >= 500 or response.status == 429:
                raise RpcError(f"{url} answered HTTP {response.status}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        delay = self.backoff
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            url = self.url
            try:
                self.requests += 1
                return self._send(url, body)
            except (OSError, http.client.HTTPException, RpcError, ValueError) as exc:
                last = exc
                if len(self.urls) > 1:
                    self._active = (self._active + 1) % len(self.urls)
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        raise RpcError(f"JSON-RPC endpoint unreachable after {self.retries + 1} tries: {last}")

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One call; an error object raises RpcError with its code and data."""
        answer = self._post({"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or []})
        if "error" in answer:
            raise _error(method, answer["error"])
        return answer.get("result")

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several calls in one request; each item is its result or an RpcError instance."""
        if not calls:
            return []
        first = next(_ids)
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        answers = self._post(payload)
        if not isinstance(answers, list):
            raise _error("batch", answers.get("error", {"message": str(answers)}))
        by_id = {a.get("id"): a for a in answers}
        out: list[Any] = []
        for i, (method, _params) in enumerate(calls):
            answer = by_id.get(first + i, {"error": {"message": "missing from batch answer"}})
            out.append(_error(method, answer["error"]) if "error" in answer else answer.get("result"))
        return out


def raise_errors(results: list[Any]) -> list[Any]:
    """A batch's results, raising the first per-call error instead of returning it."""
    for result in results:
        if isinstance(result, RpcError):
            raise result
    return results


def _error(method: str, error: dict[str, Any]) -> RpcError:
    return RpcError(f"{method}: {error.get('message', error)}", error.get("code"), error.get("data"))
