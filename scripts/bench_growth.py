"""`deedchain bench-growth`: does a deal cost more gas, or the broker API answer slower, once the
chain holds thousands of prior deals?

    python -m scripts.bench_growth [--prior 10,10000] [--measured-deals 10] [--requests 200] [--json]

On a throwaway anvil chain, for each checkpoint in `--prior`:

1. Seed complete prior deals until the escrow holds that many deals. The seeder plays every role
   a real deal needs with the dev accounts (registrar, lender, mortgage bank, issuer, broker) and
   one fresh seller and buyer wallet per deal, and makes exactly the contract calls the pipeline
   makes: the registrar registers the parcel (표제부 + 갑구 ownership) and the seller's 근저당 held by
   the mortgage bank, the lender issues the buyer's own money as deposit tokens, the issuer
   anchors two e-certificates; the broker opens the deal, submits both EIP-712 acceptances and
   the buyer's EIP-2612 permit, pays 계약금 and 중도금, files the loan request; the registrar
   records the 실거래 신고 receipt, the lender approves and disburses, the mortgage bank states its
   payoff; the broker pays the buyer's part of 잔금 and requests registration; the registrar
   settles. 20 transactions per deal, 13 of them carrying the deal id.
   Transactions are signed locally (chain.txsign: RLP + coincurve, byte-equal to eth_account) and
   sent stage by stage across all deals in JSON-RPC batches, each signer's in nonce order, mined
   in large blocks (the block gas limit is raised while seeding); a stage waits only for the one
   before it.
   Every seeded deal is checked Settled through batched views (and title, loan, payoff and the
   seller's proceeds on a sample); anything else stops the run.
2. Start the real pipeline (Services: reference institutions, oracles, automation) and run
   `--measured-deals` deals through it (scripts.bench.Bench): gas per deal.
3. Serve the real broker API over HTTP (uvicorn) and time a fixed mix of broker requests.

Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import coincurve
from eth_account import Account
from eth_hash.auto import keccak as keccak256
from eth_utils import keccak, to_checksum_address

from api.app import create_app
from api.db import ApiStore
from api.settings import Settings
from chain.config import Config, load_config
from chain.contract import Contract, call_many
from chain.deploy import deploy_project
from chain.eip712 import read_domain, sign_typed_data, typed_data
from chain.errors import ChainError, RpcError
from chain.events import Cursor
from chain.node import free_port
from chain.rpc import Rpc
from chain.session import ChainSession
from chain.txsign import TxSigner
from pipeline.adapters.http import ServiceThread
from pipeline.adapters.protocols import CredentialDocument, CredentialKind
from pipeline.automation import DealDriver
from pipeline.brokerage import PERMIT_TYPES, Brokerage
from pipeline.credentials import credential_hash
from pipeline.deals import ACCEPT_TERMS_TYPES, accept_terms_typed_data
from pipeline.domain import DealTerms, LandUse, Payment, State, receipt
from pipeline.metrics import percentile
from pipeline.oracles.bank import MAX_UINT
from pipeline.runtime import deployed_contracts
from pipeline.service import Services
from scripts.bench import BALANCE, DEPOSIT, INTERIM, LOAN, OLD_MORTGAGE, OWED, PRICE, Bench, empty_block_ms

DAY = 86_400
KST = timezone(timedelta(hours=9))
OWN = PRICE - LOAN  # the buyer's own money: 계약금 + 중도금 + its part of 잔금 (the bench's deal)
RATE_BPS, TERM_MONTHS, MAX_SECURED = 420, 360, LOAN * 12 // 10  # the reference lender's terms
# Explicit gas limits (measured use x 1.4 or more): a call whose precondition is an earlier
# transaction of the same batch cannot be estimated. An out-of-gas deal fails the state checks.
GAS = {
    "registerParcel": 320_000,
    "registerMortgage": 170_000,
    "mint": 110_000,
    "approve": 70_000,
    "anchor": 150_000,
    "openSignedDeal": 420_000,
    "permit": 110_000,
    "payDeposit": 120_000,
    "payInterim": 90_000,
    "requestLoan": 100_000,
    "recordTransactionReport": 90_000,
    "approveLoan": 160_000,
    "disburse": 180_000,
    "statePayoff": 130_000,
    "payBalance": 100_000,
    "requestRegistration": 60_000,
    "settle": 510_000,
}
ROLES = ("broker", "registrar", "lender", "bank", "issuer")
PAGE = 5  # deals per listed page: the 10-deal checkpoint fills two
SEED_GAS_LIMIT = 600_000_000  # block gas limit while seeding: thousands of transactions a block
VIEW_CHUNK = 500  # eth_calls per JSON-RPC batch when checking the seeded deals
BATCH = 100  # deals per batch call, as the pipeline's (pipeline/automation.py, pipeline/oracles/base.py)
SAMPLE = 50  # seeded deals whose title, loan, payoff and proceeds are checked one by one

Call = tuple[bytes, bytes, int]  # to, data, gas


class SeedError(ChainError):
    """A seeded deal did not end where it should: the message says which and where it stopped."""


# --- signing ------------------------------------------------------------------------------------


def _address(key: coincurve.PrivateKey) -> bytes:
    return keccak256(key.public_key.format(compressed=False)[1:])[-20:]


class FastSigner:
    """One role's transactions, signed by chain.txsign (byte-equal to eth_account, ~5x faster)
    with the nonce counted locally from the node's pending count."""

    def __init__(self, account: Any, chain_id: int) -> None:
        self.address = str(account.address)
        self.signer = TxSigner(bytes(account.key))
        self.chain_id = chain_id
        self.nonce = 0

    def sign(self, to: bytes, data: bytes, gas: int, fees: tuple[int, int]) -> str:
        tip, max_fee = fees
        tx = {"chainId": self.chain_id, "nonce": self.nonce, "maxPriorityFeePerGas": tip,
              "maxFeePerGas": max_fee, "gas": gas, "to": "0x" + to.hex(), "value": 0,
              "data": "0x" + data.hex()}  # fmt: skip
        raw, _hash = self.signer.sign(tx)
        self.nonce += 1
        return "0x" + raw.hex()


