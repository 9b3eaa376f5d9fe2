"""The `deedchain` command."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chain.errors import ChainError


def _cmd_compile(args: argparse.Namespace) -> int:
    from chain.compiler import compile_project
    from chain.config import load_config

    started = time.perf_counter()
    result = compile_project(load_config(args.config), force=args.force)
    seconds = time.perf_counter() - started
    how = "cached" if result.cached else "compiled"
    print(f"{how} {len(result.artifacts)} contracts with solc {result.compiler} in {seconds:.2f}s")
    for name, art in sorted(result.artifacts.items()):
        print(f"  {name:24} {len(art.deployed_bytecode) // 2:6} bytes  {art.source}")
    return 0


def _cmd_node(args: argparse.Namespace) -> int:
    import threading

    from chain.config import load_config
    from chain.node import EmbeddedNode

    config = load_config(args.config)
    name, network = config.network(args.network)
    node = EmbeddedNode(config, network, name=name).start()
    try:
        # Handlers, not sigwait: sigwait only takes blocked signals, so SIGTERM killed us
        # outright (the node left running) and SIGINT raised KeyboardInterrupt (exit 130).
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(
            f"{network.cmd} for network {name!r} on {node.url}; state in {node.state}. Ctrl-C stops it.",
            flush=True,
        )
        stop.wait()
    finally:
        node.stop()
        print("stopped; state saved")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from chain.deploy import deploy_project
    from chain.session import ChainSession

    with ChainSession.open(args.network, args.config) as session:
        report = deploy_project(session)
        for name, address in report.addresses.items():
            how = "reused" if name in report.reused else "deployed"
            print(f"{name:24} {address}  ({how})")
        for contract, role, who in report.granted:
            print(f"granted {role} on {contract} to {who}")
        print(f"recorded in {report.file}")
    return 0


def _cmd_accounts(args: argparse.Namespace) -> int:
    from chain.accounts import load_signers
    from chain.config import load_config

    config = load_config(args.config)
    name, _ = config.network(args.network)
    for signer in load_signers(config, name).values():
        print(f"{signer.name:12} {signer.address}")
    return 0


def _cmd_oracles(args: argparse.Namespace) -> int:
    """Run the registry and bank oracles with the reference back offices until stopped."""
    import threading

    from chain.config import load_config
    from chain.rpc import Rpc
    from chain.session import ChainSession
    from pipeline.runtime import OracleThreads, reference_oracles

    config = load_config(args.config)
    name, _network = config.network(args.network)
    if args.rpc:
        session = ChainSession(config, name, Rpc([args.rpc]), deployments_dir=args.deployments)
    else:
        session = ChainSession.open(name, config, deployments_dir=args.deployments)
    issuers = set(args.known_issuer) or {session.signers["issuer"].address}
    oracles = reference_oracles(
        session,
        oracle_db=args.db,
        registry_db=args.registry_db,
        lender_db=args.lender_db,
        bank_db=args.bank_db,
        known_issuers=issuers,
        confirmations=args.confirmations,
        poll_interval=args.poll,
    )
    threads = OracleThreads(oracles).start()
    try:
        stop = threading.Event()  # handlers, not sigwait: see _cmd_node
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(
            f"oracles running on chain {session.chain_id}: " + ", ".join(o.store.oracle for o in oracles),
            flush=True,
        )
        stop.wait()
    finally:
        threads.stop()
        # what it asked the node, for whoever measures (the bench)
        counts = {"rpc_calls": session.rpc.calls, "rpc_requests": session.rpc.requests}
        print(json.dumps({**counts, "rpc_methods": dict(session.rpc.methods)}), flush=True)
        session.close()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from scripts.serve import serve

    return serve(args.network, args.config, port=args.port, host=args.host)


def _cmd_bench(args: argparse.Namespace) -> int:
    from scripts.bench import run_bench

    return run_bench(
        args.deals, args.concurrency, as_json=args.json, network=args.network, block_time=args.block_time
    )


def _cmd_bench_growth(args: argparse.Namespace) -> int:
    from scripts.bench_growth import run_args

    return run_args(args)


def _cmd_benchmarks(args: argparse.Namespace) -> int:
    from scripts.benchmarks import run_args

    return run_args(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from scripts.demo import run_demo

    return run_demo(args.network, args.config, as_json=args.json)


RPC_COMMANDS = ("audit", "oracles")  # the commands that can read a node already running (--rpc)


def _selection(parser: argparse.ArgumentParser, default: object) -> None:
    """--config and --network: on the main parser with default None, on each subcommand's with
    default SUPPRESS, so that a value given before the subcommand is kept."""
    parser.add_argument("--config", type=Path, default=default, help="brownie-config.yaml to use")
    parser.add_argument(
        "--network",
        default=default,
        help="network from brownie-config.yaml (default: $DEEDCHAIN_NETWORK or networks.default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deedchain", description=__doc__)
    _selection(parser, None)
    parser.add_argument(
        "--rpc", default=None, help=f"JSON-RPC URL of a running node ({', '.join(RPC_COMMANDS)})"
    )
    selection = argparse.ArgumentParser(add_help=False)
    _selection(selection, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "compile": (_cmd_compile, "compile contracts/ (cached under build/)"),
        "node": (_cmd_node, "run the embedded node in the foreground"),
        "deploy": (_cmd_deploy, "deploy the contracts and grant roles (idempotent)"),
        "accounts": (_cmd_accounts, "list the network's named accounts (addresses only)"),
        "demo": (_cmd_demo, "a complete sale through the HTTP API on the embedded chain"),
        "bench": (_cmd_bench, "complete deals through the pipeline against the node's ceiling (JSON)"),
        "bench-growth": (_cmd_bench_growth, "gas per deal and API p95 after 10 and 10,000 prior deals"),
        "benchmarks": (_cmd_benchmarks, "run every benchmark and write BENCHMARKS.md"),
        "serve": (_cmd_serve, "node, contracts, institutions, oracles, automation and the broker API"),
        "oracles": (_cmd_oracles, "run the registry and bank oracles with the reference back offices"),
    }
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, parents=[selection])
        p.set_defaults(func=func)
        if name == "compile":
            p.add_argument("--force", action="store_true", help="ignore the cache")
        if name == "oracles":
            state = ".deedchain/institutions"
            p.add_argument(
                "--rpc",
                default=argparse.SUPPRESS,
                help="JSON-RPC URL of a running node (default: the network's)",
            )
            p.add_argument(
                "--deployments", type=Path, default=None, help="folder of deployments/<chain>.json"
            )
            p.add_argument("--db", default=f"sqlite:///{state}/oracles.db", help="oracle database URL")
            p.add_argument("--registry-db", default=f"sqlite:///{state}/registry.db")
            p.add_argument("--lender-db", default=f"sqlite:///{state}/lender.db")
            p.add_argument("--bank-db", default=f"sqlite:///{state}/bank.db")
            p.add_argument("--known-issuer", action="append", default=[], help="e-certificate issuer address")
            p.add_argument("--confirmations", type=int, default=None)
            p.add_argument("--poll", type=float, default=None, help="seconds between polls when idle")
        if name == "bench":
            p.add_argument("--deals", type=int, default=20)
            p.add_argument("--concurrency", type=int, default=4)
            p.add_argument(
                "--block-time", type=float, default=None, metavar="SECONDS",
                help="interval mining, a block every SECONDS (default: automine)",
            )  # fmt: skip
            p.add_argument("--json", action="store_true", help="only the JSON line")
        if name == "bench-growth":  # the same options as `python -m scripts.bench_growth`
            p.add_argument("--prior", default="10,10000", help="prior deal counts, comma-separated")
            p.add_argument("--measured-deals", type=int, default=10, help="deals through the pipeline each")
            p.add_argument("--requests", type=int, default=200, help="API requests per checkpoint")
            p.add_argument("--batch", type=int, default=200, help="seeded transactions per JSON-RPC request")
            p.add_argument("--json", action="store_true", help="only the JSON line")
        if name == "benchmarks":
            p.add_argument("--deals", type=int, default=200, help="deals per pipeline run")
            p.add_argument("--concurrency", default="12,24", help="comma-separated concurrencies (anvil)")
            p.add_argument("--hardhat-concurrency", type=int, default=12, help="the run on hardhat")
            p.add_argument("--block-time", type=float, default=1.0, help="s a block, interval mining (anvil)")
            p.add_argument("--block-time-deals", type=int, default=2000, help="deals of that run")
            p.add_argument("--block-time-concurrency", type=int, default=400, help="concurrency of that run")
            p.add_argument("--prior", default="10,10000", help="growth mode's prior deal counts")
            p.add_argument("--actions", type=int, default=10_000, help="state-machine actions")
            p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
        if name == "serve":
            p.add_argument("--port", type=int, default=8000)
            p.add_argument("--host", default="127.0.0.1")
        if name == "demo":
            p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    from pipeline.audit.commands import add_audit_group

    add_audit_group(sub, [selection])  # audit property|deal|verify: read-only, no keys
    from scripts.bench_invariants import add_command as add_bench_invariants

    add_bench_invariants(sub)  # bench-invariants: the contracts' state machine on its own throwaway anvil
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rpc is not None and args.command not in RPC_COMMANDS:
        parser.error(f"--rpc is only for {' and '.join(RPC_COMMANDS)}")
    try:
        code: int = args.func(args)
    except ChainError as exc:
        print(f"deedchain: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
