# make run   - set up .venv if needed and run the coordinator with embedded Redis/PostgreSQL
# make demo  - the same, fed with replayed candles and signals (see README, Demo)
# make test  - set up .venv with the test tools if needed and run the whole suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Most tests wait on real servers and timers, not on the CPU: three workers keep both
# cores busy (each worker starts its own PostgreSQL and Redis). The checkout's own
# temporary directory: another test session on the machine resets the permissions of
# the shared one, which the embedded PostgreSQL's user must be able to walk into.
TEST_WORKERS ?= 3

.PHONY: run demo test lint format bench clean

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.installed-run: $(VENV)/.python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/coordinator run

demo: $(VENV)/.installed-run
	$(BIN)/coordinator demo

test: $(VENV)/.installed-test
	$(BIN)/pytest -n $(TEST_WORKERS) --basetemp=$(CURDIR)/.pytest-tmp --durations=30

lint: $(VENV)/.installed-test
	$(BIN)/ruff check coordinator tests bench
	$(BIN)/ruff format --check coordinator tests bench
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format coordinator tests bench
	$(BIN)/ruff check --fix coordinator tests bench

bench: $(VENV)/.installed-test
	$(BIN)/python bench/http_status.py

clean:
	rm -rf $(VENV) .pytest-tmp .pytest_cache .ruff_cache .mypy_cache .hypothesis *.egg-info
