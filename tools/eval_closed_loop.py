"""Closed-loop evaluation in the mini world: does the planner drive?

Each planner drives the ego of the same held-out episodes (generator keys no mini world uses for
training; behaviours left, right, forward, stop, slow-right in turn), re-planning every 0.5 s from
exactly the input it gets in open loop, while the other vehicles and pedestrians react. Rows:

  Expert (IDM)       the simulator's own ego: the reference for route completion
  Constant velocity  planning.baselines.constant_velocity
  CTRA prior         the kinematic rollout the VLA prompt shows (planning.kinematic.ctra_prior)
  Kinematic          VLA-World's kinematic predictor (needs --baselines/kinematic_params.json)
  Ego-MLP            needs --baselines/ego_mlp_seed{N}/ (tools/run_baselines.py)
  Stand still        always plans to stay where it is (a sanity row: no progress, no fault)
  VLA-tiny           with --checkpoint: the VLA planner, its perception online on the cameras and LiDAR
                     rendered at every simulated pose (--perception: default the checkpoint's own
                     fine-tuned perception, else checkpoints/perception/last, the token cache's source);
                     its plans pass the collision guard on that perception (--no-guard: as decoded)

Metrics per episode and their mean over episodes (planning/closed_loop.py, docs/closed_loop.md):
at-fault and other collisions, off-road seconds, red-light violations, progress, route completion,
comfort and the driving score. `--seeds 0 1 2` repeats everything on three episode sets (maps and
traffic from other generator keys) and reports mean ± std over the sets.

    python tools/eval_closed_loop.py --episodes 10 --seeds 0 1 2 --out outputs/closed_loop
    python tools/eval_closed_loop.py --episodes 2 --planners expert ctra --video 0   # quick look + GIF
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from planning.baselines import constant_velocity
from planning.closed_loop import EpisodeMetrics, Planner, SensorFeed, run_episode
from planning.kinematic import ctra_prior

PLANNERS: dict[str, str] = {"expert": "Expert (IDM)", "cv": "Constant velocity", "ctra": "CTRA prior",
                            "kinematic": "Kinematic", "ego_mlp": "Ego-MLP", "still": "Stand still"}
METRICS: tuple[tuple[str, str, float], ...] = (  # key, column, scale
    ("collisions_at_fault", "At-fault col.", 1.0), ("collisions_not_at_fault", "Other col.", 1.0),
    ("offroad_s", "Off-road s", 1.0), ("red_lights", "Red lights", 1.0), ("progress_m", "Progress m", 1.0),
    ("route_completion", "RC %", 100.0), ("comfort", "Comfort %", 100.0), ("driving_score", "DS %", 100.0))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=10, help="episodes per seed (default 10: each behaviour twice)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="episode sets (maps and traffic); default 0")
    p.add_argument("--duration", type=float, default=12.0, help="closed-loop seconds per episode, after a 2 s warm-up")
    p.add_argument("--planners", nargs="+", default=list(PLANNERS), choices=list(PLANNERS), help="rows to run")
    p.add_argument("--baselines", default="outputs/baselines",
                   help="folder of tools/run_baselines.py outputs (kinematic_params.json, ego_mlp_seed0/)")
    p.add_argument("--checkpoint", default=None, help="a planning (or grpo) checkpoint: adds the VLA-tiny row")
    p.add_argument("--checkpoint-name", default="VLA-tiny", help="row name of --checkpoint")
    p.add_argument("--decoding", default="auto", choices=("auto", "head", "constrained", "greedy"),
                   help="how the VLA answers (vla_world.inference): auto (default) = its plan head where the "
                        "checkpoint fitted one, else constrained; constrained = its written answer")
    p.add_argument("--no-guard", action="store_true",
                   help="drive the VLA's plans as decoded, without the collision guard (by default a plan that runs "
                        "into a perceived agent is replaced by the CTRA prior or by the same path driven slower)")
    p.add_argument("--perception", default=None,
                   help="perception checkpoint for --checkpoint (default: <checkpoint>/perception when it was trained "
                        "online, else checkpoints/perception/last)")
    p.add_argument("--video", type=int, nargs="*", default=[], metavar="EPISODE",
                   help="write a GIF (BEV + front camera) of these episode indices of the first seed, per planner")
    p.add_argument("--out", default="outputs/closed_loop", help="folder for closed_loop.md / .json and GIFs")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no printed table")
    return p


def load_planners(names: list[str], baselines: Path, log: Callable[[str], None]) -> dict[str, Planner | None]:
    """Row name -> planner callable (None = the expert); rows whose files are missing are skipped, said so."""
    fixed: dict[str, Planner | None] = {"expert": None, "cv": constant_velocity, "ctra": ctra_prior,
                                        "still": lambda inp: np.zeros((6, 2))}
    fitted = {"kinematic": (_kinematic, "kinematic_params.json"), "ego_mlp": (_ego_mlp, "ego_mlp_seed0")}
    out: dict[str, Planner | None] = {}
    for name in names:
        if name in fixed:
            out[PLANNERS[name]] = fixed[name]
            continue
        loader, path = fitted[name]
        planner = loader(baselines / path)
        if planner is None:
            log(f"skipping {PLANNERS[name]}: {baselines / path} is missing (run tools/run_baselines.py)")
        else:
            out[PLANNERS[name]] = planner
    return out


def _kinematic(path: Path) -> Planner | None:
    if not path.is_file():
        return None
    from planning.kinematic import KinematicParams, predict_kinematic

    params = KinematicParams.load(path)
    return lambda inp: predict_kinematic(inp, params)


def _ego_mlp(folder: Path) -> Planner | None:
    if not (folder / "model.safetensors").is_file():
        return None
    import torch
    import yaml

    from planning.baselines import EgoMLP, EgoMLPConfig, predict_ego_mlp
    from vla_world.checkpoint import load_checkpoint

    weights, _, _ = load_checkpoint(folder)
    cfg = EgoMLPConfig(**yaml.safe_load((folder / "config.yaml").read_text()))
    model = EgoMLP(weights["feature_mean"].shape[0], cfg.hidden_sizes)
    model.load_state_dict(weights)
    model.eval()
    torch.set_num_threads(1)
    return lambda inp: predict_ego_mlp(model, [inp])[inp.sample_token]


class VlaPlanner:
    """The VLA checkpoint as a closed-loop planner: perception on the rendered sensor files, then the LLM.

    A planner that sees: `sees = True` makes the episode runner render its cameras and LiDAR (files under
    `sensors.folder`, which is this planner's dataroot). The plan head or constrained decoding always yields a trajectory;
    should one fail to parse, the ego is told to stand still and the failure is counted.
    """

    sees = True

    def __init__(self, checkpoint: str, perception: str | None, sensors: SensorFeed, decoding: str = "auto",
                 guard: bool = True):
        from perception.inputs import image_cache
        from perception.train import load_perception_model
        from vla_world.inference import Planner as LlmPlanner
        from vla_world.training.online_perception import perception_folder

        folder = perception or perception_folder(checkpoint) or "checkpoints/perception/last"
        self.perception, self.cfg = load_perception_model(folder)
        self.perception_source = str(folder)
        self.images = image_cache(sensors.folder, self.cfg.model)
        self.planner = LlmPlanner.from_checkpoint(checkpoint, batch_size=1, decoding=decoding, guard=guard)
        self.failures = 0
        self.guarded = 0  # plans the collision guard replaced

    def __call__(self, inp):
        from perception.inference import model_tokens

        tokens = model_tokens(self.perception, [record_of(inp)], self.images, self.cfg, progress=False)
        result = self.planner.plan(inp, tokens[inp.sample_token])
        self.guarded += result.guard_choice > 0
        if result.trajectory is None:
            self.failures += 1
            return np.zeros((6, 2))
        return result.trajectory


def record_of(inp):
    """A label-free SampleRecord carrying `inp` (perception reads records): no agents, no map, no future."""
    import dataclasses

    from vla_world.data.synthetic import synthetic_record

    fields = {f.name: getattr(inp, f.name) for f in dataclasses.fields(inp)}
    return dataclasses.replace(synthetic_record(token=inp.sample_token, scene=inp.scene_token, future_valid=0),
                               map_type=np.zeros(0, np.int8), map_polylines=[], **fields)


def evaluate(planners: dict[str, Planner | None], seeds: list[int], episodes: int, duration: float,
             progress: bool, sensors: SensorFeed | None = None) -> dict[str, dict[int, list[EpisodeMetrics]]]:
    """planner -> seed -> metrics per episode (the expert runs first: its progress is every row's reference)."""
    from vla_world.mini_world.interactive import episode_setup

    results: dict[str, dict[int, list[EpisodeMetrics]]] = {name: {s: [] for s in seeds} for name in planners}
    jobs = [(s, i) for s in seeds for i in range(episodes)]
    for seed, index in tqdm(jobs, desc="closed-loop episodes", unit="episode", disable=not progress):
        episode = episode_setup(index, duration + 2.0, seed)
        expert = run_episode(episode, None, "expert", duration)
        for name, planner in planners.items():
            feed = sensors if getattr(planner, "sees", False) else None
            run = expert if planner is None else run_episode(episode, planner, name, duration, expert.metrics.progress_m,
                                                             sensors=feed)
            results[name][seed].append(run.metrics)
    return results


def summary_rows(results: dict[str, dict[int, list[EpisodeMetrics]]]) -> list[dict]:
    """Per planner: mean over episodes per seed, then mean and sample std over seeds."""
    rows = []
    for name, per_seed in results.items():
        means = {key: [float(np.mean([getattr(m, key) for m in runs])) for runs in per_seed.values()]
                 for key, _, _ in METRICS}
        rows.append({"planner": name, "seeds": len(per_seed), "episodes": sum(len(r) for r in per_seed.values()),
                     "mean": {k: float(np.mean(v)) for k, v in means.items()},
                     "std": {k: float(np.std(v, ddof=1)) for k, v in means.items()} if len(per_seed) > 1 else None})
    return rows


def markdown_table(rows: list[dict]) -> str:
    head = "| Planner | " + " | ".join(col for _, col, _ in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for row in rows:
        cells = []
        for key, _, scale in METRICS:
            text = f"{scale * row['mean'][key]:.2f}" if scale == 1.0 else f"{scale * row['mean'][key]:.1f}"
            if row["std"] is not None:
                text += f" ± {scale * row['std'][key]:.2f}" if scale == 1.0 else f" ± {scale * row['std'][key]:.1f}"
            cells.append(text)
        lines.append(f"| {row['planner']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_videos(planners: dict[str, Planner | None], seed: int, indices: list[int], duration: float, out: Path,
                 sensors: SensorFeed) -> list[Path]:
    from planning.closed_loop_video import write_episode_gif
    from vla_world.mini_world.interactive import episode_setup

    paths = []
    for index in indices:
        episode = episode_setup(index, duration + 2.0, seed)
        for name, planner in planners.items():
            run = run_episode(episode, planner, name, duration, sensors=sensors if getattr(planner, "sees", False) else None)
            slug = name.lower().replace(" ", "_").replace("(", "").replace(")", "")
            paths.append(write_episode_gif(episode, run, out / f"{episode.name}_{slug}.gif"))
    return paths


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1 or args.duration < 1.0:
        raise SystemExit("--episodes must be >= 1 and --duration >= 1 s")
    log = (lambda msg: None) if args.quiet else print
    planners = load_planners(args.planners, Path(args.baselines), log)
    sensors = SensorFeed(Path(args.out) / "sensors")
    if args.checkpoint:
        vla = VlaPlanner(args.checkpoint, args.perception, sensors, args.decoding, guard=not args.no_guard)
        planners[args.checkpoint_name] = vla
        log(f"{args.checkpoint_name}: {args.checkpoint}, perception online from {vla.perception_source}, decoding "
            f"{vla.planner.decoding}" + ("" if args.no_guard else " + collision guard"))
    start = time.perf_counter()
    results = evaluate(planners, args.seeds, args.episodes, args.duration, progress=not args.quiet, sensors=sensors)
    seconds = time.perf_counter() - start
    rows = summary_rows(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python tools/eval_closed_loop.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = markdown_table(rows)
    (out / "closed_loop.md").write_text(f"# Closed loop\n\n`{command}`\n\n{table}\n")
    (out / "closed_loop.json").write_text(json.dumps(
        {"command": command, "seconds": seconds, "rows": rows,
         "episodes": {name: {str(s): [m.as_dict() for m in runs] for s, runs in per_seed.items()}
                      for name, per_seed in results.items()}}, indent=1))
    if args.video:
        write_videos(planners, args.seeds[0], args.video, args.duration, out, sensors)
    log(table)
    if args.checkpoint and not args.no_guard:
        log(f"{args.checkpoint_name}: the collision guard replaced {vla.guarded} plans")
    if args.checkpoint and vla.failures:
        log(f"{args.checkpoint_name}: {vla.failures} answers did not parse; the ego was told to stand still there")
    runs = sum(len(r) for per in results.values() for r in per.values())
    log(f"{runs} planner-episodes in {seconds:.0f} s ({60 * runs / max(seconds, 1e-9):.1f} per minute); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
