"""Kill a tiny LLM stage with SIGKILL mid-run, resume it, and compare with the uninterrupted run.

    python benchmarks/kill_and_resume.py [--kill-step 25] [--save-minutes 0.5] [--out outputs/killresume]

Prints: the step the run had reached when killed, the step and age of the checkpoint it resumed from
(the work lost), the largest difference between the resumed and the uninterrupted run's per-step losses
(0 means exact resume), and whether train.log holds every step exactly once. Figures: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ["--stage", "align", "--config", "configs/align/tiny.yaml", "--set", "data.token_source=oracle",
         "--set", "data.max_examples=160", "--set", "train.batch_size=4", "--set", "train.log_every=1"]


def train(out: Path, dataroot: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "tools" / "train.py"), *STAGE, "--dataroot", dataroot, "--out", str(out), *extra]


def steps_logged(log: Path) -> list[int]:
    text = log.read_text() if log.is_file() else ""
    return [int(m) for m in re.findall(r"INFO step (\d+)/", text)]


def losses(folder: Path) -> list[float]:
    return json.loads((folder / "last" / "state.json").read_text())["progress"]["losses"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataroot", default="data/mini_world")
    p.add_argument("--out", default="outputs/killresume")
    p.add_argument("--kill-step", type=int, default=25, help="SIGKILL once the log shows this step")
    p.add_argument("--save-minutes", default="0.5", help="train.save_minutes of the killed run")
    a = p.parse_args()
    out = Path(a.out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, killed = out / "full", out / "killed"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": ROOT}
    if not (full / "last" / "state.json").is_file():
        subprocess.run(train(full, a.dataroot, "--overwrite"), check=True, **quiet)
    run = train(killed, a.dataroot, "--set", f"train.save_minutes={a.save_minutes}")
    shutil.rmtree(killed, ignore_errors=True)  # an old log would look like progress
    proc = subprocess.Popen(run, **quiet)
    while proc.poll() is None and max(steps_logged(killed / "train.log"), default=0) < a.kill_step:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at, reached = time.time(), max(steps_logged(killed / "train.log"))
    state = json.loads((killed / "last" / "state.json").read_text())
    saved_step, saved_age = state["progress"]["step"], killed_at - (killed / "last" / "state.json").stat().st_mtime
    subprocess.run([*run, "--resume"], check=True, **quiet)
    diff = max(abs(x - y) for x, y in zip(losses(full), losses(killed), strict=True))
    logged = steps_logged(killed / "train.log")
    print(f"killed at step {reached} (SIGKILL); resumed from the checkpoint of step {saved_step}, saved "
          f"{saved_age:.0f} s before the kill: {reached - saved_step} steps lost")
    print(f"after resume: {len(losses(killed))} steps; largest |loss(resumed) - loss(uninterrupted)| over all "
          f"steps = {diff:.3g}; final loss {losses(killed)[-1]:.4f} vs {losses(full)[-1]:.4f}")
    print(f"train.log: {len(logged)} step lines for {len(set(logged))} steps (each once: {logged == sorted(set(logged))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
