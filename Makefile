# Payment analytics workspace. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,bench,spark
WAREHOUSE ?= warehouse
PYTEST_ARGS ?=
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
export PAYMENT_ANALYTICS_WAREHOUSE ?= $(abspath $(WAREHOUSE))

.PHONY: help install demo demo-reset test test-quick lab lint format bench docs clean system-deps

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 is needed, found " + sys.version.split()[0]' \
	  || { echo "error: install Python 3.11 (python3.11) and run make again"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (payment-analytics)" >/dev/null
	@touch $@

install: $(STAMP) ## Create .venv and install the workspace (pinned by constraints.txt)

system-deps: ## Install system packages the tests need (chromium), or say what to install
	@bash .ci/system-deps.sh

demo: install system-deps ## Build the demo warehouse (if absent), run a report, print where to look
	@if [ -d "$(WAREHOUSE)/transactions" ]; then \
	  echo "using the existing demo warehouse at $(WAREHOUSE) (make demo-reset rebuilds it)"; \
	else \
	  $(BIN)/payment-analytics demo-data; \
	fi
	@$(BIN)/payment-analytics info
	@echo ""
	@$(BIN)/payment-analytics analytics --period last-month
	@echo ""
	@$(BIN)/payment-analytics run monthly_executive --format html,pdf,xlsx
	@echo ""
	@echo "Demo warehouse: $(PAYMENT_ANALYTICS_WAREHOUSE)"
	@echo "Report portal:  outputs/index.html (open it in a browser; more: $(BIN)/payment-analytics reports)"
	@echo "Analytics:      $(BIN)/payment-analytics analytics --period 2026-Q3 --format json"
	@echo "Explore it:     make lab   (JupyterLab on the workspace)"
	@echo "Docs:           docs/architecture.md, docs/data-model.md, docs/metrics.md, docs/sources.md"

demo-reset: install ## Rebuild the demo warehouse from scratch
	$(BIN)/payment-analytics demo-data --replace

test: install system-deps ## Run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-quick: install ## Run the tests without the slow ones
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lab: install ## Start JupyterLab on the workspace
	$(BIN)/jupyter lab --notebook-dir=.

dashboards: install ## Serve the role dashboards (Voila on 127.0.0.1; tokens: docs/dashboards.md)
	$(BIN)/payment-analytics dashboards serve $(DASHBOARD_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check analytics_lib tests
	$(BIN)/ruff format --check analytics_lib tests
	$(BIN)/mypy analytics_lib

format: install ## Format the code with ruff
	$(BIN)/ruff format analytics_lib tests
	$(BIN)/ruff check --fix analytics_lib tests

bench: install ## Run the benchmarks (SCALE=1M by default; e.g. SCALE=1M,10M BENCH_ARGS="--keep DIR") and print one table
	$(BIN)/python -m tests.benchmarks.run --scale $${SCALE:-1M} $(BENCH_ARGS)

.PHONY: audit
# The probe asks PyPI for one pinned release's JSON, the endpoint pip-audit's default service
# reads: where it cannot be had, pip-audit would skip every package and still say "No known
# vulnerabilities found". AUDIT_UNREACHABLE=warn (CI) reports that and exits 0; =fail (default) exits 1.
AUDIT_UNREACHABLE ?= fail
define AUDIT_PROBE
import sys, urllib.request
url = f"https://pypi.org/pypi/pip-audit/{sys.argv[1]}/json"
try:
    urllib.request.urlopen(url, timeout=20)
except Exception as exc:
    sys.exit(f"{url}: {exc}")
endef
export AUDIT_PROBE
audit: install ## Check the pinned dependency set (constraints.txt) for known vulnerabilities (pip-audit)
	@version=$$(grep -i -m1 -E '^pip[-_]audit==' constraints.txt | cut -d= -f3); \
	if reason=$$($(BIN)/python -c "$$AUDIT_PROBE" "$$version" 2>&1); then \
	  timeout 1200 $(BIN)/pip-audit -r constraints.txt --no-deps --disable-pip --strict --progress-spinner off --timeout 30 \
	    && echo "make audit: $$(grep -c '==' constraints.txt) pinned packages of constraints.txt audited, no known vulnerability"; \
	else \
	  echo "make audit: NOT AUDITED: PyPI's per-release vulnerability data (https://pypi.org/pypi/<name>/<version>/json, read by pip-audit) cannot be had from this machine ($$reason); 0 of $$(grep -c '==' constraints.txt) pinned packages checked. See docs/reliability.md."; \
	  [ "$(AUDIT_UNREACHABLE)" = warn ]; \
	fi

docs: install ## Regenerate docs/data-model.md from the schema module
	$(BIN)/payment-analytics schema --markdown > docs/data-model.md

clean: ## Remove the virtualenv and caches (keeps the warehouse and outputs)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
