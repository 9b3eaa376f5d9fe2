from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account

from chain.deploy import role_id
from chain.errors import ContractRevert, RpcError, TransactionError, TransactionLost, TransactionTimeout
from chain.node import free_port
from chain.rpc import Rpc
from chain.sender import FeePolicy, Sender


@pytest.fixture
def token(chain, deployed):
    return chain.contract("DepositToken", deployed["DepositToken"])


def test_eight_threads_one_sender_no_gaps_no_duplicates(chain, token):
    bank = chain.sender("bank")
    start = int(chain.rpc.call("eth_getTransactionCount", [bank.address, "pending"]), 16)
    recipients = [Account.create().address for _ in range(8)]

    def work(recipient: str) -> list[str]:
        return [token.send(bank, "mint", recipient, 1 + i, gas=120_000) for i in range(25)]

    with ThreadPoolExecutor(8) as pool:
        hashes = [h for batch in pool.map(work, recipients) for h in batch]
    receipts = [bank.wait(h) for h in hashes]
    assert all(r.status == 1 for r in receipts)
    nonces = sorted(int(chain.rpc.call("eth_getTransactionByHash", [h])["nonce"], 16) for h in hashes)
    assert nonces == list(range(start, start + 200))
    assert int(chain.rpc.call("eth_getTransactionCount", [bank.address, "latest"]), 16) == start + 200
    expected = sum(range(1, 26))
    assert [token.call("balanceOf", r) for r in recipients] == [expected] * 8


def test_resyncs_when_another_sender_used_the_nonce(chain, token):
    key = chain.signers["bank"].account
    ours = Sender(chain.rpc, key, chain.chain_id, errors=chain.errors)
    theirs = Sender(chain.rpc, key, chain.chain_id, errors=chain.errors)
    buyer = chain.signers["buyer"].address
    token.transact(ours, "mint", buyer, 5)  # ours now caches nonce n+1
    token.transact(theirs, "mint", buyer, 5)  # theirs uses n+1 behind our back
    token.transact(ours, "mint", buyer, 5)  # "nonce too low" -> resync -> n+2
    assert token.call("balanceOf", buyer) == 15


def test_custom_error_decoded_at_estimation(chain, token):
    buyer = chain.signers["buyer"]
    with pytest.raises(ContractRevert) as err:
        token.transact(chain.sender("buyer"), "mint", buyer.address, 10)
    assert err.value.name == "AccessControlUnauthorizedAccount"
    assert err.value.args_by_name == {
        "account": buyer.address,
        "neededRole": "0x" + role_id("BANK_ROLE").hex(),
    }


def test_mined_revert_is_replayed_and_decoded(chain, token):
    seller, buyer = chain.signers["seller"].address, chain.signers["buyer"].address
    with pytest.raises(ContractRevert) as err:
        token.transact(chain.sender("seller"), "transfer", buyer, 7, gas=100_000)  # skips estimation
    assert err.value.name == "ERC20InsufficientBalance"
    assert err.value.args_by_name == {"sender": seller, "balance": 0, "needed": 7}
    assert err.value.tx_hash is not None
    receipt = chain.rpc.call("eth_getTransactionReceipt", [err.value.tx_hash])
    assert receipt["status"] == "0x0"  # it really was mined and failed


def test_view_revert_is_decoded(chain, token):
    with pytest.raises(ContractRevert, match=r"ZeroAmount\(\)"):
        token.call("mint", chain.signers["buyer"].address, 0, sender=chain.signers["bank"].address)


def test_receipt_timeout(chain, token, anvil_only):
    chain.rpc.call("evm_setAutomine", [False])
    try:
        bank = chain.sender("bank")
        tx = token.send(bank, "mint", chain.signers["buyer"].address, 1, gas=120_000)
        with pytest.raises(TransactionTimeout, match=tx):
            bank.wait(tx, timeout=0.3)
        chain.rpc.call("evm_mine")
        assert bank.wait(tx).status == 1  # it was pending, not lost
    finally:
        chain.rpc.call("evm_setAutomine", [True])


def test_a_transaction_behind_a_lost_nonce_is_given_up_and_the_nonce_retaken(chain, token, anvil_only):
    """The chain came back without this sender's last transaction (a node restarted from an
    older state, here an evm_revert): the next one waits behind the lost nonce. The wait says
    so within seconds instead of timing out, and the send after it takes the node's count."""
    bank = Sender(chain.rpc, chain.signers["bank"].account, chain.chain_id, errors=chain.errors)
    buyer = chain.signers["buyer"].address
    token.transact(bank, "mint", buyer, 1)
    before = chain.rpc.call("evm_snapshot")
    token.transact(bank, "mint", buyer, 2)
    chain.rpc.call("evm_revert", [before])  # the node lost nonce n; bank counts n + 1
    began = time.monotonic()
    with pytest.raises(TransactionLost, match="waits behind"):
        token.transact(bank, "mint", buyer, 3)
    assert time.monotonic() - began < 10  # not the 30 s receipt timeout
    token.transact(bank, "mint", buyer, 4)  # at nonce n: mined, and the stranded one after it
    assert token.call("balanceOf", buyer) == 1 + 4 + 3


def test_a_transaction_the_node_dropped_is_given_up(chain, token, anvil_only):
    chain.rpc.call("evm_setAutomine", [False])
    try:
        bank = chain.sender("bank")
        tx = token.send(bank, "mint", chain.signers["buyer"].address, 1, gas=120_000)
        chain.rpc.call("anvil_dropTransaction", [tx])
        with pytest.raises(TransactionLost, match="does not have it"):
            bank.wait(tx)
    finally:
        chain.rpc.call("evm_setAutomine", [True])
    token.transact(bank, "mint", chain.signers["buyer"].address, 2)  # the dropped nonce, retaken
    assert token.call("balanceOf", chain.signers["buyer"].address) == 2


