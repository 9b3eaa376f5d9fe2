"""`deedchain serve`: node (or network), contracts, institutions, oracles, automation and the API.

State lives under .deedchain/<network>/ (chain state, the institutions' and the API's databases,
the hook secrets and the dev brokers' API keys), so a restart resumes open deals where they were.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.app import create_app
from api.db import ApiStore
from api.settings import Settings
from chain.deploy import deploy_project
from chain.node import free_port
from chain.session import ChainSession
from pipeline.adapters.http import ServiceThread
from pipeline.audit.commands import serve_rpc_file
from pipeline.service import BROKER_ACCOUNTS, Services


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line; messages that are JSON already are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
        }
        message = record.getMessage()
        try:
            parsed = json.loads(message)
            entry.update(parsed if isinstance(parsed, dict) else {"message": parsed})
        except ValueError:
            entry["message"] = message
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_logging(level: int = logging.INFO, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


@dataclass
class Running:
    session: ChainSession
    services: Services
    api: ServiceThread
    store: ApiStore
    folder: Path

    @property
    def url(self) -> str:
        return self.api.url.rstrip("/")

    def stop(self) -> None:
        self.api.stop()
        self.services.stop()
        self.session.close()


def _secrets(folder: Path) -> dict[str, bytes]:
    """Per-institution HMAC secrets for the hooks, made once and kept (owner-only file)."""
    file = folder / "hook-secrets.json"
    if not file.is_file():
        file.write_text(json.dumps({n: secrets.token_hex(32) for n in ("registry", "lender", "bank")}))
        os.chmod(file, 0o600)
    return {k: bytes.fromhex(v) for k, v in json.loads(file.read_text()).items()}


def start(
    network: str | None,
    config: Path | None,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    poll_interval: float | None = None,
    sse_poll_interval: float = 0.5,
) -> Running:
    session = ChainSession.open(network, config)
    try:
        deploy_project(session)
        folder = session.config.root / ".deedchain" / session.network_name
        folder.mkdir(parents=True, exist_ok=True)
        services = Services.build(
            session, folder / "institutions", http_secrets=_secrets(folder), poll_interval=poll_interval
        ).start()
        settings = Settings(
            database_url=f"sqlite:///{folder / 'api.db'}", sse_poll_interval=sse_poll_interval
        )
        app = create_app(services, settings)
        if session.network.embedded:
            _dev_broker_keys(session, app.state.store, folder)  # before the API answers anyone
        thread = ServiceThread(app, port or free_port(), host=host).start()
        return Running(session, services, thread, app.state.store, folder)
    except BaseException:
        session.close()
        raise


def _dev_broker_keys(session: ChainSession, store: ApiStore, folder: Path) -> dict[str, str]:
    """Development only: register the dev brokers and give each an API key, kept in an
    owner-only file (keys are never printed or logged)."""
    file = folder / "api-keys.json"
    keys: dict[str, str] = json.loads(file.read_text()) if file.is_file() else {}
    for name in BROKER_ACCOUNTS:
        address = session.signers[name].address
        broker = store.broker_by_address(address) or store.create_broker(name, address)
        if name not in keys:
            keys[name] = store.issue_key(broker.id)
    file.write_text(json.dumps(keys))
    os.chmod(file, 0o600)
    return keys


def dev_broker_keys(running: Running) -> dict[str, str]:
    return _dev_broker_keys(running.session, running.store, running.folder)


def serve(network: str | None, config: Path | None, *, port: int, host: str) -> int:
    json_logging()
    running = start(network, config, port=port, host=host)
    log = logging.getLogger("deedchain.serve")
    session = running.session
    serving: dict[str, Any] = {"event": "serving", "api": running.url, "docs": running.url + "/docs",
                               "chain_id": session.chain_id}  # fmt: skip
    rpc_file = serve_rpc_file(session.config.root, session.network_name)
    if session.network.embedded:
        serving["broker_keys"] = str(running.folder / "api-keys.json")
        # only the embedded node's URL: a live network's may carry a provider's key
        serving["rpc"] = session.rpc.url
        # `deedchain audit` reads this node instead of starting a second one on a copy of its state
        rpc_file.write_text(json.dumps({"url": session.rpc.url, "chain_id": session.chain_id}))
    else:
        serving["broker_keys"] = "issue keys with the API store (no dev keys on a live network)"
    log.info(json.dumps(serving))
    node = f", node RPC {serving['rpc']}" if "rpc" in serving else ""
    print(f"serving the broker API on {running.url} (docs: {serving['docs']}){node}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.2)
    log.info(json.dumps({"event": "stopping"}))
    rpc_file.unlink(missing_ok=True)
    running.stop()
    log.info(json.dumps({"event": "stopped", "state": str(running.folder)}))
    return 0
