"""brownie-config.yaml, in Brownie's format, validated with pydantic.

Strings may use `${VAR}` or `${VAR:-default}`; variables come from the environment, then
from the file named by `dotenv:`. A bad file raises ConfigError naming file:line and key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chain.errors import ConfigError

CONFIG_NAME = "brownie-config.yaml"
NETWORK_ENV = "DEEDCHAIN_NETWORK"
PROJECT_ENV = "DEEDCHAIN_PROJECT"
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerSettings(_Strict):
    enabled: bool = True
    runs: int = Field(200, ge=1, le=2**32 - 1)


class SolcSettings(_Strict):
    version: str | None = Field(None, pattern=r"^\d+\.\d+\.\d+$")
    optimizer: OptimizerSettings = OptimizerSettings()
    via_ir: bool = False
    remappings: list[str] = []

    @field_validator("remappings")
    @classmethod
    def _prefix_eq_path(cls, value: list[str]) -> list[str]:
        for item in value:
            prefix, sep, path = item.partition("=")
            if not sep or not prefix or not path:
                raise ValueError(f"remapping {item!r} must look like 'prefix=path'")
        return value


class CompilerSettings(_Strict):
    # shanghai: the newest fork ganache 7 runs, so one bytecode serves anvil, ganache and L2s.
    evm_version: Literal["paris", "shanghai", "cancun", "prague"] = "shanghai"
    solc: SolcSettings = SolcSettings()


class CmdSettings(_Strict):
    """How the embedded node is started (Brownie's `cmd_settings`)."""

    port: int = Field(0, ge=0, le=65535, description="0 picks a free loopback port")
    accounts: int = Field(10, ge=1, le=1000)
    mnemonic: str = DEFAULT_MNEMONIC
    balance: int = Field(10_000, ge=1, description="ether per dev account")
    state: str | None = Field(None, description="file (anvil) or folder (ganache) kept across restarts")
    block_time: float | None = Field(None, gt=0)
    max_persisted_states: int | None = Field(
        None, ge=0, description="anvil: old block states it writes to disk (0: none; each write costs CPU)"
    )
    gas_limit: int = Field(30_000_000, ge=1_000_000)


class KeySource(_Strict):
    """Where a live network's key comes from: an encrypted keystore, or an env variable."""

    keystore: str | None = None
    password: str | None = None
    env: str | None = Field(None, description="name of a variable holding the hex private key")

    @model_validator(mode="after")
    def _exactly_one(self) -> KeySource:
        if (self.keystore is None) == (self.env is None):
            raise ValueError("give exactly one of 'keystore' (with 'password') or 'env'")
        if self.keystore is not None and self.password is None:
            raise ValueError("a keystore needs 'password' (use ${VAR} to read it from the env)")
        return self


class NetworkSettings(_Strict):
    host: str
    chainid: int | None = Field(None, ge=1)
    cmd: Literal["anvil", "ganache", "hardhat"] | None = None
    cmd_settings: CmdSettings = CmdSettings()
    confirmations: int = Field(0, ge=0, le=1000)
    timeout: float = Field(30.0, gt=0, description="seconds to wait for an RPC answer or a receipt")
    gas_price: int | None = Field(None, ge=0, description="fixed legacy price in wei; 0 for free chains")
    priority_fee: int | None = Field(None, ge=0, description="EIP-1559 tip in wei")
    block_range: int = Field(2000, ge=1, description="largest get_logs window")
    poll_interval: float = Field(0.2, gt=0)
    subscribe: bool = Field(
        True, description="take new heads over the node's WebSocket (same port) where it serves one"
    )
    fallback_hosts: list[str] = []
    accounts: dict[str, KeySource] = {}

    @field_validator("host", "fallback_hosts")
    @classmethod
    def _url(cls, value: Any) -> Any:
        for url in [value] if isinstance(value, str) else value:
            if not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @property
    def embedded(self) -> bool:
        """True when deedchain starts the node itself (a development network)."""
        return self.cmd is not None


class ContractSpec(_Strict):
    """One contract to deploy. An argument `{account: NAME}` or `{contract: NAME}` becomes
    that account's or earlier contract's address; anything else is passed as it is."""

    name: str
    args: list[Any] = []

    @field_validator("args")
    @classmethod
    def _refs(cls, value: list[Any]) -> list[Any]:
        for arg in value:
            if isinstance(arg, dict) and (
                len(arg) != 1
                or next(iter(arg)) not in ("account", "contract")
                or not isinstance(next(iter(arg.values())), str)
            ):
                raise ValueError(f"argument {arg!r} must be {{account: NAME}} or {{contract: NAME}}")
        return value


class LinkSpec(_Strict):
    """A one-time setter call wiring `contract` to `target` after both are deployed."""

    contract: str
    setter: str
    getter: str
    target: str


class DeploymentSettings(_Strict):
    contracts: list[ContractSpec] = []
    links: list[LinkSpec] = []
    # contract name -> role name -> account or contract names that receive the role
    roles: dict[str, dict[str, list[str]]] = {}


class Config(_Strict):
    path: Path
    dotenv: str | None = None
    compiler: CompilerSettings = CompilerSettings()
    default_network: str = "development"
    networks: dict[str, NetworkSettings]
    # development networks: account name -> index in the node's mnemonic
    dev_accounts: dict[str, int] = {}
    deployment: DeploymentSettings = DeploymentSettings()

    @property
    def root(self) -> Path:
        return self.path.parent

    def network(self, name: str | None = None) -> tuple[str, NetworkSettings]:
        """The network named, else $DEEDCHAIN_NETWORK, else `networks.default`."""
        chosen = name or os.environ.get(NETWORK_ENV) or self.default_network
        if chosen not in self.networks:
            known = ", ".join(sorted(self.networks))
            raise ConfigError(f"{self.path}: unknown network {chosen!r}; known: {known}")
        return chosen, self.networks[chosen]


def find_project_root(start: Path | None = None) -> Path:
    """$DEEDCHAIN_PROJECT, else the nearest folder upwards holding brownie-config.yaml."""
    if env := os.environ.get(PROJECT_ENV):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ConfigError(f"no {CONFIG_NAME} in {here} or above; run inside a deedchain project")


def load_config(path: Path | str | None = None) -> Config:
    """Read, expand and validate a config file (default: the project's brownie-config.yaml)."""
    file = Path(path) if path else find_project_root() / CONFIG_NAME
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}:1: the top level must be a mapping")

    env: dict[str, str] = {}
    if isinstance(raw.get("dotenv"), str):
        dotenv_file = file.parent / raw["dotenv"]
        if dotenv_file.is_file():
            env.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    env.update(os.environ)
    data = _expand(raw, env, file, lines, ())

    networks = dict(data.get("networks") or {})
    default = networks.pop("default", "development")
    data["networks"] = networks
    data["default_network"] = default
    data["path"] = file.resolve()
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [(tuple(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError(_describe(problems, file, lines)) from None
    if problems := _unknown_references(config):
        raise ConfigError(_describe(problems, file, lines))
    if config.default_network not in config.networks:
        raise ConfigError(
            f"{file}:{_line(lines, ('networks', 'default'))}: networks.default: "
            f"{config.default_network!r} is not a network in this file"
        )
    return config


def _expand(value: Any, env: dict[str, str], file: Path, lines: dict, path: tuple) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, env, file, lines, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, file, lines, (*path, i)) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        key = ".".join(map(str, path))
        raise ConfigError(
            f"{file}:{_line(lines, path)}: {key}: variable ${{{name}}} is not set "
            f"(set it, or write ${{{name}:-default}})"
        )

    return _VAR.sub(sub, value)


def _key_lines(node: yaml.Node | None, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path to its 1-based line in the file, for error messages."""
    out: dict[tuple, int] = {}
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            out.update(_key_lines(value_node, key))
            out[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_key_lines(item, (*path, i)))
    return out


def _line(lines: dict[tuple, int], path: tuple) -> int:
    path = tuple(str(p) if not isinstance(p, int) else p for p in path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _unknown_references(config: Config) -> list[tuple[tuple, str]]:
    """Names in `deployment` that are no contract or account, found on load (with a line)
    instead of by `deploy` once a node runs."""
    spec = config.deployment
    contracts = [c.name for c in spec.contracts]
    # Which network deploys is only known when a command runs: accept a name that some network
    # can sign with (embedded ones with dev_accounts, the others with their `accounts:`).
    embedded = any(n.embedded for n in config.networks.values())
    accounts = set(config.dev_accounts) if embedded else set()
    for network in config.networks.values():
        if not network.embedded:
            accounts.update(network.accounts)
    known_accounts = f"accounts: {', '.join(sorted(accounts)) or 'none'}"
    known_contracts = f"contracts: {', '.join(contracts) or 'none'}"
    problems: list[tuple[tuple, str]] = []
    for i, item in enumerate(spec.contracts):
        for j, arg in enumerate(item.args):
            if not isinstance(arg, dict):
                continue
            ((kind, name),) = arg.items()
            loc: tuple = ("deployment", "contracts", i, "args", j)
            if kind == "account" and name not in accounts:
                problems.append((loc, f"unknown account {name!r}; {known_accounts}"))
            elif kind == "contract" and name in contracts[i:]:
                problems.append(
                    (loc, f"contract {name!r} is not deployed before {item.name}: list it earlier")
                )
            elif kind == "contract" and name not in contracts:
                problems.append((loc, f"unknown contract {name!r}; {known_contracts}"))
    for i, link in enumerate(spec.links):
        for key in ("contract", "target"):
            if (name := getattr(link, key)) not in contracts:
                problems.append(
                    (("deployment", "links", i, key), f"unknown contract {name!r}; {known_contracts}")
                )
    for contract, roles in spec.roles.items():
        if contract not in contracts:
            problems.append(
                (("deployment", "roles", contract), f"unknown contract {contract!r}; {known_contracts}")
            )
        for role, holders in roles.items():
            for k, holder in enumerate(holders):
                if holder not in contracts and holder not in accounts:
                    loc = ("deployment", "roles", contract, role, k)
                    problems.append((loc, f"unknown {holder!r}; {known_contracts}; {known_accounts}"))
    return problems


def _describe(problems: list[tuple[tuple, str]], file: Path, lines: dict[tuple, int]) -> str:
    rows = []
    for loc, message in problems:
        key = ".".join(str(p) for p in loc) or "(top level)"
        rows.append(f"{file}:{_line(lines, loc)}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(rows)
