"""The whole VLA-World pipeline at tiny scale on the mini world: `make demo` runs this.

Steps (each is one of the project's own tools, run as a subprocess, so the demo exercises
exactly what a user would type):
  world       build the mini world in nuScenes v1.0 format: train / val / test scenes (skipped when
              a world with a test split is already there)
  summary     build the record caches and print a data summary
  preview     render one sample's six cameras and its BEV
  baselines   constant velocity, kinematic predictor, CTRA prior, Ego-MLP (3 seeds) on the test split
  perception  train the tiny BEV perception model (skipped with --oracle)
  tokens      export scene / agent / map tokens per split (from perception, or oracle)
  frame_tokenizer  train the world model's tiny VQ frame tokenizer on train CAM_FRONT images
  frame-codes export each split's CAM_FRONT codes (cache/frames/<split>.safetensors)
  align, instruct, motion, world-stage, planning   the supervised LLM stages at `tiny` size, on the
              exported tokens; planning answers as the correction to the prompt's kinematic prior
              (configs/planning/tiny.yaml; --smoke fine-tunes the perception online instead, to cover
              that path; --oracle: oracle tokens).
              world-stage is the `world` stage (next-frame codes; named apart from the mini-world step);
              it is skipped, with a line saying so, when <cache>/frames/train.safetensors is missing,
              and planning then starts from motion.
              `--seeds 0 1 2` trains the planning stage once per seed (from the same start checkpoint)
  grpo        a short GRPO run from the planning checkpoint (seed 0): sampled trajectories scored by
              the rule-based verifiers (configs/grpo/tiny.yaml; docs/rewards.md)
  grpo-answers  the GRPO checkpoint's test answers (outputs/eval-grpo), its own row in evaluate
  evaluate    every convention's table for all methods on the held-out test split -> outputs/eval
              (+ --results-md), learned rows as mean +- std over their seeds
  readme      the README's results table, rewritten from this run's outputs/eval/metrics.json
  qa          QA metrics of the instruct stage on the test split
  pictures    BEV pictures and a GIF of one test scene
  world-eval  imagined next frames vs copy-frame and tokenizer-ceiling baselines on test -> outputs/world
              (+ world-pictures: current | imagined | true next, and a GIF); skipped with a line when
              there is no world checkpoint (checkpoints/world/last)

Settings were chosen on val; every reported number is on test (docs/results.md says why).

    python tools/demo.py --readme README.md   # make demo: everything, one planning seed
    python tools/demo.py --seeds 0 1 2 --keep --jobs 2 --results-md docs/results.md   # make results
    python tools/demo.py --oracle             # LLM stages on oracle (ground-truth) tokens
    python tools/demo.py --until baselines    # stop early
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vla_world.training.stages import LLM_STAGES

ROOT = Path(__file__).resolve().parents[1]
REPORT_SPLIT = "test"  # held out: never used to choose a setting (val is for that)
SPLITS = ("train", "val", "test")
BASELINE_ROWS = {"constant_velocity": "Constant velocity", "kinematic": "Kinematic", "ctra_prior": "CTRA prior"}
EGO_MLP_SEEDS = (0, 1, 2)


@dataclass
class Step:
    name: str
    command: list[str]
    skip_if: Path | None = None  # the step's product; present -> skip
    keep_if: Path | None = None  # with --keep: a finished training run's state; present -> skip
    needs: Path | None = None  # an input made by an optional earlier step; absent -> skip, saying so
    late_args: Callable[[], tuple[str, ...]] | None = None  # arguments decided when the step starts

    def argv(self) -> list[str]:
        return self.command + list(self.late_args() if self.late_args else ())


@dataclass(frozen=True)
class Scale:
    """How big each step runs: the full demo, or `--smoke` (every tool once, in about a minute)."""

    world: tuple[str, ...]  # extra make_mini_world.py flags
    perception: tuple[str, ...]  # extra train.py flags for perception
    llm: tuple[str, ...]  # extra train.py flags for each LLM stage
    qa: tuple[str, ...]  # extra eval_qa.py flags
    pictures: int  # val samples drawn
    frame_tokenizer: tuple[str, ...] = ()  # extra train.py flags for the frame tokenizer


def full_scale(a: argparse.Namespace) -> Scale:
    return Scale(world=("--scenes", str(a.scenes)), perception=("--set", f"train.epochs={a.perception_epochs}"),
                 llm=(), qa=("--max-examples", str(a.qa_examples)), pictures=6)


SMOKE = Scale(world=("--scenes", "2", "--test-scenes", "1", "--seconds", "6", "--image-size", "64", "36"),
              perception=("--max-steps", "2"),
              llm=("--max-steps", "2"), qa=("--max-examples", "4", "--no-meteor"), pictures=1,
              frame_tokenizer=("--max-steps", "2"))


def tool(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / name), *args]


def world_ready(data: str) -> Path | None:
    """The world's sample table when the world there already has a test split (else it is (re)built)."""
    tables = Path(data) / "v1.0-mini"
    splits = tables / "vla_world_splits.json"
    if (tables / "sample.json").is_file() and splits.is_file() and json.loads(splits.read_text()).get("test"):
        return tables / "sample.json"
    return None


