"""Issue 10, part 5, in one command: does world pretraining + the structured answer help the planner?

    python tools/ablate_world.py --seeds 0 1 2 --split test \\
        --world-init checkpoints/world/last --motion-init checkpoints/motion/last \\
        --token-cache cache/tokens --frame-codes cache/frames --out outputs/ablate_world

Two arms, the same planning config (configs/planning/tiny.yaml: residual answers, cached tokens)
and the same seeds; they differ only where the claim says they do:

  * **world + structured**: planning starts from the `world` checkpoint (future-frame pretraining)
    and answers with every block, `<visual>` (the next keyframe's codes) included;
  * **plain**: planning starts from the `motion` checkpoint (no world stage) and answers with the
    plain trajectory.

Every run is `tools/train.py --stage planning` (seed s: `train.seed=s`) and every checkpoint is
scored by `tools/eval_planning.py --checkpoint` on `--split`; a last `eval_planning.py --pred` puts
all runs (and any `--baseline` prediction files) in one table, mean ± std over the seeds, under
ST-P3 and UniAD. Nothing is chosen on the split: the configs are fixed beforehand.

Checkpoints go to `<checkpoints>/<arm>-seed<s>`; a finished run (its `last/state.json` says the
configured step count was reached) is reused, so an interrupted ablation continues where it
stopped (a run still training into its folder, left by an interrupted call, is waited for). Logs: `<out>/logs/`. Training runs as subprocesses, `--jobs` at a time, niced, one thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
PLANNING_CONFIG = "configs/planning/tiny.yaml"
ORACLE = "oracle"


class Arm(NamedTuple):
    """One side of the ablation: its row name, the checkpoint it starts from and its answer overrides."""

    key: str  # folder names: <checkpoints>/<key>-seed<s>
    name: str  # the row of the table
    init_flag: str  # which argparse field holds its init checkpoint
    overrides: tuple[str, ...]  # extra --set KEY=VALUE of its planning run


# Both arms are scored on their written answer: the question is what world pretraining and the structured
# answer do to the text the LLM writes, and a plan head (configs/planning/tiny.yaml) cannot sit beside a
# structured answer (vla_world/model/plan_head.py), so it is off in both.
WRITTEN = "model.plan_head.enabled=false"
ARMS = (
    Arm("world-structured", "world + structured (visual)", "world_init",
        ("data.answer.structured=true", "data.answer.visual=true", WRITTEN)),
    Arm("plain", "plain (motion init, no world)", "motion_init", ("data.answer.structured=false", WRITTEN)),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds of both arms (default 0 1 2)")
    p.add_argument("--split", default="test", help="split every checkpoint is scored on (default: test)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--world-init", default="checkpoints/world/last",
                   help="world-stage checkpoint the 'world + structured' arm starts from")
    p.add_argument("--motion-init", default="checkpoints/motion/last",
                   help="motion-stage checkpoint the 'plain' arm starts from (no world stage)")
    p.add_argument("--token-cache", default="cache/tokens",
                   help="perception token cache folder (data.token_cache); 'oracle': ground-truth tokens (tests only; "
                        "the rows are then named so)")
    p.add_argument("--frame-codes", default="cache/frames",
                   help="frame-code cache folder (data.frame_codes): the <visual> targets of the train split")
    p.add_argument("--config", default=PLANNING_CONFIG, help="planning config of both arms")
    p.add_argument("--checkpoints", default="checkpoints/ablate_world", help="folder of the runs' checkpoints")
    p.add_argument("--out", default="outputs/ablate_world", help="folder of the logs, predictions and the report")
    p.add_argument("--baseline", nargs="*", default=[], metavar="NAME=FILE",
                   help="prediction files of the split to show beside the arms, e.g. 'CTRA prior=outputs/baselines/ctra_prior.json'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every planning run (smoke runs: model sizes, max_examples)")
    p.add_argument("--max-steps", type=int, default=None, help="stop every run after N steps (smoke runs only)")
    p.add_argument("--tokens", default=None, help="eval tokens: 'oracle' or a token file (default: as trained)")
    p.add_argument("--eval-batch-size", type=int, default=32,
                   help="answers decoded at once when scoring (eval_planning --batch-size; the answers do not depend on it)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained / scored at once (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--inspect", nargs="+", default=[], metavar="FILE",
                   help="only read these prediction files of --split and print, per file: the share of answers equal "
                        "to the prompt's CTRA prior (a zero correction: every coordinate as the prompt prints it), the <action> counts and the "
                        "<visual> code accuracy against the next keyframe's codes in --frame-codes (with the "
                        "copy-the-current-frame baseline); trains and scores nothing")
    return p.parse_args(argv)


def run_folder(args: argparse.Namespace, arm: Arm, seed: int) -> Path:
    return Path(args.checkpoints) / f"{arm.key}-seed{seed}"


def train_command(args: argparse.Namespace, arm: Arm, seed: int) -> list[str]:
    tokens = ["data.token_source=oracle"] if args.token_cache == ORACLE else \
        ["data.token_source=cache", f"data.token_cache={args.token_cache}"]
    sets = [f"train.seed={seed}", *tokens, f"data.frame_codes={args.frame_codes}", *arm.overrides, *args.set]
    cmd = [sys.executable, str(ROOT / "tools/train.py"), "--stage", "planning", "--config", args.config,
           "--dataroot", args.dataroot, "--init", getattr(args, arm.init_flag), "--out", str(run_folder(args, arm, seed)),
           "--overwrite"]
    cmd += [item for s in sets for item in ("--set", s)]
    return cmd + ([] if args.max_steps is None else ["--max-steps", str(args.max_steps)])


def finished(folder: Path, max_steps: int | None) -> bool:
    """A run to reuse: its checkpoint exists and reached its planned steps (or --max-steps)."""
    state_file = folder / "last" / "state.json"
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text())
    step, total = state.get("progress", {}).get("step"), state.get("total_steps")
    if max_steps:
        return step is not None and step >= max_steps
    return step is not None and total is not None and step >= total


def eval_command(args: argparse.Namespace, arm: Arm, seed: int) -> list[str]:
    cmd = [sys.executable, str(ROOT / "tools/eval_planning.py"), "--checkpoint", str(run_folder(args, arm, seed) / "last"),
           "--checkpoint-name", arm.name, "--dataroot", args.dataroot, "--split", args.split,
           # --no-guard: the ablation measures the LLM's answers, not the collision guard on top of them
           "--conventions", "stp3", "uniad", "--no-guard", "--no-pdms", "--quiet", "--out", str(eval_folder(args, arm, seed)),
           "--batch-size", str(args.eval_batch_size)]
    tokens = ORACLE if args.token_cache == ORACLE else args.tokens
    return cmd + ([] if tokens is None else ["--tokens", tokens])


def eval_folder(args: argparse.Namespace, arm: Arm, seed: int) -> Path:
    return Path(args.out) / f"eval-{arm.key}-seed{seed}"


def run_logged(cmd: list[str], log: Path) -> None:
    """One niced, single-threaded subprocess with its output in `log`; a failure names the log."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        handle.write(" ".join(cmd) + "\n")
        handle.flush()
        code = subprocess.run(["nice", "-n", "10", *cmd], check=False, stdout=handle, stderr=subprocess.STDOUT, env=env,
                              cwd=ROOT).returncode
    if code != 0:
        raise RuntimeError(f"{cmd[1]} failed (exit {code}); see {log}")


