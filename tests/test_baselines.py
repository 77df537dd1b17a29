"""Planning baselines: constant velocity by hand, Ego-MLP features and training, run_baselines end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from planning.baselines import (
    EgoMLPConfig,
    constant_velocity,
    ego_features,
    predict_ego_mlp,
    train_ego_mlp,
)
from planning.predictions import load_predictions
from vla_world.config import ConfigError, config_from_dict, load_config
from vla_world.data.records import CMD_LEFT
from vla_world.data.synthetic import synthetic_record


def test_constant_velocity_is_exact_on_straight_driving():
    record = synthetic_record(speed=7.3)
    np.testing.assert_allclose(constant_velocity(record), record.ego_future, atol=1e-5)


def test_constant_velocity_uses_lateral_velocity():
    record = synthetic_record(speed=4.0)
    record.ego_velocity = np.array([1.0, 4.0], np.float32)
    # t = 0.5 .. 3.0 s: (0.5, 2.0), ..., (3.0, 12.0)
    expected = np.stack([np.arange(1, 7) * 0.5, np.arange(1, 7) * 2.0], 1)
    np.testing.assert_allclose(constant_velocity(record), expected)


def test_ego_features_layout():
    record = synthetic_record(speed=2.0, command=CMD_LEFT)
    record.ego_past_mask = np.array([False, True, True, True])
    features = ego_features(record)
    assert features.shape == (21,) and features.dtype == np.float32
    np.testing.assert_allclose(features[:2], 0.0)  # the masked pose at -2.0 s is zeroed
    np.testing.assert_allclose(features[2:8], record.ego_past[1:].reshape(-1))
    np.testing.assert_allclose(features[8:12], [0, 1, 1, 1])
    np.testing.assert_allclose(features[12:14], [0.0, 2.0])  # velocity (x right, y forward)
    np.testing.assert_allclose(features[-3:], [0, 1, 0])  # "turn left" one-hot


def test_ego_mlp_learns_straight_driving():
    torch.set_num_threads(1)
    records = [synthetic_record(speed=s, token=f"s{i}") for i, s in enumerate(np.linspace(1.0, 12.0, 12))]
    cfg = EgoMLPConfig(hidden_sizes=[32], epochs=200, batch_size=12, lr=1e-2, loss="l2")
    model = train_ego_mlp(records, cfg, progress=False)
    predictions = predict_ego_mlp(model, records)
    errors = [np.linalg.norm(predictions[r.sample_token] - r.ego_future, axis=1).mean() for r in records]
    # Standing still would be ~11 m off on average; the fit must be far better than that.
    assert np.mean(errors) < 0.5


def test_ego_mlp_config_validation():
    with pytest.raises(ConfigError, match="loss"):
        config_from_dict(EgoMLPConfig, {"loss": "l3"}, "test")
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_dict(EgoMLPConfig, {"layers": 3}, "test")


def test_shipped_config_loads():
    cfg = load_config("configs/baselines/ego_mlp.yaml", EgoMLPConfig)
    assert cfg.loss == "l1" and cfg.hidden_sizes == [128, 128]


def test_run_baselines_end_to_end(mini_world, tmp_path):
    from tools.run_baselines import main

    out = tmp_path / "baselines"
    assert main(["--dataroot", str(mini_world), "--out", str(out), "--set", "epochs=3", "--quiet"]) == 0
    from vla_world.data import load_records

    val_tokens = {r.sample_token for r in load_records(mini_world, split="val", progress=False)}
    for name in ("constant_velocity", "kinematic", "ego_mlp"):
        preds = load_predictions(out / f"{name}.json")
        assert set(preds.trajectories) == val_tokens and not preds.failures
    params = json.loads((out / "kinematic_params.json").read_text())
    assert 0.0 <= params["fusion_weight_lambda"] <= 1.0
    assert (out / "ego_mlp" / "model.safetensors").is_file()
