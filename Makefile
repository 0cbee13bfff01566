# The venv's Python is the Lambda's runtime (Chalice names the runtime after the Python that
# runs `chalice package`): 3.12 or 3.13, found on PATH or among pyenv's versions; else python3,
# which `lambdamesh check` then warns about.
PYTHON ?= $(or $(shell for p in python3.12 python3.13 $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3.12 $(HOME)/.pyenv/versions/3.13.*/bin/python3.13); do $$p -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13))' >/dev/null 2>&1 && { echo $$p; break; }; done),python3)
VENV := .venv
BIN := $(VENV)/bin
# `make demo` needs only the [local] extra; `make test` needs [dev], which includes it.
LOCAL_STAMP := $(VENV)/.installed-local
STAMP := $(VENV)/.installed
# checkov's own pins clash with the project's, so it lives in a venv of its own.
TOOLS := .venv-tools
CHECKOV := $(TOOLS)/bin/checkov
CHECKOV_VERSION := 3.3.30
# eureka-js-client for the end-to-end tier, as tests/e2e/eureka-js/package-lock.json pins it; the
# stamp lives in node_modules, so deleting that folder installs again. Without node and npm the
# test that runs it skips, and this says why.
EUREKA_JS := tests/e2e/eureka-js
EUREKA_JS_STAMP := $(EUREKA_JS)/node_modules/.installed

.PHONY: install demo dev test test-unit test-functional test-e2e test-deploy lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(LOCAL_STAMP): pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -e '.[local]'
	touch $(LOCAL_STAMP)

$(STAMP): pyproject.toml requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(LOCAL_STAMP) $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'

$(EUREKA_JS_STAMP): $(EUREKA_JS)/package.json $(EUREKA_JS)/package-lock.json
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		cd $(EUREKA_JS) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else \
		echo "node or npm not found: the eureka-js-client end-to-end test will be skipped"; \
	fi

install: $(STAMP) $(CHECKOV) $(EUREKA_JS_STAMP)

demo: $(LOCAL_STAMP)
	$(BIN)/lambdamesh dev --demo

dev: $(LOCAL_STAMP)
	$(BIN)/lambdamesh dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The deploy tier mostly waits on pip, chalice and checkov subprocesses, and three end-to-end
# files on clocks (certificates to renew in a CA rotation, Eureka clients' leases, an outage's
# backoff), so they run beside the other tiers (their report follows theirs); either failing
# fails the target.
DEPLOY_LOG := build/deploy-tier.log
BESIDE := tests/deploy tests/e2e/test_mesh_ca_rotation.py tests/e2e/test_eureka_clients.py \
	tests/e2e/test_faults.py

test: install lint typecheck
	@mkdir -p build
	LAMBDAMESH_CHECKOV=$(CHECKOV) $(BIN)/pytest $(BESIDE) -p no:cacheprovider > $(DEPLOY_LOG) 2>&1 & \
		deploy=$$!; \
	$(BIN)/pytest $(addprefix --ignore=,$(BESIDE)); others=$$?; \
	wait $$deploy; deployed=$$?; \
	echo "--- $(BESIDE) ---"; cat $(DEPLOY_LOG); \
	test $$others -eq 0 && test $$deployed -eq 0

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/routing sidecar/tests

test-functional: $(STAMP)
	$(BIN)/pytest tests/functional

test-e2e: $(STAMP) $(EUREKA_JS_STAMP)
	$(BIN)/pytest tests/e2e

test-deploy: install
	LAMBDAMESH_CHECKOV=$(CHECKOV) $(BIN)/pytest tests/deploy

clean:
	rm -rf $(VENV) $(TOOLS) $(EUREKA_JS)/node_modules .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python -m tests.bench.bench_gateway
	$(BIN)/python -m tests.bench.bench_handler
	$(BIN)/python -m tests.bench.bench_edge
	$(BIN)/python -m tests.bench.bench_sidecar
	$(BIN)/python -m tests.bench.bench_inbound
	$(BIN)/python -m tests.bench.bench_log_bytes
	$(BIN)/python -m tests.bench.bench_eureka
