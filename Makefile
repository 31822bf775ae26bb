# Every target bootstraps .venv from nothing: python3 -m venv, then the pinned lock file.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTRACTS := contracts/node_modules/.installed
# openapi-python-client, for the test that generates a client from /openapi.json: its own venv.
CODEGEN := .venv-codegen/.installed
# Browser tests drive Debian's chromium through Playwright (Playwright's own download is not
# reachable); installed from apt where missing, skipped (with a note) where apt is absent.
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint bench demo clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

$(CODEGEN): requirements-codegen.lock
	$(PY) -m venv .venv-codegen
	.venv-codegen/bin/pip install -q --disable-pip-version-check -r requirements-codegen.lock
	touch $(CODEGEN)

# The pinned T-REX / ONCHAINID artifacts and anvil, exactly as locked; skipped (with a note)
# where npm is absent.
$(CONTRACTS): contracts/package.json contracts/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd contracts && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: chain components (anvil, T-REX artifacts) not installed"; fi

$(CHROMIUM):
	@if command -v apt-get >/dev/null 2>&1; then \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
		echo "chromium could not be installed: browser tests will be skipped"; \
	else echo "apt-get not found: chromium not installed, browser tests will be skipped"; fi

HOST ?= 127.0.0.1
PORT ?= 8000
# `make run CHAIN=` runs the demo without the chain even where anvil is installed.
CHAIN ?= $(if $(wildcard $(CONTRACTS)),--demo-chain)

# Serves the API (and the console) at once while the demo loads, stage by stage; with node (and
# so anvil), the demo runs through a local ERC-3643 chain. Ends by printing the keys and URLs.
run: $(STAMP) $(CONTRACTS)
	$(BIN)/ledger init
	$(BIN)/ledger serve --host $(HOST) --port $(PORT) --demo-keys --demo $(CHAIN)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: $(STAMP) $(CONTRACTS) $(CODEGEN) $(CHROMIUM) lint
	$(BIN)/pytest

bench: $(STAMP) $(CONTRACTS)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/append.py --http
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/proofs.py
	$(BIN)/python bench/project.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/api.py --analytics
	$(BIN)/python bench/api.py --lists
	$(BIN)/python bench/mirror.py
	$(BIN)/python bench/reconcile.py

clean:
	rm -rf $(VENV) .venv-codegen var
