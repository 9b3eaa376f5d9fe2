"""Send transactions: local signing, a local nonce counter, fees, receipts, decoded reverts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount

from chain.errors import ContractRevert, RpcError, TransactionError, TransactionLost, TransactionTimeout
from chain.revert import ErrorDecoder, revert_data
from chain.rpc import Rpc, raise_errors
from chain.txsign import TxSigner, call_fields

GAS_MARGIN = 1.25  # estimates miss storage refunds and warm/cold differences between calls
KNOWN_TX = ("already known", "already imported")  # geth's and anvil's words for "I have this very tx"
NONCE_USED = ("nonce too low", "correct nonce", "nonce has already been used")
# Hardhat's automine takes no nonce gap, where anvil and geth queue the transaction: the earlier
# nonce is on its way from another thread (an outbox), so the send is tried again shortly.
_NONCE_GAP = "can't be queued"
_GAP_WAITS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# A receipt this late has the node asked whether it still has the transaction at all, and
# whether it sits behind a nonce gap; twice, this far apart, before the wait gives up on it
# (an outbox fills a passing gap within milliseconds).
STRANDED_AFTER = 2.0


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    status: int
    contract_address: str | None
    logs: list[dict[str, Any]]

    @classmethod
    def from_rpc(cls, raw: dict[str, Any]) -> Receipt:
        return cls(
            tx_hash=raw["transactionHash"],
            block_number=int(raw["blockNumber"], 16),
            block_hash=raw["blockHash"],
            gas_used=int(raw["gasUsed"], 16),
            status=int(raw["status"], 16),
            contract_address=raw.get("contractAddress"),
            logs=raw.get("logs", []),
        )


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction kept for (re)broadcast: an outbox entry survives a crash."""

    raw: str
    hash: str
    nonce: int


class TxJournal(Protocol):
    """Where a Sender records each signed transaction right before handing it to the node, so
    that whoever answered for it can send it again if the node loses it (a crash, a state file
    rolled back). A repeat of the same hash must be harmless."""

    def record(self, sender: str, tx: SignedTx, memo: str | None) -> None: ...


class FeePolicy:
    """EIP-1559 where blocks carry a base fee, a legacy price elsewhere, a fixed price if set."""

    def __init__(self, rpc: Rpc, gas_price: int | None = None, priority_fee: int | None = None):
        self.rpc = rpc
        self.fixed = gas_price
        self.priority_fee = priority_fee
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, int]] | None = None

    def fields(self) -> dict[str, int]:
        if self.fixed is not None:  # permissioned chains may run at zero gas price
            return {"gasPrice": self.fixed}
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < 1.0:
                return self._cached[1]
            block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
            if block.get("baseFeePerGas") is not None:
                base = int(block["baseFeePerGas"], 16)
                tip = self.priority_fee
                if tip is None:
                    try:
                        tip = int(self.rpc.call("eth_maxPriorityFeePerGas"), 16)
                    except RpcError:
                        tip = 10**9
                # Twice the base fee survives six full blocks of base-fee growth.
                fees = {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}
            else:
                fees = {"gasPrice": int(self.rpc.call("eth_gasPrice"), 16)}
            self._cached = (now, fees)
            return fees