def data_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, out = a.data, Path(a.out)
    world = Step("world", tool("make_mini_world.py", "--out", data, "--seed", str(a.seed), *scale.world))
    world.skip_if = world_ready(data)
    seeds = [str(s) for s in EGO_MLP_SEEDS]
    return [
        world,
        Step("summary", tool("data_summary.py", "--dataroot", data)),
        Step("preview", tool("show_sample.py", "--dataroot", data, "--out", str(out / "sample_preview.png"))),
        Step("baselines", tool("run_baselines.py", "--dataroot", data, "--split", REPORT_SPLIT, "--seeds", *seeds,
                               "--out", str(out / "baselines"))),
    ]


def planning_out(ck: Path, seed: int) -> Path:
    """Seed 0 is the demo's own planning run; other seeds get a folder each."""
    return ck / "planning" if seed == 0 else ck / f"planning-seed{seed}"


def model_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, ck, token_dir = a.data, Path(a.checkpoints), Path(a.cache) / "tokens"
    steps = []
    if not a.oracle:
        steps.append(trained(Step("perception", tool("train.py", "--stage", "perception", "--config",
                                                      "configs/perception/tiny.yaml", *scale.perception, "--dataroot",
                                                      data, "--out", str(ck / "perception"))), ck / "perception"))
    # Smoke: perception still trains (2 steps) to check its path, but detects nothing yet, which would
    # leave the agent questions of the LLM stages empty; oracle tokens keep those stages fed.
    oracle_tokens = a.oracle or a.smoke
    token_src = ["--oracle"] if oracle_tokens else ["--checkpoint", str(ck / "perception" / "last")]
    for split in SPLITS:
        steps.append(Step(f"tokens-{split}", tool("export_tokens.py", *token_src, "--dataroot", data, "--split", split,
                                                  "--out", str(token_dir / f"{split}.safetensors"))))
    steps += frame_steps(a, scale)
    for stage in LLM_STAGES:
        for seed in (a.seeds if stage == "planning" else [0]):
            out = planning_out(ck, seed) if stage == "planning" else ck / stage
            source = planning_tokens(a, ck) if stage == "planning" else world_frames(a) if stage == "world" \
                else grpo_settings(a) if stage == "grpo" else ()
            name = WORLD_STEP if stage == "world" else stage if seed == 0 else f"{stage}-seed{seed}"
            seeded = ("--set", f"train.seed={seed}") if stage == "planning" else ()
            step = trained(Step(name, tool("train.py", "--stage", stage, "--config", f"configs/{stage}/tiny.yaml",
                                           "--set", f"data.token_cache={token_dir}", *seeded, *source,
                                           *scale.llm, "--dataroot", data, "--out", str(out))), out)
            if stage == "world":
                step.needs = Path(a.cache) / "frames" / "train.safetensors"
            if stage == "planning":
                step.late_args = lambda: planning_start(ck)
            steps.append(step)
    return steps


