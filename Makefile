# `make run`: the main job; `make test`: the full test suite (with the docstring examples);
# `make lint`: ruff (lint + format check) and mypy on kernels/, theory/, deep/ and benchmarks/;
# `make mutate`: mutation test of kernels/ and theory/ (tests/mutate.py). All create .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH_WHEEL_SPEC ?= torch==2.13.0

.PHONY: run test lint mutate install clean gpu-check

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would pull GBs of CUDA wheels.
	$(PY) -m pip install -q "$(TORCH_WHEEL_SPEC)"
	$(PY) -m pip install -q -e ".[deep,test,dask]"
	touch $@

install: $(VENV)/.installed

# Every GPU path once (issue 11): tests on torch-CUDA and CuPy, GPU speed rows, GPU noisy CIFAR-10; exits 2
# without CUDA. GPU_CHECK_ARGS: e.g. "--dry-run", "--budget 300", "--data PATH" (benchmarks/gpu_check.py).
GPU_CHECK_ARGS ?=
gpu-check: install
	$(PY) -m benchmarks gpu-check $(GPU_CHECK_ARGS)

run: install
	$(PY) -m benchmarks run all --quick

test: install
	$(PY) -m pytest -n 2 -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# One small bug at a time in a temporary copy, only the tests that import the module; report under
# results/mutate/<stamp>/. MUTATE_ARGS: e.g. "--max-per-module 0" (every mutant), "all", "theory/air.py".
MUTATE_ARGS ?=
mutate: install
	nice -n 10 $(PY) tests/mutate.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
