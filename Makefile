# The two commands: `make demo` (the whole pipeline on this machine) and `make test` (the whole suite).
# Both create or update the virtualenv first; they need only Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# 2 threads measured 2-27x slower than 1 on the 2-vCPU CI machines (OpenMP spin-waiting).
export OMP_NUM_THREADS ?= 1
# pytest-xdist workers for `make test`; each gets its own Redis database (SYNTHJOBS_TEST_REDIS_DB + its index).
TEST_WORKERS ?= 2

.PHONY: demo screenshots test lint audit unit integration faults install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[worker,dev]'
	touch $(STAMP)

install: $(STAMP)

# Prints the dashboard's URL; `make demo SERVE=1` keeps the API, dashboard and worker up afterwards.
demo: $(STAMP)
	$(BIN)/synthjobs demo $(if $(SERVE),--serve)

# The dashboard's screenshots in docs/ (README), from the browser test against a real stack.
screenshots: $(STAMP)
	SYNTHJOBS_UI_SCREENSHOTS=$(CURDIR)/docs $(BIN)/python -m pytest -q tests/ui

# Tests marked `serial` (they time something, so a neighbour's load would make them flaky) run after, alone.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -ra --durations=20 -n $(TEST_WORKERS) --dist loadgroup -m "not faults and not serial"
	$(BIN)/python -m pytest -q -ra --durations=5 -m "serial and not faults" || test $$? -eq 5  # 5: none

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/bandit -q -r synthjobs synthjobs_client api worker training -ll

# Known vulnerabilities in the installed dependencies (needs the advisory service: PyPI's JSON API).
audit: $(STAMP)
	$(BIN)/pip-audit --progress-spinner off --strict

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not faults"

integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration

# Fault injection on the real stack (kills, restarts, proxies); prints a recovery table at the end.
faults: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m faults tests/faults

clean:
	rm -rf .synthjobs .pytest_cache .ruff_cache .import_linter_cache
