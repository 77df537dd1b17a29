"""nuScenes-format data as `SampleRecord`s: one per keyframe, in the current LiDAR_TOP frame.

    from vla_world.data import load_records
    train = load_records("data/mini_world", split="train")   # built once, then cached

Modules: records (the record contract), planner_input (what a planner may see), targets (what
it is scored on), builder (tables -> records), cache (fast reload), splits (scene splits),
nuscenes_db (opening the devkit with clear errors), map_polylines (map elements), geometry (pose
maths), synthetic (hand-made records for tests).

The names below are loaded on first use (PEP 562): `import vla_world.data.records` must not pull
in the devkit, scipy or shapely, so the record contract, the codec and the metric core stay leaves.
"""

from __future__ import annotations

from vla_world.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BUILDER_VERSION": "builder",
    "BuildOptions": "builder",
    "build_records": "builder",
    "load_records": "cache",
    "MapPatch": "map_polylines",
    "RecordError": "nuscenes_db",
    "PlannerInput": "planner_input",
    "planner_input": "planner_input",
    "PlanningTargets": "targets",
    "planning_targets": "targets",
    **{name: "records" for name in (
        "CAMERAS", "CMD_FORWARD", "CMD_LEFT", "CMD_RIGHT", "COMMANDS", "DETECTION_CLASSES", "FUTURE_SECONDS",
        "MAP_CLASSES", "NUM_FUTURE", "NUM_PAST", "STEP_SECONDS", "SampleRecord")},
}

__all__ = list(_EXPORTS)  # resolved lazily by __getattr__

__getattr__ = lazy_exports(__name__, _EXPORTS)
