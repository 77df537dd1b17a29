"""Planning stage: one example per sample, the ego's GT future as `planning.codec` text.

Samples whose future is incomplete (any of the 6 steps masked, near a scene end) are left out of
planning training; `build_stage_examples` logs how many.
"""

from __future__ import annotations

from planning.codec import format_trajectory
from vla_world.data.records import SampleRecord
from vla_world.qa.config import StageDataConfig
from vla_world.qa.examples import StageExample
from vla_world.qa.phrasing import Chooser

PLANNING_QUESTIONS = (
    "Plan the ego trajectory for the next 3 seconds.",
    "Plan the ego vehicle's trajectory over the next 3 seconds as 6 waypoints.",
)


def planning_examples(record: SampleRecord, seed: int, config: StageDataConfig) -> list[StageExample]:
    """[] when the future is incomplete, else one example answering with the GT waypoints."""
    if not record.ego_future_mask.all():
        return []
    question = Chooser(seed, record.sample_token, "planning").pick(PLANNING_QUESTIONS)
    return [StageExample(record.sample_token, "planning", "planning", question, format_trajectory(record.ego_future),
                         meta={"command": int(record.command)})]
