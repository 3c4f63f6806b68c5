# Two commands matter: `make demo` and `make test`. Both create .venv when it is missing and
# reinstall only when pyproject.toml changed since the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format dev gateway mcp bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# BACKEND=gateway (default): the simulated IB Gateway over ib_async; webapi: the simulated Client
# Portal Web API gateway over HTTPS; sim: the in-process simulator.
BACKEND ?= gateway

demo: $(STAMP)  ## run the daily pipeline for the latest NYSE session on the simulated world (BACKEND=gateway|webapi|sim)
	$(BIN)/ibkr-agent demo --backend $(BACKEND)

test: $(STAMP)  ## the import-layer contracts, then the whole test-suite, its files spread over one worker per core (exit code 5, "no tests collected", counts as a pass)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=15; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `dg dev` is Dagster's command for this (`dagster dev` is superseded). It runs in the
# instance directory, <data root>/.dagster, so the only dagster.yaml Dagster sees there is
# the instance's own (run from here, Dagster would warn that ./dagster.yaml, the template
# copied into the instance, does not configure it). IBKR_* values naming a file or folder
# relative to here are made absolute first, so they mean what they mean to `ibkr-agent`.
# The weekly backtest's calibration replays its candidates on a Dask cluster: a local one by
# default; for a real one: `dask scheduler` (port 8786), `dask worker tcp://HOST:8786` on each
# machine (this package installed), then `IBKR_DASK_SCHEDULER=tcp://HOST:8786 make dev`.
dev: $(STAMP)  ## the Dagster UI on http://127.0.0.1:3000 (DAGSTER_PORT), the instance `ibkr-agent run` uses
	root="$$(realpath -m "$${IBKR_DATA_DIR:-data}")" && home="$$root/.dagster" && \
	mkdir -p "$$home" && { [ -e "$$home/dagster.yaml" ] || cp dagster.yaml "$$home/"; } && \
	{ cmp -s dagster.yaml "$$home/dagster.yaml" || echo "note: $$home/dagster.yaml differs from ./dagster.yaml (run queue, limits); copy it over to use the shipped settings" >&2; } && \
	for name in $$(compgen -e | grep '^IBKR_'); do \
	  value="$${!name}"; \
	  if [[ -n "$$value" && "$$value" != /* && -e "$$value" ]]; then export "$$name=$$PWD/$$value"; fi; \
	done && \
	cd "$$home" && IBKR_DATA_DIR="$$root" DAGSTER_HOME="$$home" \
	"$(CURDIR)/$(BIN)/dg" dev -w "$(CURDIR)/workspace.yaml" -h 127.0.0.1 -p $${DAGSTER_PORT:-3000}

gateway: $(STAMP)  ## the simulated IB Gateway on 127.0.0.1:4002, with IB's pacing limits
	$(BIN)/ibkr-sim gateway --port 4002 --pacing ib

mcp: $(STAMP)  ## the MCP server on http://127.0.0.1:8000/mcp
	$(BIN)/ibkr-agent mcp serve

bench: $(STAMP)
	for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done  # bench/_*.py: shared helpers

clean:
	rm -rf $(VENV) data .pytest_cache
