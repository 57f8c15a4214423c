# The two commands: `make run` (the all-in-one gateway on embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Read .env, when there is one, for the commands that start the gateway.
LOAD_ENV := set -a; [ ! -f .env ] || . ./.env; set +a

.PHONY: run test chaos bench lint format install install-dev

$(VENV)/.base: requirements/base.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev: $(VENV)/.base requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

run: $(VENV)/.base
	$(LOAD_ENV); $(BIN)/python manage.py migrate --noinput
	$(LOAD_ENV); $(BIN)/python manage.py ensure_superuser
	$(LOAD_ENV); exec $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Starts PostgreSQL/Redis if they are down, SeaweedFS S3 on a free port, runs the whole suite on
# them, then a smoke set on the embedded defaults. Extra pytest arguments: make test ARGS="-k auth".
test: $(VENV)/.dev
	$(BIN)/python scripts/run_tests.py $(ARGS)

# The fault scenarios alone, with longer faults than `make test` gives them (it runs them too),
# and a test timeout that allows for them.
CHAOS_TESTS := tests/workers/runtime/test_faults.py tests/workers/runtime/test_partitions.py \
	tests/workers/runtime/test_redis_faults.py tests/workers/runtime/test_snapshot_faults.py \
	tests/workers/runtime/test_clock_skew.py tests/workers/runtime/test_other_owners.py
chaos: $(VENV)/.dev
	PARTITION_FLAPS=60 PARTITION_SLOW_LEASES=10 REDIS_OUTAGE_SECONDS=60 S3_OUTAGE_SECONDS=300 \
		$(BIN)/python scripts/run_tests.py -o timeout=1800 $(CHAOS_TESTS) $(ARGS)

# Benchmarks, on the same services as the tests; each prints a Markdown table.
bench: $(VENV)/.dev
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/engines.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/failover.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/capacity.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/qr_latency.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/messages.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/webhooks.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/history.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/fanout.py
	$(BIN)/python scripts/run_tests.py --run $(BIN)/python bench/http_api.py

# Style, the layers' import contracts (.importlinter) and the types (mypy, pyproject.toml).
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