def wait_for_live_run(folder: Path, poll_s: float = 20.0) -> None:
    """Wait while a live process still trains into `folder` (its run lock, vla_world.checkpoint.RunLock), e.g.
    one started by an earlier, interrupted ablate_world; then its checkpoint decides whether to train again."""
    from vla_world.checkpoint import LOCK_FILE

    while True:
        try:
            pid = int(json.loads((folder / LOCK_FILE).read_text())["pid"])
            os.kill(pid, 0)
        except (OSError, ValueError, KeyError, TypeError):
            return  # no lock, an unreadable one, or its process is gone
        time.sleep(poll_s)


def train_and_score(args: argparse.Namespace, arm: Arm, seed: int) -> Path:
    """Train (unless finished) and score one run; returns its predictions file."""
    logs = Path(args.out) / "logs"
    wait_for_live_run(run_folder(args, arm, seed))
    if not finished(run_folder(args, arm, seed), args.max_steps):
        run_logged(train_command(args, arm, seed), logs / f"train-{arm.key}-seed{seed}.log")
    preds = eval_folder(args, arm, seed) / "last.json"
    if not scored(preds, run_folder(args, arm, seed)):
        run_logged(eval_command(args, arm, seed), logs / f"eval-{arm.key}-seed{seed}.log")
    return preds


