"""The EIP-712 acceptance each party signs over the full terms of a deal."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address

from chain.eip712 import typed_data
from pipeline.domain import DealTerms

ACCEPT_TERMS_TYPES: dict[str, list[dict[str, str]]] = {
    "AcceptTerms": [
        {"name": "dealId", "type": "uint256"},
        {"name": "parcelId", "type": "bytes32"},
        {"name": "seller", "type": "address"},
        {"name": "buyer", "type": "address"},
        {"name": "price", "type": "uint256"},
        {"name": "deposit", "type": "uint256"},
        {"name": "interim", "type": "uint256"},
        {"name": "balance", "type": "uint256"},
        {"name": "depositDeadline", "type": "uint64"},
        {"name": "interimDeadline", "type": "uint64"},
        {"name": "balanceDeadline", "type": "uint64"},
        {"name": "loanAmount", "type": "uint256"},
        {"name": "lender", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "expiry", "type": "uint64"},
    ]
}


def accept_terms_type_string() -> str:
    fields = ",".join(f"{f['type']} {f['name']}" for f in ACCEPT_TERMS_TYPES["AcceptTerms"])
    return f"AcceptTerms({fields})"


def accept_terms_typed_data(
    domain: dict[str, Any], deal_id: int, terms: DealTerms, nonce: int, expiry: int
) -> dict[str, Any]:
    """What a party signs (eth_signTypedData_v4) to accept every term of deal `deal_id`."""
    message = {"dealId": deal_id, **terms.to_abi(), "nonce": nonce, "expiry": expiry}
    for key in ("seller", "buyer", "lender"):
        message[key] = to_checksum_address(message[key])
    return typed_data(domain, "AcceptTerms", ACCEPT_TERMS_TYPES, message)
