"""tools/export_data.py --format easyr1 and planning/easyr1_reward.py, loaded by path as EasyR1 loads it.

EasyR1's loader (hiyouga/EasyR1 verl/workers/reward/function.py, AutoRewardManager) runs
`importlib.util.spec_from_file_location("custom_reward_fn", path)`, registers the module in
`sys.modules`, executes it and calls `fn(reward_inputs)` with a list of
{"response", "response_length", "ground_truth"} dicts; the test does the same in a fresh process
where this repository is not importable, so the file must stand on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tool_helpers import ROOT, load_tool

REWARD_FILE = ROOT / "planning" / "easyr1_reward.py"


@pytest.fixture(scope="module")
def exported(mini_world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("easyr1")
    args = ["--format", "easyr1", "--stage", "planning", "--split", "val", "--tokens", "oracle", "--images",
            "--dataroot", str(mini_world), "--out", str(out), "--quiet"]
    assert load_tool("export_data").main(args) == 0
    return out


def rows(folder: Path, name: str = "planning_val") -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


def test_export_holds_the_prompt_the_sequence_builder_writes(exported, mini_world, mini_records):
    from planning.rewards import RewardTarget
    from vla_world.data.planner_input import planner_input
    from vla_world.data.records import CAMERAS
    from vla_world.model.sequence import (
        PLANNING_QUESTION,
        SequenceBuilder,
        chatml_prompt,
        select_features,
    )
    from vla_world.training.data import oracle_token_map

    records = [r for r in mini_records["val"] if r.ego_future_mask.any()]
    tokens = oracle_token_map(records)
    lines = rows(exported)
    assert len(lines) == len(records)
    markers = "".join(f"{camera}: <image>\n" for camera in CAMERAS)
    builder = SequenceBuilder(tokenizer=None)  # prompt_text builds text only
    for record, line in zip(records, lines):
        assert line["problem"].startswith(markers)
        user = line["problem"][len(markers):]
        expected = builder.prompt_text(planner_input(record), select_features(tokens[record.sample_token], None), PLANNING_QUESTION)
        assert chatml_prompt(user) == expected
        assert RewardTarget.from_json(line["answer"]).sample_token == record.sample_token
        assert line["images"] == list(record.camera_paths) and all((mini_world / p).is_file() for p in line["images"])


def test_metadata_names_source_command_and_counts(exported, mini_records):
    meta = json.loads((exported / "planning_val.meta.json").read_text())
    without_future = sum(not r.ego_future_mask.any() for r in mini_records["val"])
    assert meta["counts"] == {"records": len(mini_records["val"]), "written": len(mini_records["val"]) - without_future,
                              "skipped": {"no future step to score": without_future} if without_future else {}}
    assert meta["tokens"].startswith("oracle") and "--tokens oracle" in meta["command"]
    assert meta["easyr1"]["settings"]["worker.reward.skip_special_tokens"] is False
    assert meta["reward_target"]["collision_convention"] == "stp3"


def test_a_token_file_sizes_the_placeholder_blocks(mini_world, mini_records, tmp_path):
    from perception.tokens import save_token_cache
    from tests.model_helpers import fake_tokens

    cache = tmp_path / "val.safetensors"
    save_token_cache(cache, {r.sample_token: fake_tokens(r, scene=3, maps=2) for r in mini_records["val"]})
    args = ["--format", "easyr1", "--stage", "planning", "--split", "val", "--tokens", str(cache),
            "--dataroot", str(mini_world), "--out", str(tmp_path / "out"), "--quiet"]
    assert load_tool("export_data").main(args) == 0
    line = rows(tmp_path / "out")[0]
    assert "<scene_start><SCENE><SCENE><SCENE><scene_end>" in line["problem"] and "images" not in line
    assert json.loads((tmp_path / "out" / "planning_val.meta.json").read_text())["tokens"] == f"token cache: {cache}"
    with pytest.raises(SystemExit, match="token"):
        load_tool("export_data").main(args[:7] + [str(tmp_path / "missing.safetensors")] + args[8:])


LOADER = r"""
import importlib.util, json, sys
root = sys.argv[1]
sys.path[:] = [p for p in sys.path if p.rstrip("/") != root]  # as inside EasyR1: this repository is not installed
for finder in list(sys.meta_path):  # pip's editable install: a finder class from an __editable__ module
    if "editable" in (getattr(finder, "__module__", "") + type(finder).__name__).lower():
        sys.meta_path.remove(finder)
assert importlib.util.find_spec("planning") is None, "the test must run without the repository on sys.path"
spec = importlib.util.spec_from_file_location("custom_reward_fn", sys.argv[2])
module = importlib.util.module_from_spec(spec)
sys.modules["custom_reward_fn"] = module
spec.loader.exec_module(module)
assert (module.REWARD_TYPE, module.REWARD_NAME) == ("batch", "vla_world_planning")
inputs = json.loads(sys.stdin.read())
print(json.dumps({"plain": module.compute_score(inputs),
                  "structured": module.compute_score(inputs, structured=True, accuracy_weight=0.5),
                  "heavy": sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "nuscenes", "cv2", "scipy", "shapely"})}))
"""


def test_reward_file_loads_by_path_and_scores_exported_ground_truths(exported):
    from planning.codec import format_trajectory
    from planning.rewards import RewardTarget

    lines = rows(exported)
    inputs = []
    for line in lines:
        truth = format_trajectory(RewardTarget.from_json(line["answer"]).ego_future)
        inputs.append({"response": truth + "<|im_end|>", "response_length": 90, "ground_truth": line["answer"]})
    inputs.append({"response": "I would rather not.", "response_length": 5, "ground_truth": lines[0]["answer"]})
    out = subprocess.run([sys.executable, "-c", LOADER, str(ROOT), str(REWARD_FILE)], input=json.dumps(inputs),
                         capture_output=True, text=True, cwd="/", check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    plain, structured = result["plain"], result["structured"]
    assert [s["overall"] for s in plain[:-1]] == [1.0] * len(lines)  # every GT scores the maximum
    assert set(plain[0]) == {"overall", "format", "collision", "accuracy"}
    assert plain[-1] == {"overall": 0.0, "format": 0.0, "collision": 0.0, "accuracy": 0.0}
    assert set(structured[0]) == {"overall", "format", "collision", "accuracy", "grounding", "consistency"}
    assert all(s["overall"] == 0.0 for s in structured)  # a plain answer fails the structured form
