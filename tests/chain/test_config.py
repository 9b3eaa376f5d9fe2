from __future__ import annotations

from pathlib import Path

import pytest

from chain.config import NETWORK_ENV, load_config
from chain.errors import ConfigError

BASE = """\
compiler:
  evm_version: shanghai
  solc:
    version: 0.8.28
networks:
  default: development
  development:
    cmd: anvil
    host: http://127.0.0.1
    chainid: 31337
    cmd_settings:
      port: {port}
  live:
    host: ${{DC_TEST_URL:-http://127.0.0.1:8545}}
    confirmations: ${{DC_TEST_CONF:-3}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "brownie-config.yaml"
    path.write_text(text)
    return path


def test_project_config_loads(config):
    name, network = config.network()
    assert name == "development"
    assert network.embedded and network.cmd == "anvil"
    assert config.compiler.evm_version == "shanghai"
    assert "DepositToken" in [c.name for c in config.deployment.contracts]


def test_env_defaults_and_overrides(tmp_path, monkeypatch):
    path = write(tmp_path, BASE.format(port=0))
    monkeypatch.delenv("DC_TEST_URL", raising=False)
    cfg = load_config(path)
    assert cfg.networks["live"].host == "http://127.0.0.1:8545"
    assert cfg.networks["live"].confirmations == 3
    monkeypatch.setenv("DC_TEST_URL", "https://rpc.example.test:8545")
    monkeypatch.setenv("DC_TEST_CONF", "12")
    cfg = load_config(path)
    assert cfg.networks["live"].host == "https://rpc.example.test:8545"
    assert cfg.networks["live"].confirmations == 12


def test_dotenv_supplies_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("DC_TEST_CONF", raising=False)
    (tmp_path / ".env").write_text("DC_TEST_CONF=7\n")
    path = write(tmp_path, "dotenv: .env\n" + BASE.format(port=0))
    assert load_config(path).networks["live"].confirmations == 7


def test_bad_value_names_file_line_and_key(tmp_path):
    path = write(tmp_path, BASE.format(port="not-a-port"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path}:12: networks.development.cmd_settings.port" in message
    assert "integer" in message


def test_unknown_key_is_rejected(tmp_path):
    path = write(tmp_path, BASE.format(port=0).replace("chainid: 31337", "chain_idd: 31337"))
    with pytest.raises(ConfigError, match=r":10: networks.development.chain_idd: Extra inputs"):
        load_config(path)


def test_missing_variable_without_default(tmp_path, monkeypatch):
    monkeypatch.delenv("DC_NOT_SET", raising=False)
    path = write(tmp_path, BASE.format(port="${DC_NOT_SET}"))
    with pytest.raises(
        ConfigError, match=r":12: networks.development.cmd_settings.port: variable \$\{DC_NOT_SET\}"
    ):
        load_config(path)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "networks: [unclosed\n"))


def test_bad_remapping_and_url(tmp_path):
    text = BASE.format(port=0).replace("version: 0.8.28", "version: 0.8.28\n    remappings: ['nope']")
    with pytest.raises(ConfigError, match=r"compiler\.solc\.remappings: .*prefix=path"):
        load_config(write(tmp_path, text))
    text = BASE.format(port=0).replace("host: http://127.0.0.1\n", "host: localhost:8545\n")
    with pytest.raises(ConfigError, match=r"networks\.development\.host: .*not an http"):
        load_config(write(tmp_path, text))


def test_network_selection(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, BASE.format(port=0)))
    monkeypatch.delenv(NETWORK_ENV, raising=False)
    assert cfg.network()[0] == "development"
    monkeypatch.setenv(NETWORK_ENV, "live")
    assert cfg.network()[0] == "live"
    assert cfg.network("development")[0] == "development"  # the option beats the env
    with pytest.raises(ConfigError, match="unknown network 'mainnet'; known: development, live"):
        cfg.network("mainnet")


def test_default_network_must_exist(tmp_path):
    path = write(tmp_path, BASE.format(port=0).replace("default: development", "default: sepolia"))
    with pytest.raises(ConfigError, match=r":6: networks.default: .*'sepolia' is not a network"):
        load_config(path)


def test_key_source_needs_exactly_one_kind(tmp_path):
    text = BASE.format(port=0) + "    accounts:\n      bank: {keystore: k.json}\n"
    with pytest.raises(ConfigError, match=r"networks\.live\.accounts\.bank: .*needs 'password'"):
        load_config(write(tmp_path, text))


DEPLOYMENT = """\
dev_accounts:
  deployer: 0
  bank: 1
deployment:
  contracts:
    - name: Token
      args: [{account: deployer}]
    - name: Escrow
      args: [{account: deployer}, {contract: Token}]
  links:
    - {contract: Escrow, setter: setToken, getter: token, target: Token}
  roles:
    Token:
      BANK_ROLE: [bank, Escrow]
"""


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("args: [{account: deployer}]", "args: [{account: deployr}]",
         r":22: deployment\.contracts\.0\.args\.0: unknown account 'deployr'; accounts: bank, deployer"),
        ("{contract: Token}]", "{contract: Tokn}]",
         r":24: deployment\.contracts\.1\.args\.1: unknown contract 'Tokn'; contracts: Token, Escrow"),
        ("args: [{account: deployer}]", "args: [{contract: Escrow}]",
         r":22: deployment\.contracts\.0\.args\.0: contract 'Escrow' is not deployed before Token"),
        ("target: Token}", "target: Tokn}",
         r":26: deployment\.links\.0\.target: unknown contract 'Tokn'"),
        ("    Token:\n", "    Tokn:\n",
         r":28: deployment\.roles\.Tokn: unknown contract 'Tokn'"),
        ("[bank, Escrow]", "[bank, Escrw]",
         r":29: deployment\.roles\.Token\.BANK_ROLE\.1: unknown 'Escrw'; contracts: Token, Escrow; accounts"),
    ],
    ids=["account-arg", "contract-arg", "contract-order", "link", "role-contract", "role-holder"],
)  # fmt: skip
def test_unknown_deployment_reference_names_file_line_and_key(tmp_path, old, new, where):
    good = BASE.format(port=0) + DEPLOYMENT
    load_config(write(tmp_path, good))  # the references above all resolve
    path = write(tmp_path, good.replace(old, new))
    with pytest.raises(ConfigError, match=rf"{path}{where}"):
        load_config(path)


def test_live_network_accounts_count_as_known(tmp_path):
    """A role may go to an account only a live network has: which network deploys is not known on load."""
    text = BASE.format(port=0) + "    accounts:\n      multisig: {env: DC_MULTISIG_KEY}\n"
    text += DEPLOYMENT.replace("[bank, Escrow]", "[multisig]")
    assert load_config(write(tmp_path, text)).deployment.roles["Token"]["BANK_ROLE"] == ["multisig"]
    # dev_accounts count only when some network is embedded
    no_dev = text.replace("    cmd: anvil\n", "").replace("    cmd_settings:\n      port: 0\n", "")
    with pytest.raises(ConfigError, match=r"deployment\.contracts\.0\.args\.0: unknown account 'deployer'"):
        load_config(write(tmp_path, no_dev))