def frame_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    """The world model's frame tokenizer and its per-split code caches (issue 10)."""
    ck, frames = Path(a.checkpoints), Path(a.cache) / "frames"
    steps = [trained(Step("frame_tokenizer", tool("train.py", "--stage", "frame_tokenizer", "--config",
                                                 "configs/frame_tokenizer/tiny.yaml", *scale.frame_tokenizer,
                                                 "--dataroot", a.data, "--out", str(ck / "frame_tokenizer"))),
                     ck / "frame_tokenizer")]
    for split in SPLITS:
        steps.append(Step(f"frame-codes-{split}", tool("export_frame_codes.py", "--checkpoint",
                                                       str(ck / "frame_tokenizer" / "last"), "--dataroot", a.data,
                                                       "--split", split, "--out", str(frames))))
    return steps


def world_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    """Imagined next frames of the world checkpoint on test, scored and drawn; skipped without one."""
    ck, out = Path(a.checkpoints), Path(a.out) / "world"
    tokenizer = str(ck / "frame_tokenizer" / "last")
    evaluate = Step("world-eval", tool("eval_world.py", "--checkpoint", str(ck / "world" / "last"), "--tokenizer",
                                       tokenizer, "--dataroot", a.data, "--split", REPORT_SPLIT, "--out", str(out)))
    evaluate.needs = ck / "world" / "last"
    pictures = Step("world-pictures", tool("visualize.py", "--dataroot", a.data, "--split", REPORT_SPLIT,
                                           "--world-codes", str(out / "imagined_codes.safetensors"),
                                           "--tokenizer", tokenizer, "--samples", str(8 * scale.pictures),
                                           "--gif", "--out", str(out / "pictures")))
    pictures.needs = ck / "world" / "last"
    return [evaluate, pictures]


WORLD_STEP = "world-stage"  # the `world` LLM stage; "world" is the demo's mini-world step


def world_frames(a: argparse.Namespace) -> tuple[str, ...]:
    return ("--set", f"data.frame_codes={Path(a.cache) / 'frames'}")


def planning_start(ck: Path) -> tuple[str, ...]:
    """Planning starts from the world stage when it ran (its frame-code cache existed), else from motion."""
    world = ck / "world" / "last"
    return ("--init", str(world if (world / "state.json").is_file() else ck / "motion" / "last"))


def trained(step: Step, out: Path) -> Step:
    """A training step: skipped under --keep when its run finished, else retrained (--overwrite: a demo re-run
    replaces its own checkpoints; train.py refuses an occupied --out without it)."""
    step.keep_if = out / "last" / "state.json"
    step.command.append("--overwrite")
    return step


def planning_tokens(a: argparse.Namespace, ck: Path) -> tuple[str, ...]:
    """Planning reads the exported token cache (configs/planning/tiny.yaml); --oracle: oracle tokens.

    Smoke runs fine-tune the demo's perception online instead (its 2-step perception yields scene
    tokens only), so the test of the demo still covers that path and the evaluation of an online
    checkpoint.
    """
    if a.oracle:
        return ("--set", "data.token_source=oracle", "--set", "data.perception_config=configs/perception/tiny.yaml")
    if a.smoke:
        return ("--set", "data.token_source=online", "--set", f"data.perception_checkpoint={ck / 'perception' / 'last'}")
    return ()


def grpo_settings(a: argparse.Namespace) -> tuple[str, ...]:
    """GRPO reads the tokens its planning start was trained on (online: that run's perception; --oracle: GT);
    smoke runs sample 2 answers for 2 prompts a step (the path, not the numbers)."""
    source = ("--set", "data.token_source=oracle", "--set", "data.perception_config=configs/perception/tiny.yaml") \
        if a.oracle else ()
    return source + (("--set", "grpo.group_size=2", "--set", "train.batch_size=2") if a.smoke else ())


GRPO_ROW = "VLA-tiny + GRPO"


def baseline_predictions(base: Path) -> tuple[list[str], list[str]]:
    """Prediction files and row names: one row per baseline, the Ego-MLP seeds as one row (mean +- std)."""
    files = [str(base / f"{stem}.json") for stem in BASELINE_ROWS]
    names = list(BASELINE_ROWS.values())
    files += [str(base / f"ego_mlp_seed{seed}.json") for seed in EGO_MLP_SEEDS]
    names += ["Ego-MLP"] * len(EGO_MLP_SEEDS)
    return files, names


