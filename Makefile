# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment sees the system's packages, so a machine that already has a
# (GPU) build of torch keeps it; pip only adds what is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mirage-installed

.PHONY: setup test demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e ".[all,test]"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/mirage demo --out demo

lint: $(STAMP)
	$(PY) -m ruff check mirage tests benchmarks scripts
	$(PY) -m ruff format --check mirage tests benchmarks scripts
	$(PY) -m mirage._layers

bench: $(STAMP)
	$(PY) benchmarks/memory_readout.py

clean:
	rm -rf $(VENV) demo .pytest_cache .ruff_cache
