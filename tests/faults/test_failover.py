"""(e) Two RPC endpoints: the first dies in the middle of a run of several deals (and of a
transaction: mined, its answer lost), with the oracles, the automation and a broker all using
it; everything carries on through the second, and the deal being opened is opened once."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from chain.rpc import Rpc
from chain.session import ChainSession
from pipeline.service import Services
from tests.faults.conftest import Campaign

DEALS = 4


class Relay:
    """A TCP relay in front of the node (a load balancer, say), counting the HTTP requests it
    passes. stop() kills it with every connection through it; die_relaying(marker) kills it
    once the node has answered a request containing every marker, before that answer is passed on."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self._open: list[socket.socket] = []
        self._pipes: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._markers: tuple[bytes, ...] = ()
        self.dead = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="relay")
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                if self._stopped.is_set():
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            dying = threading.Event()  # set when this connection carried the fatal request
            for src, dst, ask in ((client, upstream, True), (upstream, client, False)):
                pipe = threading.Thread(target=self._pipe, args=(src, dst, ask, dying), daemon=True)
                pipe.start()
                self._pipes.append(pipe)

    def die_relaying(self, *markers: bytes) -> None:
        self._markers = markers

    def _pipe(self, src: socket.socket, dst: socket.socket, ask: bool, dying: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if ask:  # a client sends one request, then waits for its answer
                    with self._lock:
                        self.requests += data.count(b"POST ")
                        if self._markers and all(m in data for m in self._markers):
                            self._markers = ()
                            dying.set()
                elif dying.is_set():  # the node did it; the client never hears so
                    threading.Thread(target=self.stop, daemon=True).start()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.dead.is_set():
            return
        self._stopped.set()
        self.listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for pipe in self._pipes:  # so that nothing is counted after stop()
            if pipe is not threading.current_thread():
                pipe.join(timeout=5)
        self.dead.set()


def test_first_endpoint_dies_mid_run_and_the_pipeline_carries_on_through_the_second(
    chain: ChainSession, deployed: dict[str, str], tmp_path: Path
) -> None:
    first, second = Relay(chain.rpc.url), Relay(chain.rpc.url)
    # the session a network with `fallback_hosts: [second]` gets (see ChainSession.open)
    rpc = Rpc([first.url, second.url], timeout=chain.network.timeout)
    session = ChainSession(
        chain.config,
        chain.network_name,
        rpc,
        artifacts=chain.artifacts,
        deployments_dir=chain.deployments_dir,
    )
    services = Services.build(session, tmp_path, poll_interval=0.02).start()
    campaign = Campaign(session, services)
    open_deal = services.brokerage.escrow.abi.function("openSignedDeal", 5).selector.hex()
    try:
        for i in range(DEALS):
            if i == DEALS // 2:
                # half the deals in flight: the first endpoint dies under them, in the middle of
                # the broker's next transaction (mined, but the answer is lost)
                in_flight = campaign.states()
                assert second.requests == 0  # nothing went to the fallback while the first was up
                first.die_relaying(b"eth_sendRawTransaction", open_deal.encode())
            campaign.open()
            if i == DEALS // 2:
                assert first.dead.is_set()
                through_first = first.requests
        campaign.wait_settled(timeout=60)
        campaign.wait_books()
        assert all(services.running().values())  # no loop died on the failover
        campaign.assert_each_effect_once()
        # the transaction whose answer was lost was not sent twice: one deal per parcel opened
        opened = services.brokerage.deals_of(campaign.bench.broker, limit=100)["items"]
        assert sorted(d["deal_id"] for d in opened) == [d.id for d in campaign.deals], opened
    finally:
        services.stop()
        first.stop()
        second.stop()
    assert not all(s.terminal for s in in_flight.values()), in_flight
    assert through_first > 0 and first.requests == through_first  # used, then dead
    assert second.requests > 0 and rpc.url == second.url  # the rest went through the second
