"""One process vs two DDP processes vs two DeepSpeed ZeRO-2 processes on this CPU: step time, throughput, memory.

    python benchmarks/bench_distributed.py [--dataroot data/mini_world] [--steps 16] [--batch 4]

Each variant is a real `tools/train.py --stage planning` run of the `tiny` config (fresh model, oracle
tokens, so no perception checkpoint is needed) started the way a user would: plain python, or
`accelerate launch` with configs/accelerate/cpu_2proc.yaml or deepspeed_zero2_cpu.yaml. Every
process gets one thread and the same per-process batch, so two processes see twice the samples per
step. Figures come from the runs themselves: seconds per step and its rate from the main process's
progress bar (the training loop only, start-up excluded), training tokens per second over all
processes from train.log, and the peak resident memory of the largest process (/usr/bin/time).
The ZeRO-2 row is skipped, with the reason, when deepspeed is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)


@dataclass
class Variant:
    name: str
    launcher: list[str]  # what runs tools/train.py
    processes: int


@dataclass
class Measured:
    seconds_per_step: float
    tokens_per_second: float
    peak_rss_mib: float
    wall_seconds: float
    final_loss: float


def variants() -> list[Variant]:
    accelerate = [str(PYTHON.with_name("accelerate")), "launch", "--config_file"]
    return [Variant("1 process", [str(PYTHON)], 1),
            Variant("2 processes, DDP (gloo)", [*accelerate, str(ROOT / "configs/accelerate/cpu_2proc.yaml")], 2),
            Variant("2 processes, DeepSpeed ZeRO-2", [*accelerate,
                                                     str(ROOT / "configs/accelerate/deepspeed_zero2_cpu.yaml")], 2)]


def train_command(variant: Variant, script: Path, args: argparse.Namespace, out: Path) -> list[str]:
    return ["/usr/bin/time", "-v", *variant.launcher, str(script), "--stage", "planning",
            "--config", str(ROOT / "configs/planning/tiny.yaml"), "--dataroot", args.dataroot, "--init", "none",
            "--out", str(out), "--max-steps", str(args.steps), "--set", "data.token_source=oracle",
            "--set", f"data.max_examples={args.examples}", "--set", f"train.batch_size={args.batch}",
            "--set", "train.log_every=1", *[f"--set=model.{key}={value}" for key, value in model_overrides(args).items()]]


def model_overrides(args: argparse.Namespace) -> dict[str, int]:
    """--hidden / --layers: a bigger LLM than `tiny`, where optimizer state dominates memory."""
    if not args.hidden:
        return {}
    return {"hidden_size": args.hidden, "intermediate_size": args.hidden * 11 // 4, "num_layers": args.layers}


def seconds_per_step(output: str) -> float:
    """The main process's last progress-bar rate ('2.05it/s' or '1.30s/it')."""
    rates = re.findall(r"\d+/\d+ \[[^\]]*?,\s+([\d.]+)(it/s|s/it)", output)
    if not rates:
        raise RuntimeError("no progress-bar rate in the run's output; did the run train at all?")
    value, unit = rates[-1]
    return 1.0 / float(value) if unit == "it/s" else float(value)


def measure(variant: Variant, script: Path, args: argparse.Namespace, scratch: Path) -> Measured:
    out = scratch / variant.name.split(",")[-1].strip().replace(" ", "_")
    started = time.perf_counter()
    run = subprocess.run(train_command(variant, script, args, out), capture_output=True, text=True, check=False,
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{variant.name} failed:\n{run.stderr[-3000:]}")
    log = (out / "train.log").read_text()
    last_step = [line for line in log.splitlines() if " tok/s" in line][-1]
    rss_kib = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return Measured(seconds_per_step(run.stderr), float(last_step.split()[-2]), rss_kib / 1024, wall,
                    float(last_step.split(" loss ")[1].split()[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", default="data/mini_world", help="a nuScenes-format folder (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=16, help="optimizer steps per run (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="samples per process per step (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=128, help="planning examples used (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=0, help="LLM width instead of tiny's 256 (default: tiny)")
    parser.add_argument("--layers", type=int, default=4, help="LLM layers with --hidden (default: %(default)s)")
    parser.add_argument("--train-script", type=Path, default=ROOT / "tools/train.py",
                        help="the training entry point to time (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (ROOT / args.dataroot).is_dir() and not Path(args.dataroot).is_dir():
        parser.error(f"--dataroot {args.dataroot}: no such folder; build it with `python tools/make_mini_world.py`")
    rows: list[tuple[Variant, Measured]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in variants():
            if "DeepSpeed" in variant.name and importlib.util.find_spec("deepspeed") is None:
                print(f"{variant.name}: skipped, deepspeed is not installed (pip install -e \".[deepspeed]\")")
                continue
            rows.append((variant, measure(variant, args.train_script, args, Path(scratch))))
            print(f"{variant.name}: done", flush=True)
    print_table(rows, args)
    return 0


def print_table(rows: list[tuple[Variant, Measured]], args: argparse.Namespace) -> None:
    base = rows[0][1]
    model = ", ".join(f"{k} {v}" for k, v in model_overrides(args).items()) or "tiny config"
    print(f"\nplanning stage, {model}, {args.steps} steps, batch {args.batch} per process, 1 thread per process")
    print("| launch | s/step | samples/s | train tok/s | vs 1 process | peak RSS / process (MiB) | wall (s) | loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for variant, m in rows:
        samples = args.batch * variant.processes / m.seconds_per_step
        print(f"| {variant.name} | {m.seconds_per_step:.2f} | {samples:.1f} | {m.tokens_per_second:.0f} | "
              f"{m.tokens_per_second / base.tokens_per_second:.2f}x | {m.peak_rss_mib:.0f} | {m.wall_seconds:.0f} | "
              f"{m.final_loss:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
