"""Record building speed (records/s), linearity in the number of samples, and cache load time.

Builds the records of the first N and then 2N train scenes of a mini world, side by side in one
run, and prints the time ratio next to the sample ratio: a linear builder gives ratios that
match once the fixed cost (loading the tables, reading the map) is taken out; that fixed cost is
measured by a build with zero scenes. Then it times `load_records` from a warm cache.

    python benchmarks/bench_records.py                       # data/mini_world, or a fresh temp world
    python benchmarks/bench_records.py --dataroot /data/nuscenes --scenes 20
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy/shapely on one core, like the tests
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vla_world.data import build_records, load_records

torch.set_num_threads(1)


def timed_build(dataroot: Path, scenes: int, repeats: int) -> tuple[float, float, int]:
    """Best-of-`repeats` wall and CPU seconds to build the first `scenes` train scenes, and their sample count.

    CPU time is printed too because the project's machines are shared: wall time there
    includes waiting for the other engineers' processes.
    """
    wall, cpu, count = float("inf"), float("inf"), 0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        count = len(build_records(dataroot, split="train", progress=False, max_scenes=scenes))
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall, cpu, count


def timed_cached_load(dataroot: Path, cache_dir: Path) -> tuple[float, int]:
    load_records(dataroot, split="train", cache_dir=cache_dir, progress=False)  # warm the cache
    start = time.perf_counter()
    count = len(load_records(dataroot, split="train", cache_dir=cache_dir, progress=False))
    return time.perf_counter() - start, count


def resolve_dataroot(path: Path, tmp: Path) -> Path:
    if (path).is_dir():
        return path
    from vla_world.mini_world import make_mini_world

    print(f"{path} not found: building a 6-scene mini world in {tmp}")
    return make_mini_world(tmp / "mini_world", num_scenes=6, test_scenes=0, seed=0, image_size=(96, 54),
                           progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path, default=Path("data/mini_world"), help="nuScenes-format dataroot")
    parser.add_argument("--scenes", type=int, default=2, help="N: the small build uses N train scenes, the big one 2N")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataroot = resolve_dataroot(args.dataroot, Path(tmp))
        t0, c0, _ = timed_build(dataroot, 0, args.repeats)
        t1, c1, n1 = timed_build(dataroot, args.scenes, args.repeats)
        t2, c2, n2 = timed_build(dataroot, 2 * args.scenes, args.repeats)
        load_s, loaded = timed_cached_load(dataroot, Path(tmp) / "cache")
    print(f"fixed cost (tables + splits, 0 scenes): {t0:.2f} s wall, {c0:.2f} s CPU")
    for label, scenes, n, t, c in (("N ", args.scenes, n1, t1, c1), ("2N", 2 * args.scenes, n2, t2, c2)):
        print(f"{label} = {scenes} scenes: {n} samples in {t:.2f} s wall ({n / t:.1f} records/s), "
              f"{c:.2f} s CPU ({n / c:.1f} records/s)")
    print(f"marginal speed: {(n2 - n1) / max(t2 - t1, 1e-9):.1f} records/s wall, {(n2 - n1) / max(c2 - c1, 1e-9):.1f} CPU")
    print(f"sample ratio 2N/N: {n2 / n1:.2f}   time ratio: {t2 / t1:.2f} wall, {c2 / c1:.2f} CPU   "
          f"without the fixed cost: {(t2 - t0) / max(t1 - t0, 1e-9):.2f} wall, {(c2 - c0) / max(c1 - c0, 1e-9):.2f} CPU")
    print(f"load_records from cache: {loaded} records in {load_s * 1000:.0f} ms wall")


if __name__ == "__main__":
    main()
