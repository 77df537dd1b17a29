"""Score a model's answers to the QA stage examples: caption metrics, action accuracy, reason F1.

    python tools/eval_qa.py --checkpoint checkpoints/instruct/last --split val
    python tools/eval_qa.py --predictions answers.json --split val --no-meteor   # score a file

The examples are rebuilt from the split's records with `vla_world.qa.build_stage_examples`
(same --seed => same questions and ids). Answers come either from the checkpoint (through
`vla_world.inference.answer_questions`) or from a JSON file {example_id: answer}; write the
ground-truth file of the same shape with --write-references to see the expected ids.
Reports BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap) per kind and overall, and for action
kinds the meta-action accuracy / macro-F1 and per-sample reason F1. Writes qa_metrics.json and
qa_metrics.md to --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_world.qa.config import StageDataConfig

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
    p.add_argument("--max-examples", type=int, default=None, help="score only the first N examples (smoke runs)")
    p.add_argument("--max-range-m", type=float, default=StageDataConfig.max_range_m,
                   help="describe agents within this many metres (the perception grid half-size; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phrasing seed of the examples; must match training (default: 0)")
    p.add_argument("--tokens", default=None,
                   help="perception token cache (.safetensors) for --checkpoint; default: oracle tokens from GT")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (its Java start takes 5-20 s)")
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


def generate_answers(args, records, examples) -> dict[str, str]:
    try:
        from vla_world.inference import answer_questions
    except ImportError as err:
        raise SystemExit(f"cannot generate answers ({err}); score a file with --predictions instead") from None
    if args.tokens:
        from perception.tokens import load_token_cache

        tokens = load_token_cache(args.tokens)
    else:
        from vla_world.training.data import oracle_token_map

        tokens = oracle_token_map(records)
    texts = answer_questions(args.checkpoint, records, tokens, examples)
    return {e.example_id: t for e, t in zip(examples, texts)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples
    from vla_world.qa.evaluate import evaluate_answers, report_markdown

    records = load_records(args.dataroot, version=args.version, split=args.split)
    config = StageDataConfig(max_range_m=args.max_range_m)
    examples = build_stage_examples(args.stage, records, seed=args.seed, config=config)[: args.max_examples]
    if not examples:
        raise SystemExit(f"{args.dataroot} split {args.split}: no {args.stage} examples to evaluate")
    if args.write_references:
        Path(args.write_references).write_text(json.dumps({e.example_id: e.answer for e in examples}, indent=1))
        print(f"wrote {len(examples)} reference answers to {args.write_references}")
        return 0
    out = Path(args.out or f"outputs/eval_qa/{args.stage}_{args.split}")
    out.mkdir(parents=True, exist_ok=True)
    if args.predictions:
        answers = read_predictions(Path(args.predictions))
    else:
        answers = generate_answers(args, records, examples)
        (out / "answers.json").write_text(json.dumps(answers, indent=1))
    report = evaluate_answers(examples, answers, meteor=not args.no_meteor)
    if report["n_missing"] or report["unknown_ids"]:
        log.warning("%d examples have no answer (scored as empty); %d answers match no example id "
                        "(check --stage, --split and --seed)", report["n_missing"], len(report["unknown_ids"]))
    (out / "qa_metrics.json").write_text(json.dumps(report, indent=1))
    markdown = report_markdown(report, f"QA evaluation: {args.stage}, split {args.split}")
    (out / "qa_metrics.md").write_text(markdown)
    print(markdown + f"\nwrote {out / 'qa_metrics.json'} and {out / 'qa_metrics.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
