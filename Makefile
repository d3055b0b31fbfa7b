# nanochat-bench — every target sets up what it needs itself.
#   make test              default test suite (creates/updates .venv first)
#   make benchmark GPU=0   matched-budget campaign on CUDA device 0 (d12), or the CPU smoke preset without CUDA
#   make profile           where one smoke-shape step's time goes, ours vs upstream (make profile-memory: d12 memory)
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

.PHONY: help setup browser test test-all test-upstream test-cpu-paths benchmark gpu-check-pack gpu-check microbench nightly \
	report readme serve clean profile profile-memory

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

setup: $(SETUP) ## create or update the virtualenv with the project installed

# The browser tests (tests/test_browser.py) install nothing: they find chromium on PATH or skip. This step installs
# Debian's chromium where it can (a root shell with apt-get), else says in one line why they will skip; never fails.
APT_GET := env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=1
browser: ## install headless Chromium for the browser tests where possible (root + apt-get), else say why they skip
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  exit 0; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "browser: no chromium on PATH and this is not a root shell with apt-get to install it: the browser tests will skip"; \
	else \
	  echo "browser: installing Debian's chromium with apt-get for the browser tests"; \
	  out=$$( { timeout 900 $(APT_GET) install -y chromium || \
	            { timeout 300 $(APT_GET) update && timeout 900 $(APT_GET) install -y chromium; }; } 2>&1 ); \
	  if command -v chromium >/dev/null 2>&1; then echo "browser: chromium installed"; \
	  else echo "browser: no chromium on PATH after apt-get install chromium ($$(printf '%s\n' "$$out" | tail -n 1)): the browser tests will skip"; fi; \
	fi

test: $(SETUP) browser ## run the default test suite (no upstream, no GPU needed)
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-all: $(SETUP) browser ## run every test, slow and upstream ones included
	$(PY) -m pytest $(PYTEST_ARGS)

test-upstream: $(SETUP) ## run the tests that need an upstream nanochat source (set NANOCHAT_UPSTREAM)
	$(PY) -m pytest -m upstream $(PYTEST_ARGS)

# Tests whose outcome rests on float arithmetic (training, optimizer, model, loss, data packing). torch picks CPU
# kernels by the CPU's instruction set, and CI may run on another CPU model than yours: run these once more on the
# lower code paths before submitting, so a threshold tuned on one CPU shows up here and not in CI.
NUMERIC_TESTS ?= tests/test_train.py tests/test_optim.py tests/test_gpt.py tests/test_fused.py tests/test_bpb.py \
	tests/test_checkpoint.py tests/test_data.py
CPU_PATHS ?= avx2 default

test-cpu-paths: $(SETUP) ## run the numerically sensitive tests under each lower ATen CPU path (ATEN_CPU_CAPABILITY)
	@set -e; for cap in $(CPU_PATHS); do \
	  echo "== ATEN_CPU_CAPABILITY=$$cap"; \
	  ATEN_CPU_CAPABILITY=$$cap $(PY) -m pytest -m "not slow and not gpu" -q $(NUMERIC_TESTS) $(PYTEST_ARGS); \
	done

benchmark: $(SETUP) ## run a campaign (GPU=N: CUDA device; PRESET=name to force one) and render its report
	$(PY) -m harness benchmark --gpu $(GPU) $(if $(PRESET),--preset $(PRESET)) $(ARGS)

gpu-check-pack: $(SETUP) ## build here what gpu-check needs into PACK=.gpu-pack (< 64 MiB; upstream from NANOCHAT_UPSTREAM)
	$(PY) -m harness.gpucheck pack --pack $(PACK) $(ARGS)

gpu-check: $(SETUP) ## gpu-smoke campaign of both arms on CUDA device GPU=0 from the pack, into OUT=DIR (ARGS=--dry-run: CPU)
	@test -n "$(OUT)" || { echo "error: name the results folder: make gpu-check OUT=gpu-out (add ARGS=--dry-run on CPU)" >&2; exit 2; }
	$(PY) -m harness.gpucheck check --pack $(PACK) --out $(OUT) --gpu $(GPU) $(ARGS)

microbench: $(SETUP) ## component micro-benchmarks of both implementations (pytest-benchmark)
	$(PY) -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-autosave $(PYTEST_ARGS)

profile: $(SETUP) ## one compiled smoke-shape step, ours vs upstream, per kernel family (NANOCHAT_UPSTREAM; docs/performance.md)
	$(PY) -m benchmarks.profile_step $(ARGS)

profile-memory: $(SETUP) ## d12-shaped step (B=1, fp32 CPU): allocator peak and peak RSS, ours vs upstream (docs/performance.md)
	$(PY) -m benchmarks.profile_step --memory $(ARGS)

nightly: $(SETUP) ## nightly regression run against the latest upstream
	$(PY) -m harness nightly $(ARGS)

report: $(SETUP) ## render a campaign's report (CAMPAIGN=campaigns/<id>; ARGS="--out reports --site" to publish)
	$(PY) -m harness report $(CAMPAIGN) $(ARGS)

serve: $(SETUP) ## preview reports/ on localhost
	$(PY) -m harness serve $(ARGS)

readme: $(SETUP) ## rewrite the README findings section from the latest campaign
	$(PY) -m harness readme $(ARGS)

clean: ## remove the virtualenv and caches (campaign results are kept)
	rm -rf $(VENV) .pytest_cache .benchmarks
