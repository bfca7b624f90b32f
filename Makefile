# Two commands do all set-up on a fresh machine:
#   make demo   # the whole workflow on the bundled offline demo survey
#   make test   # the test suite (what .ci/run calls)
# Each creates the pinned virtualenv in .venv/ first if it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test test-slurm lint venv clean-results

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

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
