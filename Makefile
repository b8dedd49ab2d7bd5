# pgq — `make demo` sets up and runs a real workload; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format docs docs-serve bench soak soak-workflows bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install pgq (editable) with test, lint and docs tools

demo: install ## migrate a database, enqueue jobs in real transactions, show them
	$(PY) examples/demo.py

test: install ## the whole test suite against a real PostgreSQL
	$(PY) -m pytest

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check src tests examples benchmarks
	$(VENV)/bin/ruff format --check src tests examples benchmarks
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix src tests examples benchmarks
	$(VENV)/bin/ruff format src tests examples benchmarks

# NO_MKDOCS_2_WARNING: Material prints a banner about its maintenance and MkDocs 2.0 on
# every build; docs/design-notes.md ("The docs site") covers it, CI logs need not.
docs: install ## build the docs site into site/ (strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: install ## the docs site on http://127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: install ## the benchmark suite; JSON lines on stdout
	$(PY) -m benchmarks

# make test repeats the fan-in race 20 times (the issue's bar, about 20 s); this, 100 times.
soak-workflows: install ## the fan-in race: 1,000 members over 4 worker processes, 100 times
	PGQ_FANIN_REPEAT=100 $(PY) -m pytest tests/acceptance/test_workflow_processes.py -k fan_in -q

soak: install ## scenario 8 alone: 2 x 10 minutes of steady load (about 25 minutes)
	$(PY) -m benchmarks --only soak

# The peers live in a venv of their own (with pgq installed too), so they never leak into
# pgq's. typer<0.20: pgqueuer 1.6's CLI fails on newer typer ("'str' object has no
# attribute 'name'" for its --log-level default).
PEERS_VENV ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS := procrastinate "pgqueuer[asyncpg,psycopg]" "typer<0.20"

$(PEERS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	echo '*' > $(PEERS_VENV)/.gitignore
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -e . $(PEERS)
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP) ## scenarios 1-4 for pgq, Procrastinate and PgQueuer, in one run
	$(PEERS_VENV)/bin/python -m benchmarks --only enqueue_single,enqueue_many,drain,latency,peers

clean:
	rm -rf $(VENV) $(PEERS_VENV) dist build site .pytest_cache .mypy_cache .ruff_cache
