"""VLA-World: a world-model Vision-Language-Action planner for nuScenes.

Subpackages: `vla_world.data` (nuScenes records, mini world), `vla_world.model` (LLM, projectors,
sequence builder), `vla_world.training` (stages). Perception lives in `perception/`, planning
metrics, codec and baselines in `planning/`.
"""

__version__ = "0.1.0"
