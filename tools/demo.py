"""The whole VLA-World pipeline at tiny scale on the mini world: `make demo` runs this.

Steps (each is one of the project's own tools, run as a subprocess, so the demo exercises
exactly what a user would type):
  world       build the mini world in nuScenes v1.0 format (skipped when it already exists)
  summary     build the record caches and print a data summary
  preview     render one sample's six cameras and its BEV
  baselines   constant velocity, kinematic predictor, Ego-MLP -> prediction files
  perception  train the tiny BEV perception model (skipped with --oracle)
  tokens      export scene / agent / map tokens per split (from perception, or oracle)
  align, instruct, motion, planning   the four supervised LLM stages at `tiny` size; align to motion
              read the exported tokens, planning fine-tunes the perception with the LLM on the
              camera images (`data.token_source: online`; with --oracle: oracle tokens, LLM only)
  predict     the trained planner writes its predictions on the val split
  evaluate    every convention's table for all methods -> docs/results.md + outputs/eval
  qa          QA metrics of the instruct stage on the val split
  pictures    BEV pictures and a GIF of one val scene

    python tools/demo.py                      # everything, ~see README for the time it takes
    python tools/demo.py --oracle             # LLM stages on oracle (ground-truth) tokens
    python tools/demo.py --until baselines    # stop early
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLM_STAGES = ("align", "instruct", "motion", "planning")


@dataclass
class Step:
    name: str
    command: list[str]
    skip_if: Path | None = None  # the step's product; present -> skip


@dataclass(frozen=True)
class Scale:
    """How big each step runs: the full demo, or `--smoke` (every tool once, in about a minute)."""

    world: tuple[str, ...]  # extra make_mini_world.py flags
    perception: tuple[str, ...]  # extra train.py flags for perception
    llm: tuple[str, ...]  # extra train.py flags for each LLM stage
    qa: tuple[str, ...]  # extra eval_qa.py flags
    pictures: int  # val samples drawn


def full_scale(a: argparse.Namespace) -> Scale:
    return Scale(world=("--scenes", str(a.scenes)), perception=("--set", f"train.epochs={a.perception_epochs}"),
                 llm=(), qa=("--max-examples", str(a.qa_examples)), pictures=6)


SMOKE = Scale(world=("--scenes", "2", "--seconds", "6", "--image-size", "64", "36"), perception=("--max-steps", "2"),
              llm=("--max-steps", "2"), qa=("--max-examples", "4", "--no-meteor"), pictures=1)


def tool(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / name), *args]


def data_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, out = a.data, Path(a.out)
    return [
        Step("world", tool("make_mini_world.py", "--out", data, "--seed", str(a.seed), *scale.world),
             skip_if=Path(data) / "v1.0-mini" / "sample.json"),
        Step("summary", tool("data_summary.py", "--dataroot", data)),
        Step("preview", tool("show_sample.py", "--dataroot", data, "--out", str(out / "sample_preview.png"))),
        Step("baselines", tool("run_baselines.py", "--dataroot", data, "--out", str(out / "baselines"))),
    ]


def model_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, ck, token_dir = a.data, Path(a.checkpoints), Path(a.cache) / "tokens"
    steps = []
    if not a.oracle:
        steps.append(Step("perception", tool("train.py", "--stage", "perception", "--config", "configs/perception/tiny.yaml",
                                             *scale.perception, "--dataroot", data, "--out", str(ck / "perception"))))
    # Smoke: perception still trains (2 steps) to check its path, but detects nothing yet, which would
    # leave the agent questions of the LLM stages empty; oracle tokens keep those stages fed.
    oracle_tokens = a.oracle or a.smoke
    token_src = ["--oracle"] if oracle_tokens else ["--checkpoint", str(ck / "perception" / "last")]
    for split in ("train", "val"):
        steps.append(Step(f"tokens-{split}", tool("export_tokens.py", *token_src, "--dataroot", data, "--split", split,
                                                  "--out", str(token_dir / f"{split}.safetensors"))))
    for stage in LLM_STAGES:
        source = planning_tokens(a, ck) if stage == "planning" else ()
        steps.append(Step(stage, tool("train.py", "--stage", stage, "--config", f"configs/{stage}/tiny.yaml",
                                      "--set", f"data.token_cache={token_dir}", *source, *scale.llm,
                                      "--dataroot", data, "--out", str(ck / stage))))
    return steps


def planning_tokens(a: argparse.Namespace, ck: Path) -> tuple[str, ...]:
    """Planning fine-tunes the demo's own perception (online, configs/planning/tiny.yaml); --oracle has none.

    Smoke runs keep the online path too (its 2-step perception yields scene tokens only), so the
    test of the demo covers it and the evaluation of an online checkpoint.
    """
    if a.oracle:
        return ("--set", "data.token_source=oracle", "--set", "data.perception_config=configs/perception/tiny.yaml")
    return ("--set", f"data.perception_checkpoint={ck / 'perception' / 'last'}")


def evaluation_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, out, ck, base = a.data, Path(a.out), Path(a.checkpoints), Path(a.out) / "baselines"
    preds = [str(base / f"{m}.json") for m in ("constant_velocity", "kinematic", "ego_mlp")]
    return [
        Step("evaluate", tool("eval_planning.py", "--dataroot", data, "--split", "val", "--pred", *preds,
                              "--names", "Constant velocity", "Kinematic", "Ego-MLP",
                              "--checkpoint", str(ck / "planning" / "last"), "--checkpoint-name", "VLA-tiny",
                              "--out", str(out / "eval"), "--results-md", a.results_md)),
        Step("qa", tool("eval_qa.py", "--checkpoint", str(ck / "instruct" / "last"), "--dataroot", data,
                        "--tokens", str(Path(a.cache) / "tokens" / "val.safetensors"), "--split", "val",
                        *scale.qa, "--out", str(out / "qa"))),
        Step("pictures", tool("visualize.py", "--dataroot", data, "--split", "val", "--pred", str(base / "kinematic.json"),
                              "--pred-vla", str(out / "eval" / "last.json"), "--samples", str(scale.pictures), "--gif",
                              "--out", str(out / "bev"))),
    ]


def build_steps(a: argparse.Namespace) -> list[Step]:
    scale = SMOKE if a.smoke else full_scale(a)
    return data_steps(a, scale) + model_steps(a, scale) + evaluation_steps(a, scale)


def run_step(step: Step) -> float:
    if step.skip_if is not None and step.skip_if.exists():
        print(f"\n=== {step.name}: already there ({step.skip_if}), skipped", flush=True)
        return 0.0
    print(f"\n=== {step.name}: {' '.join(step.command[1:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(step.command, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo step '{step.name}' failed (exit {result.returncode}); the command above reproduces it")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mini_world", help="where the mini world is (built if missing)")
    p.add_argument("--out", default="outputs", help="tables, pictures and prediction files")
    p.add_argument("--checkpoints", default="checkpoints", help="checkpoint folders, one per stage")
    p.add_argument("--cache", default="cache", help="token caches")
    p.add_argument("--scenes", type=int, default=10, help="scenes in the mini world")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oracle", action="store_true", help="skip perception; LLM stages see ground-truth tokens")
    p.add_argument("--perception-epochs", type=int, default=3,
                   help="epochs of the tiny perception model (tiny.yaml trains 8 for its reported metrics)")
    p.add_argument("--qa-examples", type=int, default=100, help="val QA examples to generate answers for")
    p.add_argument("--until", default=None, help="stop after the step of this name")
    p.add_argument("--smoke", action="store_true",
                   help="every step at the smallest size (2 short scenes, 2 training steps per stage): checks the path")
    p.add_argument("--results-md", default="docs/results.md", help="where the results table is written")
    a = p.parse_args(argv)
    timings: dict[str, float] = {}
    for step in build_steps(a):
        timings[step.name] = round(run_step(step), 1)
        if a.until and step.name.startswith(a.until):
            break
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "demo_timings.json").write_text(json.dumps(timings, indent=1))
    print("\n=== demo done. Seconds per step:")
    for name, sec in timings.items():
        print(f"  {name:<12} {sec:8.1f}")
    print(f"  {'total':<12} {sum(timings.values()):8.1f}\nTables: docs/results.md, {a.out}/eval; pictures: {a.out}/bev, {a.out}/sample_preview.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