def scored(preds: Path, run: Path) -> bool:
    """A prediction file to reuse: written after the run's last checkpoint (scoring a structured run on
    test takes as long as training it, so an interrupted ablation should not score finished runs again)."""
    state = run / "last" / "state.json"
    return preds.is_file() and state.is_file() and preds.stat().st_mtime > state.stat().st_mtime


def summary_command(args: argparse.Namespace, preds: dict[tuple[str, int], Path]) -> list[str]:
    files, names = [], []
    for arm in ARMS:
        for seed in args.seeds:
            files.append(str(preds[arm.key, seed]))
            names.append(arm.name)
    for item in args.baseline:
        name, _, file = item.partition("=")
        if not file:
            raise SystemExit(f"--baseline {item!r}: expected NAME=FILE")
        files.append(file)
        names.append(name)
    return [sys.executable, str(ROOT / "tools/eval_planning.py"), "--pred", *files, "--names", *names,
            "--dataroot", args.dataroot, "--split", args.split, "--conventions", "stp3", "uniad", "--no-pdms",
            "--quiet", "--out", str(Path(args.out) / "summary")]


def inspect(args: argparse.Namespace) -> None:
    """What the answers of each --inspect file did (see --help); reads inputs and codes, never a planner."""
    import re
    from collections import Counter

    import numpy as np

    from perception.frame_codes import load_frame_codes
    from planning.codec import hundredths, parse_trajectory
    from planning.kinematic import ctra_prior
    from planning.predictions import META_KEY
    from planning.structured import parse_answer
    from vla_world.data import load_records
    from vla_world.data.planner_input import planner_input

    records = {r.sample_token: r for r in load_records(args.dataroot, split=args.split, progress=False)}
    codes, _ = load_frame_codes(f"{args.frame_codes}/{args.split}.safetensors")
    for file in args.inspect:
        answers = {k: v["text"] for k, v in json.loads(Path(file).read_text()).items() if k != META_KEY}
        copies, actions, hits, copy_hits = [], Counter(), [], []
        for token, text in answers.items():
            waypoints = parse_trajectory(text).waypoints
            prior = hundredths(ctra_prior(planner_input(records[token]))) / 100.0  # as the prompt prints it
            copies.append(waypoints is not None and float(np.abs(waypoints - prior).max()) < 0.005)
            blocks = parse_answer(text).blocks
            actions.update([blocks["action"]] if "action" in blocks else [])
            if "visual" in blocks and records[token].has_next_frame:
                target = codes[records[token].next_sample_token]
                imagined = np.array([int(c) for c in re.findall(r"<vis_(\d+)>", blocks["visual"])])
                hits.append(float((imagined == target).mean()) if imagined.shape == target.shape else 0.0)
                copy_hits.append(float((codes[token] == target).mean()))
        print(f"{file}: {len(answers)} answers; equal to the CTRA prior: {np.mean(copies):.3f}; "
              f"actions: {dict(actions) or 'none'}")
        if hits:
            print(f"  <visual> code accuracy vs the next keyframe: {np.mean(hits):.3f} over {len(hits)} samples "
                  f"(copy the current frame's codes: {np.mean(copy_hits):.3f})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.inspect:
        inspect(args)
        return 0
    jobs = [(arm, seed) for seed in args.seeds for arm in ARMS]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {job: pool.submit(train_and_score, args, *job) for job in jobs}
        preds = {}
        for (arm, seed), future in tqdm(futures.items(), desc="ablate_world runs", disable=args.quiet):
            preds[arm.key, seed] = future.result()
    run_logged(summary_command(args, preds), Path(args.out) / "logs" / "summary.log")
    report = Path(args.out) / "summary" / "report.md"
    print(report.read_text())
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
