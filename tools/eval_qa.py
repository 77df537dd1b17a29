"""Score a model's answers to the QA stage examples: caption metrics, action accuracy, reason F1.

    python tools/eval_qa.py --checkpoint checkpoints/instruct/last --split val
    python tools/eval_qa.py --checkpoint checkpoints/instruct/last --tokens cache/tokens/val.safetensors
    python tools/eval_qa.py --checkpoint checkpoints/instruct/last --tokens oracle   # row "model (oracle tokens)"
    python tools/eval_qa.py --predictions answers.json --split val --no-meteor       # score a file

The examples are rebuilt from the split's records with `vla_world.qa.build_stage_examples`, with
the question-builder settings (`data.qa`) and phrasing seed (`train.seed`) saved in the
checkpoint's config.yaml (defaults without one), so the questions and ids are those it trained
on. Answers come either from the checkpoint (through `vla_world.inference.answer_questions`) or
from a JSON file {example_id: answer}; --write-references writes the ground-truth file of that
shape.

Perception tokens (with --checkpoint) are never ground truth unless asked for by name: without
--tokens they come from the source the checkpoint was trained with
(`vla_world.inference.resolve_token_source`); `--tokens FILE` reads a token cache; `--tokens
oracle` builds them from ground truth and names the row "model (oracle tokens)". A question about
an agent perception did not detect cannot be asked (the agent has no token); such examples are
counted (`n_unaskable`) and left out of every row.

Reports BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) overall, per granularity (concise /
detailed) and per kind, and for action kinds the meta-action accuracy / macro-F1 and per-sample
reason F1. Beside every row stand two answerers that never look at the scene (docs/qa.md):
"prior", one fixed answer per (kind, granularity) chosen on --prior-split (`vla_world.qa.prior`),
and "command-copy", the prior with the action and reason the route command implies
(`vla_world.qa.command_copy`); --no-prior leaves both out. Writes qa_metrics.json (the answers'
report, the baselines' under "prior" and "command_copy", the run's settings under "run") and
qa_metrics.md to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

import yaml

from vla_world.config import ConfigError, config_from_dict
from vla_world.qa.config import StageDataConfig
from vla_world.qa.evaluate import report_markdown

QA_STAGES = ("align", "instruct", "motion")
ORACLE = "oracle"  # the one --tokens value that is not a file (vla_world.inference.ORACLE)
log = logging.getLogger("eval_qa")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trained VLA checkpoint folder that generates the answers")
    source.add_argument("--predictions", help="JSON file {example_id: answer} to score instead of generating")
    source.add_argument("--write-references", metavar="PATH",
                        help="only write the ground-truth answers {example_id: answer} to PATH and exit")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the dataroot's)")
    p.add_argument("--split", default="val", help="records split to evaluate (default: val)")
    p.add_argument("--stage", default="instruct", choices=QA_STAGES, help="which stage's examples (default: instruct)")
    p.add_argument("--max-examples", type=int, default=None,
                   help="score N examples spread evenly over the split, so every scene is represented "
                        "(quick runs; default: all)")
    p.add_argument("--max-range-m", type=float, default=None,
                   help="override data.qa.max_range_m: describe agents within this many metres "
                        f"(default: the checkpoint's setting, else {StageDataConfig.max_range_m})")
    p.add_argument("--seed", type=int, default=None,
                   help="phrasing seed of the examples (default: the checkpoint's train.seed, else 0)")
    p.add_argument("--tokens", default=None, metavar="oracle|FILE",
                   help="perception tokens for --checkpoint: 'oracle' (from ground truth; the row says so) or a "
                        "token cache file (.safetensors); default: the source the checkpoint was trained with")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java start takes 5-20 s)")
    p.add_argument("--prior-split", default="train", help="split the prior's answers are chosen on (default: train)")
    p.add_argument("--no-prior", action="store_true",
                   help="leave out the scene-blind rows (prior and command-copy, which builds on the prior)")
    p.add_argument("--out", default=None, help="output folder (default: outputs/eval_qa/<stage>_<split>)")
    return p


class Settings(NamedTuple):
    """How the examples are rebuilt: the question builders' settings and the phrasing seed.

    A NamedTuple, not a dataclass: tests load this script with importlib, outside sys.modules.
    """

    qa: StageDataConfig
    seed: int
    origin: str  # where they came from, for the report


def checkpoint_settings(checkpoint: str | None) -> tuple[dict, int | None, str]:
    """(saved data.qa mapping, saved train.seed, origin) of `<checkpoint>/config.yaml`; empty when absent."""
    if checkpoint is None:
        return {}, None, "defaults (no checkpoint)"
    path = Path(checkpoint) / "config.yaml"
    if not path.is_file():
        log.warning("%s: missing; rebuilding the examples with the default StageDataConfig and seed 0", path)
        return {}, None, f"defaults ({path} missing)"
    try:
        saved = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SystemExit(f"{path}: not valid YAML ({err}); the checkpoint's config is damaged") from None
    qa = (saved.get("data") or {}).get("qa") or {}
    if not qa:
        log.warning("%s: no data.qa section (a checkpoint from before it existed); using StageDataConfig()", path)
    seed = (saved.get("train") or {}).get("seed")
    return qa, seed, str(path)


def run_settings(args) -> Settings:
    """The checkpoint's saved settings, with --max-range-m / --seed on top; validated."""
    qa, saved_seed, origin = checkpoint_settings(args.checkpoint)
    try:
        config = config_from_dict(StageDataConfig, qa, f"{origin}: data.qa")
    except ConfigError as err:
        raise SystemExit(f"{err}; fix the checkpoint's config.yaml or retrain") from None
    if args.max_range_m is not None:
        if args.max_range_m != config.max_range_m and args.checkpoint:
            log.warning("--max-range-m %s differs from the checkpoint's data.qa.max_range_m %s: the questions "
                        "differ from those it trained on", args.max_range_m, config.max_range_m)
        config = replace(config, max_range_m=args.max_range_m)
        try:
            config.validate()
        except ConfigError as err:
            raise SystemExit(f"--max-range-m: {err}") from None
    seed = args.seed if args.seed is not None else int(saved_seed or 0)
    return Settings(config, seed, origin)


