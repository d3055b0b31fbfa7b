# nanochat-bench — every target sets up what it needs itself.
#   make test              default test suite (creates/updates .venv first)
#   make benchmark GPU=0   matched-budget campaign on CUDA device 0 (d12), or the CPU smoke preset without CUDA
# On a machine whose Python already has torch and cannot download (a lent GPU box), pass SYSTEM_PYTHON=python3
# to use that interpreter as it is instead of building .venv.

SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV ?= .venv
SYSTEM_PYTHON ?=
GPU ?= 0
PRESET ?=
ARGS ?=
PYTEST_ARGS ?=
PACK ?= .gpu-pack
OUT ?=

ifeq ($(SYSTEM_PYTHON),)
PY := $(VENV)/bin/python
SETUP := $(VENV)/.installed
else
PY := $(SYSTEM_PYTHON)
SETUP :=
endif

.PHONY: help setup test test-all test-upstream benchmark gpu-check-pack gpu-check microbench nightly report readme serve clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

setup: $(SETUP) ## create or update the virtualenv with the project installed

test: $(SETUP) ## run the default test suite (no upstream, no GPU needed)
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(SETUP) ## run every test, slow and upstream ones included
	$(PY) -m pytest $(PYTEST_ARGS)

test-upstream: $(SETUP) ## run the tests that need an upstream nanochat source (set NANOCHAT_UPSTREAM)
	$(PY) -m pytest -m upstream $(PYTEST_ARGS)

benchmark: $(SETUP) ## run a campaign (GPU=N: CUDA device; PRESET=name to force one) and render its report
	$(PY) -m harness benchmark --gpu $(GPU) $(if $(PRESET),--preset $(PRESET)) $(ARGS)

gpu-check-pack: $(SETUP) ## build here what gpu-check needs into PACK=.gpu-pack (< 64 MiB; upstream from NANOCHAT_UPSTREAM)
	$(PY) -m harness.gpucheck pack --pack $(PACK) $(ARGS)

gpu-check: $(SETUP) ## gpu-smoke campaign of both arms on CUDA device GPU=0 from the pack, into OUT=DIR (ARGS=--dry-run: CPU)
	@test -n "$(OUT)" || { echo "error: name the results folder: make gpu-check OUT=gpu-out (add ARGS=--dry-run on CPU)" >&2; exit 2; }
	$(PY) -m harness.gpucheck check --pack $(PACK) --out $(OUT) --gpu $(GPU) $(ARGS)

microbench: $(SETUP) ## component micro-benchmarks of both implementations (pytest-benchmark)
	$(PY) -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

nightly: $(SETUP) ## nightly regression run against the latest upstream
	$(PY) -m harness nightly $(ARGS)

report: $(SETUP) ## render a campaign's report (CAMPAIGN=campaigns/<id>; ARGS="--out reports/<id> --site" to publish)
	$(PY) -m harness report $(CAMPAIGN) $(ARGS)

serve: $(SETUP) ## preview reports/ on localhost
	$(PY) -m harness serve $(ARGS)

readme: $(SETUP) ## rewrite the README findings section from the latest campaign
	$(PY) -m harness readme $(ARGS)

clean: ## remove the virtualenv and caches (campaign results are kept)
	rm -rf $(VENV) .pytest_cache .benchmarks
