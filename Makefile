# `make run`: the main job; `make test`: the full test suite. Both create .venv if missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH_WHEEL_SPEC ?= torch==2.13.0

.PHONY: run test install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: a bare `torch` requirement would pull GBs of CUDA wheels.
	$(PY) -m pip install -q "$(TORCH_WHEEL_SPEC)"
	$(PY) -m pip install -q -e ".[deep,test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m benchmarks run all --quick

test: install
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
