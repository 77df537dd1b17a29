"""Benchmark: closed-loop episodes per minute, and where an episode's time goes.

Why: docs/closed_loop.md promises a few minutes for the held-out set on the 2-core box; this
measures it per planner side by side in one run, and splits one episode into simulation (the
traffic's own step), the planner call, the controller and the metrics, next to what a planner
that sees the cameras would add per decision: rendering six cameras and one LiDAR sweep.

Run: ``.venv/bin/python benchmarks/bench_closed_loop.py --episodes 3``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from planning import closed_loop
from planning.baselines import constant_velocity
from planning.closed_loop import run_episode
from planning.kinematic import ctra_prior
from vla_world.mini_world.ground_texture import build_ground_texture
from vla_world.mini_world.interactive import InteractiveTraffic, episode_setup
from vla_world.mini_world.lidar import LidarModel
from vla_world.mini_world.render_camera import CameraRenderer
from vla_world.mini_world.sensors import LIDAR

PLANNERS = {"Expert (IDM)": None, "Constant velocity": constant_velocity, "CTRA prior": ctra_prior}


def _timed(fn, totals: dict[str, float], key: str):
    """`fn` wrapped as a plain function (so it binds as a method too) adding its wall time to totals[key]."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
    return wrapper


def episodes_per_minute(episodes: list, duration: float) -> dict[str, float]:
    out = {}
    for name, planner in PLANNERS.items():
        start = time.perf_counter()
        for episode in episodes:
            run_episode(episode, planner, name, duration)
        out[name] = 60.0 * len(episodes) / (time.perf_counter() - start)
    return out


def breakdown(episode, duration: float) -> dict[str, float]:
    """Seconds per episode in each part, for the CTRA planner."""
    parts = dict.fromkeys(("traffic simulation", "planner", "controller", "metrics"), 0.0)
    originals = InteractiveTraffic.step, closed_loop._follow, closed_loop.episode_metrics
    InteractiveTraffic.step = _timed(originals[0], parts, "traffic simulation")
    closed_loop._follow = _timed(originals[1], parts, "controller")
    closed_loop.episode_metrics = _timed(originals[2], parts, "metrics")
    try:
        start = time.perf_counter()
        run_episode(episode, _timed(ctra_prior, parts, "planner"), "CTRA prior", duration)
        total = time.perf_counter() - start
    finally:
        InteractiveTraffic.step, closed_loop._follow, closed_loop.episode_metrics = originals
    parts["other (inputs, frames)"] = total - sum(parts.values())
    return parts


def sensor_cost(episode, repeats: int = 3) -> dict[str, float]:
    """Seconds per decision to render the six cameras (256 x 144) and one LiDAR sweep at the ego's pose."""
    texture = build_ground_texture(episode.net)
    cameras, lidar = CameraRenderer(texture, (256, 144)), LidarModel(LIDAR.sensor_to_ego(), 720)
    pose = closed_loop.ego2global(InteractiveTraffic(episode.setup.traffic).own_ego())
    start = time.perf_counter()
    for _ in range(repeats):
        cameras.render(pose, [])
    camera_s = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for k in range(repeats):
        lidar.cast(pose, [], texture.reflectance, np.random.default_rng(k))
    return {"six cameras": camera_s, "LiDAR sweep": (time.perf_counter() - start) / repeats}


def vla_breakdown(episode, duration: float, checkpoint: str, folder: str) -> dict[str, float]:
    """Seconds per episode of the VLA row: rendering the sensors, perception, the LLM's decoding, the rest."""
    import perception.inference as perception_inference
    from planning.closed_loop import SensorFeed

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/ is not an installed package
    from tools.eval_closed_loop import VlaPlanner

    parts = dict.fromkeys(("rendering (6 cameras + LiDAR)", "perception", "LLM decoding"), 0.0)
    sensors = SensorFeed(folder)
    vla = VlaPlanner(checkpoint, None, sensors)
    originals = SensorFeed.fill, perception_inference.model_tokens, vla.planner.plan
    SensorFeed.fill = _timed(originals[0], parts, "rendering (6 cameras + LiDAR)")
    perception_inference.model_tokens = _timed(originals[1], parts, "perception")
    vla.planner.plan = _timed(originals[2], parts, "LLM decoding")
    try:
        start = time.perf_counter()
        run_episode(episode, vla, "VLA", duration, sensors=sensors)
        total = time.perf_counter() - start
    finally:
        SensorFeed.fill, perception_inference.model_tokens = originals[:2]
    parts["simulation, controller, metrics"] = total - sum(parts.values())
    return parts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--duration", type=float, default=12.0)
    p.add_argument("--checkpoint", default=None, help="also time the VLA row (a planning checkpoint)")
    p.add_argument("--sensors", default="outputs/bench_closed_loop_sensors", help="where the VLA's sensor files go")
    args = p.parse_args()
    torch.set_num_threads(1)
    episodes = [episode_setup(i, args.duration + 2.0) for i in range(args.episodes)]
    rates = episodes_per_minute(episodes, args.duration)
    print(f"episodes of {args.duration:.0f} s (+2 s warm-up), {args.episodes} per planner, side by side:")
    for name, rate in rates.items():
        print(f"  {name:18s} {rate:6.1f} episodes/min   ratio to the expert {rate / rates['Expert (IDM)']:.2f}")
    parts = breakdown(episodes[0], args.duration)
    total = sum(parts.values())
    print(f"one CTRA episode: {total:.2f} s")
    for name, seconds in parts.items():
        print(f"  {name:24s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    decisions = round(args.duration / closed_loop.DECISION_S)
    for name, seconds in sensor_cost(episodes[0]).items():
        print(f"  + {name} per decision {seconds:.3f} s -> {decisions * seconds:.1f} s per episode for a camera planner")
    if args.checkpoint:
        parts = vla_breakdown(episodes[0], args.duration, args.checkpoint, args.sensors)
        total = sum(parts.values())
        print(f"one VLA episode: {total:.2f} s ({60 / total:.1f} episodes/min)")
        for name, seconds in parts.items():
            print(f"  {name:32s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
