"""Titles through the API: a register entry that refers to none has `ref: null`, not 0."""

from __future__ import annotations

from pipeline.domain import receipt
from tests.api.conftest import Api


def test_only_cancellations_and_discharges_have_a_ref(api: Api):
    w = api.world
    # 은마 is seeded with the seller's mortgage: 을구 entry 0, after the ownership in 갑구 entry 0
    title = api.ok(api.get("/parcels/eunma"))
    entries = {(e["section"], e["index"]): e for e in title["history"]}
    assert entries.keys() == {("gapgu", 0), ("eulgu", 0)}
    mortgage = entries["eulgu", 0]
    assert mortgage["kind"] == "mortgage" and mortgage["active"] and mortgage["ref"] is None
    assert entries["gapgu", 0]["kind"] == "ownership" and entries["gapgu", 0]["ref"] is None
    assert title["encumbrances"] == [mortgage]

    # discharged: the discharge refers to entry 0, which `ref: 0` on the mortgage could not be told from
    w.tx("registrar", w.land, "dischargeMortgage", title["parcel_id"], 0, receipt("TEST-D-1"))
    after = api.ok(api.get("/parcels/eunma"))
    entries = {(e["section"], e["index"]): e for e in after["history"]}
    assert entries["eulgu", 1]["kind"] == "discharge" and entries["eulgu", 1]["ref"] == 0
    assert entries["eulgu", 0]["ref"] is None and not entries["eulgu", 0]["active"]
    assert after["encumbrances"] == []

    # 옥수's 가압류 (갑구 1), cancelled: the cancellation refers to it, the seizure itself to nothing
    oksu = api.ok(api.get("/parcels/oksu"))
    (seizure,) = oksu["encumbrances"]
    assert (seizure["section"], seizure["index"], seizure["ref"]) == ("gapgu", 1, None)
    w.tx("registrar", w.land, "cancelBlocking", oksu["parcel_id"], 1, receipt("TEST-C-1"))
    history = api.ok(api.get("/parcels/oksu"))["history"]
    assert [(e["kind"], e["ref"]) for e in history] == [
        ("ownership", None),
        ("provisional_seizure", None),
        ("cancellation", 1),
    ]
