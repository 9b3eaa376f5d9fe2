"""/metrics counts deals by state from the deal index, following them into terminal states."""

from __future__ import annotations

import re

import httpx

from tests.api.conftest import Api


def deal_counts(api: Api) -> dict[str, int]:
    text = httpx.get(f"{api.url}/metrics").text
    return {m[1]: int(m[2]) for m in re.finditer(r'deedchain_deals\{state="(\w+)"\} (\d+)', text)}


def test_deal_counts_follow_deals_into_terminal_states(api: Api):
    before = deal_counts(api)
    first, second = api.open(), api.open_signed()
    assert deal_counts(api) == {
        **before,
        "open": before.get("open", 0) + 1,
        "signed": before.get("signed", 0) + 1,
    }
    # a live deal that ends (here by the registrar, outside the API) is counted in its terminal state
    api.world.tx("registrar", api.services.brokerage.escrow, "refund", second, 7)
    api.world.tx("registrar", api.services.brokerage.escrow, "refund", first, 7)
    after = deal_counts(api)
    assert after.get("open", 0) == before.get("open", 0) and after.get("signed", 0) == before.get("signed", 0)
    assert after["refunded"] == before.get("refunded", 0) + 2
    api.open()
    assert deal_counts(api) == {**after, "open": after.get("open", 0) + 1}
