# marketban — every target installs what it needs from nothing but Python 3.11+, Java 17+ and Maven.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := deploy/local-kafka/kafka.sh
export MARKETBAN_KAFKA_PORT ?= 9092

# Shell prelude of the targets that need a broker: MARKETBAN_KAFKA_BOOTSTRAP when set, else the
# local broker, started here if it is not up (then started=1, so the target can stop it again).
BROKER_UP = started=0; \
	if [ -z "$${MARKETBAN_KAFKA_BOOTSTRAP:-}" ]; then \
	  if ! $(KAFKA) status 2>/dev/null; then $(KAFKA) up || exit 1; started=1; fi; \
	  export MARKETBAN_KAFKA_BOOTSTRAP=127.0.0.1:$(MARKETBAN_KAFKA_PORT); \
	fi;

.PHONY: help venv browser lint fmt test test-unit chaos bench run kafka-up kafka-down kafka-status constraints clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# uv installs the pinned set in a quarter of pip's time (12 s against 46 on this machine), which is
# most of a fresh clone's setup; pip installs it where uv cannot be had. Same versions either way.
$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if $(PY) -m pip install -q -c requirements/constraints.txt uv; then \
	  $(PY) -m uv pip install -q --python $(PY) -c requirements/constraints.txt -e '.[dev]'; \
	else \
	  $(PY) -m pip install -q --upgrade pip && \
	  $(PY) -m pip install -q -c requirements/constraints.txt -e '.[dev]'; \
	fi
	touch $@

venv: $(STAMP) ## create/update the virtualenv with the package and dev tools

lint: $(STAMP) ## ruff check, ruff format --check, mypy --strict on src/
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy --strict src

fmt: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

# The dashboard's browser test drives Debian's Chromium (tests/integration/test_dashboard.py);
# installed from Debian's packages when missing (as root, or through sudo).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard's browser test"
	@if [ "$$(id -u)" = 0 ]; then as=; else as=sudo; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$as apt-get install -y -q chromium >/dev/null || \
	  { $$as apt-get update -q >/dev/null && $$as apt-get install -y -q chromium >/dev/null; }
	@test -x $@ || { echo "no Chromium at $@ after installing; set CHROMIUM=/path/to/chromium"; exit 1; }

browser: $(CHROMIUM) ## install Debian's chromium for the browser test (if missing)

# Runs the whole suite. Starts the local broker unless MARKETBAN_KAFKA_BOOTSTRAP names one (or one
# is already up), and stops the broker it started, also when the tests fail. Exit status = pytest's.
test: lint $(CHROMIUM) ## lint, then the whole test suite against a real Kafka broker
	@$(BROKER_UP) \
	trap '[ $$started = 1 ] && $(KAFKA) down' EXIT; \
	MARKETBAN_CHROMIUM=$(CHROMIUM) $(PY) -m pytest $(PYTEST_ARGS)

# The fault suite and the fuzzing at full size (issue 7, docs/operations.md): every case of
# tests/integration/test_chaos.py with CHAOS_SCALE times the flow, FUZZ_COUNT hostile messages
# per input topic through a worker, and the in-process property test. Broker handling as in `test`.
CHAOS_SCALE ?= 4
FUZZ_COUNT ?= 10000
chaos: $(STAMP) ## fault suite (kills, rebalances, overload, lost state) + fuzzing, full size
	@$(BROKER_UP) \
	trap '[ $$started = 1 ] && $(KAFKA) down' EXIT; \
	MARKETBAN_CHAOS_SCALE=$(CHAOS_SCALE) MARKETBAN_FUZZ_COUNT=$(FUZZ_COUNT) \
	$(PY) -m pytest -m "" tests/integration/test_chaos.py tests/integration/test_decider_faults.py \
	  tests/integration/test_fuzz.py \
	  tests/unit/test_hostile_input.py $(PYTEST_ARGS)

