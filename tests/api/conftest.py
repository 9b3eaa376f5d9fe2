"""The broker API over real HTTP: uvicorn on a loopback port, the session's anvil chain, the
reference institutions with their oracles and the automation running (Services)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.db import ApiStore
from api.settings import Settings
from chain.eip712 import sign_typed_data
from chain.node import free_port
from pipeline.adapters.http import ServiceThread
from pipeline.adapters.protocols import CredentialKind
from pipeline.credentials import issue_credential
from pipeline.service import Services
from tests.contracts.conftest import DAY, World, world

__all__ = ["world"]


@pytest.fixture
def services(chain, deployed, tmp_path: Path) -> Iterator[Services]:
    s = Services.build(chain, tmp_path / "institutions", poll_interval=0.02).start()
    yield s
    s.stop()


@dataclass
class Api:
    """One running API: its URL, its store, and a client per broker key."""

    url: str
    store: ApiStore
    services: Services
    world: World
    keys: dict[str, str] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, who: str = "broker") -> httpx.Client:
        if who not in self.clients:
            headers = {"Authorization": f"Bearer {self.keys[who]}"} if who in self.keys else {}
            self.clients[who] = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        return self.clients[who]

    def get(self, path: str, who: str = "broker", **kw: Any) -> httpx.Response:
        return self.client(who).get(path, **kw)

    def post(self, path: str, body: Any = None, who: str = "broker", **kw: Any) -> httpx.Response:
        return self.client(who).post(path, json=body, **kw)

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    # --- acting as the parties ------------------------------------------------------------------
    def terms(self, parcel: str = "eunma", **kw: Any) -> dict[str, Any]:
        w = self.world
        now = w.now()
        interim = kw.pop("interim", 300_000_000)
        loan = kw.pop("loan", 400_000_000)
        price = kw.pop("price", 1_000_000_000)
        deposit = kw.pop("deposit", 100_000_000)
        body = {
            "parcel": parcel,
            "seller": w.addr("seller"),
            "buyer": w.addr("buyer"),
            "price": price,
            "deposit": deposit,
            "interim": interim,
            "balance": price - deposit - interim,
            "deposit_deadline": iso(now + 7 * DAY),
            "interim_deadline": iso(now + 30 * DAY) if interim else None,
            "balance_deadline": iso(now + 60 * DAY),
            "loan_amount": loan,
            "lender": w.addr("lender") if loan else None,
        }
        body.update(kw)
        return body

    def open(self, who: str = "broker", **kw: Any) -> int:
        opened = self.ok(self.post("/deals", self.terms(**kw), who=who), 201)
        return int(opened["deal"]["deal_id"])

    def sign(self, deal: int, party: str, who: str | None = None) -> dict[str, Any]:
        data = self.ok(self.get(f"/deals/{deal}/typed-data/{party}"))
        signature = sign_typed_data(self.world.key(who or party), data)
        return {"party": party, "expiry": data["message"]["expiry"], "signature": signature}

    def open_signed(self, **kw: Any) -> int:
        deal = self.open(**kw)
        for party in ("buyer", "seller"):
            self.ok(self.post(f"/deals/{deal}/signatures", self.sign(deal, party)))
        return deal

    def pay_in(self, deal: int, amount: int, party: str = "buyer", key: str | None = None) -> Any:
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        body = {"party": party, "amount": amount}
        return self.ok(self.post(f"/deals/{deal}/payments", body, headers=headers))

    def permit(self, deal: int, value: int) -> Any:
        deadline = self.world.now() + 90 * DAY
        data = self.ok(
            self.get(f"/deals/{deal}/permit-typed-data", params={"value": value, "deadline": deadline})
        )
        signature = sign_typed_data(self.world.key("buyer"), data)
        body = {"value": value, "deadline": deadline, "signature": signature}
        return self.ok(self.post(f"/deals/{deal}/permit", body))

    def certificates(
        self,
        kinds: tuple[CredentialKind, ...] = (CredentialKind.RESIDENT_REGISTRATION, CredentialKind.INCOME),
    ) -> list[str]:
        """The buyer's e-certificates: issued and anchored by the issuer, submitted through the API."""
        w = self.world
        now = w.now()
        claims: dict[CredentialKind, dict[str, str | int]] = {
            CredentialKind.RESIDENT_REGISTRATION: {"name": "김민준", "address": "서울특별시 강남구"},
            CredentialKind.INCOME: {"annual_income": 96_000_000, "year": 2026},
        }
        hashes = []
        for kind in kinds:
            doc, h, sig = issue_credential(
                w.key("issuer"), kind, w.addr("buyer"), claims[kind], now, now + 90 * DAY
            )
            w.tx("issuer", w.creds, "anchor", h, int(kind), w.addr("buyer"), now + 90 * DAY)
            body = {"document": doc.model_dump(mode="json"), "signature": sig}
            stored = self.ok(self.post("/credentials", body), 201)
            assert stored["hash"] == h and stored["anchored_valid"] is True
            hashes.append(h)
        return hashes

    def deal(self, deal: int, who: str = "broker") -> dict[str, Any]:
        return self.ok(self.get(f"/deals/{deal}", who=who))

    def wait(
        self, deal: int, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.deal(deal)
            if check(view):
                return view
            assert time.monotonic() < deadline, f"deal {deal} stuck: {json.dumps(view)[:800]}"
            time.sleep(0.1)

    def steps(self, deal: int) -> list[str]:
        return [s["step"] for s in self.ok(self.get(f"/deals/{deal}/timeline"))["steps"]]


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def serve(services: Services, folder: Path, world: World, **settings: Any) -> tuple[Api, ServiceThread]:
    config = Settings(
        database_url=f"sqlite:///{folder / f'api-{uuid.uuid4().hex[:6]}.db'}",
        sse_poll_interval=0.05,
        **settings,
    )
    app = create_app(services, config)
    store: ApiStore = app.state.store
    thread = ServiceThread(app, free_port()).start()
    api = Api(thread.url.rstrip("/"), store, services, world)
    for name in ("broker", "broker2"):
        broker = store.create_broker(name, world.addr(name))
        api.keys[name] = store.issue_key(broker.id)
    return api, thread


@pytest.fixture
def api(services: Services, world: World, tmp_path: Path) -> Iterator[Api]:
    api, thread = serve(services, tmp_path, world)
    yield api
    for client in api.clients.values():
        client.close()
    thread.stop()


@pytest.fixture
def make_api(services: Services, world: World, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Another API on the same services, with other settings."""
    made: list[tuple[Api, ServiceThread]] = []

    def make(**settings: Any) -> Api:
        made.append(serve(services, tmp_path, world, **settings))
        return made[-1][0]

    yield make
    for api, thread in made:
        for client in api.clients.values():
            client.close()
        thread.stop()
