"""Benchmark: BEV perception forward latency per keyframe and peak memory on this CPU.

    python benchmarks/bench_perception.py            # tiny config at 25/50/100 cells + paper size
    python benchmarks/bench_perception.py --skip-paper --repeats 3

Each case runs in its own subprocess so that the peak resident memory (getrusage ru_maxrss) is
that case's alone; torch uses one thread. Inputs are random images seen by six cameras 60 degrees
apart around the LiDAR origin (no dataset needed). Printed:
latency (s / keyframe, median of repeats after one warm-up), peak RSS (MiB), and the ratios of
the BEV-resolution cases to the 25-cell one, measured side by side in this run.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

CASES = {"tiny_25": ("configs/perception/tiny.yaml", 25), "tiny_50": ("configs/perception/tiny.yaml", 50),
         "tiny_100": ("configs/perception/tiny.yaml", 100), "paper_200": ("configs/perception/base.yaml", 200)}


def ring_cameras():
    """Six cameras at the LiDAR origin, 60 degrees apart, optical axes horizontal (camera -> LiDAR)."""
    import torch

    poses = []
    for i in range(6):
        yaw = math.pi / 2 - i * math.pi / 3  # first camera looks along +y (forward)
        forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
        pose = torch.eye(4)
        pose[:3, :3] = torch.stack([right, torch.tensor([0.0, 0.0, -1.0]), forward], 1)
        poses.append(pose)
    return torch.stack(poses)


def run_case(name: str, repeats: int) -> dict:
    import torch

    from perception.config import PerceptionConfig
    from perception.inputs import CameraBatch
    from perception.model import BevPerception, parameter_counts
    from vla_world.config import load_config

    torch.set_num_threads(1)
    config_path, cells = CASES[name]
    cfg = load_config(config_path, PerceptionConfig, {"grid.cells": cells})
    width, height = cfg.model.image_size
    k = torch.tensor([[width * 0.8, 0.0, width / 2], [0.0, width * 0.8, height / 2], [0.0, 0.0, 1.0]])
    batch = CameraBatch(torch.randn(1, 6, 3, height, width), k.expand(1, 6, 3, 3), ring_cameras()[None],
                        torch.tensor([[float(width), float(height)]]).expand(1, 6, 2))
    model = BevPerception(cfg).eval()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first run warms up allocators and is dropped
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    latency = statistics.median(times[1:]) if repeats else times[0]
    return {"case": name, "cells": cells, "latency_s": latency, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": parameter_counts(model)["total"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per tiny case (default 3)")
    p.add_argument("--skip-paper", action="store_true", help="skip the paper-size (200x200, D=256, 900 queries) forward")
    p.add_argument("--one", choices=sorted(CASES), help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, 0 if args.one == "paper_200" else args.repeats)))
        return 0
    names = [n for n in CASES if not (args.skip_paper and n == "paper_200")]
    results = {}
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"{name:10s} cells {r['cells']:3d}  latency {r['latency_s']:.3f} s/keyframe  peak RSS {r['peak_rss_mib']:.0f} MiB  "
              f"params {r['parameters'] / 1e6:.2f} M")
    base = results["tiny_25"]
    for name in ("tiny_50", "tiny_100"):
        r = results[name]
        print(f"ratio {name}/tiny_25: latency x{r['latency_s'] / base['latency_s']:.2f}, "
              f"peak RSS x{r['peak_rss_mib'] / base['peak_rss_mib']:.2f} (cells x{(r['cells'] / 25) ** 2:.0f})")
    if "paper_200" in results:
        print(f"ratio paper_200/tiny_50: latency x{results['paper_200']['latency_s'] / results['tiny_50']['latency_s']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
