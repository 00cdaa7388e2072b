# The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# pymc-marketing 1.3 / pymc 6 need Python 3.12; find one that really runs
# (a pyenv shim named python3.12 may exist without 3.12 being active).
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
export DAGSTER_HOME ?= $(CURDIR)
export MMM_INPUT_DIR ?= data/sample
export MMM_WAREHOUSE ?= data/warehouse.duckdb
export MMM_ARTIFACT_DIR ?= data/artifacts
export MMM_PROFILE ?= full
export GX_ANALYTICS_ENABLED := false

.PHONY: run test test-fast ui sample venv bench validate clean

# --no-compile: byte-compiling every installed module took 49 of a fresh install's 75 s (2 cores);
# Python compiles the modules a run imports when it first imports them.
PIP_INSTALL := $(PY) -m pip install --quiet --no-compile

define NEW_VENV
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON312=/path/to/python3.12"; exit 1; }
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
endef

$(VENV)/.installed: pyproject.toml
	$(NEW_VENV)
	$(PIP_INSTALL) -e .
	@touch $@

# Tests also load the scale-out configs (deploy/) with their real packages and drive a browser; the
# docs tools come along, so CI (make docs, then make test) installs in one pip call, not three.
$(VENV)/.installed-test: pyproject.toml
	$(NEW_VENV)
	$(PIP_INSTALL) -e '.[test,k8s,celery,docs]'
	@touch $(VENV)/.installed $(VENV)/.installed-docs $@

.PHONY: test-deps
test-deps: $(VENV)/.installed-test

venv: $(VENV)/.installed

# The embedded sample is generated deterministically on first use (a few seconds, mostly imports).
data/sample/truth.json: | $(VENV)/.installed
	$(PY) -m mmm_pipeline.sample data/sample

sample: data/sample/truth.json

run: $(VENV)/.installed
	@if [ "$(MMM_INPUT_DIR)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(PY) -m assets.run

# Two workers: most of a fit is its single-threaded compile, so two fits compile at once.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-test
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The edit loop: everything that fits no model (ingestion, validation, costs, configs, converters),
# less the tests marked slow (concurrent pipeline processes, the benchmark's true-optimum search).
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -m "not fit" -n $(TEST_WORKERS) --dist loadgroup

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link or anchor fails.
# The marts dictionary's tables are written from mmm_pipeline/schema.py first (a test fails when
# the committed page is out of date).
.PHONY: docs
$(VENV)/.installed-docs: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[docs]'
	@touch $@

docs: $(VENV)/.installed-docs
	$(PY) -m mmm_pipeline.schema docs/marts.md
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Model fits at once (pool `model_fit`): two markets fit side by side on 2+ cores (each fit of the
# sample peaks near 2.4 GB); 1 on a machine short of memory or for large markets.
export MMM_FIT_CONCURRENCY ?= 2

ui: $(VENV)/.installed
	@if [ "$(MMM_INPUT_DIR)" = "data/sample" ]; then $(MAKE) --no-print-directory sample; fi
	$(VENV)/bin/dagster instance concurrency set duckdb 1
	$(VENV)/bin/dagster instance concurrency set model_fit $(MMM_FIT_CONCURRENCY)
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

validate: $(VENV)/.installed
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

bench: $(VENV)/.installed
	$(PY) bench/bench_ingest.py

clean:
	rm -rf data/warehouse.duckdb* data/artifacts data/published history storage schedules logs
