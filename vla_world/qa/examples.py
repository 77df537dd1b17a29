"""`build_stage_examples`: the question/answer pairs of one QA stage (align, instruct, motion).

Every QA stage trains on (question, answer) pairs about one keyframe. The model side prepends the
perception token blocks, ego state, history and command to `question`; `answer` is the target.
Examples of a sample are kept together and built from that sample's record only, so the per-scene
train/val split of the records carries over unchanged. The planning stage's examples are not
built here: `vla_world.training.data.planning_examples` is their one home.

    from vla_world.qa import build_stage_examples
    examples = build_stage_examples("instruct", records, seed=0, config=StageDataConfig())

Or look at them: `python tools/show_examples.py --stage instruct`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from vla_world.data.records import SampleRecord
from vla_world.qa.captions import caption_examples
from vla_world.qa.config import StageDataConfig
from vla_world.qa.driving_qa import driving_qa_examples
from vla_world.qa.motion import motion_examples
from vla_world.qa.stage_example import GRANULARITIES, StageExample

__all__ = ["BUILDERS", "GRANULARITIES", "STAGES", "StageExample", "build_stage_examples"]

Builder = Callable[[SampleRecord, int, StageDataConfig], list[StageExample]]
BUILDERS: dict[str, Builder] = {"align": caption_examples, "instruct": driving_qa_examples, "motion": motion_examples}
STAGES: tuple[str, ...] = tuple(BUILDERS)  # the QA stages; planning's examples live in vla_world.training.data

log = logging.getLogger(__name__)


def build_stage_examples(stage: str, records: list[SampleRecord], seed: int = 0,
                         config: StageDataConfig | None = None) -> list[StageExample]:
    """All examples of one QA stage, grouped by sample in record order; deterministic for a seed."""
    if stage not in BUILDERS:
        raise ValueError(f"build_stage_examples: unknown stage {stage!r}; choose one of {', '.join(STAGES)} "
                         "(planning examples: vla_world.training.data.planning_examples)")
    config = config or StageDataConfig()
    config.validate()
    build = BUILDERS[stage]
    examples, empty = [], 0
    for record in records:
        mine = build(record, seed, config)
        empty += not mine
        for n, example in enumerate(mine):
            example.meta["id"] = f"{record.sample_token}/{stage}/{example.kind}/{n}"
        examples.extend(mine)
    kinds = Counter(e.kind for e in examples)
    log.info("stage %s: %d examples from %d samples (%s); %d samples gave none", stage, len(examples),
             len(records), ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), empty)
    return examples