def results_note(a: argparse.Namespace) -> str:
    """What produced the runs of the results page, for its readers (written at its top)."""
    seeds = " ".join(map(str, a.seeds))
    return (f"Produced by `python tools/demo.py --seeds {seeds} --keep --jobs 2 --results-md docs/results.md` "
            f"(`make results`) on the mini world's held-out `{REPORT_SPLIT}` split: 14 scenes never used to choose "
            "a setting (val was). Learned rows are mean ± sample std over their seeds: Ego-MLP seeds "
            f"{' '.join(map(str, EGO_MLP_SEEDS))}; VLA-tiny planning-stage seeds {seeds}, each trained from the same "
            "align → instruct → motion → world chain (seed 0), so the spread is the planning stage's alone. VLA-tiny "
            "answers with its plan head (an MLP ensemble on the top principal components of the LLM's hidden state and "
            "the prompt's ego state, written out by the codec; docs/model.md \"Plan head\") and every VLA-tiny plan "
            "passes the collision guard on the perceived agents (docs/model.md \"Collision guard\"); GRPO trains "
            "the written answer, so its row is decoded template-constrained (docs/model.md); failed answers score as docs/evaluation.md says.")


def evaluation_steps(a: argparse.Namespace, scale: Scale) -> list[Step]:
    data, out, ck, base = a.data, Path(a.out), Path(a.checkpoints), Path(a.out) / "baselines"
    files, names = baseline_predictions(base)
    checkpoints = [str(planning_out(ck, seed) / "last") for seed in a.seeds]
    oracle = ("--tokens", "oracle") if a.oracle else ()
    results = ("--results-md", a.results_md, "--results-note", results_note(a)) if a.results_md else ()
    # the GRPO checkpoint's answers first (eval_planning takes one checkpoint row), then a row of their own
    grpo_answers = out / "eval-grpo"
    files, names = files + [str(grpo_answers / "last.json")], names + [GRPO_ROW]
    steps = [
        Step("grpo-answers", tool("eval_planning.py", "--dataroot", data, "--split", REPORT_SPLIT, "--checkpoint",
                                  str(ck / "grpo" / "last"), "--checkpoint-name", GRPO_ROW, *oracle, "--quiet",
                                  "--out", str(grpo_answers))),
        Step("evaluate", tool("eval_planning.py", "--dataroot", data, "--split", REPORT_SPLIT, "--pred", *files,
                              "--names", *names, "--checkpoint", *checkpoints, "--checkpoint-name", "VLA-tiny",
                              *oracle, "--out", str(out / "eval"), *results)),
        *world_steps(a, scale),
    ]
    if a.readme:
        steps.append(Step("readme", tool("demo_readme.py", "--report", str(out / "eval" / "report.md"),
                                         "--readme", a.readme)))
    token_file = "oracle" if a.oracle else str(Path(a.cache) / "tokens" / f"{REPORT_SPLIT}.safetensors")
    steps += [
        Step("qa", tool("eval_qa.py", "--checkpoint", str(ck / "instruct" / "last"), "--dataroot", data,
                        "--tokens", token_file, "--split", REPORT_SPLIT, *scale.qa, "--out", str(out / "qa"))),
        Step("pictures", tool("visualize.py", "--dataroot", data, "--split", REPORT_SPLIT,
                              "--pred", str(base / "ctra_prior.json"), "--pred-vla", str(out / "eval" / "last.json"),
                              "--samples", str(scale.pictures), "--gif", "--out", str(out / "bev"))),
    ]
    return steps


def build_steps(a: argparse.Namespace) -> list[Step]:
    scale = SMOKE if a.smoke else full_scale(a)
    return data_steps(a, scale) + model_steps(a, scale) + evaluation_steps(a, scale)


