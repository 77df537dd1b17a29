"""Stage data of the QA stages: captions (align), driving QA (instruct), agent motion (motion).

    from vla_world.qa import build_stage_examples, StageDataConfig, StageExample
    examples = build_stage_examples("instruct", records, seed=0, config=StageDataConfig())

Questions read only the planner's input (`vla_world.qa.questions`); answers and labels read the
record. The planning stage's examples are `vla_world.training.data.planning_examples`. See
docs/stage_data.md for the kinds, the label rules and example counts.
"""

from vla_world.qa.config import StageDataConfig
from vla_world.qa.examples import (
    GRANULARITIES,
    STAGES,
    StageExample,
    build_stage_examples,
)

__all__ = ["GRANULARITIES", "STAGES", "StageDataConfig", "StageExample", "build_stage_examples"]
