"""Benchmark: mini world build time and how it scales with the number of scenes.

Builds worlds of 2 and 4 scenes side by side in the same run (default scene length and image
size) and prints seconds per scene for each and their ratio; a ratio near 1.0 means the cost
is linear in scenes (maps and textures are built once per location, which makes tiny worlds
slightly dearer per scene). Also extrapolates the default 10-scene world.

    .venv/bin/python benchmarks/bench_mini_world.py [--seconds 20] [--image-size 256 144]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vla_world.mini_world import make_mini_world


def build_seconds(num_scenes: int, seconds: float, image_size: tuple[int, int]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        make_mini_world(Path(tmp) / "world", num_scenes=num_scenes, test_scenes=0, seed=0, image_size=image_size,
                        scene_seconds=seconds, progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="scene length in seconds")
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 144), metavar=("W", "H"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(args.image_size)
    per_scene = {}
    for n in (2, 4):
        total = build_seconds(n, args.seconds, size)
        per_scene[n] = total / n
        print(f"{n} scenes x {args.seconds:g} s at {size[0]}x{size[1]}: {total:6.1f} s total, {per_scene[n]:5.1f} s/scene")
    print(f"ratio s/scene (4 scenes / 2 scenes): {per_scene[4] / per_scene[2]:.2f}")
    print(f"extrapolated default world (10 scenes): {10 * per_scene[4]:.0f} s (target < 180 s)")


if __name__ == "__main__":
    main()
