# Set-up and day-to-day commands. `make run` and `make test` install what they
# need (Debian packages, a virtual environment) when it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# What the milter needs to build and run (pymilter compiles against libmilter).
RUN_PACKAGES  := libmilter-dev gcc python3-dev python3-venv
# The real parts the tests start: an MTA, independent DKIM verifiers (libidn12: the Exim
# binary the tests unpack from Debian needs it).
TEST_PACKAGES := postfix libmail-dkim-perl libnet-dns-perl opendkim opendkim-tools strace knot \
                 lintian mmdebstrap systemd-container prometheus libidn12
# What `make deb` builds the Debian package with.
DEB_PACKAGES  := debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools

.PHONY: run test lint typecheck unit integration system-run system-test deb clean

run: system-run $(BIN)/reputable
	@sh packaging/demo-run.sh $(BIN)/reputable

test: system-run system-test $(BIN)/reputable lint typecheck test-debian-libs
	$(BIN)/pytest -q tests

lint: $(BIN)/reputable
	$(BIN)/ruff check reputable tests benchmarks packaging
	$(BIN)/ruff format --check reputable tests benchmarks packaging

typecheck: $(BIN)/reputable
	$(BIN)/mypy

unit: $(BIN)/reputable
	$(BIN)/pytest -q tests/unit

integration: system-test $(BIN)/reputable
	$(BIN)/pytest -q tests/integration

# The unit tests on Debian 12's own python3 and python3-* libraries, the oldest versions
# pyproject.toml allows (the Debian package depends on them): `make test` proves the minimums.
DEBIAN_PYTHON       := /usr/bin/python3
DEBIAN_LIB_PACKAGES := python3-milter python3-dnspython python3-cryptography python3-uvloop \
                       python3-spf python3-prometheus-client python3-authres python3-dkim python3-pytest python3-hypothesis python3-aiosmtpd \
                       python3-nacl
.PHONY: test-debian-libs
test-debian-libs:
	@sh packaging/apt-ensure.sh $(DEBIAN_LIB_PACKAGES)
	# The fuzzing's 10,000 examples per property ran on the venv; here 1,000 prove Debian's libraries.
	REPUTABLE_FUZZ_PROFILE=fuzz-quick $(DEBIAN_PYTHON) -m pytest -q tests/unit -p no:cacheprovider

system-run:
	@sh packaging/apt-ensure.sh $(RUN_PACKAGES)

system-test:
	@sh packaging/apt-ensure.sh $(TEST_PACKAGES)

$(BIN)/reputable: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The Debian package, reputable_<version>_all.deb, here (README, "Install").
deb:
	@sh packaging/apt-ensure.sh $(DEB_PACKAGES)
	@sh packaging/build-deb.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build reputable_*.deb

# The benchmark against OpenDKIM and dkimpy-milter through Postfix (benchmarks/README.md);
# benchmarks/run.py installs postfix, opendkim and dkimpy-milter itself when missing.
.PHONY: bench
bench: system-run $(BIN)/reputable
	$(BIN)/python -m benchmarks.run --preset standard
