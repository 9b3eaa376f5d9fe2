"""E-certificates: canonical form, hash, issuer signature, tamper detection (no database)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_utils import keccak

from pipeline.adapters.protocols import CredentialDocument, CredentialKind
from pipeline.credentials import (
    CredentialValueError,
    canonical_json,
    credential_hash,
    issue_credential,
    present,
    recover_issuer,
    verify_presented,
)

ISSUER = Account.from_key(keccak(text="test issuer: 국세청"))
OTHER = Account.from_key(keccak(text="test issuer: someone else"))
SUBJECT = Account.from_key(keccak(text="test subject")).address


def _income(**claims: str | int) -> tuple[CredentialDocument, str, str]:
    return issue_credential(
        ISSUER,
        CredentialKind.INCOME,
        SUBJECT,
        claims or {"annual_income": 96_000_000, "name": "김민준", "year": 2025},
        issued_at=1_780_000_000,
        expiry=1_790_000_000,
    )


def test_canonical_json_is_sorted_compact_utf8_with_int_values() -> None:
    document, _, _ = _income()
    raw = canonical_json(document)
    text = raw.decode("utf-8")
    assert " " not in text.replace("김민준", "")
    assert "김민준" in text  # raw UTF-8, not \\u escapes
    assert '"annual_income":96000000' in text
    assert '"kind":2' in text
    parsed = json.loads(raw)
    assert list(parsed) == sorted(parsed)
    assert list(parsed["claims"]) == sorted(parsed["claims"])


def test_hash_is_stable_across_key_order_and_address_case() -> None:
    document, digest, _ = _income()
    reordered = CredentialDocument.model_validate(
        {
            "claims": {"year": 2025, "name": "김민준", "annual_income": 96_000_000},
            "expiry": document.expiry,
            "issued_at": document.issued_at,
            "issuer": document.issuer.lower(),
            "subject": document.subject.lower(),
            "kind": 2,
        }
    )
    assert credential_hash(reordered) == digest
    assert digest == "0x" + keccak(canonical_json(document)).hex()
    assert len(digest) == 66


def test_signature_recovers_the_issuer_and_verifies() -> None:
    document, digest, signature = _income()
    assert document.issuer == ISSUER.address
    assert len(signature) == 132
    assert recover_issuer(digest, signature) == ISSUER.address
    assert verify_presented(present(document, digest, signature, True)) is None


def test_tampered_claims_are_detected() -> None:
    document, digest, signature = _income()
    claims = dict(document.claims)
    claims["annual_income"] = 960_000_000
    forged = document.model_copy(update={"claims": claims})
    reason = verify_presented(present(forged, digest, signature, True))
    assert reason is not None and "does not match" in reason
    # re-hashing the forged document does not help: the issuer never signed that hash
    reason = verify_presented(present(forged, credential_hash(forged), signature, True))
    assert reason is not None and "not by the issuer" in reason


def test_wrong_signer_is_detected() -> None:
    document, digest, _ = _income()
    _, _, other_signature = issue_credential(
        OTHER, CredentialKind.INCOME, SUBJECT, {"annual_income": 1}, 1, 2
    )
    from pipeline.credentials import sign_hash

    reason = verify_presented(present(document, digest, sign_hash(OTHER, digest), True))
    assert reason is not None and OTHER.address in reason
    assert other_signature != sign_hash(OTHER, digest)


def test_garbage_signature_is_a_reason_not_a_crash() -> None:
    document, digest, _ = _income()
    reason = verify_presented(present(document, digest, "0x" + "00" * 65, True))
    assert reason is not None


def test_issue_rejects_an_empty_validity_window() -> None:
    with pytest.raises(CredentialValueError, match="expiry"):
        issue_credential(ISSUER, CredentialKind.INCOME, SUBJECT, {}, issued_at=10, expiry=10)
