"""Settings of the QA stage builders (`build_stage_examples`): how much is said about each sample.

Set per stage in `configs/<stage>/*.yaml` under `data.qa` (the `qa` field of
`vla_world.training.config.DataConfig`); a checkpoint saves them in its config.yaml, and
`tools/eval_qa.py` rebuilds its examples with the saved ones. Defaults keep the QA stages
balanced on the mini world; real nuScenes has many more agents per keyframe, hence the caps.

    data:
      qa:
        max_range_m: 51.2        # with configs/perception/base.yaml
"""

from __future__ import annotations

from dataclasses import dataclass

from vla_world.config import ConfigError
from vla_world.data.records import NUM_FUTURE


@dataclass
class StageDataConfig:
    # Agents farther than this from the ego (metres, along x or y) are never described and never
    # asked about, since perception has no token for them. Set it to the perception grid's
    # half-size: 25 m for configs/perception/tiny.yaml (the default here), 51.2 m for base.yaml.
    # Must be > 0.
    max_range_m: float = 25.0
    # Nearest agents that get an align-stage caption each (the rest still count in scene
    # captions). >= 0; 0 = no agent captions.
    max_agent_captions: int = 12
    # Agents per sample asked about in the instruct-stage prediction questions (moving agents
    # first, then by distance). >= 0; 0 = no prediction questions.
    max_prediction_questions: int = 3
    # Agents per sample that get a motion-forecasting example (nearest first). >= 0; 0 = the
    # motion stage has no examples.
    max_motion_agents: int = 16
    # Motion examples need at least this many annotated future steps; the others are written
    # "(UN,UN)". 1..6 (the future has 6 steps of 0.5 s).
    motion_min_valid_steps: int = 1

    def validate(self) -> None:
        """Raise ConfigError naming the field, its value and the allowed range."""
        if not self.max_range_m > 0:  # "not >": nan is refused too
            raise ConfigError(f"max_range_m must be > 0 metres (the perception grid's half-size), "
                              f"got {self.max_range_m}")
        for name in ("max_agent_captions", "max_prediction_questions", "max_motion_agents"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 turns those examples off), got {getattr(self, name)}")
        if not 1 <= self.motion_min_valid_steps <= NUM_FUTURE:
            raise ConfigError(f"motion_min_valid_steps must be in 1..{NUM_FUTURE} (annotated future steps), "
                              f"got {self.motion_min_valid_steps}")
