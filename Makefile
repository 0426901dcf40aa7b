# vidfleet: `make run` starts the fleet, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: running needs only the package (`pip install -e .`); testing, checking
# and the chaos trials add the dev extra (pytest, ruff, mypy, Playwright...) on top.
RUN_INSTALLED := $(VENV)/.installed-run
INSTALLED := $(VENV)/.installed

.PHONY: run test check bench load chaos fuzz scale-demo clean

$(RUN_INSTALLED): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(INSTALLED): $(RUN_INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(RUN_INSTALLED)
	$(BIN)/python -m web.launch

# The suite runs on TEST_WORKERS processes (pytest-xdist); the tests that measure
# latency or timing (marked serial) then run alone, with the machine to themselves.
# pytest's exit code 5 is "no test selected" (PYTEST_ARGS naming none of them).
TEST_WORKERS ?= 2

test: $(INSTALLED)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

check: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

BENCH_INSTALLED := $(VENV)/.installed-bench

$(BENCH_INSTALLED): $(INSTALLED) bench/ws_client/package-lock.json
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	cd bench/ws_client && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench

# The fleet under everything at once for 60 s (bench/load.py); exits 1 on any error.
load: $(BENCH_INSTALLED)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

chaos: $(INSTALLED)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

# schemathesis over /openapi.json on a real web process and stores of its own
# (tests/fuzz.py); FUZZ_ARGS go to it (e.g. --max-examples 20, or any `st run` option).
fuzz: $(INSTALLED)
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

# Two webs, two workers and the scheduler on one Redis and database (PostgreSQL at
# 127.0.0.1:5432 when it answers, else SQLite); kills a worker and a web mid-work.
scale-demo: $(INSTALLED)
	$(BIN)/python -m tests.scale_demo $(SCALE_DEMO_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
