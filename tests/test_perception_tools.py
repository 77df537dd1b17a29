"""Tiny end-to-end runs of the perception tools on the tiny mini world:
train (2 steps) -> resume (1 more) -> eval (model and --chance) -> export tokens (model and --oracle)."""

import json
from pathlib import Path

import pytest
import yaml
from test_perception_train import TINY
from tool_helpers import load_tool

from perception.tokens import load_token_cache

TOOLS = Path(__file__).resolve().parents[1] / "tools"




train_tool, eval_perception, export_tokens = (load_tool(n) for n in ("train", "eval_perception", "export_tokens"))


def test_train_eval_export_on_the_tiny_world(mini_world, mini_records, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {"epochs": 1, "batch_size": 2}}))
    run = tmp_path / "run"
    common = ["--stage", "perception", "--config", str(config), "--dataroot", str(mini_world), "--out", str(run)]
    assert train_tool.main(common + ["--max-steps", "2"]) == 0
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 2
    assert train_tool.main(common + ["--resume", "--max-steps", "3"]) == 0
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 3

    for i, source in enumerate((["--checkpoint", str(run / "last")], ["--chance", "--config", str(config)],
                                ["--targets", "--config", str(config)])):
        report_path = tmp_path / f"report_{i}.json"
        assert eval_perception.main(source + ["--dataroot", str(mini_world), "--split", "val", "--out", str(report_path)]) == 0
        report = json.loads(report_path.read_text())
        assert 0.0 <= report["detection"]["mAP"] <= 1.0 + 1e-9 and report["keyframes"] == len(mini_records["val"])
        devkit = report["detection_devkit"]  # the devkit's own DetectionEval, on the official split of our val
        assert devkit["eval_set"] == "mini_val" and 0.0 <= devkit["mAP"] <= 1.0
        if source[0] == "--targets":  # the targets scored against themselves: 1 by construction
            assert report["detection"]["mAP"] == pytest.approx(1.0) and report["map"]["mAP"] == pytest.approx(1.0)

    for source in (["--checkpoint", str(run / "last")], ["--oracle", "--config", str(config)]):
        cache = tmp_path / f"tokens_{len(source)}.safetensors"
        assert export_tokens.main(source + ["--dataroot", str(mini_world), "--split", "val", "--out", str(cache)]) == 0
        tokens = load_token_cache(cache)
        assert set(tokens) == {r.sample_token for r in mini_records["val"]}
        assert all(t.scene.shape == (2 * 6, 16) and t.agents.shape[1] == 16 for t in tokens.values())


def test_ground_view_raster_head_trains_evaluates_and_draws(mini_world, mini_records, tmp_path):
    """configs/perception/raster.yaml's head at tiny size: train 2 steps, evaluate val with pictures, export tokens."""
    config = tmp_path / "ground.yaml"
    model = {**TINY["model"], "map_head": "raster", "ground_view_scale": 2, "ground_image_size": [96, 54]}
    grid = {**TINY["grid"], "heights": [0.3, 1.2], "heights_from_ground": True}
    config.write_text(yaml.safe_dump({**TINY, "grid": grid, "model": model, "train": {"epochs": 1, "batch_size": 2},
                                      "inference": {"map_raster_crest": True}}))
    run = tmp_path / "run"
    assert train_tool.main(["--stage", "perception", "--config", str(config), "--dataroot", str(mini_world),
                            "--out", str(run), "--max-steps", "2"]) == 0
    pictures = tmp_path / "pictures"
    assert eval_perception.main(["--checkpoint", str(run / "last"), "--dataroot", str(mini_world), "--split", "val",
                                 "--skip-devkit", "--pictures", "2", "--pictures-out", str(pictures)]) == 0
    assert len(list(pictures.glob("*.png"))) == 2
    cache = tmp_path / "tokens.safetensors"
    assert export_tokens.main(["--checkpoint", str(run / "last"), "--dataroot", str(mini_world), "--split", "val",
                               "--out", str(cache)]) == 0
    assert set(load_token_cache(cache)) == {r.sample_token for r in mini_records["val"]}
