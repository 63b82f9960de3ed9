# edgeloop: `make demo` runs the loop on this machine, `make test` runs the test suite.
# Both create .venv and install what they need first (Debian packages too, when root).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,postgres,ray,kfp
PYTEST_ARGS ?=

.PHONY: help venv system-deps demo test test-all bench lint fmt clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/system-deps.sh venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install edgeloop with its test tools

system-deps:  ## install the Debian packages the tests need (postgresql, chromium) when missing
	@scripts/system-deps.sh test

demo: venv  ## run the whole loop on this machine on embedded defaults
	$(VENV)/bin/edgeloop demo

test: venv system-deps  ## run the test suite (fast tests; real S3 server, real PostgreSQL)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: venv system-deps  ## run every test, the slow soak and fault tests too
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

bench: venv  ## run the benchmarks and rewrite their results under benchmarks/results/
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv  ## ruff and mypy
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

fmt: venv  ## format the code
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