def read_predictions(path: Path) -> dict[str, str]:
    """{example_id: answer} from JSON; a malformed file stops with what is wrong and how to fix it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such predictions file") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path}: not valid JSON ({err}); expected {{example_id: answer}}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a JSON object {{example_id: answer}}, got {type(data).__name__}")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise SystemExit(f"{path}: answer of {bad[0]!r} (and {len(bad) - 1} more) is not a string; write answers as text")
    return data


def load_tokens(args, records):
    """(TokenSource, {sample_token: PerceptionTokens}): --tokens, else the checkpoint's own source; never
    oracle unless asked for by name."""
    from vla_world.inference import load_source_tokens, resolve_token_source

    try:
        source = resolve_token_source(args.checkpoint, args.split, args.tokens)
        return source, load_source_tokens(source, args.checkpoint, records, args.dataroot)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise SystemExit(f"--tokens: {err.args[0] if err.args else err}") from None


def askable(examples: list, tokens: dict) -> list:
    """Examples the model can be asked: a question about an agent needs that agent's perception token."""
    from vla_world.model.sequence import FocusNotDetected, select_features

    kept = []
    for example in examples:
        try:
            select_features(tokens[example.sample_token], example.focus_track_id)
        except FocusNotDetected:
            continue
        except KeyError:
            raise SystemExit(f"no perception tokens for sample {example.sample_token}; pass the split's token cache "
                             "(--tokens FILE, tools/export_tokens.py) or --tokens oracle") from None
        kept.append(example)
    return kept


def generate_answers(args, records, examples, tokens) -> dict[str, str]:
    try:
        from vla_world.inference import answer_questions
    except ImportError as err:
        raise SystemExit(f"cannot generate answers ({err}); score a file with --predictions instead") from None
    # Batches of one question group have answers of similar length, so fewer batches wait on a long one.
    ordered = sorted(examples, key=lambda e: (e.kind, e.meta.get("granularity") or ""))
    texts = answer_questions(args.checkpoint, records, tokens, ordered)
    return {e.example_id: t for e, t in zip(ordered, texts)}


def spread_subset(examples: list, count: int | None) -> list:
    """`count` examples at evenly spaced positions (all when count is None or too large), in order."""
    if count is None or count >= len(examples):
        return examples
    if count < 1:
        raise SystemExit(f"--max-examples must be >= 1, got {count}")
    stride = len(examples) / count
    return [examples[int(i * stride)] for i in range(count)]


def prior_table(args, settings: Settings) -> dict:
    """The prior's {(kind, granularity): answer}, fitted on the --prior-split examples."""
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples
    from vla_world.qa.prior import fit_prior

    records = load_records(args.dataroot, version=args.version, split=args.prior_split)
    examples = build_stage_examples(args.stage, records, seed=settings.seed, config=settings.qa)
    if not examples:
        raise SystemExit(f"{args.dataroot} split {args.prior_split}: no {args.stage} examples to choose the prior's "
                         "answers from; pass another --prior-split or --no-prior")
    return fit_prior(examples)


BASELINE_NOTE = ("Rows `prior`: one fixed answer per question kind and granularity, the consensus answer of the "
                 "{split} split (no model, no scene). Rows `command-copy`: the prior's answers with the action and "
                 "reason the route command implies (no scene); its action accuracy is the share of labels the "
                 "command shown in every prompt explains. A model has learned something from the scene only where "
                 "it beats both.")


