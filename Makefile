# Everything runs from a virtualenv the Makefile creates (.venv/); nothing relies on
# packages installed by hand. Redis: REDIS_URL if set, else 127.0.0.1:6379, else a
# redis-server started on a free port (see worker/runpoller_dev/devredis.py).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WITH_REDIS := $(BIN)/python -m runpoller_dev.devredis

.PHONY: install lint test unit chaos demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check worker tests
	$(BIN)/ruff format --check worker tests
	$(BIN)/mypy
	scripts/validate-deploy.sh

unit: install
	$(BIN)/pytest -q tests/unit

test: lint node-install
	$(WITH_REDIS) -- $(BIN)/pytest -q
	$(MAKE) node-test

# Every chaos attack at full size (CHAOS_RUNS=100 make chaos for a shorter pass). The figures
# of issue 14 (lost, duplicates, resume, intake lag, late finals) are printed as one table at
# the end, targets beside, and written to bench/results/chaos-<timestamp>.json.
CHAOS_RUNS ?= 500
chaos: install
	RUNPOLLER_CHAOS_RUNS=$(CHAOS_RUNS) $(WITH_REDIS) -- $(BIN)/pytest -q -s tests/chaos

demo: install
	@if command -v npm >/dev/null; then $(MAKE) node-install; else echo "demo: Node.js/npm not installed: examples/node will not run"; fi
	$(WITH_REDIS) --allow-embedded -- $(BIN)/runpoller demo

bench: install
	$(WITH_REDIS) -- $(BIN)/python -m runpoller_bench

# The Node client (clients/node, issue 21): `npm ci` from the committed lock file (its
# `prepare` compiles src/ to dist/ with the pinned TypeScript), then its tests (node --test)
# against a real worker, the fake server and Redis. Needs Node >= 20 and npm.
NODE_DIR := clients/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-stamp
.PHONY: node-install node-test

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "node-install: needs Node.js >= 20 and npm"; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

node-install: $(NODE_STAMP)
	cd $(NODE_DIR) && npm run --silent build

node-test: install node-install
	$(WITH_REDIS) -- npm --prefix $(NODE_DIR) test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
