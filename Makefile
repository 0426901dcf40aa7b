# vidfleet: `make run` starts the fleet, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test check bench chaos clean

$(INSTALLED): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(INSTALLED)
	$(BIN)/python -m web.launch

test: $(INSTALLED)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

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

chaos: $(INSTALLED)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
