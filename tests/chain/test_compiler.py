from __future__ import annotations

import json
import time

import pytest

from chain.compiler import compile_project, find_compiler
from chain.config import load_config
from chain.errors import CompilerError


@pytest.fixture
def token_only(project_copy):
    """The project with only the token contract: one compile takes ~1.5 s instead of ~6."""
    for source in (project_copy / "contracts").glob("*.sol"):
        if source.name != "DepositToken.sol":
            source.unlink()
    return project_copy


def test_cache_hit_and_miss(token_only):
    project_copy = token_only
    cfg = load_config(project_copy / "brownie-config.yaml")
    cold = compile_project(cfg)
    assert not cold.cached
    art = cold.artifacts["DepositToken"]
    assert art.abi and art.bytecode and art.deployed_bytecode
    assert art.compiler.startswith("0.8.28")
    saved = json.loads((project_copy / "build" / "contracts" / "DepositToken.json").read_text())
    assert saved["settings"]["evmVersion"] == "shanghai"
    assert len(saved["sourceHash"]) == 64

    started = time.perf_counter()
    warm = compile_project(cfg)
    assert warm.cached
    assert time.perf_counter() - started < 0.5
    assert warm.artifacts["DepositToken"] == art

    source = project_copy / "contracts" / "DepositToken.sol"
    source.write_text(source.read_text() + "\n// changed\n")
    changed = compile_project(cfg)
    assert not changed.cached and changed.cache_key != warm.cache_key


def test_settings_change_misses_the_cache(token_only):
    path = token_only / "brownie-config.yaml"
    first = compile_project(load_config(path))
    path.write_text(path.read_text().replace("runs: 200", "runs: 1000"))
    second = compile_project(load_config(path))
    assert not second.cached and second.cache_key != first.cache_key


def test_compile_error_shows_file_and_line(project_copy):
    (project_copy / "contracts" / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n\ncontract Broken {\n"
        "    function f() external pure returns (uint256) {\n        return nope;\n    }\n}\n"
    )
    with pytest.raises(
        CompilerError, match=r"contracts/Broken.sol:6:16: DeclarationError: Undeclared identifier"
    ):
        compile_project(load_config(project_copy / "brownie-config.yaml"))


def test_pinned_version_must_match_solcjs(project_copy, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # hide any native solc
    path = project_copy / "brownie-config.yaml"
    assert find_compiler(load_config(path)).kind == "solcjs"
    path.write_text(path.read_text().replace("version: 0.8.28", "version: 0.8.99"))
    with pytest.raises(CompilerError, match=r"0\.8\.99 but node_modules has solcjs 0\.8\.28"):
        find_compiler(load_config(path))
