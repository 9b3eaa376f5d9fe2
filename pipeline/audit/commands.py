"""`deedchain audit property|deal|verify`, shared by scripts/cli.py and scripts/audit_*.py.

Read-only: no key is loaded and nothing is sent. Which node is read: `--rpc URL`, else on an
embedded network the node a running `deedchain serve` recorded in .deedchain/<network>/rpc.json,
else the network's configured host, else an embedded node started on a copy of the persisted
state (see pipeline/audit/source.py). Exit codes: 0 ok, 1 mismatches (verify), 2 usage/lookup errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from chain.config import Config, load_config
from chain.node import rpc_answers
from pipeline.audit.replay import Lookups, Replayer
from pipeline.audit.report import (
    deal_report,
    deal_text,
    property_report,
    property_text,
    render_html,
    verify_text,
    write_csv,
)
from pipeline.audit.source import AuditChain
from pipeline.audit.verify import RegistryRecords, verify


def add_common(p: argparse.ArgumentParser, *, standalone: bool = False) -> None:
    """The audit's options. `deedchain` gives every subcommand --config and --network and takes
    --rpc before the subcommand too: there --rpc defaults to SUPPRESS, keeping a value given before."""
    if standalone:
        p.add_argument("--config", type=Path, default=None, help="brownie-config.yaml to use")
        p.add_argument("--network", default=None, help="network from brownie-config.yaml")
    p.add_argument(
        "--rpc",
        default=None if standalone else argparse.SUPPRESS,
        help="JSON-RPC URL of a running node (default: the one `deedchain serve` recorded, if it runs)",
    )
    p.add_argument("--deployments", type=Path, default=None, help="folder of deployments/<chain>.json")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def add_property(p: argparse.ArgumentParser) -> None:
    p.add_argument("parcel", help="parcel number (지번), parcel id (0x...) or a sample parcel's name")
    p.add_argument("--csv", type=Path, metavar="DIR", help="write one CSV per table into DIR")
    p.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML file")


def add_deal(p: argparse.ArgumentParser) -> None:
    p.add_argument("deal", type=int, help="deal id")
    p.add_argument("--csv", type=Path, metavar="DIR", help="write one CSV per table into DIR")
    p.add_argument("--html", type=Path, metavar="FILE", help="write one self-contained HTML file")


def add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry-db", help="database URL of the registry's own records (ReferenceRegistry)")
    p.add_argument("--registry-url", help="the registry's HTTP hook URL (with --registry-secret)")
    p.add_argument("--registry-secret", help="the registry hook's shared secret")
    p.add_argument("--no-registry", action="store_true", help="compare with the chain's views only")
    p.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="SNAPSHOT",
        help="an archived `audit property|deal --json` export to check (repeatable)",
    )


def serve_rpc_file(root: Path, network: str) -> Path:
    """Where `deedchain serve` records its embedded node's URL while it runs."""
    return root / ".deedchain" / network / "rpc.json"


