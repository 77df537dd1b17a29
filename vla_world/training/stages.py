"""The four supervised LLM stages as data: what each trains, which examples it reads, where it starts.

Order and recipe follow OpenDriveVLA (paper 002, Table 1): align trains the projectors only;
instruct and motion train projectors + LLM; planning trains everything but the camera backbone.
With precomputed perception tokens the perception model is not in the graph at all, so in
every stage here perception is frozen ("cached tokens"); the runner logs it.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS: tuple[str, ...] = ("projectors", "llm")


@dataclass(frozen=True)
class StageSpec:
    name: str
    trainable: tuple[str, ...]  # parts of VLAModel that learn: subset of PARTS
    previous: str | None  # stage whose checkpoint it starts from by default
    examples: str  # "qa": vla_world.qa.build_stage_examples(name, ...) | "planning": ego trajectory answers
    max_new_tokens: int  # generation budget at inference for this stage's answers


STAGES: dict[str, StageSpec] = {
    "align": StageSpec("align", ("projectors",), None, "qa", 96),
    "instruct": StageSpec("instruct", ("projectors", "llm"), "align", "qa", 96),
    "motion": StageSpec("motion", ("projectors", "llm"), "instruct", "qa", 96),
    "planning": StageSpec("planning", ("projectors", "llm"), "motion", "planning", 96),
}


def stage_spec(name: str) -> StageSpec:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {list(STAGES)}")
    return STAGES[name]
