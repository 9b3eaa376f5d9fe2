"""Compile contracts/ through py-solc-x's compile_standard, with a cache under build/.

The compiler is a native `solc` of the configured version when one is on PATH (or installed
by py-solc-x), else the npm solcjs behind chain/solcjs_shim.js. Artifacts are cached by a
hash of every source file used (imports included), the settings and the compiler identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solcx
from solcx.exceptions import SolcError

from chain.config import Config
from chain.errors import CompilerError

SHIM = Path(__file__).with_name("solcjs_shim.js")
OUTPUT_SELECTION = {
    "*": {
        "*": [
            "abi",
            "evm.bytecode.object",
            "evm.deployedBytecode.object",
            "evm.deployedBytecode.immutableReferences",
            "evm.methodIdentifiers",
        ]
    }
}


@dataclass(frozen=True)
class Artifact:
    name: str
    source: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    immutable_references: dict[str, list[dict[str, int]]]
    compiler: str
    artifact_hash: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            name=data["contractName"],
            source=data["sourcePath"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            deployed_bytecode=data["deployedBytecode"],
            immutable_references=data["immutableReferences"],
            compiler=data["compiler"],
            artifact_hash=data["artifactHash"],
        )


@dataclass(frozen=True)
class CompileResult:
    artifacts: dict[str, Artifact]
    cached: bool
    compiler: str
    cache_key: str


@dataclass(frozen=True)
class Compiler:
    kind: str  # "native" or "solcjs"
    binary: Path
    identity: str  # what goes into the cache key


def find_compiler(config: Config) -> Compiler:
    """A native solc of the pinned version if present, else the project's npm solcjs."""
    wanted = config.compiler.solc.version
    candidates: list[Path] = []
    if native := shutil.which("solc"):
        candidates.append(Path(native))
    # py-solc-x's own install folder may not exist at all: that just means none installed
    with contextlib.suppress(Exception):
        candidates += [solcx.install.get_executable(v) for v in solcx.get_installed_solc_versions()]
    for binary in candidates:
        try:
            version = str(solcx.wrapper.get_solc_version(binary, with_commit_hash=True))
        except (OSError, SolcError, subprocess.SubprocessError):
            continue
        if wanted is None or version.split("+")[0] == wanted:
            return Compiler("native", binary, f"native:{version}")
    package = config.root / "node_modules" / "solc" / "package.json"
    if not package.is_file():
        raise CompilerError(
            "no Solidity compiler: no native solc "
            f"{wanted or ''} on PATH and no {package.parent} (run `npm ci`)"
        )
    version = json.loads(package.read_text())["version"]
    if wanted is not None and version != wanted:
        raise CompilerError(
            f"compiler.solc.version is {wanted} but node_modules has solcjs {version}; "
            "align package.json and brownie-config.yaml"
        )
    return Compiler("solcjs", SHIM, f"solcjs:{version}")


def standard_input(config: Config) -> dict[str, Any]:
    solc = config.compiler.solc
    sources = {
        path.relative_to(config.root).as_posix(): {"content": path.read_text(encoding="utf-8")}
        for path in sorted((config.root / "contracts").rglob("*.sol"))
    }
    if not sources:
        raise CompilerError(f"no .sol files under {config.root / 'contracts'}")
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": config.compiler.evm_version,
            "optimizer": {"enabled": solc.optimizer.enabled, "runs": solc.optimizer.runs},
            "viaIR": solc.via_ir,
            "remappings": solc.remappings,
            "outputSelection": OUTPUT_SELECTION,
        },
    }


