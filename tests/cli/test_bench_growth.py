"""`deedchain bench-growth`: the bulk seeder makes real, settled deals; the command reports JSON."""

from __future__ import annotations

import json

import pytest

from chain.session import ChainSession
from pipeline.domain import State
from scripts import bench_growth, cli
from scripts.bench import OWED, PRICE
from scripts.bench_growth import Seeder


def test_seeded_deals_are_settled_on_chain(chain: ChainSession, deployed: dict[str, str], anvil_only: None):
    seeder = Seeder(chain)
    first = int(seeder.escrow.call("nextDealId"))
    stats = seeder.seed(6)
    # per deal: its two register entries, the buyer's money, two certificates, the opening with both
    # acceptances, the permit; then 11 batch calls for all six (and the lender's one approval)
    assert stats.deals == 6 and 6 * 7 + 11 <= stats.txs <= 6 * 7 + 12
    land, loans, escrow = seeder.land, seeder.loans, seeder.escrow
    for deal in range(first, first + 6):
        terms = escrow.call("terms", deal)
        assert escrow.call("dealState", deal) == State.SETTLED
        assert escrow.call("broker", deal) == chain.signers["broker"].address
        assert land.call("ownerOf", terms["parcelId"]) == terms["buyer"]
        assert loans.call("loan", deal)["status"] == 5  # Secured: the lender's 근저당 is registered
        assert escrow.call("claimable", terms["seller"]) == PRICE - OWED
    assert escrow.call("nextDealId") == first + 6
    # the node is handed back as it was: automine on and the configured block gas limit
    block = chain.rpc.call("eth_getBlockByNumber", ["latest", False])
    assert int(block["gasLimit"], 16) == seeder.gas_limit
    assert chain.rpc.call("anvil_getAutomine") is True


def test_cli_options_match_the_script():
    ours = vars(bench_growth.build_parser().parse_args([]))
    theirs = vars(cli.build_parser().parse_args(["bench-growth"]))
    assert {k: theirs[k] for k in ours} == ours


def test_growth_mode_prints_gas_and_api_latency(capsys: pytest.CaptureFixture[str]):
    code = cli.main(
        ["bench-growth", "--prior", "2,20", "--measured-deals", "2", "--requests", "20", "--json"]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, out
    assert out["prior_deals"] == [2, 20]
    assert out["measured_settled"] == ["2/2", "2/2"]
    # every seeded deal was checked Settled on chain, or the command would have failed
    # seven transactions of its own per deal (see above), and the batch calls
    assert out["seeded_deals"] >= 2 + 2 and out["seeded_txs"] > 7 * out["seeded_deals"]
    assert all(1_000_000 < g < 2_000_000 for g in out["gas_per_deal"])
    assert abs(out["gas_change_pct"]) < 1  # the contracts loop over nothing global
    assert len(out["api_p50_ms"]) == len(out["api_p95_ms"]) == 2
    assert all(0 < p50 <= p95 for p50, p95 in zip(out["api_p50_ms"], out["api_p95_ms"], strict=True))
    assert isinstance(out["api_p95_change_pct"], float | int)
    assert out["seed_seconds"] > 0 and out["seed_tx_per_s"] > 0
    assert isinstance(out["flat_within_5pct"], bool)
    assert set(out["route_p95_ms"]) >= {"GET /deals/{id}", "GET /deals/{id}/timeline", "POST /deals"}
    # the write p95 is POST /deals' own; reads are every GET
    assert out["api_write_p95_ms"] == out["route_p95_ms"]["POST /deals"]
    assert all(r > 0 for r in out["api_read_p95_ms"]) and len(out["api_read_p95_ms"]) == 2
