# Two commands on a fresh machine (Python >= 3.11, Node 20, npm): `make demo`, `make test`.
# Each sets up what is missing (.venv with the package and its dev extras, node_modules)
# and skips what is already installed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json

.PHONY: setup demo test lint typecheck test-chain-ganache test-chain-hardhat slither benchmarks clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: setup
	$(BIN)/deedchain demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# The chain layer again, on ganache, so the bytecode and the sender stay portable.
test-chain-ganache: setup
	$(BIN)/pytest tests/chain --node ganache -q

# And on Hardhat Network, the other node the benchmarks run on.
test-chain-hardhat: setup
	$(BIN)/pytest tests/chain --node hardhat -q

test: lint typecheck
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-chain-ganache
	$(MAKE) --no-print-directory test-chain-hardhat

# Every benchmark (deals/s against the node's ceiling, growth, the contracts' state machine at
# 10,000 actions, oracle reaction) into BENCHMARKS.md; takes ~15 minutes.
benchmarks: setup
	$(BIN)/deedchain benchmarks

# Static analysis (informational: prints findings, fails only if Slither cannot run).
slither: setup
	scripts/slither.sh

clean:
	rm -rf build .deedchain deployments .pytest_cache .mypy_cache .ruff_cache
