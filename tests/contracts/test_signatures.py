"""EIP-712 acceptance of the terms: who signed what, for which deal, chain, nonce and expiry."""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from chain.eip712 import read_domain, sign_typed_data
from chain.errors import ContractRevert
from pipeline.deals import accept_terms_typed_data
from pipeline.domain import Party, State
from tests.contracts.conftest import DAY, World

ZERO = "0x" + "00" * 20


def accept_error(w: World, deal: int, party: Party, expiry: int, sig: str) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        w.tx("broker", w.escrow, "acceptTerms", deal, party, expiry, sig)
    return err.value


def open_deal(w: World):
    terms = w.terms(w.register_parcel("seller"))
    return w.open_deal(terms), terms


def test_both_parties_accepting_signs_the_deal(world: World):
    w = world
    deal, terms = open_deal(w)
    first = w.accept(deal, terms, Party.BUYER, "buyer")
    assert w.state(deal) == State.OPEN
    assert w.escrow.call("signatures", deal) == (True, False)
    second = w.accept(deal, terms, Party.SELLER, "seller")
    assert w.state(deal) == State.SIGNED
    assert w.escrow.call("signatures", deal) == (True, True)
    (ev1,) = [e for e in w.escrow.events(first) if e.event == "TermsAccepted"]
    (ev2,) = [e for e in w.escrow.events(second) if e.event == "TermsAccepted"]
    assert ev1.args == {
        "dealId": deal,
        "party": Party.BUYER,
        "signer": w.addr("buyer"),
        "nonce": 0,
        "state": State.OPEN,
    }
    assert ev2.args["party"] == Party.SELLER and ev2.args["signer"] == w.addr("seller")
    assert ev2.args["state"] == State.SIGNED


def test_a_third_party_may_submit_a_signature(world: World):
    w = world
    deal, terms = open_deal(w)
    expiry, sig = w.signature(deal, terms, "buyer")
    stranger = w.new_account()
    w.tx(stranger, w.escrow, "acceptTerms", deal, Party.BUYER, expiry, sig)
    assert w.escrow.call("signatures", deal) == (True, False)


def test_replaying_a_signature_on_the_same_deal_is_already_accepted(world: World):
    w = world
    deal, terms = open_deal(w)
    expiry, sig = w.signature(deal, terms, "buyer")
    w.tx("broker", w.escrow, "acceptTerms", deal, Party.BUYER, expiry, sig)
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "AlreadyAccepted"
    assert err.args_by_name == {"dealId": deal, "party": Party.BUYER}


