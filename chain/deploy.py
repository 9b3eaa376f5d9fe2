"""Deploy the configured contracts, grant roles, record deployments/<chain_id>.json.

Idempotent: a contract already recorded for this chain is reused when the code at its
address equals the artifact's runtime code (immutables masked) and its arguments match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from chain.compiler import Artifact
from chain.errors import DeploymentError

if TYPE_CHECKING:
    from chain.session import ChainSession

ADMIN_ROLE = "DEFAULT_ADMIN_ROLE"


def role_id(role: str) -> bytes:
    return b"\x00" * 32 if role == ADMIN_ROLE else keccak(text=role)


@dataclass(frozen=True)
class DeployReport:
    file: Path
    deployed: list[str]
    reused: list[str]
    granted: list[tuple[str, str, str]]  # contract, role, address
    addresses: dict[str, str]


def masked_runtime(code_hex: str, artifact: Artifact) -> bytes:
    """Runtime code with constructor-set immutables zeroed, so two deployments compare equal."""
    code = bytearray(bytes.fromhex(code_hex.removeprefix("0x")))
    for refs in artifact.immutable_references.values():
        for ref in refs:
            start, length = ref["start"], ref["length"]
            code[start : start + length] = b"\x00" * length
    return bytes(code)


def deploy_project(session: ChainSession, deployer: str = "deployer") -> DeployReport:
    config = session.config
    spec = config.deployment
    file = session.deployments_dir / f"{session.chain_id}.json"
    record: dict[str, Any] = {
        "chain_id": session.chain_id,
        "network": session.network_name,
        "contracts": {},
    }
    if file.is_file():
        record = json.loads(file.read_text())
    sender = session.sender(deployer)
    addresses: dict[str, str] = {}
    deployed: list[str] = []
    reused: list[str] = []

    def resolve(arg: Any, where: str) -> Any:
        if isinstance(arg, dict):
            ((kind, name),) = arg.items()
            if kind == "account":
                if name not in session.signers:
                    raise DeploymentError(f"{where}: unknown account {name!r}")
                return session.signers[name].address
            if name not in addresses:
                raise DeploymentError(f"{where}: contract {name!r} must be deployed before")
            return addresses[name]
        return arg

    for item in spec.contracts:
        artifact = session.artifacts.get(item.name)
        if artifact is None:
            raise DeploymentError(f"no compiled contract {item.name!r} (is it under contracts/?)")
        args = [resolve(a, f"deployment.contracts.{item.name}") for a in item.args]
        old = record["contracts"].get(item.name)
        if old and old["artifact_hash"] == artifact.artifact_hash and old["args"] == args:
            code = session.rpc.call("eth_getCode", [old["address"], "latest"])
            if code not in (None, "0x") and masked_runtime(code, artifact) == masked_runtime(
                artifact.deployed_bytecode, artifact
            ):
                addresses[item.name] = old["address"]
                reused.append(item.name)
                continue
        ctor: dict[str, Any] = next((x for x in artifact.abi if x["type"] == "constructor"), {"inputs": []})
        types = [p["type"] for p in ctor["inputs"]]
        if len(types) != len(args):
            raise DeploymentError(
                f"{item.name} takes {len(types)} constructor arguments, config gives {len(args)}"
            )
        data = "0x" + artifact.bytecode + encode(types, args).hex()
        receipt = sender.transact(None, data)
        if not receipt.contract_address:
            raise DeploymentError(f"{item.name}: receipt {receipt.tx_hash} has no contract address")
        address = to_checksum_address(receipt.contract_address)
        addresses[item.name] = address
        record["contracts"][item.name] = {
            "address": address,
            "block": receipt.block_number,
            "tx_hash": receipt.tx_hash,
            "artifact_hash": artifact.artifact_hash,
            "args": args,
        }
        deployed.append(item.name)

    for link in spec.links:
        for name in (link.contract, link.target):
            if name not in addresses:
                raise DeploymentError(f"deployment.links: {name!r} is not in deployment.contracts")
        contract = session.contract(link.contract, addresses[link.contract])
        if str(contract.call(link.getter)).lower() != addresses[link.target].lower():
            contract.transact(sender, link.setter, addresses[link.target])

    granted: list[tuple[str, str, str]] = []
    for contract_name, roles in spec.roles.items():
        if contract_name not in addresses:
            raise DeploymentError(f"deployment.roles.{contract_name}: not in deployment.contracts")
        contract = session.contract(contract_name, addresses[contract_name])
        for role, holders in roles.items():
            for holder in holders:
                if holder in addresses:
                    who = addresses[holder]
                elif holder in session.signers:
                    who = session.signers[holder].address
                else:
                    raise DeploymentError(f"deployment.roles.{contract_name}.{role}: unknown {holder!r}")
                if not contract.call("hasRole", role_id(role), who):
                    contract.transact(sender, "grantRole", role_id(role), who)
                    granted.append((contract_name, role, who))

    record["contracts"] = {k: v for k, v in record["contracts"].items() if k in addresses}
    record["roles"] = {
        c: {r: [addresses.get(h) or session.signers[h].address for h in hs] for r, hs in roles.items()}
        for c, roles in spec.roles.items()
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(record, indent=1))
    return DeployReport(file, deployed, reused, granted, addresses)


def load_deployment(folder: Path, chain_id: int) -> dict[str, Any]:
    file = folder / f"{chain_id}.json"
    if not file.is_file():
        raise DeploymentError(f"nothing deployed on chain {chain_id}: run `deedchain deploy`")
    data: dict[str, Any] = json.loads(file.read_text())
    return data
