"""The shared plumbing: typed YAML configs, `--set` overrides, atomic checkpoints, token caches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import torch

from perception.tokens import PerceptionTokens, load_token_cache, save_token_cache
from vla_world.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vla_world.config import ConfigError, config_to_dict, load_config, parse_overrides


@dataclass
class TrainSection:
    lr: float = 1e-3  # peak learning rate
    epochs: int = 1

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError("train.lr must be > 0")


@dataclass
class ToyConfig:
    name: str = "toy"
    sizes: tuple[int, int] = (2, 3)
    train: TrainSection = field(default_factory=TrainSection)


def write(tmp_path, text: str):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return path


def test_yaml_maps_onto_nested_dataclasses_with_overrides(tmp_path):
    path = write(tmp_path, "name: a\nsizes: [4, 5]\ntrain:\n  lr: 2e-4\n")
    cfg = load_config(path, ToyConfig, overrides=parse_overrides(["train.epochs=3"]))
    assert cfg == ToyConfig("a", (4, 5), TrainSection(2e-4, 3))
    assert config_to_dict(cfg) == {"name": "a", "sizes": [4, 5], "train": {"lr": 2e-4, "epochs": 3}}


@pytest.mark.parametrize("text, message", [
    ("nmae: a\n", r"toy.yaml: unknown field\(s\) \['nmae'\]"),
    ("train:\n  epochs: 1.5\n", r"toy.yaml.train.epochs: expected an integer"),
    ("sizes: [1]\n", r"toy.yaml.sizes: expected 2 items"),
    ("train:\n  lr: -1\n", r"toy.yaml.train: train.lr must be > 0"),
    ("name: [unclosed\n", r"toy.yaml: not valid YAML"),
])
def test_bad_configs_name_the_file_and_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), ToyConfig)


def test_overrides_parse_yaml_values_and_reject_missing_equals():
    assert parse_overrides(["a.b=0.5", "c=true", "d=[1, 2]"]) == {"a.b": 0.5, "c": True, "d": [1, 2]}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["train.lr"])


def test_checkpoint_round_trip_with_optimizer_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    rng = rng_state()
    expected_draw = torch.rand(3)
    folder = save_checkpoint(tmp_path / "ck" / "last", model.state_dict(), opt.state_dict(),
                             {"step": 7, "rng": rng}, extra_files={"config.yaml": "lr: 0.01\n"})
    weights, opt_state, state = load_checkpoint(folder)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-2)
    fresh.load_state_dict(opt_state)
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert state["step"] == 7 and (folder / "config.yaml").read_text() == "lr: 0.01\n"
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected_draw)


def test_checkpoint_overwrite_leaves_no_temporary_folders(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path / "last", {"w": torch.full((2,), float(step))}, state={"step": step})
    weights, _, state = load_checkpoint(tmp_path / "last")
    assert state["step"] == 2 and torch.equal(weights["w"], torch.full((2,), 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_missing_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(tmp_path / "nothing")


def test_token_cache_round_trip(tmp_path):
    tokens = PerceptionTokens(
        scene=torch.randn(4, 8), agents=torch.randn(2, 8), map=torch.randn(0, 8),
        agent_boxes=torch.randn(2, 7), agent_classes=torch.tensor([0, 5]), agent_track_ids=torch.tensor([3, -1]),
        map_types=torch.zeros(0, dtype=torch.long), map_points=torch.zeros(0, 10, 2),
        agent_velocities=torch.randn(2, 2),
    )
    save_token_cache(tmp_path / "val.safetensors", {"tokA": tokens})
    loaded = load_token_cache(tmp_path / "val.safetensors")["tokA"]
    assert loaded.counts() == {"scene": 4, "agents": 2, "map": 0}
    assert all(torch.equal(getattr(loaded, k), getattr(tokens, k)) for k in tokens.__dataclass_fields__)
    # a cache written before velocities were stored still loads, without them
    save_token_cache(tmp_path / "old.safetensors", {"tokA": dataclasses.replace(tokens, agent_velocities=None)})
    assert load_token_cache(tmp_path / "old.safetensors")["tokA"].agent_velocities is None


@pytest.mark.parametrize("override, message", [("train.warmup_ratio=1.0", "warmup_ratio"),
                                               ("train.perception_lr=-1", "perception_lr"),
                                               ("train.perception_loss_weight=-0.5", "perception_loss_weight")])
def test_stage_config_rejects_bad_training_values(override, message):
    from vla_world.training.config import StageConfig

    with pytest.raises(ConfigError, match=message):
        load_config("configs/planning/tiny.yaml", StageConfig, parse_overrides([override]))
