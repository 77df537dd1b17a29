"""`StageExample`, the unit of LLM training text, and `build_stage_examples`, which makes them.

Every LLM stage (align, instruct, motion, planning) trains on (question, answer) pairs about one
keyframe. The model engineer prepends the perception token blocks, ego state, history and command
to `question`; `answer` is the target. Examples of a sample are kept together and built from that
sample's record only, so the per-scene train/val split of the records carries over unchanged.

    from vla_world.qa import build_stage_examples
    examples = build_stage_examples("instruct", records, seed=0)

Or look at them: `python tools/show_examples.py --stage instruct`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from vla_world.data.records import SampleRecord
from vla_world.qa.config import StageDataConfig

STAGES: tuple[str, ...] = ("align", "instruct", "motion", "planning")
GRANULARITIES: tuple[str, ...] = ("detailed", "concise")

log = logging.getLogger(__name__)


@dataclass
class StageExample:
    sample_token: str
    stage: str  # "align" | "instruct" | "motion" | "planning"
    kind: str  # e.g. "scene_caption", "qa_action"; instruct kinds carry meta["granularity"]
    question: str  # the user question (token blocks, ego state, history, command are prepended later)
    answer: str  # the assistant target text
    focus_track_id: int | None = None  # the agent the question is about (its token goes in an <object> block)
    meta: dict = field(default_factory=dict)  # labels for evaluation: id, action, reasons, granularity, ...

    @property
    def example_id(self) -> str:
        """Unique, deterministic id: `<sample_token>/<stage>/<kind>/<n>` (the key of prediction files)."""
        return self.meta["id"]

    def to_dict(self) -> dict:
        return asdict(self)


Builder = Callable[[SampleRecord, int, StageDataConfig], list[StageExample]]


def _builders() -> dict[str, Builder]:
    # Imported here: each stage module imports StageExample from this one.
    from vla_world.qa.captions import caption_examples
    from vla_world.qa.driving_qa import driving_qa_examples
    from vla_world.qa.motion import motion_examples
    from vla_world.qa.planning import planning_examples

    return {"align": caption_examples, "instruct": driving_qa_examples, "motion": motion_examples, "planning": planning_examples}


def build_stage_examples(stage: str, records: list[SampleRecord], seed: int = 0,
                         config: StageDataConfig | None = None) -> list[StageExample]:
    """All examples of one stage, grouped by sample in record order; deterministic for a seed."""
    if stage not in STAGES:
        raise ValueError(f"build_stage_examples: unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    config = config or StageDataConfig()
    config.validate()
    build = _builders()[stage]
    examples, empty = [], 0
    for record in records:
        mine = build(record, seed, config)
        empty += not mine
        for n, example in enumerate(mine):
            example.meta["id"] = f"{record.sample_token}/{stage}/{example.kind}/{n}"
        examples.extend(mine)
    kinds = Counter(e.kind for e in examples)
    log.info("stage %s: %d examples from %d samples (%s); %d samples gave none%s", stage, len(examples),
             len(records), ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), empty,
             " (future incomplete: excluded from planning training)" if stage == "planning" else "")
    return examples