class ReceiptWatch:
    """The receipts every waiting thread of a process waits for, read together: one thread
    asks for the head block each `interval` and, when there is a new one, for all the waited
    receipts in one JSON-RPC batch. A wait then costs about one receipt request per block it
    spans, not one per poll; under automine the first direct look finds the receipt anyway."""

    def __init__(self, rpc: Rpc, interval: float = 0.05) -> None:
        self.rpc = rpc
        self.interval = interval
        self._cond = threading.Condition()
        self._waited: dict[str, int] = {}  # tx hash -> waiting threads
        self._found: dict[str, dict[str, Any]] = {}
        self._asked: set[str] = set()  # waited hashes the watch has asked about at least once
        self._thread: threading.Thread | None = None

    def wait(self, tx_hash: str, timeout: float) -> dict[str, Any] | None:
        """The raw receipt once mined, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waited[tx_hash] = self._waited.get(tx_hash, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="receipt-watch")
                self._thread.start()
            try:
                while tx_hash not in self._found:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
                return self._found[tx_hash]
            finally:
                self._waited[tx_hash] -= 1
                if not self._waited[tx_hash]:
                    del self._waited[tx_hash]
                    self._found.pop(tx_hash, None)
                    self._asked.discard(tx_hash)

    def _run(self) -> None:
        seen = None
        while True:
            with self._cond:
                if not self._waited:
                    self._thread = None  # the next wait starts another
                    return
                hashes = [h for h in self._waited if h not in self._found]
                fresh = [h for h in hashes if h not in self._asked]
            try:
                head = self.rpc.call("eth_blockNumber")
                # all of them in a new block; in the same one, those not asked about yet (their
                # block may be the one already read)
                hashes = hashes if head != seen else fresh
                with self._cond:
                    self._asked.update(hashes)
                if hashes:
                    answers = self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
                    with self._cond:
                        for h, raw in zip(hashes, answers, strict=True):
                            if isinstance(raw, dict):
                                self._found[h] = raw
                        self._cond.notify_all()
                seen = head
            except RpcError:
                pass  # the waiters' own checks (timeout, stranded) decide
            time.sleep(self.interval)


class Sender:
    """One account's transactions. Thread-safe: many threads may send through one Sender.

    The nonce counter is local (one RPC at first use), held under a lock while a transaction
    is signed and handed to the node, and resynchronised when the node says a nonce is used.
    """

    def __init__(
        self,
        rpc: Rpc,
        account: LocalAccount,
        chain_id: int,
        *,
        fees: FeePolicy | None = None,
        errors: ErrorDecoder | None = None,
        timeout: float = 30.0,
        poll_interval: float = 0.2,
        journal: TxJournal | None = None,
        watch: ReceiptWatch | None = None,
    ) -> None:
        self.rpc = rpc
        self.account = account
        self._signer = TxSigner(account.key)
        self.address = str(account.address)
        self.chain_id = chain_id
        self.fees = fees or FeePolicy(rpc)
        self.errors = errors or ErrorDecoder()
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.journal = journal
        self.watch = watch
        self._lock = threading.Lock()
        self._nonce: int | None = None

    def resync(self) -> None:
        """Forget the local nonce; the next send asks the node (after evm_revert, say)."""
        with self._lock:
            self._nonce = None

    def estimate(self, to: str | None, data: str, value: int = 0) -> int:
        tx: dict[str, Any] = {"from": self.address, "data": data, "value": hex(value)}
        if to:
            tx["to"] = to
        try:
            return int(self.rpc.call("eth_estimateGas", [tx]), 16)
        except RpcError as exc:
            raise self.errors.from_rpc_error(exc) from None

    def send(
        self, to: str | None, data: str, *, value: int = 0, gas: int | None = None, memo: str | None = None
    ) -> str:
        """Sign and broadcast; returns the tx hash. Reverts found by estimation raise here.
        `memo` goes to the journal with the transaction."""
        if gas is None:
            gas = int(self.estimate(to, data, value) * GAS_MARGIN) + 10_000
        tx: dict[str, Any] = {"chainId": self.chain_id, "gas": gas, "value": value, "data": data}
        if to:
            tx["to"] = to
        tx.update(self.fees.fields())
        for _attempt in range(3):
            with self._lock:
                if self._nonce is None:
                    self._nonce = int(self.rpc.call("eth_getTransactionCount", [self.address, "pending"]), 16)
                tx["nonce"] = self._nonce
                raw_bytes, hash_bytes = self._signer.sign(tx)
                raw, tx_hash = "0x" + raw_bytes.hex(), "0x" + hash_bytes.hex()
                if self.journal is not None:
                    self.journal.record(self.address, SignedTx(raw, tx_hash, tx["nonce"]), memo)
                try:
                    self._send_raw(raw)
                except RpcError as exc:
                    if exc.code is None:
                        self._nonce = None  # unreachable: whether it took the tx is unknown, so ask
                        raise
                    message = str(exc).lower()
                    if any(s in message for s in KNOWN_TX):
                        pass  # an earlier try of this very transaction got through
                    elif any(s in message for s in NONCE_USED):
                        self._nonce = None  # someone else used this nonce: ask again
                        continue
                    elif revert_data(exc.data) is not None:
                        raise self.errors.from_rpc_error(exc) from None
                    else:
                        # the nonce is not consumed; keep it for the next transaction
                        raise TransactionError(f"node refused the transaction: {exc}") from None
                self._nonce += 1
                return tx_hash
        raise TransactionError(f"nonce for {self.address} kept colliding; is another process sending?")

    def sign_batch(self, calls: list[tuple[str, str, int]]) -> list[SignedTx]:
        """Sign (to, data, gas) calls with consecutive nonces, without sending them.

        The caller stores them (an outbox) and then broadcasts them in order; if it cannot,
        it must call resync() so the unused nonces are given out again.
        """
        fees = self.fees.fields()
        with self._lock:
            if self._nonce is None:
                self._nonce = int(self.rpc.call("eth_getTransactionCount", [self.address, "pending"]), 16)
            out = []
            for to, data, gas in calls:
                tx: dict[str, Any] = {
                    "chainId": self.chain_id,
                    "to": to,
                    "gas": gas,
                    "value": 0,
                    "data": data,
                }
                tx.update(fees)
                tx["nonce"] = self._nonce
                raw, tx_hash = self._signer.sign(tx)
                out.append(SignedTx("0x" + raw.hex(), "0x" + tx_hash.hex(), self._nonce))
                self._nonce += 1
            return out

    def broadcast(self, signed: SignedTx, memo: str | None = None) -> None:
        """Hand a signed transaction to the node; a repeat of one already known or mined is fine.
        An unreachable node raises RpcError as it is: the transaction is not refused, the caller
        keeps it and sends it again later."""
        if self.journal is not None:
            self.journal.record(self.address, signed, memo)
        try:
            self._send_raw(signed.raw)
        except RpcError as exc:
            if exc.code is None:
                raise
            message = str(exc).lower()
            if any(s in message for s in KNOWN_TX):
                return
            if any(s in message for s in NONCE_USED):
                if self.rpc.call("eth_getTransactionReceipt", [signed.hash]) is not None:
                    return  # mined before a crash: nothing to do
                raise TransactionError(
                    f"nonce {signed.nonce} of {signed.hash} was used by another tx"
                ) from None
            raise TransactionError(f"node refused {signed.hash}: {exc}") from None

    def _send_raw(self, raw: str) -> None:
        for wait in (*_GAP_WAITS, None):
            try:
                self.rpc.call("eth_sendRawTransaction", [raw])
                return
            except RpcError as exc:
                if wait is None or exc.code is None or _NONCE_GAP not in str(exc).lower():
                    raise
                time.sleep(wait)

    def reissue(self, lost: list[SignedTx], held: set[int]) -> dict[str, SignedTx]:
        """Make transactions that a reorg dropped (the node has neither mined nor pooled them)
        sendable again, in nonce order. Each keeps its signature while its nonce is the
        account's next free one; else (its nonce was taken, or a lower one is free, which would
        hold it back) the same call is signed anew, with fresh fees, at the next free nonce.
        `held`: nonces of this account's other transactions on their way (in the pool or an
        outbox), never given out. Returns old hash -> transaction to send; the caller records
        the new ones before it broadcasts them in order."""
        fees = self.fees.fields()
        with self._lock:
            nonce = int(self.rpc.call("eth_getTransactionCount", [self.address, "latest"]), 16)
            out: dict[str, SignedTx] = {}
            for old in sorted(lost, key=lambda t: t.nonce):
                while nonce in held:
                    nonce += 1
                if old.nonce == nonce:
                    out[old.hash] = old
                else:
                    tx = {"chainId": self.chain_id, **call_fields(bytes.fromhex(old.raw[2:])), **fees}
                    tx["nonce"] = nonce
                    raw, tx_hash = self._signer.sign(tx)
                    out[old.hash] = SignedTx("0x" + raw.hex(), "0x" + tx_hash.hex(), nonce)
                nonce += 1
            self._nonce = max([nonce, *(n + 1 for n in held)])
            return out

    def known(self, tx_hashes: list[str]) -> list[bool]:
        """Whether the node holds each transaction, mined or waiting in its pool."""
        answers = raise_errors(self.rpc.batch([("eth_getTransactionByHash", [h]) for h in tx_hashes]))
        return [a is not None for a in answers]

    def wait(self, tx_hash: str, timeout: float | None = None) -> Receipt:
        """The receipt, once mined; a failed transaction raises its decoded ContractRevert."""
        start = time.monotonic()
        deadline = start + (timeout or self.timeout)
        check, stranded = start + STRANDED_AFTER, 0
        delay = 0.0005  # an automining node has the receipt within a millisecond or so
        first = True
        while True:
            if first or self.watch is None:
                raw = self.rpc.call("eth_getTransactionReceipt", [tx_hash])
            else:  # after a first look, with every other waiter of the process, once a block
                raw = self.watch.wait(tx_hash, max(0.0, min(check, deadline) - time.monotonic()))
            first = False
            if raw is not None:
                receipt = Receipt.from_rpc(raw)
                if receipt.status != 1:
                    raise explain_failure(self.rpc, self.errors, tx_hash, receipt)
                return receipt
            now = time.monotonic()
            if now >= check:
                why = self.stranded(tx_hash)
                stranded = stranded + 1 if why else 0
                if stranded >= 2:
                    self.resync()  # the node's count, not ours, gives the next nonce out
                    raise TransactionLost(f"{tx_hash} will not be mined: {why}")
                check = now + STRANDED_AFTER
            if now >= deadline:
                raise TransactionTimeout(f"no receipt for {tx_hash} after {timeout or self.timeout:.0f}s")
            if self.watch is None:
                time.sleep(delay)
                delay = min(delay * 2, self.poll_interval)

    def stranded(self, tx_hash: str) -> str | None:
        """Why the node will never mine `tx_hash` as things stand, or None if it may."""
        tx, pending = raise_errors(
            self.rpc.batch(
                [
                    ("eth_getTransactionByHash", [tx_hash]),
                    ("eth_getTransactionCount", [self.address, "pending"]),
                ]
            )
        )
        if tx is None:
            return "the node does not have it"
        if tx.get("blockNumber") is None and int(tx["nonce"], 16) > int(pending, 16):
            return f"nonce {int(tx['nonce'], 16)} waits behind {int(pending, 16)}, which the node lost"
        return None

    def receipts(self, tx_hashes: list[str]) -> list[Receipt | None]:
        """Receipts of several transactions in one request (None: not mined yet). A failed one
        is returned as it is; `wait` on it raises its decoded revert."""
        answers = raise_errors(self.rpc.batch([("eth_getTransactionReceipt", [h]) for h in tx_hashes]))
        return [Receipt.from_rpc(a) if a is not None else None for a in answers]

    def transact(
        self, to: str | None, data: str, *, value: int = 0, gas: int | None = None, memo: str | None = None
    ) -> Receipt:
        return self.wait(self.send(to, data, value=value, gas=gas, memo=memo))


def explain_failure(
    rpc: Rpc, errors: ErrorDecoder, tx_hash: str, receipt: Receipt
) -> ContractRevert | TransactionError:
    """Re-run a failed transaction on its parent block's state to read the revert data."""
    tx = rpc.call("eth_getTransactionByHash", [tx_hash])
    call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if tx.get(k) is not None}
    if "data" not in call and tx.get("input"):
        call["data"] = tx["input"]
    try:
        rpc.call("eth_call", [call, hex(receipt.block_number - 1)])
    except RpcError as exc:
        found = errors.from_rpc_error(exc)
        if isinstance(found, ContractRevert):
            return ContractRevert(found.name, found.args_by_name, found.data, tx_hash)
    if receipt.gas_used >= int(tx["gas"], 16):
        return TransactionError(f"{tx_hash} ran out of gas ({receipt.gas_used} used)")
    return ContractRevert("Unknown", {"reason": "reverted; replay did not reproduce it"}, b"", tx_hash)
