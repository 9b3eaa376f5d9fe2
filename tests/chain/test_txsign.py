"""The direct signer produces exactly eth-account's bytes, and the node takes them."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_utils import to_checksum_address

from chain.txsign import TxSigner, call_fields


@pytest.mark.parametrize("seed", range(20))
def test_same_bytes_as_eth_account(seed: int) -> None:
    rnd = random.Random(seed)
    account = Account.from_key(rnd.randbytes(32))
    base = {
        "chainId": rnd.choice([1, 1337, 31337, 2**40]),
        "nonce": rnd.randrange(0, 2**32),
        "gas": rnd.randrange(21_000, 30_000_000),
        "value": rnd.choice([0, 1, 10**18]),
        "data": "0x" + rnd.randbytes(rnd.randrange(0, 400)).hex(),
        "to": to_checksum_address(rnd.randbytes(20)),
    }
    for fees in (
        {"maxFeePerGas": rnd.randrange(0, 10**12), "maxPriorityFeePerGas": rnd.randrange(0, 10**10)},
        {"gasPrice": rnd.randrange(0, 10**12)},
    ):
        tx = {**base, **fees}
        expected = account.sign_transaction(tx)
        assert TxSigner(account.key).sign(tx) == (bytes(expected.raw_transaction), bytes(expected.hash))
        call = {k: base[k] for k in ("to", "value", "data", "gas")}
        assert call_fields(bytes(expected.raw_transaction)) == {**call, "to": base["to"].lower()}


def test_the_node_accepts_and_attributes_them(chain) -> None:
    sender = chain.sender("bank")
    before = int(chain.rpc.call("eth_getTransactionCount", [sender.address, "latest"]), 16)
    receipt = sender.transact(chain.signers["broker"].address, "0x", gas=21_000)
    assert receipt.status == 1
    tx = chain.rpc.call("eth_getTransactionByHash", [receipt.tx_hash])
    assert tx["from"].lower() == sender.address.lower()
    assert int(tx["nonce"], 16) == before