def model_answers(args, records, examples, out: Path) -> tuple[str, list, dict[str, str], int, str]:
    """(row name, askable examples, the checkpoint's answers, how many could not be asked, token source label);
    saves answers.json."""
    source, tokens = load_tokens(args, records)
    kept = askable(examples, tokens)
    unaskable = len(examples) - len(kept)
    if unaskable:
        log.info("%d of %d examples ask about an agent perception did not detect: not asked, not scored (any row)",
                 unaskable, len(examples))
    answers = generate_answers(args, records, kept, tokens)
    (out / "answers.json").write_text(json.dumps(answers, indent=1))
    name = "model (oracle tokens)" if source.is_oracle else "model"
    return name, kept, answers, unaskable, source.label


def baseline_answers(args, settings: Settings, records, examples) -> tuple[dict[str, dict[str, str]], dict | None]:
    """{"prior": ..., "command-copy": ...} answer sets (empty with --no-prior) and the prior's table."""
    if args.no_prior:
        return {}, None
    from vla_world.data.planner_input import planner_input
    from vla_world.qa.command_copy import command_copy_answers
    from vla_world.qa.prior import prior_answers

    table = prior_table(args, settings)
    commands = {r.sample_token: planner_input(r).command for r in records}
    return {"prior": prior_answers(table, examples),
            "command-copy": command_copy_answers(examples, commands, table)}, table


def run_record(args, argv: list[str], settings: Settings, answers_row: str, tokens_label: str) -> dict:
    """What the numbers were measured on, written into both reports."""
    return {"stage": args.stage, "split": args.split, "dataroot": args.dataroot, "answers_row": answers_row,
            "tokens": tokens_label, "checkpoint": args.checkpoint, "predictions": args.predictions,
            "seed": settings.seed, "qa_config": asdict(settings.qa), "qa_config_from": settings.origin,
            "prior_split": None if args.no_prior else args.prior_split,
            "command": shlex.join(["python", "tools/eval_qa.py", *argv])}


def write_report(reports: dict, run: dict, table: dict | None, unaskable: int, out: Path) -> None:
    """qa_metrics.json (the answers' report + the baselines' + the run) and qa_metrics.md, also printed."""
    report = {**reports[run["answers_row"]], "n_unaskable": unaskable, "run": run}
    if report["n_missing"] or report["unknown_ids"]:
        log.warning("%d examples have no answer (scored as empty); %d answers match no example id "
                    "(check --stage, --split and --seed)", report["n_missing"], len(report["unknown_ids"]))
    notes = []
    if table is not None:
        report["prior"] = reports["prior"]
        report["command_copy"] = reports["command-copy"]
        report["prior_answers"] = {f"{kind}/{granularity or 'any'}": text
                                   for (kind, granularity), text in sorted(table.items(), key=str)}
        notes.append(BASELINE_NOTE.format(split=run["prior_split"]))
    if unaskable:
        notes.append(f"{unaskable} more examples ask about an agent that perception did not detect; they are "
                     "left out of every row.")
    (out / "qa_metrics.json").write_text(json.dumps(report, indent=1))
    markdown = report_markdown(reports, f"QA evaluation: {run['stage']}, split {run['split']}", " ".join(notes), run)
    (out / "qa_metrics.md").write_text(markdown)
    print(markdown + f"\nwrote {out / 'qa_metrics.json'} and {out / 'qa_metrics.md'}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.tokens is not None and args.checkpoint is None:
        raise SystemExit("--tokens chooses the perception tokens a --checkpoint answers from; it has no effect on "
                         "--predictions or --write-references, so leave it out there")
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples
    from vla_world.qa.evaluate import evaluate_answer_sets

    settings = run_settings(args)
    records = load_records(args.dataroot, version=args.version, split=args.split)
    examples = spread_subset(build_stage_examples(args.stage, records, seed=settings.seed, config=settings.qa),
                             args.max_examples)
    if not examples:
        raise SystemExit(f"{args.dataroot} split {args.split}: no {args.stage} examples to evaluate")
    if args.write_references:
        Path(args.write_references).write_text(json.dumps({e.example_id: e.answer for e in examples}, indent=1))
        print(f"wrote {len(examples)} reference answers to {args.write_references}")
        return 0
    out = Path(args.out or f"outputs/eval_qa/{args.stage}_{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    if args.predictions:
        name, answers, unaskable = "predictions", read_predictions(Path(args.predictions)), 0
        tokens_label = f"n/a (answers read from {args.predictions})"
    else:
        name, examples, answers, unaskable, tokens_label = model_answers(args, records, examples, out)
    baselines, table = baseline_answers(args, settings, records, examples)
    reports = evaluate_answer_sets(examples, {name: answers, **baselines}, meteor=not args.no_meteor)
    write_report(reports, run_record(args, argv, settings, name, tokens_label), table, unaskable, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