def skip_reason(step: Step, keep: bool) -> str | None:
    """Why `step` need not run (its product is there, or under --keep its finished run or result), else None."""
    if step.skip_if is not None and step.skip_if.exists():
        return f"already there ({step.skip_if})"
    if keep and step.keep_if is not None and step.keep_if.exists():
        return f"kept ({step.keep_if}), --keep"
    return None


def run_step(step: Step, keep: bool) -> float:
    if step.needs is not None and not step.needs.exists():
        print(f"\n=== {step.name}: skipped, {step.needs} does not exist (the earlier step that makes it did not run)",
              flush=True)
        return 0.0
    reason = skip_reason(step, keep)
    if reason:
        print(f"\n=== {step.name}: {reason}, skipped", flush=True)
        return 0.0
    print(f"\n=== {step.name}: {' '.join(step.argv()[1:])}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(step.argv(), cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo step '{step.name}' failed (exit {result.returncode}); the command above reproduces it")
    return time.perf_counter() - start


def side_by_side(steps: list[Step], jobs: int) -> list[Step]:
    """The next steps to run together: up to `jobs` planning seeds in a row, else the next step alone."""
    batch = [steps[0]]
    while jobs > 1 and batch[0].name.startswith("planning") and len(batch) < min(jobs, len(steps)) \
            and steps[len(batch)].name.startswith("planning"):
        batch.append(steps[len(batch)])
    return batch


def run_steps(batch: list[Step], keep: bool) -> dict[str, float]:
    """Run one step, or several independent training runs at once; {name: seconds}."""
    if len(batch) == 1:
        return {batch[0].name: round(run_step(batch[0], keep), 1)}
    todo = [s for s in batch if skip_reason(s, keep) is None]
    print(f"\n=== {', '.join(s.name for s in todo)}: side by side", flush=True)
    start = time.perf_counter()
    running = [(s, subprocess.Popen(s.argv(), cwd=ROOT)) for s in todo]
    for step, proc in running:
        if proc.wait() != 0:
            raise SystemExit(f"demo step '{step.name}' failed (exit {proc.returncode}): {' '.join(step.argv()[1:])}")
    seconds = round(time.perf_counter() - start, 1)
    return {s.name: (seconds if s in todo else 0.0) for s in batch}


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
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="planning-stage seeds, each a run from the same motion checkpoint; with several the VLA "
                        "row is their mean +- std (default: 0; make results: 0 1 2)")
    p.add_argument("--keep", action="store_true", help="skip a training step whose run already finished (make results)")
    p.add_argument("--results-md", default=None, help="also write the results page here (make results: docs/results.md)")
    p.add_argument("--readme", default=None,
                   help="rewrite the results table of this README from the run (make demo: README.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many planning seeds side by side (each run is single-threaded and "
                        "deterministic, so the results equal a sequential run's)")
    a = p.parse_args(argv)
    if 0 not in a.seeds:
        p.error("--seeds must include 0 (the demo's own planning run, checkpoints/planning)")
    timings: dict[str, float] = {}
    steps = build_steps(a)
    if a.until and not any(step.name.startswith(a.until) for step in steps):
        p.error(f"--until {a.until!r}: no step of that name; the steps are {', '.join(s.name for s in steps)}")
    start = time.perf_counter()
    while steps:
        batch = side_by_side(steps, a.jobs)
        steps = steps[len(batch):]
        timings.update(run_steps(batch, a.keep))
        if a.until and any(step.name.startswith(a.until) for step in batch):
            break
    Path(a.out).mkdir(parents=True, exist_ok=True)
    # steps run side by side share their wall time, so the total is the clock's, not the sum
    wall = round(time.perf_counter() - start, 1)
    (Path(a.out) / "demo_timings.json").write_text(json.dumps({**timings, "wall": wall}, indent=1))
    print("\n=== demo done. Seconds per step (side-by-side steps show their shared wall time):")
    for name, sec in timings.items():
        print(f"  {name:<14} {sec:8.1f}")
    tables = ", ".join(t for t in (a.results_md, a.readme, f"{a.out}/eval") if t)
    print(f"  {'wall':<14} {wall:8.1f}\nTables: {tables}; pictures: {a.out}/bev, {a.out}/sample_preview.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