def test_fee_modes(chain, token):
    base = int(chain.rpc.call("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    dynamic = FeePolicy(chain.rpc).fields()
    assert dynamic["maxFeePerGas"] >= 2 * base and "gasPrice" not in dynamic
    key = chain.signers["bank"].account
    legacy = Sender(chain.rpc, key, chain.chain_id, fees=FeePolicy(chain.rpc, gas_price=3 * base + 1))
    receipt = token.transact(legacy, "mint", chain.signers["buyer"].address, 3)
    tx = chain.rpc.call("eth_getTransactionByHash", [receipt.tx_hash])
    assert int(tx["type"], 16) == 0 and int(tx["gasPrice"], 16) == 3 * base + 1
    assert FeePolicy(chain.rpc, gas_price=0).fields() == {"gasPrice": 0}


def test_refused_transaction_keeps_the_nonce(chain, token):
    key = chain.signers["bank"].account
    broke = Sender(chain.rpc, key, chain.chain_id, fees=FeePolicy(chain.rpc, gas_price=10**40))
    with pytest.raises(TransactionError):
        token.send(broke, "mint", chain.signers["buyer"].address, 1, gas=100_000)
    bank = chain.sender("bank")
    token.transact(bank, "mint", chain.signers["buyer"].address, 1)
    assert token.call("balanceOf", chain.signers["buyer"].address) == 1


def test_rpc_fails_over_and_retries(chain):
    dead = f"http://127.0.0.1:{free_port()}"
    rpc = Rpc([dead, chain.rpc.url], retries=2, backoff=0.01)
    assert int(rpc.call("eth_chainId"), 16) == chain.chain_id
    with pytest.raises(RpcError, match="unreachable after 3 tries"):
        Rpc([dead], retries=2, backoff=0.01).call("eth_chainId")


def test_one_view_call_is_one_request(chain, token):
    before = chain.rpc.requests
    for _ in range(5):
        token.call("totalSupply")
    assert chain.rpc.requests - before == 5


def test_an_unreachable_node_is_not_a_refusal(chain, token):
    """The transaction stays good: the caller keeps it and broadcasts it once the node is back."""
    bank = chain.sender("bank")
    [signed] = bank.sign_batch(
        [(token.address, token.encode("mint", chain.signers["buyer"].address, 1), 120_000)]
    )
    away = Sender(Rpc(f"http://127.0.0.1:{free_port()}", retries=0), bank.account, chain.chain_id)
    with pytest.raises(RpcError, match="unreachable") as raised:
        away.broadcast(signed)
    assert not isinstance(raised.value, TransactionError)
    bank.broadcast(signed)
    assert bank.wait(signed.hash).status == 1


def test_a_repeated_broadcast_of_a_pooled_transaction_is_fine(chain, token, anvil_only):
    bank = chain.sender("bank")
    [signed] = bank.sign_batch(
        [(token.address, token.encode("mint", chain.signers["buyer"].address, 1), 120_000)]
    )
    chain.rpc.call("evm_setAutomine", [False])
    try:
        bank.broadcast(signed)
        bank.broadcast(signed)  # anvil: "transaction already imported"
        chain.rpc.call("evm_mine")
    finally:
        chain.rpc.call("evm_setAutomine", [True])
    assert bank.wait(signed.hash).status == 1


def test_reissue_keeps_a_free_next_nonce_and_signs_the_rest_anew(chain, token):
    bank = chain.sender("bank")
    buyer = chain.signers["buyer"].address
    lost = bank.sign_batch([(token.address, token.encode("mint", buyer, n), 120_000) for n in (1, 2)])
    assert bank.reissue(lost, set()) == {t.hash: t for t in lost}  # as if dropped: their nonces are free
    # another transaction of the key takes the first nonce: both calls are signed anew, in order
    other = Sender(chain.rpc, bank.account, chain.chain_id)
    token.transact(other, "mint", buyer, 4)
    again = bank.reissue(lost, set())
    assert [again[t.hash].nonce for t in lost] == [lost[0].nonce + 1, lost[0].nonce + 2]
    before = token.call("balanceOf", buyer)
    for tx in lost:
        bank.broadcast(again[tx.hash])
        assert bank.wait(again[tx.hash].hash).status == 1
    assert token.call("balanceOf", buyer) == before + 3
    assert token.transact(bank, "mint", buyer, 1).status == 1  # the sender's counter moved past them


def test_a_later_nonce_broadcast_first_waits_for_the_earlier_one(chain, token):
    """Outboxes broadcast from several threads: nonce n+1 can reach the node before n. anvil
    queues it; hardhat's automine refuses it, so the sender tries again until n is in."""
    bank = chain.sender("bank")
    buyer = chain.signers["buyer"].address
    before = token.call("balanceOf", buyer)
    first, second = bank.sign_batch([(token.address, token.encode("mint", buyer, 1), 120_000)] * 2)
    with ThreadPoolExecutor(1) as pool:
        later = pool.submit(bank.broadcast, second)  # refused on hardhat until `first` is in
        time.sleep(0.05)
        bank.broadcast(first)
        later.result(timeout=10)
    assert [bank.wait(t.hash).status for t in (first, second)] == [1, 1]
    assert token.call("balanceOf", buyer) == before + 2
