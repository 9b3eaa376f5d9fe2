"""A lean JSON-RPC client: keep-alive HTTP, retries with backoff, batches, host failover.

web3.py stays in use for ABI work; hot paths talk JSON-RPC here so that one call is one
request (web3.py 8 asks eth_chainId around every eth_call). The transport is a minimal
HTTP/1.1 client on one kept-alive socket per thread and endpoint: every step of the pipeline
is RPC-bound, and in profiles `requests` (hooks, netrc lookups, adapters) and then http.client
(headers parsed by the email package) cost more Python time than the JSON-RPC work itself.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from eth_utils import keccak

from chain.errors import RpcError

_ids = itertools.count(1)
# Calls that only read the chain. Any other may change it (a transaction; a test node's mining,
# reorg or revert), and a receipt found shows a change: see Rpc.changed_at.
READ_ONLY = frozenset(
    {
        "eth_blockNumber", "eth_call", "eth_chainId", "eth_estimateGas", "eth_feeHistory",
        "eth_gasPrice", "eth_getBalance", "eth_getBlockByHash", "eth_getBlockByNumber",
        "eth_getCode", "eth_getLogs", "eth_getStorageAt", "eth_getTransactionByHash",
        "eth_getTransactionCount", "eth_getTransactionReceipt", "eth_maxPriorityFeePerGas",
        "eth_syncing", "net_version", "txpool_content", "web3_clientVersion",
    }
)  # fmt: skip


SENDS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})  # writes that keep history


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
        self.calls = 0  # how many JSON-RPC calls they carried (a batch's each)
        self.methods: Counter[str] = Counter()  # those calls by method
        self._counting = threading.Lock()  # threads share one client: no count is lost
        # time.monotonic() when a call through this client last changed the chain or found a
        # receipt: a read begun before it may miss this process's own writes (chain.events)
        self.changed_at = 0.0
        # when a call through this client last rewrote history (a revert, a snapshot, a state
        # load: anything but sending a transaction), and the newest block a receipt it read is
        # in: a head pushed to a subscriber before the one, or older than the other, is stale
        self.rewritten_at = 0.0
        self.seen_block = -1

    @property
    def url(self) -> str:
        return self.urls[self._active]

    def _connection(self, url: str) -> _Connection:
        # One keep-alive connection per thread and endpoint: a socket is not shared.
        pool: dict[str, _Connection] | None = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(url)
        if conn is None:
            conn = pool[url] = _Connection(url, self.timeout)
        return conn

    def _drop(self, url: str) -> None:
        conn = getattr(self._local, "pool", {}).pop(url, None)
        if conn is not None:
            conn.close()

    def _send(self, url: str, body: bytes) -> Any:
        for fresh in (False, True):
            conn = self._connection(url)
            reused = conn.used
            try:
                status, data = conn.post(body)
            except (ConnectionResetError, BrokenPipeError, _Closed):
                self._drop(url)
                if reused and not fresh:
                    continue  # the server closed an idle keep-alive connection: reconnect once
                raise
            except OSError:
                self._drop(url)
                raise
            if status >= 500 or status == 429:
                raise RpcError(f"{url} answered HTTP {status}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        items = payload if isinstance(payload, list) else [payload]
        writes = any(item["method"] not in READ_ONLY for item in items)
        try:
            answer = self._tries(payload, body)
        finally:
            if writes:  # even a failed try may have reached the node
                self.changed_at = time.monotonic()
                if any(item["method"] not in READ_ONLY | SENDS for item in items):
                    self.rewritten_at = self.changed_at
        found = _found_receipt(items, answer)
        if found >= 0:
            self.changed_at = time.monotonic()
            self.seen_block = max(self.seen_block, found)
        return answer

    def _tries(self, payload: Any, body: bytes) -> Any:
        delay = self.backoff
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            url = self.url
            try:
                self._count(payload)
                answer = self._send(url, body)
                self._local.retried = attempt > 0  # an earlier try may have reached the node
                return answer
            except (OSError, RpcError, ValueError) as exc:
                last = exc
                if len(self.urls) > 1:
                    self._active = (self._active + 1) % len(self.urls)
                if attempt < self.retries:
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
        raise RpcError(f"JSON-RPC endpoint unreachable after {self.retries + 1} tries: {last}")

    def _count(self, payload: Any) -> None:
        items = payload if isinstance(payload, list) else [payload]
        with self._counting:
            self.requests += 1
            self.calls += len(items)
            self.methods.update(item["method"] for item in items)

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One call; an error object raises RpcError with its code and data."""
        answer = self._post({"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params or []})
        if "error" in answer:
            if method == "eth_sendRawTransaction" and params and self._local.retried:
                # A transport error (a failover) lost the answer to an earlier try: if the node
                # holds this very transaction, that try got through and the repeat's "nonce too
                # low" or "already known" is no error. Else the caller would sign it again.
                tx_hash = "0x" + keccak(hexstr=params[0]).hex()
                if self.call("eth_getTransactionByHash", [tx_hash]) is not None:
                    return tx_hash
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


class _Closed(OSError):
    """The server closed the connection before answering."""


class _Connection:
    """HTTP/1.1 POSTs on one kept-alive socket: Content-Length or chunked answers."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.file = sock.makefile("rb")
        self.head = (
            f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.used = False
        self.closing = False

    def post(self, body: bytes) -> tuple[int, bytes]:
        if self.closing:
            raise _Closed("the server asked to close this connection")
        self.used = True
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status_line = self.file.readline(65_537)
        if not status_line:
            raise _Closed("no answer")
        status = int(status_line.split(None, 2)[1])
        length, chunked = -1, False
        while True:
            line = self.file.readline(65_537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection" and value == b"close":
                self.closing = True
        if chunked:
            data = b""
            while size := int(self.file.readline(1024).split(b";")[0], 16):
                data += self.file.read(size)
                self.file.readline(3)
            while self.file.readline(65_537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif length >= 0:
            data = self.file.read(length)
        else:
            data, self.closing = self.file.read(), True
        return status, data

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _found_receipt(items: list[dict[str, Any]], answer: Any) -> int:
    """The newest block of the receipts found in `answer`, or -1 if none."""
    receipts = {item["id"] for item in items if item["method"] == "eth_getTransactionReceipt"}
    if not receipts:
        return -1
    answers = answer if isinstance(answer, list) else [answer]
    blocks = [
        int(a["result"]["blockNumber"], 16)
        for a in answers
        if isinstance(a, dict) and a.get("id") in receipts and isinstance(a.get("result"), dict)
    ]
    return max(blocks, default=-1)


def raise_errors(results: list[Any]) -> list[Any]:
    """A batch's results, raising the first per-call error instead of returning it."""
    for result in results:
        if isinstance(result, RpcError):
            raise result
    return results


def _error(method: str, error: dict[str, Any]) -> RpcError:
    return RpcError(f"{method}: {error.get('message', error)}", error.get("code"), error.get("data"))
