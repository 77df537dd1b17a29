"""Draw GRPO reward curves from the metrics each run logged (`<run>/last/state.json`, progress.history).

    python tools/plot_grpo.py --runs checkpoints/grpo-seed0 checkpoints/grpo-seed1 --out docs/grpo_reward_curve.png

One panel per quantity (total reward, accuracy and collision verifiers, k3 KL, zero-signal share),
one line per run, x = GRPO step. Nothing is recomputed: the numbers are the ones the trainer logged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PANELS = (("reward_mean", "mean reward"), ("reward_accuracy", "accuracy verifier"),
          ("reward_collision", "collision verifier"), ("kl", "k3 KL to the start"),
          ("zero_signal", "zero-signal group share"))


def history(run: Path) -> list[dict]:
    state = run / "last" / "state.json"
    if not state.is_file():
        raise SystemExit(f"{state}: missing; pass the --out folder of a finished `tools/train.py --stage grpo` run")
    data = json.loads(state.read_text())
    if data.get("stage") != "grpo":
        raise SystemExit(f"{state}: stage {data.get('stage')!r}, not a grpo run")
    return data["progress"]["history"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="grpo --out folders (each holds last/state.json)")
    p.add_argument("--names", nargs="+", default=None, help="legend names, in order (default: folder names)")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = args.names or [Path(r).name for r in args.runs]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2))
    for run, name in zip(args.runs, names):
        rows = history(Path(run))
        steps = range(1, len(rows) + 1)
        for ax, (key, _) in zip(axes, PANELS):
            ax.plot(steps, [r[key] for r in rows], marker=".", label=name)
    for ax, (_, title) in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
