# VLA-World: two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the pinned CPU install when it is missing.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
CONSTRAINTS := requirements/constraints.txt
DATA ?= data/mini_world
OUT ?= outputs
# Where torch comes from. This machine has the CPU wheel locally (pip's find-links); elsewhere use
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# so pip does not fetch the multi-GB CUDA build from PyPI.
TORCH_INDEX ?=
TORCH_FLAGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
export PYTHONUNBUFFERED := 1

.PHONY: install demo results ablation-tokens test test-all lint bench clean-data llamafactory-smoke

install: $(VENV)/.installed

# torch first from the local CPU wheel, then everything else under the constraints file
# so no requirement can pull a newer (CUDA) torch or numpy 2.
$(VENV)/.installed: setup.py $(CONSTRAINTS)
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23"
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH_FLAGS) "torch==2.13.0"
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[dev]"
	$(VPY) -c "import torch, nuscenes, transformers; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

# The whole pipeline at tiny size (one planning seed); rewrites the README's results table from its
# own run on the held-out test split. DEMO_FLAGS=--keep reuses finished training runs.
DEMO_FLAGS ?=
demo: install
	$(VPY) tools/demo.py --data $(DATA) --out $(OUT) --readme README.md $(DEMO_FLAGS)

# docs/results.md: the demo with three planning seeds (mean +- std), two trained side by side; the
# demo's own finished runs are kept, so after `make demo` this trains seeds 1 and 2 only.
results: install
	$(VPY) tools/demo.py --data $(DATA) --out $(OUT) --seeds 0 1 2 --keep --jobs 2 --results-md docs/results.md

# Issue 16: planning (3 seeds) and instruct on oracle vs perception tokens, test split; rewrites the table
# between the ablation-tokens markers of both docs. After `make demo`: 8 training runs, all redone (the start
# checkpoints may be new); ABLATION_FLAGS=--keep resumes a run cut short.
ABLATION_FLAGS ?=
ablation-tokens: install
	$(VPY) tools/ablate_tokens.py --data $(DATA) --docs docs/results.md docs/perception.md $(ABLATION_FLAGS)

test: install
	$(VPY) -m pytest -q -m "not slow" tests

test-all: install
	$(VPY) -m pytest -q tests

lint: install
	$(VPY) -m ruff check vla_world perception planning tools tests benchmarks
	$(VENV)/bin/lint-imports

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

clean-data:
	rm -rf $(DATA) $(OUT)

# LLaMA-Factory export, proven by training with it: its own venv (.venv-llamafactory), the tiny planning
# data as text, a few LoRA steps on CPU, the losses printed (docs/export.md). Not part of `make test`.
llamafactory-smoke: install
	bash tools/llamafactory_smoke.sh
