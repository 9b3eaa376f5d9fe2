"""A driver for the contracts: parcels, deals, signatures and money, all as real transactions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.contract import Contract
from chain.eip712 import read_domain, sign_typed_data
from chain.sender import Receipt, Sender
from chain.session import ChainSession
from pipeline.deals import accept_terms_typed_data
from pipeline.domain import DealTerms, LandUse, Party, State, parcel_id, receipt

DAY = 86_400


@dataclass
class World:
    chain: ChainSession
    token: Contract
    land: Contract
    creds: Contract
    escrow: Contract
    loans: Contract
    _senders: dict[str, Sender] = field(default_factory=dict)
    _parcels: int = 0

    # --- accounts -------------------------------------------------------------------------
    def addr(self, who: str | LocalAccount) -> str:
        if isinstance(who, str):
            return who if who.startswith("0x") else self.chain.signers[who].address
        return str(who.address)

    def key(self, who: str | LocalAccount) -> LocalAccount:
        return who if not isinstance(who, str) else self.chain.signers[who].account

    def sender(self, who: str | LocalAccount) -> Sender:
        if isinstance(who, str):
            return self.chain.sender(who)
        if who.address not in self._senders:
            self._senders[who.address] = Sender(
                self.chain.rpc,
                who,
                self.chain.chain_id,
                fees=self.chain.fees,
                errors=self.chain.errors,
            )
        return self._senders[who.address]

    def new_account(self) -> LocalAccount:
        """A fresh key with ether for gas (anvil_setBalance)."""
        account = Account.create()
        self.chain.rpc.call("anvil_setBalance", [account.address, hex(10**21)])
        return account

    # --- time -----------------------------------------------------------------------------
    def now(self) -> int:
        return int(self.chain.rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def warp(self, seconds: int) -> None:
        self.chain.rpc.call("evm_increaseTime", [seconds])
        self.chain.rpc.call("evm_mine")

    def revert(self, snapshot: str) -> None:
        """evm_revert to `snapshot`, local nonces included. anvil removes a mined transaction from its
        pool a moment after the block: reverted before that, it stays pending there and is mined
        again with the next transaction. So let the pool empty first; every transaction here was
        waited for, so whatever it still holds after the revert is such a ghost."""
        deadline = time.monotonic() + 2
        while int(self.chain.rpc.call("txpool_status")["pending"], 16) and time.monotonic() < deadline:
            time.sleep(0.005)
        self.chain.rpc.call("evm_revert", [snapshot])
        self.chain.rpc.call("anvil_dropAllTransactions")
        self.chain.resync()
        for sender in self._senders.values():
            sender.resync()

    # --- transactions ---------------------------------------------------------------------
    def tx(self, who: str | LocalAccount, contract: Contract, fn: str, *args: Any) -> Receipt:
        return contract.transact(self.sender(who), fn, *args)

    def mint(self, to: str | LocalAccount, amount: int) -> None:
        self.tx("bank", self.token, "mint", self.addr(to), amount)

    def approve(self, who: str | LocalAccount, spender: Contract, amount: int) -> None:
        self.tx(who, self.token, "approve", spender.address, amount)

    def balance(self, who: str | LocalAccount | Contract) -> int:
        address = who.address if isinstance(who, Contract) else self.addr(who)
        return int(self.token.call("balanceOf", address))

    # --- register -------------------------------------------------------------------------
    def register_parcel(self, owner: str | LocalAccount = "seller", number: str | None = None) -> str:
        self._parcels += 1
        number = number or f"1168010600-1-{self._parcels:04d}-{self.now() % 100000}"
        self.tx(
            "registrar",
            self.land,
            "registerParcel",
            number,
            f"서울특별시 강남구 테헤란로 {self._parcels}",
            8_492,
            LandUse.BUILDING,
            self.addr(owner),
            receipt(f"R-{number}"),
        )
        return parcel_id(number)

    def add_mortgage(
        self,
        parcel: str,
        creditor: str = "bank",
        debtor: str | LocalAccount = "seller",
        max_secured: int = 0,
    ) -> int:
        r = self.tx(
            "registrar",
            self.land,
            "registerMortgage",
            parcel,
            self.addr(creditor),
            self.addr(debtor),
            max_secured or 360_000_000,
            receipt(f"M-{self.now()}"),
        )
        (event,) = [e for e in self.land.events(r) if e.event == "MortgageRegistered"]
        return int(event.args["index"])

    # --- deals ----------------------------------------------------------------------------
    def terms(
        self,
        parcel: str,
        *,
        seller: str | LocalAccount = "seller",
        buyer: str | LocalAccount = "buyer",
        price: int = 1_000_000_000,
        deposit: int = 100_000_000,
        interim: int = 300_000_000,
        loan: int = 400_000_000,
        lender: str = "lender",
    ) -> DealTerms:
        now = self.now()
        return DealTerms(
            parcelId=parcel,
            seller=self.addr(seller),
            buyer=self.addr(buyer),
            price=price,
            deposit=deposit,
            interim=interim,
            balance=price - deposit - interim,
            depositDeadline=now + 7 * DAY,
            interimDeadline=now + 30 * DAY if interim else 0,
            balanceDeadline=now + 60 * DAY,
            loanAmount=loan,
            lender=self.addr(lender) if loan else "0x" + "00" * 20,
        )

    def open_deal(self, terms: DealTerms, broker: str = "broker") -> int:
        r = self.tx(broker, self.escrow, "openDeal", terms.to_abi())
        (event,) = [e for e in self.escrow.events(r) if e.event == "DealOpened"]
        return int(event.args["dealId"])

    def signature(
        self,
        deal_id: int,
        terms: DealTerms,
        who: str | LocalAccount,
        *,
        expiry: int | None = None,
        nonce: int | None = None,
    ) -> tuple[int, str]:
        signer = self.key(who)
        if nonce is None:
            nonce = int(self.escrow.call("nonces", signer.address))
        expiry = expiry if expiry is not None else self.now() + DAY
        data = accept_terms_typed_data(read_domain(self.escrow), deal_id, terms, nonce, expiry)
        return expiry, sign_typed_data(signer, data)

    def accept(self, deal_id: int, terms: DealTerms, party: Party, who: str | LocalAccount) -> Receipt:
        expiry, sig = self.signature(deal_id, terms, who)
        return self.tx("broker", self.escrow, "acceptTerms", deal_id, party, expiry, sig)

    def signed_deal(
        self,
        terms: DealTerms,
        buyer: str | LocalAccount = "buyer",
        seller: str | LocalAccount = "seller",
    ) -> int:
        deal_id = self.open_deal(terms)
        self.accept(deal_id, terms, Party.BUYER, buyer)
        self.accept(deal_id, terms, Party.SELLER, seller)
        return deal_id

    def pay(self, deal_id: int, fn: str, who: str | LocalAccount, amount: int) -> Receipt:
        self.mint(who, amount)
        self.approve(who, self.escrow, amount)
        return self.tx(who, self.escrow, fn, deal_id)

    def state(self, deal_id: int) -> State:
        return State(self.escrow.call("dealState", deal_id))

    def invariant_holds(self, live_deals: list[int]) -> bool:
        held = sum(int(self.escrow.call("heldBy", d)) for d in live_deals)
        return self.balance(self.escrow) == held + int(self.escrow.call("totalClaimable"))


@pytest.fixture
def world(chain, deployed) -> World:
    return World(
        chain=chain,
        token=chain.contract("DepositToken", deployed["DepositToken"]),
        land=chain.contract("LandRegister", deployed["LandRegister"]),
        creds=chain.contract("CredentialRegistry", deployed["CredentialRegistry"]),
        escrow=chain.contract("DealEscrow", deployed["DealEscrow"]),
        loans=chain.contract("LoanBook", deployed["LoanBook"]),
    )


@pytest.fixture(autouse=True)
def _anvil(node_kind: str) -> None:
    if node_kind != "anvil":
        pytest.skip("contract tests use anvil cheat codes (anvil_setBalance, evm_increaseTime)")
