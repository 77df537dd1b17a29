"""tools/ablate_tokens.py (issue 16): the oracle-vs-perception table, its step runner, and one tiny run end to end."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from tool_helpers import load_tool

from tools import ablate_tokens, token_ablation_table
from tools.demo import Step
from tools.token_ablation_table import (
    END,
    START,
    PlanningRow,
    QaRun,
    ablation_markdown,
    replace_block,
)


def metric_row(method: str, convention: str, l2: float, col: float, run: str = "", failed: int = 0) -> dict:
    return {"method": method, "convention": convention, "command": "all", "run": run, "num_failed": failed,
            "metrics": {"L2_avg": l2, "col_avg": col}}


def golden_metrics() -> dict:
    rows = [metric_row("CTRA prior", "stp3", 0.65, 0.0036), metric_row("CTRA prior", "uniad", 1.24, 0.0107)]
    for seed, (l2, col) in enumerate([(0.70, 0.004), (0.66, 0.006), (0.68, 0.005)]):  # mean 0.68 ± 0.02, 0.50 ± 0.10
        rows += [metric_row("P", "stp3", l2, col, f"seed {seed}"), metric_row("P", "uniad", 2 * l2, 2 * col, "x")]
    for seed, (l2, col) in enumerate([(0.50, 0.002), (0.54, 0.002), (0.52, 0.002)]):  # mean 0.52 ± 0.02, 0.20 ± 0.00
        rows += [metric_row("O", "stp3", l2, col, f"seed {seed}", failed=1), metric_row("O", "uniad", l2, col, "x", 1)]
    # a per-command row must not enter the means
    rows.append({**metric_row("O", "stp3", 9.0, 1.0), "command": "left"})
    return {"split": "test", "num_records": 560, "methods": ["CTRA prior", "P", "O"], "rows": rows}


def qa_report(bleu4: float, accuracy: float, n: int, unaskable: int, prior_bleu4: float | None = None) -> dict:
    overall = {"BLEU-4": bleu4, "METEOR": 0.2, "ROUGE-L": 0.4, "CIDEr": 1.5, "action": {"accuracy": accuracy},
               "reason_f1": 0.5}
    report = {"overall": overall, "n_examples": n, "n_unaskable": unaskable}
    if prior_bleu4 is not None:
        report["prior"] = {"overall": {**overall, "BLEU-4": prior_bleu4, "action": {"accuracy": 0.25}}}
    return report


GOLDEN_ROWS = [PlanningRow("CTRA prior", "CTRA prior", "—"), PlanningRow("P", "VLA-tiny planning", "perception"),
               PlanningRow("O", "VLA-tiny planning", "oracle")]


def test_golden_table_mean_std_over_seeds_gap_and_qa_rows():
    qa = [QaRun("oracle", 0, qa_report(0.30, 0.5, 100, 0)), QaRun("perception", 0, qa_report(0.25, 0.54, 86, 14, 0.1))]
    text = ablation_markdown(golden_metrics(), GOLDEN_ROWS, qa, "NOTE", gap=("P", "O"))
    lines = text.splitlines()
    assert lines[0] == "NOTE"
    assert "| CTRA prior | — | 0.65 | 0.36 | 1.24 | 1.07 | 1 | 0 |" in lines
    assert "| VLA-tiny planning | perception | 0.68 ± 0.02 | 0.50 ± 0.10 | 1.36 ± 0.04 | 1.00 ± 0.20 | 3 | 0 |" in lines
    assert "| VLA-tiny planning | oracle | 0.52 ± 0.02 | 0.20 ± 0.00 | 0.52 ± 0.02 | 0.20 ± 0.00 | 3 | 1 |" in lines
    assert ("Gap, perception minus oracle tokens (mean over seeds): ST-P3 L2 +0.16 m, collision +0.30 pp; "
            "UniAD L2 +0.84 m, collision +0.80 pp.") in lines
    # perception first, its scene-blind prior beside it; oracle has no prior in its report, so no prior row
    qa_rows = [line for line in lines if line.startswith(("| prior", "| VLA-tiny instruct"))]
    assert qa_rows == [
        "| prior (no scene) | perception questions | 0.10 | 0.20 | 0.40 | 1.50 | 25.0 | 0.50 | 86 | — | — |",
        "| VLA-tiny instruct | perception | 0.25 | 0.20 | 0.40 | 1.50 | 54.0 | 0.50 | 86 | 14 | 0 |",
        "| VLA-tiny instruct | oracle | 0.30 | 0.20 | 0.40 | 1.50 | 50.0 | 0.50 | 100 | 0 | 0 |"]


def test_qa_seeds_are_averaged_and_a_missing_method_is_named():
    runs = [QaRun("oracle", 0, qa_report(0.30, 0.5, 100, 0)), QaRun("oracle", 1, qa_report(0.34, 0.7, 100, 0))]
    runs[1].report["overall"]["METEOR"] = "unavailable: disabled (--no-meteor)"
    assert "| VLA-tiny instruct | oracle | 0.32 ± 0.03 | — | 0.40 ± 0.00 | 1.50 ± 0.00 | 60.0 ± 14.1 | " \
           "0.50 ± 0.00 | 100 | 0 | 0 1 |" in token_ablation_table.qa_table(runs)
    with pytest.raises(KeyError, match="no rows for 'Q'"):
        token_ablation_table.planning_table(golden_metrics(), [PlanningRow("Q", "q", "—")])


def test_replace_block_keeps_the_text_around_it_and_needs_both_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Head\nbefore\n{START}\nold table\n{END}\nafter\n")
    replace_block(doc, "NEW")
    replace_block(doc, "NEWER")  # idempotent shape: one block, replaced again
    assert doc.read_text() == f"# Head\nbefore\n{START}\nNEWER\n{END}\nafter\n"
    doc.write_text("no markers\n")
    with pytest.raises(ValueError, match=r"doc\.md: no '<!-- ablation-tokens:start -->'"):
        replace_block(doc, "x")


def args(tmp_path: Path, *extra: str):
    return ablate_tokens.build_parser().parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o"),
                                                    "--start", str(tmp_path / "ck"), *extra])


def test_steps_wait_for_their_inputs_and_reused_runs_are_not_trained(tmp_path):
    steps = ablate_tokens.build_steps(args(tmp_path, "--seeds", "0", "1", "--reuse-perception-runs", "demo"))
    names = [s.name for s in steps]
    assert not any(n.startswith(("planning-perception", "instruct-perception")) for n in names)
    assert {"planning-oracle-seed0", "planning-oracle-seed1", "instruct-oracle-seed0"} <= set(names)
    wait = {s.name: set(ablate_tokens.depends_on(s, names)) for s in steps}
    assert wait["eval-oracle"] == {"planning-oracle-seed0", "planning-oracle-seed1", "oracle-tokens-test",
                                   "perception-tokens-test"}
    assert wait["qa-oracle-seed0"] == {"instruct-oracle-seed0", "oracle-tokens-test", "perception-tokens-test"}
    assert wait["combine"] == {"eval-perception", "eval-oracle", "baselines"}
    evaluate = next(s for s in steps if s.name == "eval-perception").argv()
    assert evaluate[evaluate.index("--checkpoint") + 1:evaluate.index("--checkpoint-name")] == \
        ["demo/planning/last", "demo/planning-seed1/last"]  # the demo's own folder names
    train = next(s for s in steps if s.name == "planning-oracle-seed1").argv()
    assert "train.seed=1" in train and "data.token_cache=cache/tokens-oracle" in train
    assert train[train.index("--init") + 1] == str(tmp_path / "ck" / "motion" / "last")  # no world run: motion


def quick(name: str, code: str) -> Step:
    return Step(name, [sys.executable, "-c", code])


def test_runner_runs_side_by_side_skips_kept_steps_and_stops_on_a_failure(tmp_path):
    log = tmp_path / "log"
    steps = [quick("planning-oracle-seed0", f"import time; time.sleep(0.5); open({str(log)!r}, 'a').write('p0 ')"),
             quick("planning-oracle-seed1", f"open({str(log)!r}, 'a').write('p1 ')"),
             quick("eval-oracle", f"open({str(log)!r}, 'a').write('eval ')")]
    kept = tmp_path / "kept"
    kept.write_text("")
    steps[1].keep_if = kept
    seconds = ablate_tokens.run_steps(steps, jobs=2, keep=True)
    assert log.read_text() == "p0 eval "  # seed 1 kept; the evaluation waited for seed 0 to finish
    assert set(seconds) == {"planning-oracle-seed0", "eval-oracle"}
    with pytest.raises(SystemExit, match="step 'eval-oracle' failed .exit 3."):
        ablate_tokens.run_steps([quick("eval-oracle", "raise SystemExit(3)")], jobs=2, keep=False)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A world with a test split and tiny align + motion checkpoints (2 steps of a 1-layer LLM)."""
    from vla_world.mini_world import make_mini_world

    root = tmp_path_factory.mktemp("ablation")
    world = make_mini_world(root / "world", num_scenes=3, seed=0, image_size=(32, 18), scene_seconds=5.0,
                            test_scenes=1, progress=False)
    for stage in ("align", "motion"):
        argv = ["--stage", stage, "--config", f"configs/{stage}/tiny.yaml", "--dataroot", str(world), "--out",
                str(root / "ck" / stage), "--max-steps", "1", "--set", "data.token_source=oracle", *SMALL_SETS,
                *(("--init", str(root / "ck" / "align" / "last")) if stage == "motion" else ())]
        assert load_tool("train").main(argv) == 0
    return root, world


