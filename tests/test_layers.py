"""The layers read bottom to top, and the leaf modules stay leaves.

Layers (contract in `.importlinter`, checked by import-linter): vla_world.config / checkpoint ->
vla_world.data -> vla_world.mini_world -> perception | planning -> vla_world.qa (stage data) ->
vla_world.model -> vla_world.training -> vla_world.inference -> tools. A lower layer never imports a
higher one, so `vla_world` is a namespace for several layers, not one side of a package cycle.

Leaves: the record contract, the planner-input / target types, the trajectory codec and the metric
core are imported by light tools and by reward verifiers that run inside other trainers; they must
not pull in torch, transformers or the nuScenes devkit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAVES = ("vla_world.data.records", "vla_world.data.planner_input", "vla_world.data.targets",
          "planning.codec", "planning.metrics", "planning.rewards", "planning.easyr1_reward", "planning.structured")
HEAVY = ("torch", "transformers", "nuscenes", "scipy", "shapely", "cv2")


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", LEAVES)
def test_leaf_modules_import_without_heavy_packages(module):
    loaded = {name.split(".")[0] for name in modules_after_import(module)}
    assert not loaded & set(HEAVY), f"importing {module} pulled in {sorted(loaded & set(HEAVY))}"


def test_the_leaf_check_can_fail():
    """The probe itself sees a heavy import when there is one (so the test above can fail)."""
    assert "torch" in {name.split(".")[0] for name in modules_after_import("perception.tokens")}


def test_stage_configs_read_without_transformers():
    loaded = {name.split(".")[0] for name in modules_after_import("vla_world.training.config")}
    assert not loaded & set(HEAVY), f"reading a stage config pulled in {sorted(loaded & set(HEAVY))}"


def test_layer_contract_is_kept():
    # a subprocess: import-linter configures logging in the process it runs in
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / '.importlinter')!r}, no_cache=True))")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, f"a module imports from a layer above it:\n{out.stdout[-3000:]}"
