# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment sees the system's packages, so a machine that already has a
# (GPU) build of torch keeps it; pip only adds what is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mirage-installed

.PHONY: setup torch test demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(MAKE) --no-print-directory torch
	$(PY) -m pip install -q -e ".[all,test]"
	touch $(STAMP)

# torch for this machine, before the project asks for it (a plain `pip install torch` is a
# multi-GB CUDA build): with an NVIDIA GPU the default build; without one the CPU build from
# PyTorch's CPU index (machine pip settings ignored, so nothing else is picked), falling back to
# the release this project is tested with (where a local wheel or a mirror provides it).
torch:
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch; \
	else PIP_CONFIG_FILE=/dev/null $(PY) -m pip install -q --timeout 15 --retries 0 torch \
	    --index-url https://download.pytorch.org/whl/cpu \
	  || $(PY) -m pip install -q "torch==2.13.0"; fi

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
