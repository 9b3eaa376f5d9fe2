"""The transaction journal: what the pipeline sent survives a node that lost it.

The chain losing its last blocks (a node killed before its state dump, a state file rolled
back) is made here with evm_snapshot / evm_revert: the node forgets the transactions, the
journal in the pipeline's database does not.
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from chain.eip712 import read_domain, sign_typed_data, typed_data
from chain.sender import Sender
from pipeline.brokerage import PERMIT_TYPES
from pipeline.db import make_engine
from pipeline.journal import TxJournal, deal_memo
from tests.contracts.conftest import World


def journaled(world: World, who: str | LocalAccount, journal: TxJournal) -> Sender:
    chain = world.chain
    account = chain.signers[who].account if isinstance(who, str) else who
    return Sender(chain.rpc, account, chain.chain_id, fees=chain.fees, errors=chain.errors, journal=journal)


def lose_blocks_since(world: World, snapshot: str) -> None:
    world.chain.rpc.call("evm_revert", [snapshot])
    world.chain.resync()


def test_replay_sends_again_in_order_what_the_chain_lost_and_only_that(world, db_url):
    journal = TxJournal(make_engine(db_url))
    holder, other = world.new_account(), world.new_account()
    bank, holder_sender = journaled(world, "bank", journal), journaled(world, holder, journal)
    world.mint(holder, 1)  # not journaled: stays on chain, and is not sent again
    snapshot = world.chain.rpc.call("evm_snapshot")
    sent = [
        world.token.transact(bank, "mint", holder.address, 100, memo=deal_memo(7, "mint")).tx_hash,
        # depends on the mint before it, from another account: the replay keeps the order
        world.token.transact(holder_sender, "transfer", other.address, 60, memo=deal_memo(7, "pay")).tx_hash,
        world.token.transact(bank, "mint", holder.address, 5).tx_hash,
    ]
    lose_blocks_since(world, snapshot)
    assert (world.balance(holder), world.balance(other)) == (1, 0)

    replayed = journal.replay(world.chain.rpc, world.chain.errors)

    assert [(r.entry.tx_hash, r.outcome) for r in replayed] == [(h, "mined") for h in sent]
    assert [r.entry.deal_id for r in replayed] == [7, 7, None]
    assert (world.balance(holder), world.balance(other)) == (46, 60)
    assert journal.replay(world.chain.rpc, world.chain.errors) == []  # on chain now: never twice
    assert journal.notices([7]) == {7: []}


def test_a_replayed_permit_past_its_deadline_is_shown_on_its_deal(world, db_url):
    journal = TxJournal(make_engine(db_url))
    buyer = world.new_account()
    broker = journaled(world, "broker", journal)
    deadline = world.now() + 600
    message = {
        "owner": buyer.address,
        "spender": world.escrow.address,
        "value": 50,
        "nonce": int(world.token.call("nonces", buyer.address)),
        "deadline": deadline,
    }
    signature = bytes.fromhex(
        sign_typed_data(buyer, typed_data(read_domain(world.token), "Permit", PERMIT_TYPES, message))[2:]
    )
    snapshot = world.chain.rpc.call("evm_snapshot")
    receipt = world.token.transact(
        broker, "permit", buyer.address, world.escrow.address, 50, deadline,
        signature[64], signature[:32], signature[32:64], memo=deal_memo(9, "permit"),
    )  # fmt: skip
    assert world.token.call("allowance", buyer.address, world.escrow.address) == 50
    lose_blocks_since(world, snapshot)
    world.warp(3600)  # the node came back after the permit's deadline

    (replayed,) = journal.replay(world.chain.rpc, world.chain.errors)

    assert (replayed.entry.tx_hash, replayed.outcome) == (receipt.tx_hash, "reverted")
    assert replayed.error is not None and replayed.error.startswith("ERC2612ExpiredSignature")
    (notice,) = journal.notices([9])[9]
    assert (notice["tx"], notice["step"], notice["outcome"]) == (receipt.tx_hash, "permit", "reverted")
    assert world.token.call("allowance", buyer.address, world.escrow.address) == 0


def test_replay_stops_at_a_gap_in_a_senders_nonces(world, db_url):
    """A transaction the journal lacks (sent by another process, say) would hold back every
    later nonce in the node's pool: the replay sends nothing past it."""
    journal = TxJournal(make_engine(db_url))
    holder = world.new_account()
    bank = journaled(world, "bank", journal)
    snapshot = world.chain.rpc.call("evm_snapshot")
    first = world.token.transact(bank, "mint", holder.address, 1).tx_hash
    bank.journal = None
    world.token.transact(bank, "mint", holder.address, 2)  # not journaled
    bank.journal = journal
    world.token.transact(bank, "mint", holder.address, 4)
    lose_blocks_since(world, snapshot)

    replayed = journal.replay(world.chain.rpc, world.chain.errors)

    assert [(r.entry.tx_hash, r.outcome) for r in replayed] == [(first, "mined")]
    assert world.balance(holder) == 1