def served_rpc(config: Config, network: str | None) -> str | None:
    """The node of a `deedchain serve` running on this embedded network, so that the audit reads
    it instead of starting a second node on a copy of its state."""
    name, settings = config.network(network)
    if not settings.embedded:
        return None
    try:
        served = json.loads(serve_rpc_file(config.root, name).read_text())
        url, chain_id = served["url"], served["chain_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # a serve that was killed leaves its file behind: the port must still answer, with that chain
    return url if isinstance(url, str) and rpc_answers(url) == chain_id else None


def _open(args: argparse.Namespace) -> AuditChain:
    config = load_config(args.config)
    rpc_url = args.rpc or served_rpc(config, args.network)
    return AuditChain.connect(args.network, config, rpc_url=rpc_url, deployments_dir=args.deployments)


def _parcel_number(parcel: str) -> str:
    """A sample parcel's name (the broker API takes them too) -> its number; else as given."""
    from pipeline.adapters.sample_data import SAMPLE_PARCELS  # here: it loads the reference back offices

    return next((s.number for s in SAMPLE_PARCELS if s.label == parcel), parcel)


def _emit(args: argparse.Namespace, report: dict[str, Any], text: str) -> None:
    if args.csv:
        for path in write_csv(report, args.csv):
            print(f"wrote {path}", file=sys.stderr)
    if args.html:
        args.html.write_text(render_html(report), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    print(json.dumps(report, ensure_ascii=False, default=str) if args.json else text)


def run_property(args: argparse.Namespace) -> int:
    with _open(args) as chain:
        state = Replayer().run(chain)
    try:
        report = property_report(state, _parcel_number(args.parcel))
    except LookupError as exc:
        print(f"deedchain audit: {exc}", file=sys.stderr)
        return 2
    _emit(args, report, property_text(report))
    return 0


def run_deal(args: argparse.Namespace) -> int:
    with _open(args) as chain:
        state = Replayer().run(chain)
        try:
            report = deal_report(state, args.deal, Lookups(chain.rpc))
        except LookupError as exc:
            print(f"deedchain audit: {exc}", file=sys.stderr)
            return 2
    if state.parcel(report["parcel_id"]) is not None:
        report["title"] = property_report(state, report["parcel_id"])
    _emit(args, report, deal_text(report))
    return 0


def _registry(args: argparse.Namespace, network: str, root: Path | None) -> RegistryRecords | None:
    if args.no_registry:
        return None
    if args.registry_url:
        from pipeline.adapters.http import HookClient, HttpRegistry

        if not args.registry_secret:
            raise SystemExit("deedchain audit: --registry-url needs --registry-secret")
        return HttpRegistry(HookClient(args.registry_url, args.registry_secret.encode()))
    url = args.registry_db
    if url is None and root is not None:
        default = root / ".deedchain" / network / "institutions" / "registry.db"  # `deedchain serve`
        if default.is_file():
            url = f"sqlite:///{default}"
    if url is None:
        print(
            "deedchain audit: no registry database given (--registry-db); compared with the chain only",
            file=sys.stderr,
        )
        return None
    from pipeline.adapters.reference_registry import ReferenceRegistry

    return ReferenceRegistry(url)


def run_verify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with _open(args) as chain:
        state = Replayer().run(chain)
        replayed = time.perf_counter() - started
        root = None
        try:
            from chain.config import load_config

            root = load_config(args.config).root
        except Exception:  # noqa: BLE001 - the default registry location is a convenience only
            root = None
        registry = _registry(args, chain.network, root)
        result = verify(state, chain.contracts, chain.rpc, registry=registry, snapshots=args.against)
        close = getattr(registry, "close", None)
        if callable(close):
            close()
    out = result.to_dict()
    out["seconds"] = {"replay": round(replayed, 3), "total": round(time.perf_counter() - started, 3)}
    print(json.dumps(out, ensure_ascii=False, default=str) if args.json else verify_text(out))
    return 0 if result.consistent else 1


COMMANDS = {
    "property": (add_property, run_property, "rebuild a parcel's register (표제부/갑구/을구) from events"),
    "deal": (add_deal, run_deal, "every step of a deal: who, role, amounts, gas"),
    "verify": (add_verify, run_verify, "replay everything; compare with views, the registry, snapshots"),
}


def add_audit_group(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `audit property|deal|verify` on the main parser's subparsers; `parents` holds
    the options every subcommand takes."""
    audit = sub.add_parser("audit", help="the auditors' explorer (read-only, no keys)", parents=parents)
    group = audit.add_subparsers(dest="audit_command", required=True)
    for name, (add, run, help_text) in COMMANDS.items():
        p = group.add_parser(name, help=help_text, parents=parents)
        add_common(p)
        add(p)
        p.set_defaults(func=run)


def script_main(command: str, argv: list[str] | None = None) -> int:
    """Entry point of the thin scripts/audit_*.py."""
    add, run, help_text = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"audit_{command}.py", description=help_text)
    add_common(parser, standalone=True)
    add(parser)
    args = parser.parse_args(argv)
    from chain.errors import ChainError

    try:
        return run(args)
    except ChainError as exc:
        print(f"deedchain audit: {exc}", file=sys.stderr)
        return 2
