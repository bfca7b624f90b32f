# Two commands do all set-up on a fresh machine:
#   make demo   # the whole workflow on the bundled offline demo survey
#   make test   # the test suite (what .ci/run calls)
# Each creates the pinned virtualenv in .venv/ first if it is missing (or rebuilds it when
# requirements-lock.txt or pyproject.toml changed).
#   make lock   # regenerate requirements-lock.txt after a pin in pyproject.toml changed

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# The whole dependency tree (dev extra included), exact versions and sha256 hashes, for
# CPython 3.11 on Linux x86_64: made from pyproject.toml by `make lock` (uv pip compile).
LOCK := requirements-lock.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# uv, for `make lock` only (installed into a throw-away virtualenv)
UV_VERSION ?= 0.13.9

.PHONY: demo test test-slurm lint venv lock clean-results

venv: $(STAMP)

# Only what the lock names, each file checked against its hash (--no-deps: the lock is the
# whole tree); then the package itself, built with the lock's setuptools.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "$(LOCK) is for Python 3.11; $(BIN)/python is not: make venv PYTHON=python3.11"; \
	  exit 1; }
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# Keeps every pin of the lock that pyproject.toml still allows; `make lock UPGRADE=1` takes
# the newest versions of the packages that pyproject.toml does not pin.
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/python" -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && \
	"$$tmp/bin/uv" --quiet pip compile pyproject.toml --all-extras --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) -o $(LOCK)

# --rerun-incomplete: after a killed run (Ctrl-C, SIGKILL) `make demo` again runs the jobs it
# left incomplete from the start (a SIGKILL also leaves the directory locked: run
# `$(BIN)/snakemake --unlock` first, as Snakemake says).
demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slurm" --durations=10

# The tiny demo through profiles/slurm on a real SLURM cluster (skipped, with the reason,
# where there is none); .ci/run brings a one-node cluster up first.
test-slurm: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m slurm tests/test_slurm.py

lint: $(STAMP)
	$(BIN)/ruff check workflow tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