def _type_hash(primary: str, types: dict[str, list[dict[str, str]]]) -> bytes:
    fields = ",".join(f"{f['type']} {f['name']}" for f in types[primary])
    return keccak(text=f"{primary}({fields})")


ACCEPT_TYPEHASH = _type_hash("AcceptTerms", ACCEPT_TERMS_TYPES)
PERMIT_TYPEHASH = _type_hash("Permit", PERMIT_TYPES)


def _word(value: int | bytes) -> bytes:
    """One ABI word: a uint, an address (20 bytes, left-padded) or a bytes32."""
    if isinstance(value, int):
        return value.to_bytes(32, "big")
    if len(value) == 20:
        return bytes(12) + value
    if len(value) == 32:
        return value
    raise SeedError(f"{len(value)}-byte value is neither an address nor a bytes32")


def _sign_digest(key: coincurve.PrivateKey, domain: bytes, struct: list[int | bytes]) -> bytes:
    """An EIP-712 signature (r, s, v) over a struct of static fields."""
    digest = keccak256(b"\x19\x01" + domain + keccak256(b"".join(_word(v) for v in struct)))
    sig = key.sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


class Encoder:
    """Call data: static calls word by word (checked once per function against the ABI encoder),
    dynamic ones through the ABI encoder."""

    def __init__(self) -> None:
        self._checked: set[tuple[str, str]] = set()

    def static(self, contract: Contract, fn: str, *args: int | bytes, struct: bool = False) -> bytes:
        """`struct`: the arguments are the fields of one struct argument (static, so inline)."""
        selector = contract.abi.function(fn, 1 if struct else len(args)).selector
        data = selector + b"".join(_word(a) for a in args)
        if (contract.name, fn) not in self._checked:
            fields = [a if isinstance(a, int) else "0x" + a.hex() for a in args]
            abi_args: tuple[Any, ...] = (fields,) if struct else tuple(fields)
            if data.hex() != contract.encode(fn, *abi_args)[2:]:
                raise SeedError(f"{contract.name}.{fn}: word-by-word encoding differs from the ABI's")
            self._checked.add((contract.name, fn))
        return data

    @staticmethod
    def dynamic(contract: Contract, fn: str, *args: Any) -> bytes:
        return bytes.fromhex(contract.encode(fn, *args)[2:])


# --- sending ------------------------------------------------------------------------------------


class Broadcaster:
    """Sends batches of raw transactions, one JSON-RPC request each, and mines a block when told.

    A thread of its own, so signing the next batch overlaps the node's work on this one.
    evm_mine goes in its own request after the batch's answer: anvil (1.7) can lose a
    transaction that enters its pool while a block is being mined.
    """

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        self.queue: queue.Queue[tuple[list[str], bool] | None] = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="seed-broadcast")
        self.thread.start()

    def put(self, raws: list[str], mine: bool) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((raws, mine))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure; close() raises it
            raws, mine = item
            try:
                if raws:
                    answers = self.rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
                    refused = [a for a in answers if isinstance(a, RpcError)]
                    if refused:
                        raise SeedError(
                            f"the node refused {len(refused)} of {len(raws)} transactions: {refused[0]}"
                        )
                if mine:
                    self.rpc.call("evm_mine")
            except Exception as exc:  # noqa: BLE001 - handed to the main thread by put() and close()
                self.error = exc

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


# --- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prior:
    """One seeded deal's parties and parcel (keys derived from the run's salt and the index)."""

    index: int
    seller: coincurve.PrivateKey
    seller_addr: bytes
    buyer: coincurve.PrivateKey
    buyer_addr: bytes
    number: str
    parcel: bytes
    credentials: tuple[bytes, bytes]


@dataclass
class SeedStats:
    deals: int = 0
    txs: int = 0
    seconds: float = 0.0
    blocks: int = 0


