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
from vla_world.data.planner_input import planner_input, planner_inputs
from vla_world.data.records import CMD_LEFT
from vla_world.data.synthetic import synthetic_record


def test_constant_velocity_is_exact_on_straight_driving():
    record = synthetic_record(speed=7.3)
    np.testing.assert_allclose(constant_velocity(planner_input(record)), record.ego_future, atol=1e-5)


def test_constant_velocity_uses_lateral_velocity():
    record = synthetic_record(speed=4.0)
    record.ego_velocity = np.array([1.0, 4.0], np.float32)
    # t = 0.5 .. 3.0 s: (0.5, 2.0), ..., (3.0, 12.0)
    expected = np.stack([np.arange(1, 7) * 0.5, np.arange(1, 7) * 2.0], 1)
    np.testing.assert_allclose(constant_velocity(planner_input(record)), expected)


def test_ego_features_layout():
    record = synthetic_record(speed=2.0, command=CMD_LEFT)
    record.ego_past_mask = np.array([False, True, True, True])
    features = ego_features(planner_input(record))
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
    predictions = predict_ego_mlp(model, planner_inputs(records))
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
    from planning.codec import format_points, parse_trajectory
    from planning.kinematic import ctra_prior
    from tools.run_baselines import main
    from vla_world.data import load_records
    from vla_world.data.planner_input import planner_input

    out = tmp_path / "baselines"
    assert main(["--dataroot", str(mini_world), "--out", str(out), "--set", "epochs=3", "--seeds", "0", "4", "--quiet"]) == 0
    val = load_records(mini_world, split="val", progress=False)
    val_tokens = {r.sample_token for r in val}
    names = ("constant_velocity", "kinematic", "ctra_prior", "ego_mlp", "ego_mlp_seed0", "ego_mlp_seed4")
    preds = {name: load_predictions(out / f"{name}.json") for name in names}
    for name in names:
        assert set(preds[name].trajectories) == val_tokens and not preds[name].failures, name
    # the CTRA row is exactly the rollout the prompt prints: the same text, read back
    for record in val:
        shown = parse_trajectory(format_points(ctra_prior(planner_input(record)))).waypoints
        assert preds["ctra_prior"].trajectories[record.sample_token].tolist() == shown.tolist()
    from vla_world.data.fingerprint import data_identity

    assert preds["ego_mlp_seed4"].meta == {"method": "Ego-MLP", "seed": 4, **data_identity(mini_world)}
    assert all(preds[name].meta["data_fingerprint"] == data_identity(mini_world)["data_fingerprint"] for name in names)
    assert (out / "ego_mlp.json").read_text() == (out / "ego_mlp_seed0.json").read_text()  # the first seed
    first, other = (np.stack([preds[n].trajectories[t] for t in sorted(val_tokens)]) for n in ("ego_mlp_seed0", "ego_mlp_seed4"))
    assert not np.allclose(first, other)  # the seed reaches the training
    params = json.loads((out / "kinematic_params.json").read_text())
    assert 0.0 <= params["fusion_weight_lambda"] <= 1.0
    for folder in ("ego_mlp", "ego_mlp_seed0", "ego_mlp_seed4"):
        assert (out / folder / "model.safetensors").is_file()
    with pytest.raises(SystemExit, match="each seed once"):
        main(["--dataroot", str(mini_world), "--out", str(out), "--seeds", "1", "1", "--quiet"])
