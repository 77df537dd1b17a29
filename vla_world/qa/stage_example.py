"""`StageExample`, the unit of LLM training text, in a module of its own.

Why its own module: every stage builder (captions, driving_qa, motion) returns StageExamples and
`vla_world.qa.examples` imports every builder to dispatch on the stage name. With the type in
`examples.py` the two imported each other, and the builders had to be imported inside a function.
Here it depends on nothing in the package, so the imports run one way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Instruct questions are asked twice (Drive-VLM's split entries): "detailed" answers explain,
# "concise" ones are what a co-pilot would say. Kept in meta["granularity"].
GRANULARITIES: tuple[str, ...] = ("detailed", "concise")


@dataclass
class StageExample:
    sample_token: str
    stage: str  # "align" | "instruct" | "motion"
    kind: str  # e.g. "scene_caption", "qa_action"; instruct kinds carry meta["granularity"]
    question: str  # the user question, written from the PlannerInput only (the prompt adds token blocks, ego state, command)
    answer: str  # the assistant target text, written from the record's labels
    focus_track_id: int | None = None  # the agent the question is about (its token goes in an <object> block)
    meta: dict = field(default_factory=dict)  # labels for evaluation: id, action, reasons, granularity, ...

    @property
    def example_id(self) -> str:
        """Unique, deterministic id: `<sample_token>/<stage>/<kind>/<n>` (the key of prediction files)."""
        return self.meta["id"]

    def to_dict(self) -> dict:
        return asdict(self)
