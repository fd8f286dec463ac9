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

test: lint
	$(WITH_REDIS) -- $(BIN)/pytest -q

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
	$(WITH_REDIS) --allow-embedded -- $(BIN)/runpoller demo

bench: install
	$(WITH_REDIS) -- $(BIN)/python -m runpoller_bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