def test_a_signature_is_bound_to_its_deal_id(world: World):
    w = world
    parcel = w.register_parcel("seller")
    terms = w.terms(parcel)
    deal_a = w.open_deal(terms)
    expiry, sig = w.signature(deal_a, terms, "buyer")  # signed for A, never submitted
    w.tx("registrar", w.escrow, "refund", deal_a, 9)  # A ends; the parcel is free again
    deal_b = w.open_deal(terms)  # the very same terms, another deal id
    err = accept_error(w, deal_b, Party.BUYER, expiry, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name["expected"] == w.addr("buyer")
    assert err.args_by_name["recovered"] != w.addr("buyer")
    assert w.escrow.call("signatures", deal_b) == (False, False)
    # a signature made for B is what B takes
    expiry, sig = w.signature(deal_b, terms, "buyer")
    w.tx("broker", w.escrow, "acceptTerms", deal_b, Party.BUYER, expiry, sig)
    assert w.escrow.call("signatures", deal_b) == (True, False)


def test_a_signature_for_another_chain_is_rejected(world: World):
    w = world
    deal, terms = open_deal(w)
    domain = {**read_domain(w.escrow), "chainId": w.chain.chain_id + 1}
    expiry = w.now() + DAY
    nonce = w.escrow.call("nonces", w.addr("buyer"))
    data = accept_terms_typed_data(domain, deal, terms, nonce, expiry)
    sig = sign_typed_data(w.key("buyer"), data)
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name["recovered"] not in (w.addr("buyer"), ZERO)


def test_a_stale_nonce_is_rejected(world: World):
    w = world
    first, first_terms = open_deal(w)
    w.accept(first, first_terms, Party.BUYER, "buyer")  # uses the buyer's nonce 0
    deal, terms = open_deal(w)
    expiry, sig = w.signature(deal, terms, "buyer", nonce=0)
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name["recovered"] != w.addr("buyer")
    expiry, sig = w.signature(deal, terms, "buyer", nonce=1)
    w.tx("broker", w.escrow, "acceptTerms", deal, Party.BUYER, expiry, sig)


def test_the_seller_cannot_sign_for_the_buyer(world: World):
    w = world
    deal, terms = open_deal(w)
    buyer_nonce = w.escrow.call("nonces", w.addr("buyer"))
    expiry, sig = w.signature(deal, terms, "seller", nonce=buyer_nonce)
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name == {
        "dealId": deal,
        "expected": w.addr("buyer"),
        "recovered": w.addr("seller"),
    }


def test_an_expired_signature_is_rejected(world: World):
    w = world
    deal, terms = open_deal(w)
    expiry, sig = w.signature(deal, terms, "buyer", expiry=w.now() + 3600)
    w.warp(3601)
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "SignatureExpired"
    assert err.args_by_name["expiry"] == expiry
    assert err.args_by_name["nowTime"] > expiry


def test_signing_tampered_terms_is_rejected(world: World):
    w = world
    deal, terms = open_deal(w)
    cheaper = replace(terms, price=terms.price - 1, balance=terms.balance - 1)
    expiry, sig = w.signature(deal, cheaper, "buyer")
    err = accept_error(w, deal, Party.BUYER, expiry, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name["recovered"] not in (w.addr("buyer"), ZERO)
    assert w.state(deal) == State.OPEN


@pytest.mark.parametrize("sig", ["0x1234", "0x" + "00" * 65, "0x" + "ab" * 66])
def test_malformed_signature_recovers_the_zero_address(world: World, sig: str):
    w = world
    deal, _ = open_deal(w)
    err = accept_error(w, deal, Party.SELLER, w.now() + DAY, sig)
    assert err.name == "InvalidSigner"
    assert err.args_by_name == {"dealId": deal, "expected": w.addr("seller"), "recovered": ZERO}


def test_each_acceptance_uses_one_nonce(world: World):
    w = world
    buyer = w.addr("buyer")
    start = w.escrow.call("nonces", buyer)
    for i in range(2):
        deal, terms = open_deal(w)
        r = w.accept(deal, terms, Party.BUYER, "buyer")
        (ev,) = [e for e in w.escrow.events(r) if e.event == "TermsAccepted"]
        assert ev.args["nonce"] == start + i
        assert w.escrow.call("nonces", buyer) == start + i + 1
    assert w.escrow.call("nonces", w.addr("seller")) == 0


def test_python_digest_equals_the_contract_digest(world: World):
    w = world
    deal, terms = open_deal(w)
    w.accept(deal, terms, Party.BUYER, "buyer")  # the buyer's nonce moves to 1
    expiry = w.now() + DAY
    for party, who in ((Party.BUYER, "buyer"), (Party.SELLER, "seller")):
        nonce = w.escrow.call("nonces", w.addr(who))
        data = accept_terms_typed_data(read_domain(w.escrow), deal, terms, nonce, expiry)
        message = encode_typed_data(full_message=data)
        assert message.version == b"\x01"
        assert "0x" + message.header.hex() == w.escrow.call("DOMAIN_SEPARATOR")
        digest = "0x" + keccak(b"\x19\x01" + message.header + message.body).hex()
        assert digest == w.escrow.call("acceptTermsDigest", deal, party, expiry)


def test_domain_names_this_chain_and_this_escrow(world: World):
    domain = read_domain(world.escrow)
    assert domain["chainId"] == world.chain.chain_id
    assert domain["verifyingContract"] == world.escrow.address
    assert (domain["name"], domain["version"]) == ("DealEscrow", "1")


# --------------------------------------------------------------------------- a draft opened signed


def open_signed(
    w: World, terms, buyer_sig: tuple[int, str], seller_sig: tuple[int, str], broker: str = "broker"
):
    return w.tx(broker, w.escrow, "openSignedDeal", terms.to_abi(), *buyer_sig, *seller_sig)


def test_a_draft_signed_by_both_opens_signed_in_one_transaction(world: World):
    """Both acceptances sign the terms with dealId 0 (the id is not known yet); openSignedDeal
    opens the deal and records both, with the same events as openDeal + two acceptTerms."""
    w = world
    terms = w.terms(w.register_parcel("seller"))
    buyer_nonce = int(w.escrow.call("nonces", w.addr("buyer")))
    r = open_signed(w, terms, w.signature(0, terms, "buyer"), w.signature(0, terms, "seller"))
    events = [e for e in w.escrow.events(r)]
    assert [e.event for e in events] == ["DealOpened", "TermsAccepted", "TermsAccepted"]
    deal = int(events[0].args["dealId"])
    assert [(e.args["dealId"], e.args["party"], e.args["signer"], e.args["state"]) for e in events[1:]] == [
        (deal, Party.BUYER, w.addr("buyer"), State.OPEN),
        (deal, Party.SELLER, w.addr("seller"), State.SIGNED),
    ]
    assert events[1].args["nonce"] == buyer_nonce
    assert w.state(deal) == State.SIGNED and w.escrow.call("signatures", deal) == (True, True)
    assert w.escrow.call("contractedDeal", terms.parcelId) == deal


def open_error(w: World, *args) -> ContractRevert:
    with pytest.raises(ContractRevert) as err:
        open_signed(w, *args)
    return err.value


def test_a_draft_signature_opens_once_and_binds_the_terms(world: World):
    w = world
    terms = w.terms(w.register_parcel("seller"))
    buyer, seller = w.signature(0, terms, "buyer"), w.signature(0, terms, "seller")
    # a signature over another deal id (an open deal's), over other terms, or by the wrong party
    err = open_error(w, terms, w.signature(1, terms, "buyer"), seller)
    assert err.name == "InvalidSigner" and err.args_by_name["expected"] == w.addr("buyer")
    other = replace(terms, price=terms.price + 1, balance=terms.balance + 1)
    err = open_error(w, other, buyer, seller)
    assert err.name == "InvalidSigner"
    err = open_error(w, terms, seller, buyer)
    assert err.name == "InvalidSigner"
    # only a broker opens; an expired acceptance is refused
    err = open_error(w, terms, buyer, seller, "buyer")
    assert err.name == "AccessControlUnauthorizedAccount"
    stale = w.signature(0, terms, "buyer", expiry=w.now() - 1)
    err = open_error(w, terms, stale, seller)
    assert err.name == "SignatureExpired"
    open_signed(w, terms, buyer, seller)
    # replayed on a second draft of the same terms (after the first deal ends, say): the nonces are used
    err = open_error(w, terms, buyer, seller)
    assert err.name == "InvalidSigner"
