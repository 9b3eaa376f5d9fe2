"""One real node per test session (anvil by default), isolated per test by evm_snapshot.

--node anvil|ganache picks the embedded node; --node docker-ganache starts the ganache image
of tests/docker-compose.yml through pytest-docker (needs a Docker engine and the `docker`
extra; nothing else in the suite depends on it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.config import Config, load_config
from chain.deploy import deploy_project
from chain.rpc import Rpc
from chain.session import ChainSession

ROOT = Path(__file__).resolve().parent.parent
NETWORK_FOR = {
    "anvil": "development",
    "ganache": "development-ganache",
    "hardhat": "development-hardhat",
    "docker-ganache": "development-ganache",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--node", default="anvil", choices=sorted(NETWORK_FOR), help="node to test against")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--node") == "docker-ganache":
        config.pluginmanager.import_plugin("pytest_docker")


@pytest.fixture(scope="session")
def node_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--node"))


@pytest.fixture(scope="session")
def config() -> Config:
    return load_config(ROOT / "brownie-config.yaml")


@pytest.fixture(scope="session")
def chain(
    request: pytest.FixtureRequest,
    config: Config,
    node_kind: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChainSession]:
    """A throwaway chain: nothing is read from or written to the project's own state."""
    network = NETWORK_FOR[node_kind]
    deployments = tmp_path_factory.mktemp("deployments")
    if node_kind == "docker-ganache":
        services = request.getfixturevalue("docker_services")
        port = services.port_for("ganache", 8545)
        url = f"http://127.0.0.1:{port}"
        services.wait_until_responsive(lambda: _answers(url), timeout=60, pause=0.5)
        session = ChainSession(config, network, Rpc([url]), deployments_dir=deployments)
    else:
        session = ChainSession.open(network, config, persist=False, deployments_dir=deployments)
    yield session
    session.close()


def _answers(url: str) -> bool:
    from chain.node import rpc_answers

    return rpc_answers(url) is not None


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "tests" / "docker-compose.yml")


@pytest.fixture(scope="session")
def deployed(chain: ChainSession) -> dict[str, str]:
    return deploy_project(chain).addresses


@pytest.fixture(autouse=True)
def isolate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test that uses the chain inside evm_snapshot / evm_revert."""
    if "chain" not in request.fixturenames:
        yield
        return
    session: ChainSession = request.getfixturevalue("chain")
    snapshot = session.rpc.call("evm_snapshot")
    yield
    session.rpc.call("evm_revert", [snapshot])
    if request.getfixturevalue("node_kind") == "anvil":
        # a transaction mined just before the revert can stay in anvil's pool and be mined
        # again with the next test's first one
        session.rpc.call("anvil_dropAllTransactions")
    session.resync()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    from tests.pg import postgres_server

    with postgres_server() as url:
        if url is None:
            pytest.skip("no PostgreSQL here: install Debian's postgresql or set DEEDCHAIN_TEST_PG_URL")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database-backed test runs on SQLite and on PostgreSQL (a fresh schema each)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    import uuid

    from sqlalchemy import create_engine, text

    base = request.getfixturevalue("pg_url")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def anvil_only(node_kind: str) -> None:
    if node_kind != "anvil":
        pytest.skip(f"needs anvil-only RPC methods; this run uses {node_kind}")


@pytest.fixture
def project_copy(tmp_path: Path) -> Iterator[Path]:
    """A private copy of the project (config, contracts, node_modules link) to change freely."""
    shutil.copy(ROOT / "brownie-config.yaml", tmp_path / "brownie-config.yaml")
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    old = os.environ.get("DEEDCHAIN_PROJECT")
    yield tmp_path
    if old is None:
        os.environ.pop("DEEDCHAIN_PROJECT", None)
    else:
        os.environ["DEEDCHAIN_PROJECT"] = old
