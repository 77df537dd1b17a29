"""What perception costs (issue 16): the planning and instruct stages on oracle vs perception tokens.

One command trains and evaluates, for each token source, the planning stage (one run per --seeds
entry) and the instruct stage (one run per --qa-seeds entry), exactly as the demo trains them
(configs/{planning,instruct}/tiny.yaml; planning from the demo's world checkpoint, or motion when
there is none; instruct from align), evaluates them on the held-out test split with the tokens they
were trained on, and writes one table beside the CTRA prior and the Ego-MLP:

  oracle-tokens-<split>   tools/export_tokens.py --oracle: tokens built from ground truth
                          (perception/oracle.py) with the perception checkpoint's own config, so both
                          sources have the same widths and counts
  perception-tokens-<split>  tools/export_tokens.py --checkpoint, only where the cache lacks a split
  baselines               tools/run_baselines.py, only when --baselines lacks the prediction files
  planning-<source>-seed<s>, instruct-<source>-seed<s>   tools/train.py, up to --jobs side by side
  eval-<source>           tools/eval_planning.py --checkpoint <its seeds> --tokens <its test cache>
  qa-<source>-seed<s>     tools/eval_qa.py --tokens <its test cache>
  combine                 tools/eval_planning.py on every prediction file -> <out>/eval/metrics.json
  table                   <out>/table.md, and between the markers of each --docs file

    python tools/ablate_tokens.py                       # everything, demo layout (checkpoints/, cache/tokens)
    python tools/ablate_tokens.py --keep                # resume: finished runs and evaluations are kept
    python tools/ablate_tokens.py --docs docs/results.md docs/perception.md   # also rewrite their tables
    python tools/ablate_tokens.py --reuse-perception-runs checkpoints   # the demo's own perception runs

Only the tokens differ between the two arms: same start checkpoints, config, seeds and data order.
The start checkpoints (align ... world) were trained on perception tokens by the demo; oracle arms
re-learn their stage from there (the issue asks what the planning stage loses to perception).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tools.*` importable when run as a script
from tools.demo import Step, planning_start, skip_reason, tool
from tools.token_ablation_table import (
    PlanningRow,
    QaRun,
    ablation_markdown,
    replace_block,
)

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
REPORT_SPLIT = "test"
SOURCES = ("perception", "oracle")
EGO_MLP_SEEDS = (0, 1, 2)  # tools/run_baselines.py's default seeds, as the demo uses them
TRAINED = "last/state.json"  # a training run's finished state


@dataclass(frozen=True)
class Arm:
    """One token source: where its token caches are and where its runs go."""

    source: str  # "perception" | "oracle"
    cache: Path  # folder of <split>.safetensors
    runs: Path  # folder of this arm's training runs

    def planning(self, seed: int) -> Path:
        return self.runs / f"planning-seed{seed}"

    def instruct(self, seed: int) -> Path:
        return self.runs / f"instruct-seed{seed}"

    @property
    def row(self) -> str:
        return f"VLA-tiny ({self.source} tokens)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/mini_world", help="the world (default: the demo's data/mini_world)")
    p.add_argument("--start", default="checkpoints", help="the demo's checkpoint folder: planning starts from its "
                   "world/last (motion/last without one), instruct from its align/last (default: checkpoints)")
    p.add_argument("--perception-tokens", default="cache/tokens",
                   help="perception token caches, <split>.safetensors (default: the demo's cache/tokens); a missing "
                        "split is exported from --perception-checkpoint")
    p.add_argument("--perception-checkpoint", default="checkpoints/perception/last",
                   help="the perception those tokens come from (its config also shapes the oracle tokens)")
    p.add_argument("--oracle-tokens", default="cache/tokens-oracle", help="where the oracle token caches go")
    p.add_argument("--runs", default="checkpoints/ablation-tokens", help="training runs, <source>/<stage>-seed<s>")
    p.add_argument("--out", default="outputs/ablation-tokens", help="evaluations and table.md")
    p.add_argument("--baselines", default="outputs/baselines",
                   help="CTRA prior and Ego-MLP prediction files on test (made with run_baselines.py if missing)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="planning seeds per source (default 0 1 2)")
    p.add_argument("--qa-seeds", type=int, nargs="*", default=[0],
                   help="instruct seeds per source (default 0; none: no QA part)")
    p.add_argument("--qa-examples", type=int, default=100, help="test QA examples generated per run (the demo's 100)")
    p.add_argument("--reuse-perception-runs", default=None, metavar="CHECKPOINTS",
                   help="take the perception arm's runs from a demo checkpoint folder (planning/, planning-seed<s>/, "
                        "instruct/) instead of training them: the demo trains them exactly as this tool would")
    p.add_argument("--jobs", type=int, default=2, help="training runs / evaluations side by side (default 2)")
    p.add_argument("--keep", action="store_true",
                   help="keep finished runs, evaluations and oracle caches (resume); without it they are redone")
    p.add_argument("--docs", nargs="*", default=[],
                   help="files whose '<!-- ablation-tokens:start/end -->' block gets the table")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra train.py --set for every run (e.g. a smaller model in tests)")
    p.add_argument("--smoke", action="store_true", help="2 steps per run, 4 QA examples, no METEOR: checks the path")
    p.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    return p


def arms(a: argparse.Namespace) -> list[Arm]:
    runs = Path(a.runs)
    return [Arm("perception", Path(a.perception_tokens), runs / "perception"),
            Arm("oracle", Path(a.oracle_tokens), runs / "oracle")]


def token_steps(a: argparse.Namespace) -> list[Step]:
    """Oracle caches from ground truth; perception caches only where a split is missing."""
    config = Path(a.perception_checkpoint) / "config.yaml"
    oracle_config = ("--config", str(config)) if config.is_file() else ()
    steps = []
    for split in SPLITS:
        oracle = Path(a.oracle_tokens) / f"{split}.safetensors"
        step = Step(f"oracle-tokens-{split}", tool("export_tokens.py", "--oracle", *oracle_config, "--dataroot",
                                                   a.data, "--split", split, "--out", str(oracle)))
        step.keep_if = oracle
        steps.append(step)
        perception = Path(a.perception_tokens) / f"{split}.safetensors"
        step = Step(f"perception-tokens-{split}", tool("export_tokens.py", "--checkpoint", a.perception_checkpoint,
                                                       "--dataroot", a.data, "--split", split, "--out", str(perception)))
        step.skip_if = perception
        steps.append(step)
    return steps


def baseline_files(a: argparse.Namespace) -> tuple[list[str], list[str]]:
    base = Path(a.baselines)
    files = [str(base / "ctra_prior.json")] + [str(base / f"ego_mlp_seed{s}.json") for s in EGO_MLP_SEEDS]
    return files, ["CTRA prior"] + ["Ego-MLP"] * len(EGO_MLP_SEEDS)


def baseline_step(a: argparse.Namespace) -> Step:
    step = Step("baselines", tool("run_baselines.py", "--dataroot", a.data, "--split", REPORT_SPLIT, "--seeds",
                                  *map(str, EGO_MLP_SEEDS), "--out", a.baselines, "--quiet"))
    step.skip_if = Path(baseline_files(a)[0][-1])
    return step


def train_step(a: argparse.Namespace, arm: Arm, stage: str, seed: int, out: Path, init: tuple[str, ...]) -> Step:
    smoke = ("--max-steps", "2") if a.smoke else ()
    extra = [x for kv in a.train_set for x in ("--set", kv)]
    step = Step(f"{stage}-{arm.source}-seed{seed}", tool(
        "train.py", "--stage", stage, "--config", f"configs/{stage}/tiny.yaml", "--set", "data.token_source=cache",
        "--set", f"data.token_cache={arm.cache}", "--set", f"train.seed={seed}", *extra, *smoke, *init,
        "--dataroot", a.data, "--out", str(out), "--overwrite"))
    step.keep_if = out / TRAINED
    return step


def training_steps(a: argparse.Namespace) -> list[Step]:
    """Planning and instruct runs of both arms (the perception arm's are skipped with --reuse-perception-runs)."""
    start = Path(a.start)
    steps = []
    for arm in arms(a):
        if arm.source == "perception" and a.reuse_perception_runs:
            continue
        steps += [train_step(a, arm, "planning", s, arm.planning(s), planning_start(start)) for s in a.seeds]
        steps += [train_step(a, arm, "instruct", s, arm.instruct(s), ("--init", str(start / "align" / "last")))
                  for s in a.qa_seeds]
    return steps


def demo_run(root: Path, stage: str, seed: int) -> Path:
    """The demo's folder of a run: planning seed 0 is `planning`, seed s `planning-seed<s>`; instruct has one."""
    if stage == "instruct":
        if seed != 0:
            raise SystemExit(f"--reuse-perception-runs: the demo trains instruct with seed 0 only, not {seed}")
        return root / "instruct"
    return root / ("planning" if seed == 0 else f"planning-seed{seed}")


def checkpoint(a: argparse.Namespace, arm: Arm, stage: str, seed: int) -> Path:
    if arm.source == "perception" and a.reuse_perception_runs:
        return demo_run(Path(a.reuse_perception_runs), stage, seed) / "last"
    return (arm.planning(seed) if stage == "planning" else arm.instruct(seed)) / "last"


def evaluation_steps(a: argparse.Namespace) -> list[Step]:
    out, steps = Path(a.out), []
    for arm in arms(a):
        test = str(arm.cache / f"{REPORT_SPLIT}.safetensors")
        step = Step(f"eval-{arm.source}", tool(
            "eval_planning.py", "--dataroot", a.data, "--split", REPORT_SPLIT, "--checkpoint",
            *[str(checkpoint(a, arm, "planning", s)) for s in a.seeds], "--checkpoint-name", arm.row,
            # --no-guard: the ablation measures what the tokens give the LLM; a guard reading the oracle arm's
            # ground-truth boxes would score the labels, not the tokens
            "--tokens", test, "--no-guard", "--no-pdms", "--quiet", "--out", str(out / f"eval-{arm.source}")))
        step.keep_if = out / f"eval-{arm.source}" / "metrics.json"
        steps.append(step)
        smoke = ("--max-examples", "4", "--no-meteor") if a.smoke else ("--max-examples", str(a.qa_examples))
        for seed in a.qa_seeds:
            qa_out = out / f"qa-{arm.source}-seed{seed}"
            step = Step(f"qa-{arm.source}-seed{seed}", tool(
                "eval_qa.py", "--checkpoint", str(checkpoint(a, arm, "instruct", seed)), "--dataroot", a.data,
                "--tokens", test, "--split", REPORT_SPLIT, *smoke, "--out", str(qa_out)))
            step.keep_if = qa_out / "qa_metrics.json"
            steps.append(step)
    return steps


def answer_files(a: argparse.Namespace, arm: Arm) -> list[str]:
    """The per-seed answer files eval_planning.py wrote for an arm (its own naming: tools/eval_planning.answer_files)."""
    from tools.eval_planning import answer_files as named

    ckpts = [str(checkpoint(a, arm, "planning", s)) for s in a.seeds]
    return [str(p) for p in named(ckpts, Path(a.out) / f"eval-{arm.source}")]


def combine_step(a: argparse.Namespace) -> Step:
    files, names = baseline_files(a)
    for arm in arms(a):
        answers = answer_files(a, arm)
        files, names = files + answers, names + [arm.row] * len(answers)
    return Step("combine", tool("eval_planning.py", "--dataroot", a.data, "--split", REPORT_SPLIT, "--pred", *files,
                                "--names", *names, "--conventions", "stp3", "uniad", "--no-pdms", "--quiet",
                                "--out", str(Path(a.out) / "eval")))


def build_steps(a: argparse.Namespace) -> list[Step]:
    """Every step, in the order they start when their inputs are ready (tools.ablate_tokens.depends_on)."""
    return token_steps(a) + [baseline_step(a)] + training_steps(a) + evaluation_steps(a) + [combine_step(a)]


def depends_on(step: Step, names: list[str]) -> list[str]:
    """The earlier steps `step` waits for: trainings on the token caches, evaluations on their runs and the test
    caches, the combined table on every evaluation and the baselines."""
    kind = step.name.split("-")[0]
    if kind in ("planning", "instruct"):
        return [n for n in names if "-tokens-" in n]
    if kind in ("eval", "qa"):
        source = step.name.split("-")[1]
        runs = "planning" if kind == "eval" else "instruct"
        seed = step.name.rsplit("-", 1)[1] if kind == "qa" else ""
        return [n for n in names if n.endswith("-tokens-test") or
                (n.startswith(f"{runs}-{source}-") and n.endswith(seed))]
    if kind == "combine":
        return [n for n in names if n.startswith("eval-") or n == "baselines"]
    return []


def run_steps(steps: list[Step], jobs: int, keep: bool) -> dict[str, float]:
    """Run the steps in order, up to `jobs` at once, each once the steps it depends on are done; {name: seconds}.
    A failed step stops the tool (and the steps running beside it)."""
    names = [s.name for s in steps]
    waits = {s.name: set(depends_on(s, names[:i])) for i, s in enumerate(steps)}
    todo, running, done, seconds = list(steps), [], set(), {}
    while todo or running:
        ready = [s for s in todo if waits[s.name] <= done]
        while ready and len(running) < jobs:
            step = ready.pop(0)
            todo.remove(step)
            count = f"[{len(steps) - len(todo)}/{len(steps)}]"
            reason = skip_reason(step, keep)
            if reason:
                print(f"=== {count} {step.name}: {reason}, skipped", flush=True)
                done.add(step.name)
                continue
            print(f"=== {count} {step.name}: {shlex.join(step.argv()[1:])}", flush=True)
            running.append((step, subprocess.Popen(step.argv(), cwd=ROOT), time.perf_counter()))
        for item in list(running):
            step, proc, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                for _, other, _ in running:
                    other.terminate()
                raise SystemExit(f"ablate_tokens: step '{step.name}' failed (exit {proc.returncode}); "
                                 f"reproduce: {shlex.join(step.argv()[1:])}")
            done.add(step.name)
            seconds[step.name] = round(time.perf_counter() - start, 1)
            print(f"=== {step.name}: done in {seconds[step.name]:.0f} s", flush=True)
        if running:
            time.sleep(0.5)
    return seconds


def provenance(a: argparse.Namespace, argv: list[str]) -> str:
    perception = (f"the demo's own runs in `{a.reuse_perception_runs}` (planning seeds as `planning`, "
                  f"`planning-seed<s>`; instruct `instruct`), trained by `make results` exactly this way"
                  if a.reuse_perception_runs else f"trained by this command into `{a.runs}/perception`")
    return (f"Produced by `python tools/ablate_tokens.py {shlex.join(argv)}`. Perception tokens: "
            f"`{a.perception_tokens}` from `{a.perception_checkpoint}`; oracle tokens: ground truth "
            f"(`tools/export_tokens.py --oracle`, `{a.oracle_tokens}`). Planning: `configs/planning/tiny.yaml`, "
            f"seeds {' '.join(map(str, a.seeds))} per source, each from `{planning_start(Path(a.start))[1]}`; "
            f"instruct: `configs/instruct/tiny.yaml` from `{Path(a.start) / 'align' / 'last'}`, seeds "
            f"{' '.join(map(str, a.qa_seeds)) or 'none'}; each evaluated on the tokens it was trained on. "
            f"Perception-arm runs: {perception}; oracle-arm runs: trained by this command into `{a.runs}/oracle`.")


def write_table(a: argparse.Namespace, argv: list[str]) -> str:
    out = Path(a.out)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    rows = [PlanningRow("CTRA prior", "CTRA prior (in the prompt)", "—"),
            PlanningRow("Ego-MLP", f"Ego-MLP ({len(EGO_MLP_SEEDS)} seeds)", "—")]
    rows += [PlanningRow(arm.row, "VLA-tiny planning", arm.source) for arm in arms(a)]
    qa = [QaRun(arm.source, s, json.loads((out / f"qa-{arm.source}-seed{s}" / "qa_metrics.json").read_text()))
          for arm in arms(a) for s in a.qa_seeds]
    perception, oracle = (arm.row for arm in arms(a))
    block = ablation_markdown(metrics, rows, qa, provenance(a, argv), gap=(perception, oracle))
    (out / "table.md").write_text(block + "\n")
    for doc in a.docs:
        replace_block(Path(doc), block)
    return block


def check_reused(a: argparse.Namespace) -> None:
    """--reuse-perception-runs: every run must be there, finished, and trained on a token cache."""
    import yaml

    root = Path(a.reuse_perception_runs)
    for stage, seeds in (("planning", a.seeds), ("instruct", a.qa_seeds)):
        for seed in seeds:
            run = demo_run(root, stage, seed) / "last"
            if not (run / "state.json").is_file():
                raise SystemExit(f"--reuse-perception-runs: {run}/state.json missing; train it or drop the flag")
            data = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("data") or {}
            if data.get("token_source") != "cache":
                raise SystemExit(f"--reuse-perception-runs: {run}/config.yaml data.token_source is "
                                 f"{data.get('token_source')!r}, not 'cache'; this ablation compares cached tokens")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    if not a.seeds or a.jobs < 1:
        raise SystemExit("--seeds needs at least one seed and --jobs at least 1")
    if a.reuse_perception_runs:
        check_reused(a)
    steps = build_steps(a)
    if a.dry_run:
        for step in steps:
            print(f"{step.name}: {shlex.join(step.argv()[1:])}")
        return 0
    start = time.perf_counter()
    seconds = run_steps(steps, a.jobs, a.keep)
    print("=== table", flush=True)
    print(write_table(a, argv))
    seconds["wall"] = round(time.perf_counter() - start, 1)
    (Path(a.out) / "timings.json").write_text(json.dumps(seconds, indent=1))
    print(f"wrote {Path(a.out) / 'table.md'}" + "".join(f", {d}" for d in a.docs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