SMALL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1", "model.vocab_size=600",
         "data.max_examples=4", "train.batch_size=2"]
SMALL_SETS = [x for kv in SMALL for x in ("--set", kv)]


@pytest.mark.slow
def test_tiny_ablation_end_to_end_writes_the_table_into_the_docs(start):
    root, world = start
    doc = root / "results.md"
    doc.write_text(f"text\n{START}\n{END}\n")
    argv = ["--smoke", "--data", str(world), "--start", str(root / "ck"), "--seeds", "0", "1",
            "--perception-tokens", str(root / "cache" / "tokens"), "--oracle-tokens", str(root / "cache" / "oracle"),
            "--perception-checkpoint", str(root / "no-perception"), "--runs", str(root / "runs"),
            "--out", str(root / "out"), "--baselines", str(root / "baselines"), "--docs", str(doc),
            *[x for kv in SMALL for x in ("--train-set", kv)]]
    # perception's tokens stand in as an oracle export here (a perception model is not what this test is about)
    for split in ("train", "val", "test"):
        assert load_tool("export_tokens").main(["--oracle", "--dataroot", str(world), "--split", split, "--out",
                                                 str(root / "cache" / "tokens" / f"{split}.safetensors")]) == 0
    assert ablate_tokens.main(argv) == 0
    text = doc.read_text()
    assert text.startswith("text\n" + START) and text.endswith(END + "\n")
    assert "| VLA-tiny planning | oracle |" in text and "| VLA-tiny planning | perception |" in text
    assert "| VLA-tiny instruct | oracle |" in text and "| CTRA prior (in the prompt) | — |" in text
    # two seeds per source; a plan head fitted after 2 steps of a 1-layer LLM may write a plan beyond 100 m, which
    # the table counts as failed (docs/evaluation.md) rather than hiding, so only the count's presence is checked
    planning_rows = [line for line in text.splitlines() if line.startswith("| VLA-tiny planning |")]
    assert len(planning_rows) == 2 and all(re.search(r"\| 2 \| \d+ \|$", line) for line in planning_rows)
    assert (root / "out" / "table.md").read_text().strip() in text
    timings = json.loads((root / "out" / "timings.json").read_text())
    assert "planning-oracle-seed1" in timings and "baselines" in timings
    # resumable: a second run with --keep trains and evaluates nothing again
    assert ablate_tokens.main([*argv, "--keep"]) == 0
    assert set(json.loads((root / "out" / "timings.json").read_text())) == {"combine", "wall"}


def test_runs_as_a_script_from_the_makefile():
    """`make ablation-tokens` runs `python tools/ablate_tokens.py`: the `tools.*` imports must resolve there too."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "tools/ablate_tokens.py"), "--help"], cwd=root / "docs",
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oracle vs perception tokens" in done.stdout
