"""The oracles' books: effects are keyed per oracle, and books from before that are upgraded."""

from __future__ import annotations

from sqlalchemy import inspect, text

from chain.events import Cursor
from chain.sender import SignedTx
from pipeline.db import make_engine
from pipeline.store import OracleStore

TX = SignedTx(raw="0x01", hash="0x" + "ab" * 32, nonce=3)
# oracle_effects as it was before effects were keyed per oracle
LEGACY = """CREATE TABLE oracle_effects (
    effect_key VARCHAR(200) PRIMARY KEY, oracle VARCHAR(64) NOT NULL, deal_id BIGINT,
    kind VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, source_event VARCHAR(200) NOT NULL,
    source_block BIGINT NOT NULL, answer TEXT NOT NULL, txs TEXT NOT NULL, error TEXT,
    seen_at DOUBLE PRECISION NOT NULL, done_at DOUBLE PRECISION, latency_ms DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL)"""


def _record(store: OracleStore, key: str, event: str) -> None:
    store.record_effect(
        event_key=event, block=5, cursor=Cursor(6), effect_key=key, deal_id=7, kind="payoff",
        answer={"by": store.oracle}, txs=[TX], seen_at=1.0,
    )  # fmt: skip


def test_two_oracles_each_have_their_own_effect_under_one_key(db_url: str) -> None:
    engine = make_engine(db_url)
    lender, bank = OracleStore(engine, "bank:lender"), OracleStore(engine, "bank:bank")
    _record(lender, "payoff:7", "e1")
    _record(bank, "payoff:7", "e1")
    bank.finish("payoff:7", "mined", block=9)
    mine, theirs = bank.effect("payoff:7"), lender.effect("payoff:7")
    assert mine is not None and theirs is not None
    assert (mine.status, mine.mined_block, mine.answer) == ("mined", 9, {"by": "bank:bank"})
    assert (theirs.status, theirs.mined_block, theirs.answer) == ("signed", None, {"by": "bank:lender"})
    assert [e.key for e in bank.effects_after(8)] == ["payoff:7"]
    assert bank.effects_after(9) == [] and lender.effects_after(0) == []
    assert [e.key for e in lender.effects_after(4, sources=True)] == ["payoff:7"]


def test_books_from_before_per_oracle_keys_are_upgraded_in_place(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(LEGACY))
        conn.execute(text("CREATE INDEX oracle_effects_status ON oracle_effects (oracle, status)"))
        conn.execute(
            text(
                "INSERT INTO oracle_effects (effect_key, oracle, deal_id, kind, status, source_event, "
                "source_block, answer, txs, seen_at, updated_at) VALUES ('payoff:7', 'bank:lender', 7, "
                "'payoff', 'mined', 'e1', 5, '{}', '[]', 1.0, 1.0)"
            )
        )
    lender = OracleStore(engine, "bank:lender")
    old = lender.effect("payoff:7")
    assert old is not None and (old.status, old.mined_block) == ("mined", None)
    _record(OracleStore(engine, "bank:bank"), "payoff:7", "e1")  # the key is free for another oracle
    OracleStore(engine, "bank:lender")  # a second start finds nothing to upgrade
    indexes = {i["name"] for i in inspect(engine).get_indexes("oracle_effects")}
    assert {"oracle_effects_status", "oracle_effects_mined"} <= indexes
