"""Knobs of the stage-data builders (`build_stage_examples`): how much is said about each sample.

Defaults keep the four stages balanced on the mini world; real nuScenes has many more agents per
keyframe, hence the caps. Load from YAML with `vla_world.config.load_config(path, StageDataConfig)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vla_world.config import ConfigError


@dataclass
class StageDataConfig:
    # Agents farther than this from the ego (metres, along x or y) are never described, since
    # perception has no token for them. Set it to the perception grid's half-size: 25 m for
    # configs/perception/tiny.yaml (the default here), 51.2 m for base.yaml.
    max_range_m: float = 25.0
    # Nearest agents that get an align-stage caption each (the rest still count in scene captions).
    max_agent_captions: int = 12
    # Agents per sample asked about in the instruct-stage prediction questions.
    max_prediction_questions: int = 3
    # Agents per sample that get a motion-forecasting example (nearest first).
    max_motion_agents: int = 16
    # Motion examples need at least this many annotated future steps; the rest are written "(UN,UN)".
    motion_min_valid_steps: int = 1

    def validate(self) -> None:
        if self.max_range_m <= 0:
            raise ConfigError(f"max_range_m must be > 0 metres, got {self.max_range_m}")
        for name in ("max_agent_captions", "max_prediction_questions", "max_motion_agents"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.motion_min_valid_steps <= 6:
            raise ConfigError(f"motion_min_valid_steps must be in 1..6, got {self.motion_min_valid_steps}")
