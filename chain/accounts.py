"""Signing keys: the one module that loads them.

Development networks (an embedded node) derive keys from the node's mnemonic. Any other
network reads an encrypted keystore (password from config/env) or a hex key from an
environment variable. Keys are never logged: Signer's repr shows only the address.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from chain.config import Config, NetworkSettings
from chain.errors import AccountError

Account.enable_unaudited_hdwallet_features()


@dataclass(frozen=True)
class Signer:
    name: str
    account: LocalAccount = field(repr=False)

    @property
    def address(self) -> str:
        return str(self.account.address)


def dev_account(mnemonic: str, index: int) -> LocalAccount:
    return Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")


def load_signers(config: Config, network_name: str) -> dict[str, Signer]:
    """Every named account of the network: dev accounts on embedded nodes, else `accounts:`."""
    network = config.networks[network_name]
    if network.embedded:
        return _dev_signers(config, network)
    return {name: Signer(name, _load_key(config, name, src)) for name, src in network.accounts.items()}


def _dev_signers(config: Config, network: NetworkSettings) -> dict[str, Signer]:
    limit = network.cmd_settings.accounts
    signers = {}
    for name, index in config.dev_accounts.items():
        if not 0 <= index < limit:
            raise AccountError(f"dev_accounts.{name}: index {index} outside the node's {limit} accounts")
        signers[name] = Signer(name, dev_account(network.cmd_settings.mnemonic, index))
    return signers


def _load_key(config: Config, name: str, source: object) -> LocalAccount:
    from chain.config import KeySource

    assert isinstance(source, KeySource)
    if source.env is not None:
        value = os.environ.get(source.env)
        if not value:
            raise AccountError(f"account {name!r}: environment variable {source.env} is not set")
        try:
            return Account.from_key(value)
        except (ValueError, TypeError):
            raise AccountError(f"account {name!r}: {source.env} is not a 32-byte hex key") from None
    path = Path(source.keystore or "")
    if not path.is_absolute():
        path = config.root / path
    try:
        keyfile = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AccountError(f"account {name!r}: cannot read keystore {path}: {exc}") from None
    try:
        return Account.from_key(Account.decrypt(keyfile, source.password or ""))
    except ValueError:
        raise AccountError(f"account {name!r}: wrong password for keystore {path}") from None
