# Set-up and day-to-day commands. `make run` and `make test` install what they
# need (Debian packages, a virtual environment) when it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# What the milter needs to build and run (pymilter compiles against libmilter).
RUN_PACKAGES  := libmilter-dev gcc python3-dev python3-venv
# The real parts the tests start: an MTA, independent DKIM verifiers.
TEST_PACKAGES := postfix libmail-dkim-perl libnet-dns-perl opendkim opendkim-tools strace knot

.PHONY: run test lint typecheck unit integration system-run system-test clean

run: system-run $(BIN)/reputable
	@sh packaging/demo-run.sh $(BIN)/reputable

test: system-run system-test $(BIN)/reputable lint typecheck
	$(BIN)/pytest -q tests

lint: $(BIN)/reputable
	$(BIN)/ruff check reputable tests benchmarks
	$(BIN)/ruff format --check reputable tests benchmarks

typecheck: $(BIN)/reputable
	$(BIN)/mypy

unit: $(BIN)/reputable
	$(BIN)/pytest -q tests/unit

integration: system-test $(BIN)/reputable
	$(BIN)/pytest -q tests/integration

system-run:
	@sh packaging/apt-ensure.sh $(RUN_PACKAGES)

system-test:
	@sh packaging/apt-ensure.sh $(TEST_PACKAGES)

$(BIN)/reputable: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The benchmark against OpenDKIM and dkimpy-milter through Postfix (benchmarks/README.md);
# benchmarks/run.py installs postfix, opendkim and dkimpy-milter itself when missing.
.PHONY: bench
bench: system-run $(BIN)/reputable
	$(BIN)/python -m benchmarks.run --preset standard
