"""The shipped perception configs load, and bad values fail with the field named."""

from pathlib import Path

import pytest

from perception.config import PerceptionConfig
from vla_world.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "perception"


@pytest.mark.parametrize("name, scene_tokens, dim", [("tiny", 36, 64), ("base", 90, 256)])
def test_shipped_configs_load(name, scene_tokens, dim):
    cfg = load_config(CONFIGS / f"{name}.yaml", PerceptionConfig)
    assert cfg.num_scene_tokens == scene_tokens and cfg.model.token_dim == dim


def test_token_dim_must_split_into_heads():
    with pytest.raises(ConfigError, match="token_dim"):
        load_config(CONFIGS / "tiny.yaml", PerceptionConfig, {"model.token_dim": 30})


def test_unknown_token_source_is_rejected():
    with pytest.raises(ConfigError, match="token_source"):
        load_config(CONFIGS / "tiny.yaml", PerceptionConfig, {"token_source": "lidar"})