def compile_project(config: Config, force: bool = False) -> CompileResult:
    """Compile contracts/ or return the cached artifacts when nothing changed."""
    build = config.root / "build"
    manifest_file = build / "manifest.json"
    compiler = find_compiler(config)
    std_input = standard_input(config)
    settings_key = json.dumps(
        {"settings": std_input["settings"], "compiler": compiler.identity}, sort_keys=True
    )

    if not force and manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        used = set(manifest["files"]) | set(std_input["sources"])
        key = _cache_key(config.root, sorted(used), settings_key)
        if key == manifest["key"]:
            cached = {
                name: Artifact.from_json(json.loads((build / "contracts" / f"{name}.json").read_text()))
                for name in manifest["contracts"]
            }
            return CompileResult(cached, True, manifest["compiler"], key)

    output = _run(config, compiler, std_input)
    version = output.get("compilerVersion") or compiler.identity.split(":", 1)[1]
    files = sorted(output.get("sources", {}))
    key = _cache_key(config.root, files, settings_key)
    artifacts: dict[str, Artifact] = {}
    for source, contracts in output.get("contracts", {}).items():
        if source not in std_input["sources"]:
            continue  # libraries such as OpenZeppelin are compiled in, not deployed
        for name, out in contracts.items():
            if name in artifacts:
                raise CompilerError(f"two contracts named {name}: {artifacts[name].source} and {source}")
            bytecode = out["evm"]["bytecode"]["object"]
            artifacts[name] = Artifact(
                name=name,
                source=source,
                abi=out["abi"],
                bytecode=bytecode,
                deployed_bytecode=out["evm"]["deployedBytecode"]["object"],
                immutable_references=out["evm"]["deployedBytecode"].get("immutableReferences", {}),
                compiler=version,
                artifact_hash=hashlib.sha256(
                    json.dumps([out["abi"], bytecode], sort_keys=True).encode()
                ).hexdigest(),
            )

    contracts_dir = build / "contracts"
    if contracts_dir.exists():
        shutil.rmtree(contracts_dir)
    contracts_dir.mkdir(parents=True)
    for art in artifacts.values():
        (contracts_dir / f"{art.name}.json").write_text(
            json.dumps(
                {
                    "contractName": art.name,
                    "sourcePath": art.source,
                    "abi": art.abi,
                    "bytecode": art.bytecode,
                    "deployedBytecode": art.deployed_bytecode,
                    "immutableReferences": art.immutable_references,
                    "compiler": art.compiler,
                    "settings": std_input["settings"],
                    "sourceHash": _file_hash(config.root / art.source),
                    "artifactHash": art.artifact_hash,
                },
                indent=1,
            )
        )
    manifest_file.write_text(
        json.dumps(
            {"key": key, "files": files, "contracts": sorted(artifacts), "compiler": version},
            indent=1,
        )
    )
    return CompileResult(artifacts, False, version, key)


def _run(config: Config, compiler: Compiler, std_input: dict[str, Any]) -> dict[str, Any]:
    try:
        output: dict[str, Any] = solcx.compile_standard(
            std_input,
            base_path=config.root,
            allow_paths=[config.root] if compiler.kind == "native" else None,
            solc_binary=compiler.binary,
        )
    except SolcError as exc:
        errors = getattr(exc, "error_dict", None)
        if errors:
            raise CompilerError(_format_errors(config.root, errors)) from None
        raise CompilerError(f"{compiler.binary} failed: {exc.stderr_data or exc}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CompilerError(f"{compiler.binary} could not run: {exc}") from None
    return output


def _format_errors(root: Path, errors: list[dict[str, Any]]) -> str:
    """One `file:line:col: message` per compiler error, like gcc, so editors can jump."""
    lines = []
    for err in errors:
        if err.get("severity") != "error":
            continue
        where = ""
        loc = err.get("sourceLocation")
        if loc and loc.get("file"):
            try:
                text = (root / loc["file"]).read_bytes()
                before = text[: max(loc.get("start", 0), 0)].decode("utf-8", "replace")
                line = before.count("\n") + 1
                column = len(before.rsplit("\n", 1)[-1]) + 1
                where = f"{loc['file']}:{line}:{column}: "
            except OSError:
                where = f"{loc['file']}: "
        lines.append(f"{where}{err.get('type', 'Error')}: {err.get('message', '').strip()}")
    return "compilation failed:\n  " + "\n  ".join(lines)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_key(root: Path, files: list[str], settings_key: str) -> str:
    digest = hashlib.sha256(settings_key.encode())
    for name in files:
        path = root / name
        digest.update(name.encode())
        digest.update(_file_hash(path).encode() if path.is_file() else b"missing")
    return digest.hexdigest()
