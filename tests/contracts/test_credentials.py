"""CredentialRegistry: issuers anchor e-certificate hashes; lenders ask isValid."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils import keccak

from chain.deploy import role_id
from chain.errors import ContractRevert
from pipeline.adapters.protocols import CredentialKind
from tests.contracts.conftest import DAY, World

ZERO = "0x" + "00" * 20
ZERO_HASH = "0x" + "00" * 32
ISSUER_ROLE = "0x" + role_id("ISSUER_ROLE").hex()
ADMIN_ROLE = "0x" + "00" * 32
INCOME = CredentialKind.INCOME


def doc(text: str) -> str:
    return "0x" + keccak(text=text).hex()


def anchor(w: World, hash_: str, *, kind=INCOME, subject="buyer", ttl=30 * DAY, who="issuer"):
    return w.tx(who, w.creds, "anchor", hash_, kind, w.addr(subject), w.now() + ttl)


def reverts(w: World, who: Any, fn: str, *args: Any) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.tx(who, w.creds, fn, *args)
    return err.value


def valid(w: World, hash_: str, subject="buyer", kind=INCOME) -> bool:
    return w.creds.call("isValid", hash_, w.addr(subject), kind)


def second_issuer(w: World):
    account = w.new_account()
    w.tx("deployer", w.creds, "grantRole", role_id("ISSUER_ROLE"), account.address)
    return account


# --- anchor ----------------------------------------------------------------------------------


def test_anchor_records_the_credential_and_it_is_valid(world: World):
    w = world
    h = doc("소득금액증명-2026-buyer")
    expiry = w.now() + 90 * DAY
    r = w.tx("issuer", w.creds, "anchor", h, INCOME, w.addr("buyer"), expiry)
    now = w.now()
    assert w.creds.call("credential", h) == (
        w.addr("issuer"),
        w.addr("buyer"),
        INCOME,
        expiry,
        False,
        now,
    )
    assert valid(w, h) is True
    (event,) = w.creds.events(r)
    assert event.event == "CredentialAnchored"
    assert dict(event.args) == {
        "hash": h,
        "issuer": w.addr("issuer"),
        "subject": w.addr("buyer"),
        "kind": INCOME,
        "expiry": expiry,
        "anchoredAt": now,
    }


def test_a_hash_is_anchored_only_once(world: World):
    w = world
    h = doc("등본-1")
    anchor(w, h, kind=CredentialKind.RESIDENT_REGISTRATION)
    with pytest.raises(ContractRevert) as err:
        anchor(w, h, kind=INCOME, subject="seller", who=second_issuer(w))
    assert err.value.name == "CredentialAlreadyAnchored"
    assert err.value.args_by_name == {"hash": h}
    assert w.creds.call("credential", h)[:3] == (
        w.addr("issuer"),
        w.addr("buyer"),
        CredentialKind.RESIDENT_REGISTRATION,
    )


@pytest.mark.parametrize("offset", [0, -1], ids=["now", "past"])
def test_anchoring_with_expiry_not_in_the_future_reverts(world: World, offset: int):
    w = world
    h = doc("stale")
    # the tx is mined one second after the latest block, so "now" is already in the past
    expiry = w.now() + offset
    err = reverts(w, "issuer", "anchor", h, INCOME, w.addr("buyer"), expiry)
    assert err.name == "CredentialExpired"
    assert err.args_by_name["hash"] == h
    assert err.args_by_name["expiry"] == expiry
    assert err.args_by_name["nowTime"] >= expiry
    assert valid(w, h) is False


def test_expiry_beyond_uint40_reverts_credential_expired(world: World):
    # Surprising: a far-future expiry is reported as "expired".
    w = world
    too_far = 2**40
    err = reverts(w, "issuer", "anchor", doc("far"), INCOME, w.addr("buyer"), too_far)
    assert err.name == "CredentialExpired"
    assert err.args_by_name["expiry"] == too_far


@pytest.mark.parametrize("bad", ["hash", "subject"])
def test_zero_hash_or_zero_subject_reverts_invalid_credential(world: World, bad: str):
    w = world
    h = ZERO_HASH if bad == "hash" else doc("x")
    subject = ZERO if bad == "subject" else w.addr("buyer")
    err = reverts(w, "issuer", "anchor", h, INCOME, subject, w.now() + DAY)
    assert err.name == "InvalidCredential"
    assert err.args_by_name == {"hash": h, "subject": subject}


@pytest.mark.parametrize("who", ["buyer", "registrar", "deployer"])
def test_only_issuers_anchor(world: World, who: str):
    w = world
    err = reverts(w, who, "anchor", doc("forged"), INCOME, w.addr("buyer"), w.now() + DAY)
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name == {"account": w.addr(who), "neededRole": ISSUER_ROLE}
    assert w.creds.call("ISSUER_ROLE") == ISSUER_ROLE


# --- isValid ---------------------------------------------------------------------------------


def test_credential_is_invalid_after_expiry(world: World):
    w = world
    h = doc("expiring")
    anchor(w, h, ttl=DAY)
    expiry = w.creds.call("credential", h)[3]
    w.chain.rpc.call("evm_setNextBlockTimestamp", [expiry])  # the expiry second is still valid
    w.chain.rpc.call("evm_mine")
    assert w.now() == expiry and valid(w, h) is True
    w.warp(1)
    assert valid(w, h) is False


def test_credential_is_valid_only_for_its_subject_and_kind(world: World):
    w = world
    h = doc("가족관계-1")
    anchor(w, h, kind=CredentialKind.FAMILY_RELATION)
    assert valid(w, h, "buyer", CredentialKind.FAMILY_RELATION) is True
    assert valid(w, h, "seller", CredentialKind.FAMILY_RELATION) is False
    assert valid(w, h, "buyer", CredentialKind.INCOME) is False
    assert valid(w, h, "buyer", CredentialKind.RESIDENT_REGISTRATION) is False


def test_unknown_hash_is_not_valid(world: World):
    w = world
    assert w.creds.call("isValid", doc("never"), ZERO, CredentialKind.RESIDENT_REGISTRATION) is False


def test_credential_is_invalid_once_its_issuer_loses_the_role(world: World):
    w = world
    other = second_issuer(w)
    mine, theirs = doc("by-issuer"), doc("by-other")
    anchor(w, mine)
    anchor(w, theirs, who=other)
    w.tx("deployer", w.creds, "revokeRole", role_id("ISSUER_ROLE"), w.addr("issuer"))
    assert valid(w, mine) is False
    assert valid(w, theirs) is True
    assert w.creds.call("credential", mine)[4] is False  # not revoked, merely unbacked
    # the ex-issuer can no longer anchor
    err = reverts(w, "issuer", "anchor", doc("late"), INCOME, w.addr("buyer"), w.now() + DAY)
    assert err.name == "AccessControlUnauthorizedAccount"


def test_only_the_admin_revokes_issuer_role(world: World):
    w = world
    err = reverts(w, "issuer", "revokeRole", role_id("ISSUER_ROLE"), w.addr("issuer"))
    assert err.name == "AccessControlUnauthorizedAccount"
    assert err.args_by_name == {"account": w.addr("issuer"), "neededRole": ADMIN_ROLE}


# --- revoke ----------------------------------------------------------------------------------


def test_issuer_revokes_its_credential(world: World):
    w = world
    h = doc("revoke-me")
    anchor(w, h)
    r = w.tx("issuer", w.creds, "revoke", h)
    assert valid(w, h) is False
    assert w.creds.call("credential", h)[4] is True
    (event,) = w.creds.events(r)
    assert event.event == "CredentialRevoked"
    assert dict(event.args) == {"hash": h, "issuer": w.addr("issuer")}


@pytest.mark.parametrize("who", ["deployer", "buyer", "other-issuer"])
def test_only_the_anchoring_issuer_revokes(world: World, who: str):
    w = world
    h = doc("not-yours")
    anchor(w, h)
    caller = second_issuer(w) if who == "other-issuer" else who
    err = reverts(w, caller, "revoke", h)
    assert err.name == "NotCredentialIssuer"
    assert err.args_by_name == {"hash": h, "caller": w.addr(caller)}
    assert valid(w, h) is True


def test_revoking_twice_reverts(world: World):
    w = world
    h = doc("twice")
    anchor(w, h)
    w.tx("issuer", w.creds, "revoke", h)
    err = reverts(w, "issuer", "revoke", h)
    assert err.name == "CredentialAlreadyRevoked"
    assert err.args_by_name == {"hash": h}


def test_revoking_an_unknown_hash_reverts(world: World):
    w = world
    err = reverts(w, "issuer", "revoke", doc("never"))
    assert err.name == "UnknownCredential"
    assert err.args_by_name == {"hash": doc("never")}


def test_credential_view_of_an_unknown_hash_reverts(world: World):
    with pytest.raises(ContractRevert) as err:
        world.creds.call("credential", doc("never"))
    assert err.value.name == "UnknownCredential"
    assert err.value.args_by_name == {"hash": doc("never")}


def test_former_issuer_can_still_revoke_its_credentials(world: World):
    # revoke is gated by authorship, not by ISSUER_ROLE
    w = world
    h = doc("de-roled")
    anchor(w, h)
    w.tx("deployer", w.creds, "revokeRole", role_id("ISSUER_ROLE"), w.addr("issuer"))
    w.tx("issuer", w.creds, "revoke", h)
    w.tx("deployer", w.creds, "grantRole", role_id("ISSUER_ROLE"), w.addr("issuer"))
    assert w.creds.call("credential", h)[4] is True
    assert valid(w, h) is False
