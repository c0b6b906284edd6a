# The LLMOps platform. `make demo` and `make test` do all set-up on a fresh machine (Debian 12, Python 3.11,
# OpenJDK 17, Maven, Go): Python packages from the lock file, Kafka, SeaweedFS and Postgres into ~/.cache/llmops.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen --no-sync
LLMOPS := $(RUN) llmops
# Local development: the repository's development secrets are accepted (unset, LLMOPS_ENV means production rules).
export LLMOPS_ENV ?= local

.PHONY: help install infra-up infra-down infra-status up down ps lint format schemas test test-unit demo chaos bench-bus bench-audit bench-datasets bench-pii bench-prompts bench-train bench-eval bench-gateway bench-monitoring clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.venv/.installed: pyproject.toml uv.lock libs/pyproject.toml schemas/pyproject.toml $(wildcard services/*/pyproject.toml) \
		$(wildcard examples/*/pyproject.toml)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python 3.11
	@touch $@

install: .venv/.installed ## create .venv from the lock file

infra-up: install ## provision (first time) and start Kafka, Postgres and the S3 store; wait until healthy
	$(LLMOPS) infra up

infra-down: install ## stop the local infrastructure (data stays in ~/.cache/llmops)
	$(LLMOPS) infra down

infra-status: install ## health of each infrastructure part; non-zero exit when one is down
	$(LLMOPS) infra status

up: infra-up ## start every service, the gateway and a CPU worker of each kind, each in its own process; wait until ready
	$(LLMOPS) up --no-infra

down: install ## stop the platform's processes gracefully (the infrastructure keeps running)
	$(LLMOPS) down

ps: install ## what runs of the platform: state, pid, URL and log of each process
	$(LLMOPS) ps

lint: install ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

schemas: install ## re-export the JSON Schema files of every event and the AsyncAPI document of the topics
	$(RUN) python -m llmops_schemas.export schemas/json
	$(RUN) python -m llmops_schemas.asyncapi schemas/asyncapi.json

# Test workers (pytest-xdist processes): each service's tests run on one worker, one after another, other files are
# shared out (conftest.py says why); TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 3

test: lint infra-up ## every test (unit and integration on real Kafka, Postgres, SeaweedFS), in TEST_WORKERS parallel workers
	$(RUN) pytest -n $(TEST_WORKERS) --dist loadgroup

test-unit: install ## the tests that need no infrastructure
	$(RUN) pytest -m "not integration"

demo: infra-up ## the platform's main job end to end, every part in its own process (llmops up); KEEP=1 leaves it running
	$(RUN) python infra/demo/demo.py

chaos: infra-up ## the platform under mixed load while its processes are killed and Kafka, Postgres and the object store restarted; prints and checks the invariants (CHAOS_SEED, CHAOS_BREAK=commit-first)
	$(RUN) python tests/chaos/chaos.py

bench-bus: infra-up ## events/s through outbox, Kafka and idempotent consumer vs raw aiokafka
	$(RUN) python tests/bench/bench_bus.py

bench-audit: infra-up ## sustained audit ingest (events/s into the verified chain) vs raw consume
	$(RUN) python tests/bench/bench_audit.py

bench-datasets: infra-up ## dataset ingest MB/s vs plain object-store upload; service memory on a 1 GB upload
	$(RUN) python tests/bench/bench_datasets.py

bench-pii: install ## rows/s of PII redaction (all kinds, mixed rows) vs the redactor it replaced
	$(RUN) python tests/bench/bench_pii.py

bench-prompts: install ## renders/s through the prompts client's local renderer vs plain Jinja2
	$(RUN) python tests/bench/bench_prompts.py

bench-train: infra-up ## training tokens/s of the worker vs a plain TRL + peft script on the same tiny model
	$(RUN) python tests/bench/bench_train.py

bench-eval: install ## evaluation: scorer pairs/s vs sacrebleu + rouge-score, and worker generation tokens/s vs a model.generate loop
	$(RUN) python tests/bench/bench_eval.py

bench-gateway: infra-up ## inference gateway: added latency p50/p99 (1 and 32 clients, whole and TTFT) and requests/s vs the backend direct
	$(RUN) python tests/bench/bench_gateway.py

bench-monitoring: infra-up ## monitoring: sustained ingest (events/s into record store and metrics) vs raw consume; drift report via the service vs Evidently direct
	$(RUN) python tests/bench/bench_monitoring.py

clean: ## remove the virtual environment (the infrastructure cache stays)
	rm -rf .venv
