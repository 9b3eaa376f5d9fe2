"""EIP-712 typed data built from the contract's own domain (ERC-5267), never retyped."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from chain.contract import Contract

# ERC-5267 `fields` bits, in the order EIP-712 lists the domain fields.
_DOMAIN_FIELDS = [
    (0x01, "name", "string"),
    (0x02, "version", "string"),
    (0x04, "chainId", "uint256"),
    (0x08, "verifyingContract", "address"),
    (0x10, "salt", "bytes32"),
]


def read_domain(contract: Contract) -> dict[str, Any]:
    """The EIP-712 domain exactly as the contract reports it through eip712Domain()."""
    fields, name, version, chain_id, verifying, salt, _extensions = contract.call("eip712Domain")
    values = {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": verifying,
        "salt": salt,
    }
    bits = int(fields, 16) if isinstance(fields, str) else int(fields)
    return {key: values[key] for bit, key, _t in _DOMAIN_FIELDS if bits & bit}


def typed_data(
    domain: dict[str, Any],
    primary_type: str,
    types: dict[str, list[dict[str, str]]],
    message: dict[str, Any],
) -> dict[str, Any]:
    """The JSON object a wallet's eth_signTypedData_v4 takes."""
    domain_type = [{"name": key, "type": t} for _b, key, t in _DOMAIN_FIELDS if key in domain]
    return {
        "types": {"EIP712Domain": domain_type, **types},
        "primaryType": primary_type,
        "domain": domain,
        "message": message,
    }


def sign_typed_data(account: LocalAccount, data: dict[str, Any]) -> str:
    """A 65-byte signature (0x-hex) over the typed data."""
    signed = account.sign_message(encode_typed_data(full_message=data))
    return "0x" + bytes(signed.signature).hex()


def recover_typed_data(data: dict[str, Any], signature: str) -> str:
    return str(Account.recover_message(encode_typed_data(full_message=data), signature=signature))
