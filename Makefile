# VLA-World: two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned CPU install when it is missing.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
CONSTRAINTS := requirements/constraints.txt
DATA ?= data/mini_world
OUT ?= outputs
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-all lint bench clean-data

install: $(VENV)/.installed

# torch first from the local CPU wheel, then everything else under the constraints file
# so no requirement can pull a newer (CUDA) torch or numpy 2.
$(VENV)/.installed: setup.py $(CONSTRAINTS)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23"
	$(PIP) install -q -c $(CONSTRAINTS) "torch==2.13.0"
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev]"
	$(VPY) -c "import torch, nuscenes, transformers; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

demo: install
	$(VPY) tools/demo.py --data $(DATA) --out $(OUT)

test: install
	$(VPY) -m pytest -q -m "not slow" tests

test-all: install
	$(VPY) -m pytest -q tests

lint: install
	$(VPY) -m ruff check vla_world perception planning tools tests benchmarks

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean-data:
	rm -rf $(DATA) $(OUT)
