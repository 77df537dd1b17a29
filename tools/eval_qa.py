"""Score a model's answers to the QA stage examples: caption metrics, action accuracy, reason F1.

    python tools/eval_qa.py --checkpoint checkpoints/instruct/last --split val
    python tools/eval_qa.py --predictions answers.json --split val --no-meteor   # score a file

The examples are rebuilt from the split's records with `vla_world.qa.build_stage_examples`
(same --seed => same questions and ids). Answers come either from the checkpoint (through
`vla_world.inference.answer_questions`) or from a JSON file {example_id: answer}; write the
ground-truth file of the same shape with --write-references to see the expected ids. With
--checkpoint, a question about an agent that perception did not detect cannot be asked (the agent
has no token); such examples are counted (`n_unaskable`) and left out of every row.
Reports BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) overall, per granularity (concise /
detailed) and per kind, and for action kinds the meta-action accuracy / macro-F1 and per-sample
reason F1. Next to every row stands the "prior": one fixed answer per (kind, granularity), the
consensus answer of the --prior-split examples (`vla_world.qa.prior`), so a reader sees what a
scene-blind answerer scores; --no-prior leaves it out. Writes qa_metrics.json (the answers'
report, with the prior's under "prior") and qa_metrics.md to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_world.qa.config import StageDataConfig
from vla_world.qa.evaluate import report_markdown

QA_STAGES = ("align", "instruct", "motion")
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
    p.add_argument("--max-range-m", type=float, default=StageDataConfig.max_range_m,
                   help="describe agents within this many metres (the perception grid half-size; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phrasing seed of the examples; must match training (default: 0)")
    p.add_argument("--tokens", default=None,
                   help="perception token cache (.safetensors) for --checkpoint; default: oracle tokens from GT")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java start takes 5-20 s)")
    p.add_argument("--prior-split", default="train", help="split the prior's answers are chosen on (default: train)")
    p.add_argument("--no-prior", action="store_true", help="do not score the no-model prior answers")
    p.add_argument("--out", default=None, help="output folder (default: outputs/eval_qa/<stage>_<split>)")
    return p


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


def load_tokens(args, records) -> dict:
    """Perception tokens of the split: the --tokens cache file, or oracle tokens from the ground truth."""
    if args.tokens:
        from perception.tokens import load_token_cache

        return load_token_cache(args.tokens)
    from vla_world.training.data import oracle_token_map

    return oracle_token_map(records)


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
            raise SystemExit(f"no perception tokens for sample {example.sample_token}; pass the split's --tokens "
                             "cache (tools/export_tokens.py) or leave --tokens out for oracle tokens") from None
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


def prior_table(args, config: StageDataConfig) -> dict:
    """The prior's {(kind, granularity): answer}, fitted on the --prior-split examples."""
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples
    from vla_world.qa.prior import fit_prior

    records = load_records(args.dataroot, version=args.version, split=args.prior_split)
    examples = build_stage_examples(args.stage, records, seed=args.seed, config=config)
    if not examples:
        raise SystemExit(f"{args.dataroot} split {args.prior_split}: no {args.stage} examples to choose the prior's "
                         "answers from; pass another --prior-split or --no-prior")
    return fit_prior(examples)


PRIOR_NOTE = ("Rows `prior`: one fixed answer per question kind and granularity, the consensus answer of the "
              "{split} split (no model, no scene). The model has learned something only where it beats them.")


def model_answers(args, records, examples, out: Path) -> tuple[list, dict[str, str], int]:
    """(askable examples, the checkpoint's answers, how many examples could not be asked); saves answers.json."""
    tokens = load_tokens(args, records)
    kept = askable(examples, tokens)
    unaskable = len(examples) - len(kept)
    if unaskable:
        log.info("%d of %d examples ask about an agent perception did not detect: not asked, not scored (any row)",
                 unaskable, len(examples))
    answers = generate_answers(args, records, kept, tokens)
    (out / "answers.json").write_text(json.dumps(answers, indent=1))
    return kept, answers, unaskable


def write_report(args, reports: dict, name: str, table: dict | None, unaskable: int, out: Path) -> None:
    """qa_metrics.json (the answers' report + the prior's) and qa_metrics.md, also printed."""
    report = {**reports[name], "n_unaskable": unaskable}
    if report["n_missing"] or report["unknown_ids"]:
        log.warning("%d examples have no answer (scored as empty); %d answers match no example id "
                    "(check --stage, --split and --seed)", report["n_missing"], len(report["unknown_ids"]))
    notes = []
    if table is not None:
        report["prior"] = reports["prior"]
        report["prior_answers"] = {f"{kind}/{granularity or 'any'}": text
                                   for (kind, granularity), text in sorted(table.items(), key=str)}
        notes.append(PRIOR_NOTE.format(split=args.prior_split))
    if unaskable:
        notes.append(f"{unaskable} more examples ask about an agent that perception did not detect; they are "
                     "left out of every row.")
    (out / "qa_metrics.json").write_text(json.dumps(report, indent=1))
    markdown = report_markdown(reports, f"QA evaluation: {args.stage}, split {args.split}", " ".join(notes))
    (out / "qa_metrics.md").write_text(markdown)
    print(markdown + f"\nwrote {out / 'qa_metrics.json'} and {out / 'qa_metrics.md'}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples
    from vla_world.qa.evaluate import evaluate_answer_sets
    from vla_world.qa.prior import prior_answers

    records = load_records(args.dataroot, version=args.version, split=args.split)
    config = StageDataConfig(max_range_m=args.max_range_m)
    examples = spread_subset(build_stage_examples(args.stage, records, seed=args.seed, config=config),
                             args.max_examples)
    if not examples:
        raise SystemExit(f"{args.dataroot} split {args.split}: no {args.stage} examples to evaluate")
    if args.write_references:
        Path(args.write_references).write_text(json.dumps({e.example_id: e.answer for e in examples}, indent=1))
        print(f"wrote {len(examples)} reference answers to {args.write_references}")
        return 0
    out = Path(args.out or f"outputs/eval_qa/{args.stage}_{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    name, unaskable = ("predictions" if args.predictions else "model"), 0
    if args.predictions:
        answers = read_predictions(Path(args.predictions))
    else:
        examples, answers, unaskable = model_answers(args, records, examples, out)
    answer_sets = {name: answers}
    table = None if args.no_prior else prior_table(args, config)
    if table is not None:
        answer_sets["prior"] = prior_answers(table, examples)
    reports = evaluate_answer_sets(examples, answer_sets, meteor=not args.no_meteor)
    write_report(args, reports, name, table, unaskable, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
