"""Shared fixtures: one tiny mini world and its records per test session (built once, in a temp dir)."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)  # two threads collapse when the other core is busy
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# No test scenes: the shared fixture stays the 4-scene world every test was written for, and fast;
# tests/test_test_split.py builds its own worlds with a test split.
TINY_WORLD = {"num_scenes": 4, "seed": 0, "image_size": (96, 54), "scene_seconds": 10.0, "test_scenes": 0}


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    """Path to a tiny mini world (4 scenes of 10 s, 96x54 images) in nuScenes v1.0 format."""
    from vla_world.mini_world import make_mini_world

    out = tmp_path_factory.mktemp("mini_world")
    make_mini_world(out, progress=False, **TINY_WORLD)
    return out


@pytest.fixture(scope="session")
def mini_records(mini_world):
    """{'train': [...], 'val': [...]} SampleRecords of the tiny world."""
    from vla_world.data import load_records

    return {split: load_records(mini_world, split=split, progress=False) for split in ("train", "val")}
