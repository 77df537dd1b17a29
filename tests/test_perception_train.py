"""Training: a few steps on two synthetic keyframes lower the loss; save/resume continues exactly."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perception.config import PerceptionConfig
from perception.inputs import ImageCache, load_camera_batch
from perception.model import BevPerception
from perception.train import prepare_model, train
from vla_world.config import config_from_dict
from vla_world.data.synthetic import synthetic_record

TINY = {
    "grid": {"x_half": 16.0, "y_half": 16.0, "cells": 16, "heights": [0.0]},
    "model": {"image_size": [64, 36], "backbone_channels": [8, 16, 16], "fpn_channels": 16, "token_dim": 16,
              "bev_encoder_blocks": 1, "scene_pool": [1, 2], "num_agent_queries": 6, "num_map_queries": 4,
              "map_points": 5, "decoder_layers": 1, "decoder_heads": 2, "ffn_dim": 32},
    "train": {"epochs": 10, "batch_size": 2, "lr": 3e-3, "warmup_steps": 1, "log_every": 1},
}


def tiny_config(**train) -> PerceptionConfig:
    data = {k: dict(v) for k, v in TINY.items()}
    data["train"].update(train)
    return config_from_dict(PerceptionConfig, data, "test")


def synthetic_dataroot(root: Path, count: int = 2) -> list:
    """`count` synthetic keyframes with random-noise JPEGs at their camera paths."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        record = synthetic_record(agents=[("car", 3.0 * i, 8.0, 0.0, 2.0)], token=f"s{i}")
        record.camera_paths = np.array([f"samples/{i}_{c}.jpg" for c in range(6)])
        for path in record.camera_paths:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)).save(root / path)
        records.append(record)
    return records


def test_model_output_shapes(tmp_path):
    cfg = tiny_config()
    records = synthetic_dataroot(tmp_path)
    out = BevPerception(cfg)(load_camera_batch(records, ImageCache(tmp_path, cfg.model.image_size)))
    assert out["scene"].shape == (2, cfg.num_scene_tokens, 16)
    assert out["bev"].shape == (2, 16, 16, 16)
    assert out["agents"]["centres"].shape == (2, 6, 2) and out["agents"]["logits"].shape == (2, 6, 10)
    assert out["map"]["points"].shape == (2, 4, 5, 2)
    assert float(out["agents"]["centres"].detach().abs().max()) <= 16.0


def test_missing_image_names_the_file(tmp_path):
    record = synthetic_record()
    with pytest.raises(FileNotFoundError, match="x.jpg"):
        load_camera_batch([record], ImageCache(tmp_path, (64, 36)))


def test_short_training_lowers_the_loss(tmp_path):
    cfg = tiny_config(epochs=12)
    records = synthetic_dataroot(tmp_path)
    model, optimizer, _ = prepare_model(cfg, tmp_path / "run")
    (tmp_path / "run").mkdir()
    result = train(model, optimizer, records, tmp_path, cfg, tmp_path / "run", progress=False)
    assert result.step == 12
    assert np.mean(result.losses[-3:]) < 0.75 * np.mean(result.losses[:3])
    assert (tmp_path / "run" / "last" / "config.yaml").is_file() and (tmp_path / "run" / "epoch_12").is_dir()


@pytest.mark.parametrize("half_turns", [0.0, 0.5])  # the augmentation's draws are a function of (seed, step)
def test_resume_gives_the_same_next_loss(tmp_path, half_turns):
    cfg = tiny_config(epochs=3, batch_size=1, half_turn_probability=half_turns)  # 2 steps per epoch: resume mid-epoch
    records = synthetic_dataroot(tmp_path)
    for run in ("straight", "split"):
        (tmp_path / run).mkdir()
    model, optimizer, _ = prepare_model(cfg, tmp_path / "straight")
    straight = train(model, optimizer, records, tmp_path, cfg, tmp_path / "straight", progress=False)
    model, optimizer, _ = prepare_model(cfg, tmp_path / "split")
    train(model, optimizer, records, tmp_path, cfg, tmp_path / "split", max_steps=3, progress=False)
    model, optimizer, step = prepare_model(cfg, tmp_path / "split", resume=True)
    resumed = train(model, optimizer, records, tmp_path, cfg, tmp_path / "split", start_step=step, progress=False)
    assert step == 3
    assert resumed.losses == pytest.approx(straight.losses[3:], rel=1e-5)
