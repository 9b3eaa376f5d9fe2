from __future__ import annotations

import os

import pytest

from chain.deploy import deploy_project
from chain.errors import NodeError
from chain.node import EmbeddedNode, read_lock, rpc_answers
from chain.session import ChainSession
from tests.conftest import NETWORK_FOR


@pytest.mark.parametrize("kind", ["anvil", "ganache"])
def test_restart_keeps_state(config, tmp_path, kind, node_kind):
    if node_kind == "docker-ganache":
        pytest.skip("the docker run tests the container, not the embedded node")
    network = NETWORK_FOR[kind]
    state = tmp_path / ("state.json" if kind == "anvil" else "db")
    with ChainSession.open(network, config, state=state, deployments_dir=tmp_path) as first:
        token_address = deploy_project(first).addresses["DepositToken"]
        token = first.contract("DepositToken", token_address)
        buyer = first.signers["buyer"].address
        token.transact(first.sender("bank"), "mint", buyer, 123_456)
        height = int(first.rpc.call("eth_blockNumber"), 16)
        first_url = first.node.url
    assert rpc_answers(first_url, timeout=0.3) is None  # really stopped

    with ChainSession.open(network, config, state=state, deployments_dir=tmp_path) as second:
        assert int(second.rpc.call("eth_blockNumber"), 16) >= height
        token = second.contract("DepositToken", token_address)
        assert token.call("balanceOf", buyer) == 123_456
        report = deploy_project(second)
        assert (
            report.reused == ["DepositToken", "LandRegister", "CredentialRegistry", "DealEscrow", "LoanBook"]
            and report.deployed == []
        )
        # the sender picks up the nonce from the node after a restart
        token.transact(second.sender("bank"), "mint", buyer, 1)
        assert token.call("balanceOf", buyer) == 123_457


def test_a_state_file_cut_short_is_replaced_by_its_last_sound_copy(config, tmp_path, anvil_only):
    """anvil rewrites its state file in place: a kill mid-dump leaves it cut short, and anvil
    refuses to start on it. The start before kept a copy of the last sound file; it takes its
    place, the damaged file is kept beside it, and the node starts with the older chain."""
    state = tmp_path / "state.json"
    with ChainSession.open("development", config, state=state, deployments_dir=tmp_path) as first:
        deploy_project(first)
        deployed = int(first.rpc.call("eth_blockNumber"), 16)
    with ChainSession.open("development", config, state=state, deployments_dir=tmp_path) as second:
        assert second.node is not None and second.node.state_backup is not None
        assert second.node.state_backup.read_bytes() == state.read_bytes()  # the sound copy
        first_block = second.rpc.call("eth_getBlockByNumber", ["0x1", False])["hash"]
        second.rpc.call("evm_mine")
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    with ChainSession.open("development", config, state=state, deployments_dir=tmp_path) as third:
        assert int(third.rpc.call("eth_blockNumber"), 16) == deployed  # the backup's chain
        assert third.rpc.call("eth_getBlockByNumber", ["0x1", False])["hash"] == first_block
    assert state.with_name("state.json.damaged").read_bytes() == whole[: len(whole) // 2]
    state.write_bytes(b"{")
    state.with_name("state.json.good").unlink()
    with pytest.raises(NodeError, match="not a whole state file"):
        EmbeddedNode(config, config.networks["development"], name="development", state=state).start()


@pytest.mark.parametrize("kind", ["anvil", "ganache"])
def test_one_state_one_node(config, tmp_path, kind, node_kind):
    """A second node on a state in use is refused, naming who holds it; a throwaway node needs
    no lock, and the state is free again once its node stopped."""
    if node_kind == "docker-ganache":
        pytest.skip("the docker run tests the container, not the embedded node")
    name = NETWORK_FOR[kind]
    network = config.networks[name]
    state = tmp_path / ("state.json" if kind == "anvil" else "db")
    with EmbeddedNode(config, network, name=name, state=state) as first:
        assert first.process is not None and first.lock_file is not None
        assert read_lock(first.lock_file) == {"owner": os.getpid(), "node": first.process.pid}
        second = EmbeddedNode(config, network, name=name, state=state)
        with pytest.raises(
            NodeError, match=f"in use by deedchain PID {os.getpid()} .{kind} PID {first.process.pid}."
        ):
            second.start(timeout=10)
        assert second.process is None and rpc_answers(first.url) is not None
        with EmbeddedNode(config, network, persist=False) as throwaway:
            assert throwaway.lock_file is None
    with EmbeddedNode(config, network, name=name, state=state) as again:
        assert rpc_answers(again.url) is not None


def test_two_nodes_get_distinct_free_ports(config):
    network = config.networks["development"]
    with (
        EmbeddedNode(config, network, persist=False) as a,
        EmbeddedNode(config, network, persist=False) as b,
    ):
        assert a.port != b.port
        assert rpc_answers(a.url) == rpc_answers(b.url) == 31337


def test_a_port_in_use_is_a_clear_error(config):
    network = config.networks["development"]
    with EmbeddedNode(config, network, persist=False) as a:
        clash = EmbeddedNode(config, network, persist=False, port=a.port)
        with pytest.raises(NodeError, match="is in use"):
            clash.start(timeout=10)


def test_network_without_cmd_is_not_embedded(config):
    with pytest.raises(NodeError, match="not an embedded node"):
        EmbeddedNode(config, config.networks["live"], name="live")
