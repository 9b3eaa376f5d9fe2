"""The `deedchain` command line: where the options that pick a network and a node may go."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.cli import build_parser, main

SELECTION = ["--network", "live", "--config", "other.yaml", "--rpc", "http://127.0.0.1:1"]


@pytest.mark.parametrize(
    "argv",
    [
        [*SELECTION, "audit", "deal", "7"],
        ["audit", "deal", "7", *SELECTION],
        ["--network", "live", "audit", "--config", "other.yaml", "deal", "7", "--rpc", "http://127.0.0.1:1"],
    ],
    ids=["before", "after", "mixed"],
)
def test_network_config_and_rpc_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert (args.network, args.config, args.rpc, args.deal) == (
        "live",
        Path("other.yaml"),
        "http://127.0.0.1:1",
        7,
    )


def test_rpc_where_a_running_node_is_read_and_nowhere_else(capsys):
    parser = build_parser()
    assert parser.parse_args(["--rpc", "http://127.0.0.1:1", "oracles"]).rpc == "http://127.0.0.1:1"
    assert parser.parse_args(["oracles", "--rpc", "http://127.0.0.1:1"]).rpc == "http://127.0.0.1:1"
    assert parser.parse_args(["deploy", "--network", "live"]).network == "live"
    unset = parser.parse_args(["audit", "verify"])
    assert (unset.network, unset.config, unset.rpc) == (None, None, None)
    for argv in (["--rpc", "http://127.0.0.1:1", "deploy"], ["deploy", "--rpc", "http://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
    assert "--rpc is only for audit and oracles" in capsys.readouterr().err
