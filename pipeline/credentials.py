"""E-certificates (전자증명서): canonical form, hash, issuer signature and verification.

An issuer (a government office, an employer's tax office) signs keccak256 of the document's
canonical JSON with EIP-191 personal_sign over the 32-byte hash; the same hash is anchored on
chain in CredentialRegistry. A verifier recomputes the hash from the document it was shown and
recovers the signer, so a changed claim or a different signer is detected without the issuer.

Canonical JSON: keys sorted, compact separators (",", ":"), UTF-8 (no \\u escapes), integers
as JSON integers, addresses in EIP-55 checksum form (so the case of a hex address never
changes the hash).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from pipeline.adapters.protocols import CredentialDocument, CredentialKind, PresentedCredential
from pipeline.errors import PipelineValueError


class CredentialValueError(PipelineValueError):
    """A credential could not be issued as asked (bad validity window, bad hash or signature)."""


def canonical_json(document: CredentialDocument) -> bytes:
    """The exact bytes an issuer hashes: sorted keys, compact, UTF-8, checksummed addresses."""
    data: dict[str, Any] = document.model_dump(mode="json")
    data["kind"] = int(document.kind)
    data["subject"] = to_checksum_address(document.subject)
    data["issuer"] = to_checksum_address(document.issuer)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def credential_hash(document: CredentialDocument) -> str:
    """0x-hex keccak256 of the canonical JSON: what the issuer signs and anchors on chain."""
    return "0x" + keccak(canonical_json(document)).hex()


def _hash_bytes(hash_hex: str) -> bytes:
    raw = hash_hex[2:] if hash_hex.startswith(("0x", "0X")) else hash_hex
    try:
        digest = bytes.fromhex(raw)
    except ValueError:
        raise CredentialValueError(f"credential hash {hash_hex!r} is not hex") from None
    if len(digest) != 32:
        raise CredentialValueError(f"credential hash {hash_hex!r} is not 32 bytes")
    return digest


def sign_hash(issuer: LocalAccount, hash_hex: str) -> str:
    """EIP-191 personal_sign of the 32-byte hash, as 0x-hex (65 bytes: r, s, v)."""
    signed = issuer.sign_message(encode_defunct(primitive=_hash_bytes(hash_hex)))
    return "0x" + bytes(signed.signature).hex()


def issue_credential(
    issuer: LocalAccount,
    kind: CredentialKind,
    subject: str,
    claims: Mapping[str, str | int],
    issued_at: int,
    expiry: int,
) -> tuple[CredentialDocument, str, str]:
    """Issue a certificate: returns (document, hash, issuer's signature over the hash)."""
    if expiry <= issued_at:
        raise CredentialValueError(f"credential expiry {expiry} must be after its issue time {issued_at}")
    document = CredentialDocument(
        kind=CredentialKind(kind),
        subject=to_checksum_address(subject),
        issuer=to_checksum_address(issuer.address),
        issued_at=issued_at,
        expiry=expiry,
        claims=dict(claims),
    )
    digest = credential_hash(document)
    return document, digest, sign_hash(issuer, digest)


def present(
    document: CredentialDocument, hash_hex: str, signature: str, anchored_valid: bool
) -> PresentedCredential:
    """The credential as shown to a bank (the oracle fills `anchored_valid` from the chain)."""
    return PresentedCredential(
        hash=hash_hex, document=document, signature=signature, anchored_valid=anchored_valid
    )


def recover_issuer(hash_hex: str, signature: str) -> str:
    """The checksummed address whose personal_sign over the 32-byte hash is `signature`."""
    message = encode_defunct(primitive=_hash_bytes(hash_hex))
    try:
        return str(Account.recover_message(message, signature=signature))
    except Exception as exc:  # eth_keys raises several unrelated types
        raise CredentialValueError(f"signature cannot be recovered: {exc}") from exc


def verify_presented(presented: PresentedCredential) -> str | None:
    """None when the hash is the document's and the issuer signed it; else a short reason.

    Only integrity and authorship: whether the issuer is trusted, the certificate unexpired
    and anchored on chain is the relying party's decision.
    """
    expected = credential_hash(presented.document)
    if expected != presented.hash.lower():
        return f"hash {presented.hash} does not match the document (expected {expected})"
    try:
        signer = recover_issuer(expected, presented.signature)
    except CredentialValueError as exc:
        return str(exc)
    issuer = to_checksum_address(presented.document.issuer)
    if signer != issuer:
        return f"signed by {signer}, not by the issuer {issuer}"
    return None
