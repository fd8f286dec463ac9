# Everything runs from a virtualenv the Makefile creates (.venv/); nothing relies on
# packages installed by hand. Redis: REDIS_URL if set, else 127.0.0.1:6379, else a
# redis-server started on a free port (see worker/runpoller_dev/devredis.py).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
WITH_REDIS := $(BIN)/python -m runpoller_dev.devredis

.PHONY: install lint test unit chaos demo bench clean screenshots browser dashboard-vendor

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

# The dashboard's browser tests drive Debian's chromium (Playwright's own browser download
# is never used): installed here where it is missing (as root: CI runs as root).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
	  || { echo "make: $(CHROMIUM) is missing: apt-get install chromium chromium-driver (as root)" >&2; exit 1; }

test: lint node-install browser
	$(WITH_REDIS) -- $(BIN)/pytest -q
	$(MAKE) node-test

# tests/integration/test_sentinel.py runs real redis-sentinel processes: install the Debian
# package where it is missing (as root, else through sudo; else the test says what to do).
test: redis-sentinel
.PHONY: redis-sentinel
redis-sentinel:
	@command -v redis-sentinel >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "make: redis-sentinel is missing: apt-get install redis-sentinel (as root)" >&2; exit 0; fi; \
	  echo "make: installing redis-sentinel with apt-get"; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-sentinel >/dev/null; }

# Every chaos attack at full size (CHAOS_RUNS=100 make chaos for a shorter pass). The figures
# of issue 14 (lost, duplicates, resume, intake lag, late finals) are printed as one table at
# the end, targets beside, and written to bench/results/chaos-<timestamp>.json.
CHAOS_RUNS ?= 500
chaos: install
	RUNPOLLER_CHAOS_RUNS=$(CHAOS_RUNS) $(WITH_REDIS) -- $(BIN)/pytest -q -s tests/chaos

demo: install
	@if command -v npm >/dev/null; then $(MAKE) node-install; else echo "demo: Node.js/npm not installed: examples/node will not run"; fi
	$(WITH_REDIS) --allow-embedded -- $(BIN)/runpoller demo

# The dashboard's screenshots in docs/img/ (docs/operations.md shows them), taken by its
# browser tests.
screenshots: install browser
	RUNPOLLER_SCREENSHOTS=docs/img $(WITH_REDIS) -- $(BIN)/pytest -q tests/integration/test_dashboard_browser.py

# Rebuild the dashboard's vendored Chart.js from its pinned package-lock (the file is
# committed; this only proves where it came from).
DASHBOARD_VENDOR := worker/runpoller/dashboard/vendor
dashboard-vendor:
	cd $(DASHBOARD_VENDOR) && npm ci --no-audit --no-fund --ignore-scripts
	cp $(DASHBOARD_VENDOR)/node_modules/chart.js/dist/chart.umd.min.js worker/runpoller/dashboard/static/vendor/
	cp $(DASHBOARD_VENDOR)/node_modules/chart.js/LICENSE.md worker/runpoller/dashboard/static/vendor/chart.js-LICENSE.md

# BENCH_ARGS: extra options, e.g. `make bench BENCH_ARGS="--private-redis --wait-quiet 60"`.
BENCH_ARGS ?=
bench: install
	$(WITH_REDIS) -- $(BIN)/python -m runpoller_bench $(BENCH_ARGS)

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
