"""GET /deals from the deal index: what a broker lists, filtered by state and paged, is what the
chain holds, and a deal opened or changed a moment ago is listed at once."""

from __future__ import annotations

from pipeline.domain import State
from tests.api.conftest import Api


def listed(api: Api, **params: object) -> tuple[int, list[int]]:
    page = api.ok(api.get("/deals", params={"limit": 100, **params}))
    return page["total"], [d["deal_id"] for d in page["items"]]


def test_state_filter_and_pages_agree_with_the_chain(api: Api):
    escrow = api.services.brokerage.escrow
    deals: list[int] = []
    for _ in range(4):
        deals.append(api.open())
        assert listed(api) == (len(deals), deals[::-1])  # read-your-writes: listed at once, newest first
    signed = api.open_signed()
    deals.append(signed)
    # changed on chain behind the API's back (the registrar refunds): filtered by the new state at once
    api.world.tx("registrar", escrow, "refund", deals[1], 7)

    on_chain = {d: State(escrow.call("dealState", d)) for d in deals}
    assert set(on_chain.values()) == {State.OPEN, State.SIGNED, State.REFUNDED}
    for state in ("open", "signed", "refunded", "settled"):
        wanted = sorted((d for d, s in on_chain.items() if s.name.lower() == state), reverse=True)
        page = api.ok(api.get("/deals", params={"state": state}))
        assert (page["total"], [d["deal_id"] for d in page["items"]]) == (len(wanted), wanted), state
        assert {d["state"] for d in page["items"]} <= {state}

    pages = [listed(api, limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert [total for total, _ids in pages] == [5] * 4
    assert [ids for _total, ids in pages] == [deals[:2:-1], deals[2:0:-1], deals[:1], []]
    assert listed(api, state="open", limit=1, offset=1) == (3, [deals[2]])
    assert api.ok(api.get("/deals", who="broker2"))["total"] == 0
