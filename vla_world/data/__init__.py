"""nuScenes-format data as `SampleRecord`s: one per keyframe, in the current LiDAR_TOP frame.

    from vla_world.data import load_records
    train = load_records("data/mini_world", split="train")   # built once, then cached

Modules: records (the record contract), builder (tables -> records), cache (fast reload),
splits (scene splits), nuscenes_db (opening the devkit with clear errors), map_polylines
(map elements), geometry (pose maths), synthetic (hand-made records for tests).
"""

from vla_world.data.builder import BUILDER_VERSION, BuildOptions, build_records
from vla_world.data.cache import load_records
from vla_world.data.map_polylines import MapPatch
from vla_world.data.nuscenes_db import RecordError
from vla_world.data.records import (
    CAMERAS,
    CMD_FORWARD,
    CMD_LEFT,
    CMD_RIGHT,
    COMMANDS,
    DETECTION_CLASSES,
    MAP_CLASSES,
    NUM_FUTURE,
    NUM_PAST,
    STEP_SECONDS,
    SampleRecord,
)

__all__ = [
    "BUILDER_VERSION",
    "CAMERAS",
    "CMD_FORWARD",
    "CMD_LEFT",
    "CMD_RIGHT",
    "COMMANDS",
    "DETECTION_CLASSES",
    "MAP_CLASSES",
    "NUM_FUTURE",
    "NUM_PAST",
    "STEP_SECONDS",
    "BuildOptions",
    "MapPatch",
    "RecordError",
    "SampleRecord",
    "build_records",
    "load_records",
]
