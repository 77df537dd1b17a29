"""Stage data of the QA stages: captions (align), driving QA (instruct), agent motion (motion).

    from vla_world.qa import build_stage_examples, StageDataConfig, StageExample
    examples = build_stage_examples("instruct", records, seed=0, config=StageDataConfig())

Questions read only the planner's input (`vla_world.qa.questions`); answers and labels read the
record. The planning stage's examples are `vla_world.training.data.planning_examples`. See
docs/stage_data.md for the kinds, the label rules and example counts.

Names load on first use (PEP 562): a stage config reads `vla_world.qa.config` without pulling in
the builders' shapely geometry.
"""

from __future__ import annotations

from vla_world.lazy import lazy_exports

_EXPORTS = {"StageDataConfig": "config", "GRANULARITIES": "examples", "STAGES": "examples",
            "StageExample": "examples", "build_stage_examples": "examples"}
__all__ = list(_EXPORTS)  # resolved lazily by __getattr__

__getattr__ = lazy_exports(__name__, _EXPORTS)
