"""The procedurally generated "mini world": a small driving dataset in exact nuScenes v1.0 format.

`make_mini_world(out_dir)` writes tables, map expansions, camera JPEGs and lidar sweeps that
nuscenes-devkit loads unchanged; see docs/mini_world.md and tools/make_mini_world.py.
"""

from .generate import make_mini_world

__all__ = ["make_mini_world"]
