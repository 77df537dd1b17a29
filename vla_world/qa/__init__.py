"""Stage data for the LLM: captions (align), driving QA (instruct), agent motion, ego planning.

    from vla_world.qa import build_stage_examples, StageExample
    examples = build_stage_examples("instruct", records, seed=0)

See docs/stage_data.md for the kinds, the label rules and example counts.
"""

from vla_world.qa.config import StageDataConfig
from vla_world.qa.examples import (
    GRANULARITIES,
    STAGES,
    StageExample,
    build_stage_examples,
)

__all__ = ["GRANULARITIES", "STAGES", "StageDataConfig", "StageExample", "build_stage_examples"]