class Seeder:
    def __init__(self, session: ChainSession, *, batch: int = 200) -> None:
        self.s = session
        self.rpc = session.rpc
        c, _start = deployed_contracts(session)
        self.escrow, self.loans, self.land = c["DealEscrow"], c["LoanBook"], c["LandRegister"]
        self.token, self.creds = c["DepositToken"], c["CredentialRegistry"]
        self.batch = batch
        self.signers = {n: FastSigner(session.signers[n].account, session.chain_id) for n in ROLES}
        self.addr = {n: bytes.fromhex(s.address[2:]) for n, s in self.signers.items()}
        self.enc = Encoder()
        self.salt = os.urandom(16)
        self.next_index = 0
        self.stats = SeedStats()
        self.owned: list[tuple[str, str]] = []  # (parcel id, owner) of recently settled parcels
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        self.gas_limit = int(block["gasLimit"], 16)
        # Half the (raised) block gas limit per block, counted by the transactions' gas limits:
        # blocks stay at or under the EIP-1559 target, so the base fee never passes the signed max.
        # anvil raises its limit on request; other nodes (hardhat) are started with it
        self.raise_limit = session.node is not None and session.node.kind == "anvil"
        self.block_gas = (SEED_GAS_LIMIT if self.raise_limit else self.gas_limit) // 2
        if block.get("baseFeePerGas") is None:
            raise SeedError("the seeder signs EIP-1559 transactions; this node has no base fee")

    @contextmanager
    def _seeding(self) -> Iterator[None]:
        """Blocks only when the seeder mines them, and large: anvil's time per block grows with
        the whole state (an empty block takes ~0.2 ms on a fresh chain, ~120 ms after 2,000
        deals), so few large blocks keep seeding near the node's per-transaction speed."""
        self.rpc.call("evm_setAutomine", [False])
        if self.raise_limit:
            self.rpc.call("anvil_setBlockGasLimit", [hex(SEED_GAS_LIMIT)])
        try:
            yield
        finally:
            if self.raise_limit:
                self.rpc.call("anvil_setBlockGasLimit", [hex(self.gas_limit)])
            self.rpc.call("evm_mine")  # the next block carries the configured limit again
            self.rpc.call("evm_setAutomine", [True])
            self.s.resync()  # the pipeline's Senders must not reuse the seeder's nonces

    # -- keys and fees
    def _key(self, role: bytes, index: int) -> coincurve.PrivateKey:
        return coincurve.PrivateKey(keccak256(self.salt + role + index.to_bytes(8, "big")))

    def _prior(self, i: int, issued: int) -> Prior:
        seller, buyer = self._key(b"seller", i), self._key(b"buyer", i)
        buyer_addr = _address(buyer)
        # PNU layout DDDDDDDDDD-BMMMM-SSSS: 서초동 (1165010800), land (1), 본번 from 7000 on.
        number = f"1165010800-1{7000 + i // 10_000:04d}-{i % 10_000:04d}"
        subject, issuer = to_checksum_address(buyer_addr), self.signers["issuer"].address
        creds = [
            CredentialDocument(
                kind=kind, subject=subject, issuer=issuer, issued_at=issued, expiry=issued + 90 * DAY,
                claims={"name": "시드", "serial": i},
            )
            for kind in (CredentialKind.RESIDENT_REGISTRATION, CredentialKind.INCOME)
        ]  # fmt: skip
        hashes = [bytes.fromhex(credential_hash(doc)[2:]) for doc in creds]
        return Prior(
            i,
            seller,
            _address(seller),
            buyer,
            buyer_addr,
            number,
            keccak(text=number),
            (hashes[0], hashes[1]),
        )

    def _fees(self) -> tuple[int, int]:
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        try:
            tip = int(self.rpc.call("eth_maxPriorityFeePerGas"), 16)
        except RpcError:
            tip = 10**9
        return tip, 2 * int(block["baseFeePerGas"], 16) + tip

    def _sync_nonces(self) -> None:
        answers = self.rpc.batch(
            [("eth_getTransactionCount", [s.address, "pending"]) for s in self.signers.values()]
        )
        for signer, count in zip(self.signers.values(), answers, strict=True):
            if isinstance(count, RpcError):
                raise count
            signer.nonce = int(count, 16)

    # -- the node's ceiling in the seeder's own mode
    def ceiling(self, count: int = 3000) -> float:
        """Pre-signed mints sent the way the seeder sends (JSON-RPC batches, one large block): tx/s."""
        self._sync_nonces()
        fees = self._fees()
        lender = self.signers["lender"]
        to = bytes.fromhex(self.token.address[2:])
        raws = [
            lender.sign(to, self.enc.static(self.token, "mint", self.addr["lender"], 1), GAS["mint"], fees)
            for _ in range(count)
        ]
        with self._seeding():
            started = time.perf_counter()
            out = Broadcaster(self.rpc)
            for i in range(0, count, self.batch):
                out.put(raws[i : i + self.batch], mine=i + self.batch >= count)
            out.close()
            self._wait(
                {"lender": lender.nonce}, {"lender": raws}, {"lender": lender.nonce - count}, "ceiling"
            )
            return count / (time.perf_counter() - started)

    # -- stages
    def _run_stage(self, name: str, streams: dict[str, Iterator[Call]], fees: tuple[int, int]) -> int:
        """Sign and send each signer's calls in order, interleaving signers; a block whenever
        the transactions sent fill the block gas budget."""
        start = {n: self.signers[n].nonce for n in streams}
        kept: dict[str, list[str]] = {n: [] for n in streams}  # to re-send what a node drops
        out = Broadcaster(self.rpc)
        batch: list[str] = []
        block_gas = 0
        active = dict(streams)
        try:
            while active:
                for n in list(active):
                    for _ in range(max(1, self.batch // (2 * len(streams)))):
                        call = next(active[n], None)
                        if call is None:
                            del active[n]
                            break
                        if block_gas + call[2] > self.block_gas:
                            out.put(batch, mine=True)
                            batch, block_gas = [], 0
                        elif len(batch) >= self.batch:
                            out.put(batch, mine=False)
                            batch = []
                        raw = self.signers[n].sign(*call, fees)
                        kept[n].append(raw)
                        batch.append(raw)
                        block_gas += call[2]
            out.put(batch, mine=True)
        finally:
            out.close()
        expected = {n: self.signers[n].nonce for n in streams}
        self._wait(expected, kept, start, name)
        return sum(len(v) for v in kept.values())

    def _wait(
        self, expected: dict[str, int], kept: dict[str, list[str]], start: dict[str, int], stage: str
    ) -> None:
        """Until every signer's transactions are mined; re-send any the node lost."""
        names = list(expected)
        for attempt in range(40):
            counts = self.rpc.batch(
                [("eth_getTransactionCount", [self.signers[n].address, "latest"]) for n in names]
            )
            behind = {n: int(c, 16) for n, c in zip(names, counts, strict=True) if int(c, 16) < expected[n]}
            if not behind:
                return
            if attempt in (3, 15):
                for n, mined in behind.items():
                    lost = kept[n][mined - start[n] :]
                    for i in range(0, len(lost), self.batch):
                        self.rpc.batch([("eth_sendRawTransaction", [r]) for r in lost[i : i + self.batch]])
            self.rpc.call("evm_mine")
            time.sleep(0.05)
        detail = ", ".join(f"{n} at nonce {m} of {expected[n]}" for n, m in behind.items())
        raise SeedError(f"stage {stage}: transactions never mined: {detail}")

    def _views(self, calls: list[tuple[Contract, str, tuple[Any, ...]]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(calls), VIEW_CHUNK):
            out.extend(call_many(calls[i : i + VIEW_CHUNK]))
        return out

    def _expect(self, stage: str, ids: list[int], want: State) -> None:
        states = self._views([(self.escrow, "dealState", (d,)) for d in ids])
        wrong = [(d, State(s)) for d, s in zip(ids, states, strict=True) if s != want]
        if wrong:
            deal, state = wrong[0]
            raise SeedError(
                f"after stage {stage}: {len(wrong)} of {len(ids)} seeded deals are not {want.name}; "
                f"deal {deal} is {state.name}"
            )

    def seed(self, count: int) -> SeedStats:
        """Add `count` complete, settled deals to the chain."""
        if count <= 0:
            return SeedStats()
        started = time.perf_counter()
        first_block = int(self.rpc.call("eth_blockNumber"), 16)
        with self._seeding():
            txs = self._seed(count)
        stats = SeedStats(
            count, txs, time.perf_counter() - started, int(self.rpc.call("eth_blockNumber"), 16) - first_block
        )
        self.stats.deals += stats.deals
        self.stats.txs += stats.txs
        self.stats.seconds += stats.seconds
        self.stats.blocks += stats.blocks
        return stats

    def _seed(self, count: int) -> int:
        e, enc = self.escrow, self.enc
        ad = self.addr
        now = int(self.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        year = datetime.fromtimestamp(now, UTC).astimezone(KST).year
        deals = [self._prior(i, now) for i in range(self.next_index, self.next_index + count)]
        self.next_index += count

        def rcpt(kind: str, i: int) -> bytes:
            # the registry's "YYYY-KIND-NNNNNN" numbering, with G marking bulk-seeded filings
            return bytes.fromhex(receipt(f"{year}-{kind}-G{i:07d}")[2:])

        self._sync_nonces()
        fees = self._fees()
        to = {
            c.name: bytes.fromhex(c.address[2:]) for c in (e, self.loans, self.land, self.token, self.creds)
        }
        txs = 0

        # Stage 1: the registrar opens each register (with the seller's 근저당), the lender issues
        # the buyer's own money, the issuer anchors the buyer's e-certificates.
        def registrar1() -> Iterator[Call]:
            for d in deals:
                location = f"서울특별시 서초구 서초동 {7000 + d.index // 10_000}-{d.index % 10_000}"
                yield to["LandRegister"], enc.dynamic(
                    self.land, "registerParcel", d.number, location, 8_497, int(LandUse.BUILDING),
                    to_checksum_address(d.seller_addr), "0x" + rcpt("REG", 2 * d.index).hex(),
                ), GAS["registerParcel"]  # fmt: skip
                data = enc.static(
                    self.land, "registerMortgage", d.parcel, ad["bank"], d.seller_addr, OLD_MORTGAGE,
                    rcpt("REG", 2 * d.index + 1),
                )  # fmt: skip
                yield to["LandRegister"], data, GAS["registerMortgage"]

        def lender1() -> Iterator[Call]:
            if (
                int(self.token.call("allowance", self.signers["lender"].address, self.loans.address))
                < MAX_UINT // 2
            ):
                yield (
                    to["DepositToken"],
                    enc.static(self.token, "approve", to["LoanBook"], MAX_UINT),
                    GAS["approve"],
                )
            for d in deals:
                yield to["DepositToken"], enc.static(self.token, "mint", d.buyer_addr, OWN), GAS["mint"]

        def issuer1() -> Iterator[Call]:
            kinds = (CredentialKind.RESIDENT_REGISTRATION, CredentialKind.INCOME)
            for d in deals:
                for h, kind in zip(d.credentials, kinds, strict=True):
                    data = enc.static(self.creds, "anchor", h, int(kind), d.buyer_addr, now + 90 * DAY)
                    yield to["CredentialRegistry"], data, GAS["anchor"]

        txs += self._run_stage(
            "registers", {"registrar": registrar1(), "lender": lender1(), "issuer": issuer1()}, fees
        )
        exists = self._views([(self.land, "exists", ("0x" + d.parcel.hex(),)) for d in deals])
        if not all(exists):
            raise SeedError(
                f"stage registers: parcel {deals[exists.index(False)].number} is not on the register"
            )

        # Stage 2: the broker opens each deal with what the parties signed on its draft and
        # submits the buyer's permit, then, as the automation does, pays the 계약금 and 중도금 the
        # permit allows and files the loan requests: each a batch call over BATCH deals.
        first_id = int(e.call("nextDealId"))
        ids = list(range(first_id, first_id + count))
        domain = bytes.fromhex(str(e.call("DOMAIN_SEPARATOR"))[2:])
        token_domain = bytes.fromhex(str(self.token.call("DOMAIN_SEPARATOR"))[2:])
        expiry, permit_deadline = now + DAY, now + 90 * DAY
        deadlines = (now + 7 * DAY, now + 30 * DAY, now + 60 * DAY)
        self._check_signatures(deals[0], deadlines, expiry, permit_deadline)
        lender = self.signers["lender"].address
        credentials = {
            deal: ["0x" + h.hex() for h in d.credentials] for d, deal in zip(deals, ids, strict=True)
        }

        def broker2() -> Iterator[Call]:
            size = max(1, min(BATCH, self.block_gas // GAS["payDeposit"]))
            for start in range(0, count, size):
                chunk = list(zip(deals[start : start + size], ids[start : start + size], strict=True))
                for d, _deal in chunk:
                    terms: list[int | bytes] = [
                        d.parcel, d.seller_addr, d.buyer_addr, PRICE, DEPOSIT, INTERIM, BALANCE, *deadlines,
                        LOAN, ad["lender"],
                    ]  # fmt: skip
                    # fresh wallets: each signer's escrow nonce is 0; a draft's acceptance has dealId 0
                    struct = [ACCEPT_TYPEHASH, 0, *terms, 0, expiry]
                    buyer, seller = (_sign_digest(key, domain, struct) for key in (d.buyer, d.seller))
                    fields = [t if isinstance(t, int) else "0x" + t.hex() for t in terms]
                    data = enc.dynamic(e, "openSignedDeal", fields, expiry, buyer, expiry, seller)
                    yield to["DealEscrow"], data, GAS["openSignedDeal"]
                    permit = _sign_digest(
                        d.buyer,
                        token_domain,
                        [PERMIT_TYPEHASH, d.buyer_addr, to["DealEscrow"], OWN, 0, permit_deadline],
                    )
                    data = enc.static(
                        self.token, "permit", d.buyer_addr, to["DealEscrow"], OWN, permit_deadline,
                        permit[64], permit[:32], permit[32:64],
                    )  # fmt: skip
                    yield to["DepositToken"], data, GAS["permit"]
                batch = [deal for _, deal in chunk]
                for payment, gas in (
                    (Payment.DEPOSIT, GAS["payDeposit"]),
                    (Payment.INTERIM, GAS["payInterim"]),
                ):
                    data = enc.dynamic(e, "payMany", batch, [int(payment)] * len(batch))
                    yield to["DealEscrow"], data, gas * len(batch)
                requests = [
                    {"dealId": deal, "amount": LOAN, "lender": lender, "credentials": credentials[deal]}
                    for deal in batch
                ]
                yield (
                    to["LoanBook"],
                    enc.dynamic(self.loans, "requestLoans", requests),
                    GAS["requestLoan"] * len(batch),
                )

        txs += self._run_stage("deals", {"broker": broker2()}, fees)
        for d, deal in ((deals[0], ids[0]), (deals[-1], ids[-1])):
            if e.call("terms", deal)["parcelId"] != "0x" + d.parcel.hex():
                raise SeedError(
                    f"deal {deal} is not on parcel {d.number}: was another deal opened meanwhile?"
                )
        self._expect("deals", ids, State.INTERIM_PAID)

        def batches(item_gas: int) -> Iterator[list[int]]:
            """The deals in batch calls of up to BATCH items, each call within a block's gas
            budget (hardhat keeps its 30 M limit)."""
            size = max(1, min(BATCH, self.block_gas // item_gas))
            for start in range(0, count, size):
                yield ids[start : start + size]

        # Stage 3: the institutions' part, batched as the oracles do: report receipts, loan
        # decisions, one mint of the loans' sum and their disbursement, payoff statements.
        index = {deal: d.index for d, deal in zip(deals, ids, strict=True)}

        def registrar3() -> Iterator[Call]:
            for batch in batches(GAS["recordTransactionReport"]):
                receipts = ["0x" + rcpt("RPT", index[deal]).hex() for deal in batch]
                data = enc.dynamic(e, "recordTransactionReports", batch, receipts)
                yield to["DealEscrow"], data, GAS["recordTransactionReport"] * len(batch)

        def lender3() -> Iterator[Call]:
            for batch in batches(GAS["disburse"]):
                decisions = [(deal, True, LOAN, RATE_BPS, TERM_MONTHS, MAX_SECURED, 0) for deal in batch]
                data = enc.dynamic(self.loans, "recordLoanDecisions", decisions)
                yield to["LoanBook"], data, GAS["approveLoan"] * len(batch)
                yield (
                    to["DepositToken"],
                    enc.static(self.token, "mint", ad["lender"], LOAN * len(batch)),
                    GAS["mint"],
                )
                data = enc.dynamic(self.loans, "disburseMany", batch)
                yield to["LoanBook"], data, GAS["disburse"] * len(batch)

        def bank3() -> Iterator[Call]:
            for batch in batches(GAS["statePayoff"]):
                data = enc.dynamic(self.loans, "statePayoffs", batch, [0] * len(batch), [OWED] * len(batch))
                yield to["LoanBook"], data, GAS["statePayoff"] * len(batch)

        txs += self._run_stage(
            "institutions", {"registrar": registrar3(), "lender": lender3(), "bank": bank3()}, fees
        )
        self._expect("institutions", ids, State.LOAN_APPROVED)

        # Stage 4: the buyer's part of 잔금 (the loan is in), then the registration requests.
        def broker4() -> Iterator[Call]:
            for batch in batches(GAS["payBalance"]):
                data = enc.dynamic(e, "payMany", batch, [int(Payment.BALANCE)] * len(batch))
                yield to["DealEscrow"], data, GAS["payBalance"] * len(batch)
                data = enc.dynamic(e, "requestRegistrations", batch)
                yield to["DealEscrow"], data, GAS["requestRegistration"] * len(batch)

        txs += self._run_stage("balance", {"broker": broker4()}, fees)
        self._expect("balance", ids, State.REGISTRATION_REQUESTED)

        # Stage 5: the registrar settles the deals, a settleMany per batch.
        def registrar5() -> Iterator[Call]:
            for batch in batches(GAS["settle"]):
                registrations = ["0x" + rcpt("REG", 2 * index[deal] + 1).hex() for deal in batch]
                taxes = ["0x" + rcpt("TAX", index[deal]).hex() for deal in batch]
                data = enc.dynamic(e, "settleMany", batch, registrations, taxes)
                yield to["DealEscrow"], data, GAS["settle"] * len(batch)

        txs += self._run_stage("settlement", {"registrar": registrar5()}, fees)
        self._expect("settlement", ids, State.SETTLED)
        self._check_sample(deals, ids)
        keep = [(("0x" + d.parcel.hex()), to_checksum_address(d.buyer_addr)) for d in deals[-500:]]
        self.owned = (self.owned + keep)[-500:]
        return txs

    def _check_signatures(
        self, d: Prior, deadlines: tuple[int, int, int], expiry: int, permit_deadline: int
    ) -> None:
        """The fast EIP-712 signatures equal eth_account's over the typed data the API serves."""
        buyer = Account.from_key(d.buyer.secret)
        terms = DealTerms(
            "0x" + d.parcel.hex(), to_checksum_address(d.seller_addr), to_checksum_address(d.buyer_addr),
            PRICE, DEPOSIT, INTERIM, BALANCE, *deadlines, LOAN, self.signers["lender"].address,
        )  # fmt: skip
        data = accept_terms_typed_data(read_domain(self.escrow), 0, terms, 0, expiry)
        lender = self.addr["lender"]
        struct: list[int | bytes] = [
            ACCEPT_TYPEHASH, 0, d.parcel, d.seller_addr, d.buyer_addr, PRICE, DEPOSIT, INTERIM, BALANCE,
            *deadlines, LOAN, lender, 0, expiry,
        ]  # fmt: skip
        domain = bytes.fromhex(str(self.escrow.call("DOMAIN_SEPARATOR"))[2:])
        if sign_typed_data(buyer, data) != "0x" + _sign_digest(d.buyer, domain, struct).hex():
            raise SeedError("fast AcceptTerms signature differs from eth_account's")
        message = {"owner": buyer.address, "spender": self.escrow.address, "value": OWN, "nonce": 0,
                   "deadline": permit_deadline}  # fmt: skip
        permit = typed_data(read_domain(self.token), "Permit", PERMIT_TYPES, message)
        token_domain = bytes.fromhex(str(self.token.call("DOMAIN_SEPARATOR"))[2:])
        escrow = bytes.fromhex(self.escrow.address[2:])
        fast = _sign_digest(
            d.buyer, token_domain, [PERMIT_TYPEHASH, d.buyer_addr, escrow, OWN, 0, permit_deadline]
        )
        if sign_typed_data(buyer, permit) != "0x" + fast.hex():
            raise SeedError("fast Permit signature differs from eth_account's")

    def _check_sample(self, deals: list[Prior], ids: list[int]) -> None:
        """Title to the buyer, the lender's 근저당 the only one left, the loan secured, the
        payoff stated, the seller's proceeds credited: on the first, the last and a sample."""
        picks = sorted(
            {0, len(deals) - 1, *random.Random(len(deals)).sample(range(len(deals)), min(SAMPLE, len(deals)))}
        )
        lender = self.signers["lender"].address
        for k in picks:
            d, deal = deals[k], ids[k]
            pid = "0x" + d.parcel.hex()
            owner, mortgages, loan, payoff, proceeds, reported = call_many(
                [
                    (self.land, "ownerOf", (pid,)),
                    (self.land, "activeMortgages", (pid,)),
                    (self.loans, "loan", (deal,)),
                    (self.loans, "payoff", (deal, 0)),
                    (self.escrow, "claimable", (to_checksum_address(d.seller_addr),)),
                    (self.escrow, "reported", (deal,)),
                ]
            )
            problems = []
            if owner != to_checksum_address(d.buyer_addr):
                problems.append(f"owner {owner}")
            if list(mortgages) != [2]:  # 을구: 0 the seller's 근저당, 1 its discharge, 2 the lender's
                problems.append(f"active 을구 entries {list(mortgages)}")
            if loan["status"] != 5 or loan["lender"] != lender:
                problems.append(f"loan {loan}")
            if tuple(payoff) != (self.signers["bank"].address, OWED):
                problems.append(f"payoff {payoff}")
            if proceeds != PRICE - OWED:
                problems.append(f"seller's claimable {proceeds}")
            if not reported:
                problems.append("no transaction report")
            if problems:
                raise SeedError(f"seeded deal {deal} ({d.number}) settled wrongly: {'; '.join(problems)}")


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    prior: int
    seeded: SeedStats
    gas_per_deal: float
    settled: int
    measured: int
    index_build_s: float
    driver_catch_up_s: float
    empty_block_ms: float
    api_ms: list[float]
    route_ms: dict[str, list[float]]
    metrics_ms: tuple[float, float]  # the first scrape after a start, the next one
    node_rss_mb: float
    failures: list[str] = field(default_factory=list)


class Client:
    """A kept-alive HTTP/1.1 connection with the broker's key, as a broker's back office holds one."""

    def __init__(self, url: str, key: str | None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        tries = 2 if method == "GET" else 1  # a POST is never sent twice
        for attempt in range(tries):
            try:
                self.conn.request(method, path, payload, self.headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw and raw[:1] in b"{[" else raw.decode()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


# Per 20 requests: what a broker's back office and its agents' screens ask most.
MIX = (
    ["deal"] * 6  # GET /deals/{id}: a deal's status and what it waits for
    + ["list"] * 3  # GET /deals?limit=5&offset=k: the broker's deals, paged
    + ["list_state"] * 2  # GET /deals?state=...: filtered by state
    + ["timeline"] * 3  # GET /deals/{id}/timeline, of a deal run through the pipeline
    + ["typed_data"] * 2  # GET /deals/{id}/typed-data/{party}: what a party signs
    + ["title"] * 2  # GET /parcels/{id}: the register
    + ["open"] * 2  # POST /deals: a resale offer on a settled parcel
)
ROUTES = {
    "deal": "GET /deals/{id}",
    "list": "GET /deals?limit&offset",
    "list_state": "GET /deals?state",
    "timeline": "GET /deals/{id}/timeline",
    "typed_data": "GET /deals/{id}/typed-data",
    "title": "GET /parcels/{id}",
    "open": "POST /deals",
}


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def measure_api(
    services: Services, folder: Path, seeder: Seeder, prior: int, requests: int, recent: list[int]
) -> tuple[list[float], dict[str, list[float]], tuple[float, float]]:
    """Latency (ms) of a fixed mix of broker requests over real HTTP; and of two /metrics scrapes.

    Timelines are of `recent` deals (run through the pipeline on top of the history), if any: a
    seeded deal's blocks hold every deal seeded with it (the seeder runs them in lockstep), so
    its timeline would measure how many deals ran at once, not how many came before."""
    settings = Settings(
        database_url=f"sqlite:///{folder / f'api-{prior}.db'}",
        rate_limit_per_second=1e9,  # one client sends everything: the limiter is not under test
        rate_limit_burst=10**9,
    )
    app = create_app(services, settings)
    store: ApiStore = app.state.store
    session = services.session
    broker_addr = session.signers["broker"].address
    broker = store.create_broker("growth-broker", broker_addr)
    server = ServiceThread(app, free_port()).start()
    client = Client(server.url, store.issue_key(broker.id))
    rng = random.Random(7)
    lender = session.signers["lender"].address
    opened: list[int] = []

    def call(kind: str) -> tuple[str, str, Any]:
        deal = rng.randint(1, prior)
        if kind == "deal":
            return "GET", f"/deals/{deal}", None
        # pages the first checkpoint can fill too: a page's cost is its items, which must not
        # differ between checkpoints for the comparison to measure history
        if kind == "list":
            return "GET", f"/deals?limit={PAGE}&offset={rng.choice((0, 0, PAGE))}", None
        if kind == "list_state":
            return "GET", f"/deals?limit={PAGE}&state={rng.choice(('settled', 'open'))}", None
        if kind == "timeline":
            return "GET", f"/deals/{rng.choice(recent) if recent else deal}/timeline", None
        if kind == "typed_data":
            return "GET", f"/deals/{rng.choice(opened)}/typed-data/{rng.choice(('buyer', 'seller'))}", None
        parcel, owner = rng.choice(seeder.owned)
        if kind == "title":
            return "GET", f"/parcels/{parcel}", None
        now = services.brokerage.now()
        body = {
            "parcel": parcel, "seller": owner, "buyer": Account.create().address,
            "price": PRICE, "deposit": DEPOSIT, "interim": INTERIM, "balance": BALANCE,
            "deposit_deadline": _iso(now + 7 * DAY), "interim_deadline": _iso(now + 30 * DAY),
            "balance_deadline": _iso(now + 60 * DAY), "loan_amount": LOAN, "lender": lender,
        }  # fmt: skip
        return "POST", "/deals", body

    def timed(kind: str) -> float:
        method, path, body = call(kind)
        started = time.perf_counter()
        status, answer = client.request(method, path, body)
        ms = (time.perf_counter() - started) * 1000
        if status != (201 if method == "POST" else 200):
            raise SeedError(f"{method} {path} answered {status}: {str(answer)[:300]}")
        if kind == "open":
            opened.append(int(answer["deal"]["deal_id"]))
        return ms

    try:
        for kind in ("open", "deal", "list", "timeline"):  # warm-up: connections, caches, one open deal
            timed(kind)
        plan = [MIX[i % len(MIX)] for i in range(requests)]
        rng.shuffle(plan)
        route_ms: dict[str, list[float]] = {k: [] for k in ROUTES}
        all_ms = []
        for kind in plan:
            ms = timed(kind)
            route_ms[kind].append(ms)
            all_ms.append(ms)
        operator = Client(server.url, None)
        scrapes = []
        for _ in range(2):  # the first scrape after a start, then a steady-state one
            started = time.perf_counter()
            status, text = operator.request("GET", "/metrics")
            scrapes.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SeedError(f"GET /metrics answered {status}: {str(text)[:300]}")
        operator.close()
        return all_ms, route_ms, (scrapes[0], scrapes[1])
    finally:
        client.close()
        server.stop()


def checkpoint(
    session: ChainSession, folder: Path, seeder: Seeder, target: int, measured: int, requests: int
) -> Checkpoint:
    """Seed up to `target` deals on chain, then measure gas per deal and the API there."""
    existing = int(seeder.escrow.call("nextDealId")) - 1
    seeded = seeder.seed(target - existing)
    prior = int(seeder.escrow.call("nextDealId")) - 1
    services = Services.build(session, folder, poll_interval=0.01)
    # The seeder played the institutions: their oracles start at the head, as if they had
    # answered every seeded deal (which they would otherwise re-read from the deployment on).
    head = int(session.rpc.call("eth_blockNumber"), 16)
    for oracle in services.institutions.oracles:
        oracle.stream.cursor = Cursor(head + 1)
        oracle.store.save_cursor(oracle.stream.cursor)
    # anvil's own cost per block (it grows with the state): every pipeline transaction is a block
    block_ms = empty_block_ms(session)
    # The deal index reads the blocks seeded since the last checkpoint (from the deployment at
    # the first) once; a restart then resumes from its persisted cursor.
    started = time.perf_counter()
    services.brokerage.index.sync()
    index_build = time.perf_counter() - started
    restarted = Brokerage(session, services.institutions, services.brokerage.brokers)
    started = time.perf_counter()
    DealDriver(restarted).tick()
    catch_up = time.perf_counter() - started
    services.start()
    failures: list[str] = []
    try:
        bench = Bench(session, services)
        try:
            results = [bench.deal(i) for i in range(measured)]
        finally:
            bench.close()
        settled = [r for r in results if r["settled"]]
        failures += [f"measured deal {r['deal']} did not settle in time" for r in results if not r["settled"]]
        recent = [r["deal"] for r in results]
        api_ms, route_ms, metrics_ms = measure_api(services, folder, seeder, prior, requests, recent)
    finally:
        services.stop()
    gas = sum(r["gas"] for r in settled) / len(settled) if settled else 0.0
    return Checkpoint(
        prior=prior, seeded=seeded, gas_per_deal=gas, settled=len(settled), measured=measured,
        index_build_s=index_build, driver_catch_up_s=catch_up, empty_block_ms=block_ms,
        api_ms=api_ms, route_ms=route_ms, metrics_ms=metrics_ms, node_rss_mb=_node_rss_mb(session),
        failures=failures,
    )  # fmt: skip


def _node_rss_mb(session: ChainSession) -> float:
    """The embedded node's resident memory (Linux /proc), 0 when unknown."""
    process = session.node.process if session.node else None
    try:
        status = Path(f"/proc/{process.pid}/status").read_text() if process else ""
    except OSError:
        return 0.0
    rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(rss[0]) / 1024 if rss else 0.0


def _pct(a: float, b: float) -> float:
    return round((b - a) / a * 100, 2) if a else 0.0


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) or 0.0, 1)


def report(points: list[Checkpoint], seeder: Seeder, ceiling: float, ceiling_end: float) -> dict[str, Any]:
    first, last = points[0], points[-1]
    p95 = [_ms(p.api_ms, 95) for p in points]
    seed = seeder.stats
    rate = seed.txs / seed.seconds if seed.seconds else 0.0
    gas_change = _pct(first.gas_per_deal, last.gas_per_deal)
    p95_change = _pct(p95[0], p95[-1])
    return {
        "prior_deals": [p.prior for p in points],
        "gas_per_deal": [round(p.gas_per_deal) for p in points],
        "gas_change_pct": gas_change,
        "api_p50_ms": [_ms(p.api_ms, 50) for p in points],
        "api_p95_ms": p95,
        "api_p95_change_pct": p95_change,
        "seed_seconds": round(seed.seconds, 2),
        "seed_tx_per_s": round(rate, 1),
        "flat_within_5pct": abs(gas_change) <= 5 and abs(p95_change) <= 5,
        "seeded_deals": seed.deals,
        "seeded_txs": seed.txs,
        "seeded_blocks": seed.blocks,
        "node_ceiling_tx_per_s": round(ceiling, 1),
        "seed_ratio_to_ceiling": round(rate / ceiling, 3) if ceiling else None,
        # reads (every GET) and writes (POST /deals waits for its block): what bounds each differs
        "api_read_p95_ms": [
            _ms([ms for k, v in p.route_ms.items() if k != "open" for ms in v], 95) for p in points
        ],
        "api_write_p95_ms": [_ms(p.route_ms["open"], 95) for p in points],
        "route_p95_ms": {ROUTES[k]: [_ms(p.route_ms[k], 95) for p in points] for k in ROUTES},
        "metrics_first_ms": [round(p.metrics_ms[0], 1) for p in points],
        "metrics_ms": [round(p.metrics_ms[1], 1) for p in points],
        "node_rss_mb": [round(p.node_rss_mb) for p in points],
        "index_build_s": [round(p.index_build_s, 3) for p in points],
        "driver_catch_up_s": [round(p.driver_catch_up_s, 3) for p in points],
        "node_empty_block_ms": [round(p.empty_block_ms, 1) for p in points],
        "node_ceiling_end_tx_per_s": round(ceiling_end, 1),
        "measured_settled": [f"{p.settled}/{p.measured}" for p in points],
    }


def print_table(out: dict[str, Any]) -> None:
    priors = out["prior_deals"]
    width = 12

    def row(label: str, values: list[Any], change: float | None = None) -> None:
        cells = "".join(f"{v!s:>{width}}" for v in values)
        tail = f"{change:>+10.1f}%" if change is not None else ""
        print(f"{label:32}{cells}{tail}")

    row("prior deals", priors)
    row("gas per deal", out["gas_per_deal"], out["gas_change_pct"])
    row("API p50 ms", out["api_p50_ms"], _pct(out["api_p50_ms"][0], out["api_p50_ms"][-1]))
    row("API p95 ms", out["api_p95_ms"], out["api_p95_change_pct"])
    for label, key in (
        ("  reads (GET) p95 ms", "api_read_p95_ms"),
        ("  writes (POST) p95 ms", "api_write_p95_ms"),
    ):
        row(label, out[key], _pct(out[key][0], out[key][-1]))
    for route, values in out["route_p95_ms"].items():
        row(f"  p95 {route}", values, _pct(values[0], values[-1]))
    row(
        "GET /metrics ms, first",
        out["metrics_first_ms"],
        _pct(out["metrics_first_ms"][0], out["metrics_first_ms"][-1]),
    )
    row("GET /metrics ms, next", out["metrics_ms"], _pct(out["metrics_ms"][0], out["metrics_ms"][-1]))
    row("deal index build s", out["index_build_s"])
    row("automation restart s", out["driver_catch_up_s"])
    row("anvil empty block ms", out["node_empty_block_ms"])
    row("anvil memory MB", out["node_rss_mb"])
    row("measured deals settled", out["measured_settled"])
    print(
        f"seeded {out['seeded_deals']} deals: {out['seeded_txs']} txs in {out['seed_seconds']} s "
        f"({out['seed_tx_per_s']} tx/s, {out['seeded_blocks']} blocks; node ceiling "
        f"{out['node_ceiling_tx_per_s']} tx/s on a fresh chain, "
        f"{out['node_ceiling_end_tx_per_s']} at the end; "
        f"ratio {out['seed_ratio_to_ceiling']})"
    )
    print(f"flat within 5%: {out['flat_within_5pct']}")


def run_growth(
    priors: list[int],
    measured: int,
    requests: int,
    *,
    as_json: bool = False,
    batch: int = 200,
    network: str | None = None,
) -> int:
    if not priors or min(priors) < 1 or sorted(priors) != priors:
        raise SystemExit("--prior: increasing positive deal counts, e.g. 10,10000")
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChainSession.open(
            network, _seedable(load_config()), persist=False, deployments_dir=Path(tmp)
        ) as session,
    ):
        if session.node is None:
            raise SystemExit(
                f"network {session.network_name!r} is not embedded: growth mode needs its own node"
            )
        deploy_project(session)
        seeder = Seeder(session, batch=batch)
        ceiling = seeder.ceiling()
        points = []
        for target in priors:
            point = checkpoint(session, Path(tmp), seeder, target, measured, requests)
            points.append(point)
            if not as_json:
                print(
                    f"[{point.prior} prior deals] seeded {point.seeded.deals} in "
                    f"{point.seeded.seconds:.1f} s, gas/deal {point.gas_per_deal:.0f}, "
                    f"API p95 {_ms(point.api_ms, 95)} ms",
                    flush=True,
                )
        ceiling_end = seeder.ceiling()
    out = report(points, seeder, ceiling, ceiling_end)
    if not as_json:
        print_table(out)
    failures = [f for p in points for f in p.failures]
    for failure in failures:
        print(f"bench-growth: {failure}")
    print(json.dumps(out))
    return 1 if failures else 0


def _seedable(config: Config) -> Config:
    """The config with SEED_GAS_LIMIT as the block gas limit of every embedded node that cannot
    raise it on request (hardhat): seeding needs thousands of transactions a block."""
    networks = {
        name: net.model_copy(
            update={"cmd_settings": net.cmd_settings.model_copy(update={"gas_limit": SEED_GAS_LIMIT})}
        )
        if net.cmd == "hardhat"
        else net
        for name, net in config.networks.items()
    }
    return config.model_copy(update={"networks": networks})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deedchain bench-growth", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options (scripts/cli.py repeats them, so `deedchain --help` needs no heavy import)."""
    parser.add_argument("--prior", default="10,10000", help="prior deal counts, comma-separated")
    parser.add_argument("--measured-deals", type=int, default=10, help="deals through the pipeline each")
    parser.add_argument("--requests", type=int, default=200, help="API requests per checkpoint")
    parser.add_argument("--batch", type=int, default=200, help="seeded transactions per JSON-RPC request")
    parser.add_argument("--json", action="store_true", help="only the JSON line")


def run_args(args: argparse.Namespace) -> int:
    priors = [int(p) for p in str(args.prior).split(",") if p.strip()]
    return run_growth(
        priors, args.measured_deals, args.requests, as_json=args.json, batch=args.batch,
        network=getattr(args, "network", None),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
