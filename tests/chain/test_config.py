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