# The main job on a fresh machine: broker (unless MARKETBAN_KAFKA_BOOTSTRAP is set), worker, and
# the demo market with a live summary. Ctrl-C stops everything it started.
RUN_RATE ?= 1000
run: $(STAMP) ## broker + worker + demo market with a live summary (Ctrl-C stops all)
	@mkdir -p .local; $(BROKER_UP) \
	export MARKETBAN_DATA_DIR=$${MARKETBAN_DATA_DIR:-.local/run-data}; \
	if [ $$started = 1 ]; then rm -rf "$$MARKETBAN_DATA_DIR"; fi; \
	export MARKETBAN_API_TOKEN=$${MARKETBAN_API_TOKEN:-$$($(PY) -c 'import secrets; print(secrets.token_hex(16))')}; \
	$(VENV)/bin/marketban worker > .local/worker.log 2>&1 & wpid=$$!; \
	stop() { trap - EXIT INT TERM; echo; echo "stopping worker (pid $$wpid) ..."; \
	  kill -TERM $$wpid 2>/dev/null; \
	  for i in $$(seq 1 75); do kill -0 $$wpid 2>/dev/null || break; sleep 0.2; done; \
	  kill -KILL $$wpid 2>/dev/null; wait $$wpid 2>/dev/null; \
	  if [ $$started = 1 ]; then $(KAFKA) down; fi; }; \
	trap stop EXIT INT TERM; \
	echo "worker log: .local/worker.log; demo at $(RUN_RATE) orders/s; Ctrl-C stops everything"; \
	echo "dashboard: http://127.0.0.1:$${MARKETBAN_WEB_PORT:-6066}/  (API token: $$MARKETBAN_API_TOKEN)"; \
	$(VENV)/bin/marketban demo --rate $(RUN_RATE)

# The benchmark suite (docs/benchmarks.md): the engine in-process, then the worker on the broker
# next to a raw aiokafka passthrough; medians of BENCH_RUNS. Rewrites the generated table in
# docs/benchmarks.md and bench-results.json. Broker handling as in `test`.
BENCH_RUNS ?= 3
# Engine runs take ~1.5 s each and this VM's speed swings by +-30 % from one to the next: 5 of them.
BENCH_ENGINE_RUNS ?= 5
BENCH_ENGINE_ORDERS ?= 200000
BENCH_E2E_ORDERS ?= 30000
BENCH_LATENCY_S ?= 10
KAFKA_VERSION = $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local-kafka/pom.xml)
bench: $(STAMP) ## benchmarks; writes docs/benchmarks.md (table) and bench-results.json
	@mkdir -p .local; $(BROKER_UP) \
	trap '[ $$started = 1 ] && $(KAFKA) down' EXIT; \
	set -eo pipefail; \
	$(VENV)/bin/marketban bench engine --orders $(BENCH_ENGINE_ORDERS) --runs $(BENCH_ENGINE_RUNS) | tee .local/bench-engine.json; \
	$(VENV)/bin/marketban bench e2e --orders $(BENCH_E2E_ORDERS) --runs $(BENCH_RUNS) \
	  --latency-seconds $(BENCH_LATENCY_S) | tee .local/bench-e2e.json; \
	$(VENV)/bin/marketban bench reference | tee .local/bench-reference.json; \
	$(PY) -m marketban.bench.report .local/bench-engine.json .local/bench-e2e.json \
	  .local/bench-reference.json \
	  docs/benchmarks.md bench-results.json "$(KAFKA_VERSION)" "$$(date -u +%FT%TZ)"; \
	echo "wrote docs/benchmarks.md and bench-results.json"

test-unit: $(STAMP) ## the unit tests alone (no broker)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

kafka-up: ## start the local Apache Kafka broker (KRaft, 127.0.0.1:$MARKETBAN_KAFKA_PORT)
	$(KAFKA) up

kafka-down: ## stop the local broker and remove its data
	$(KAFKA) down

kafka-status: ## is the local broker running?
	$(KAFKA) status

constraints: $(STAMP) ## re-pin requirements/constraints.txt to what the venv has
	{ sed -n '1,2p' requirements/constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -i '^marketban'; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean: ## remove the venv and local state (not the cached broker)
	-$(KAFKA) down
	rm -rf $(VENV) .local .mypy_cache .ruff_cache .pytest_cache
