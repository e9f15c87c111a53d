# Two entry points for a fresh machine with Python 3.11 and make:
#   make demo   -> the main job on its built-in default
#   make test   -> the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(TSTAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bms demo

test: $(TSTAMP)
	sh scripts/install-system-deps.sh
	$(PY) -m hil.warm --jobs 2   # numba's cache filled once, two groups side by side: the workers only load it
	$(PY) -m pytest -n 2 -q -m "not realtime"
	$(PY) -m pytest -q -m realtime

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
