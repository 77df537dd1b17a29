"""The four supervised LLM stages as data: what each trains, which examples it reads, where it starts.

Order and recipe follow OpenDriveVLA (paper 002, Table 1): align trains the projectors only;
instruct and motion train projectors + LLM; planning trains everything but the camera backbone.
`world` (paper 004, future-frame pretraining) sits between motion and planning: projectors + LLM
learn to write the VQ codes of the next keyframe's front camera (vla_world/training/world.py).
"perception" is trained only where tokens are computed in the graph (`data.token_source: online`,
vla_world/training/online_perception.py); with cached or oracle tokens there is no perception
network in the graph, and the runner logs why it is not trained.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTS: tuple[str, ...] = ("perception", "projectors", "llm")


@dataclass(frozen=True)
class StageSpec:
    name: str
    trainable: tuple[str, ...]  # parts of VLAModel that learn: subset of PARTS
    previous: str | None  # stage whose checkpoint it starts from by default
    examples: str  # "qa": vla_world.qa.build_stage_examples | "planning": ego trajectory | "world": next-frame codes


STAGES: dict[str, StageSpec] = {
    "align": StageSpec("align", ("projectors",), None, "qa"),
    "instruct": StageSpec("instruct", ("projectors", "llm"), "align", "qa"),
    "motion": StageSpec("motion", ("projectors", "llm"), "instruct", "qa"),
    "world": StageSpec("world", ("projectors", "llm"), "motion", "world"),
    "planning": StageSpec("planning", ("perception", "projectors", "llm"), "world", "planning"),
}


LLM_STAGES: tuple[str, ...] = tuple(STAGES)  # the one list of LLM stage names, in training order


def stage_spec(name: str) -> StageSpec:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {list(STAGES)}")
    return STAGES[name]
