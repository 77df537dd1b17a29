"""Evaluate planning predictions: L2 and collision tables for every convention and command.

    python tools/eval_planning.py --pred outputs/baselines/constant_velocity.json \\
        outputs/baselines/kinematic.json outputs/baselines/ego_mlp.json --split val --out outputs/eval

Each --pred file (JSON or NPZ, see docs/evaluation.md) becomes one table row, named after the
file stem or --names. --checkpoint runs a trained VLA checkpoint on the split first, adds its
row and saves its raw answers as <out>/<checkpoint folder>.json. Writes report.md, metrics.json
and metrics.csv under --out and prints the tables; --results-md docs/results.md also writes the
project's headline results page.

Missing predictions are an error that lists them, unless --allow-missing; missing and
unparseable predictions are scored as the zero trajectory (ego stands still) and counted in the
"Failed" column of every row.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planning.evaluate import CONVENTIONS, MissingPredictionsError, evaluate_methods
from planning.predictions import (
    PredictionFileError,
    Predictions,
    load_predictions,
    predictions_from_texts,
    save_predictions,
)
from planning.report import evaluation_markdown, write_outputs, write_results_md


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", nargs="+", default=[], metavar="FILE", help="predictions files (.json / .npz), one row each")
    p.add_argument("--names", nargs="+", default=None, help="row names for --pred, in order (default: file stems)")
    p.add_argument("--checkpoint", default=None, help="trained VLA checkpoint folder to run on the split and add as a row")
    p.add_argument("--checkpoint-name", default=None, help="row name for --checkpoint (default: its folder name)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: auto)")
    p.add_argument("--split", default="val", help="split to evaluate on (default: val)")
    p.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=CONVENTIONS,
                   help="metric conventions to report (default: all)")
    p.add_argument("--allow-missing", action="store_true", help="score samples without a prediction as failures")
    p.add_argument("--with-gt", action="store_true", help="add a 'GT (sanity)' row (must show 0 L2, 0 collisions)")
    p.add_argument("--out", default="outputs/eval", help="folder for report.md, metrics.json, metrics.csv")
    p.add_argument("--results-md", default=None, help="also write the headline results page here (docs/results.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no printed tables")
    return p


def row_names(files: list[str], names: list[str] | None) -> list[str]:
    if names is None:
        names = [Path(f).stem for f in files]
    if len(names) != len(files):
        raise SystemExit(f"--names has {len(names)} entries but --pred has {len(files)} files; give one name per file")
    if len(set(names)) != len(names):
        raise SystemExit(f"row names must be unique, got {names}; use --names to tell the files apart")
    return names


def read_records(dataroot: str, version: str | None, split: str, progress: bool) -> list:
    """Records of `split`, or exit with the data layer's explanation (missing dataroot, bad split, ...)."""
    from vla_world.data import RecordError, load_records

    try:
        return load_records(dataroot, version=version, split=split, progress=progress)
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc


def checkpoint_predictions(checkpoint: str, records: list, save_to: Path, dataroot: str) -> Predictions:
    """Run a trained VLA on `records` through the model engineer's inference hook; keep its raw text."""
    try:
        from vla_world.inference import predict_split
    except ImportError as exc:
        raise SystemExit(f"--checkpoint needs a trained VLA checkpoint and vla_world.inference.predict_split ({exc}); "
                         "evaluate prediction files with --pred instead") from exc
    texts = predict_split(checkpoint, records, dataroot=dataroot)  # dataroot: images, for online-trained perception
    save_predictions(save_to, {}, texts=texts)  # re-scorable later with --pred, no second inference
    return predictions_from_texts(texts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.pred and not args.checkpoint and not args.with_gt:
        raise SystemExit("nothing to evaluate: give --pred FILE..., --checkpoint DIR or --with-gt")
    try:  # read the (fast) prediction files first, so a typo fails before records are built
        methods = {name: load_predictions(f) for name, f in zip(row_names(args.pred, args.names), args.pred)}
    except PredictionFileError as exc:
        raise SystemExit(str(exc)) from exc
    records = read_records(args.dataroot, args.version, args.split, progress=not args.quiet)
    if args.checkpoint:
        name = args.checkpoint_name or Path(args.checkpoint).name
        saved = Path(args.out) / f"{Path(args.checkpoint).name}.json"
        methods[name] = checkpoint_predictions(args.checkpoint, records, saved, args.dataroot)
    try:
        result = evaluate_methods(records, methods, tuple(args.conventions), allow_missing=args.allow_missing,
                                  with_gt=args.with_gt, split=args.split, progress=not args.quiet)
    except MissingPredictionsError as exc:
        raise SystemExit(str(exc)) from exc
    command = "python tools/eval_planning.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    paths = write_outputs(result, args.out, command)
    if args.results_md:
        paths["results"] = write_results_md(result, args.results_md, command)
    if not args.quiet:
        print(evaluation_markdown(result, command))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
