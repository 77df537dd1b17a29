"""Evaluate planning predictions: L2 and collision tables for every convention and command.

    python tools/eval_planning.py --pred outputs/baselines/constant_velocity.json \\
        outputs/baselines/kinematic.json outputs/baselines/ego_mlp.json --split val --out outputs/eval

Each --pred file (JSON or NPZ, see docs/evaluation.md) is one run of a method named after the file
stem or --names. Files that share a name are the runs (seeds) of one method: its row shows
mean ± sample std over them, e.g.
    --pred ego_mlp_seed0.json ego_mlp_seed1.json ego_mlp_seed2.json --names Ego-MLP Ego-MLP Ego-MLP

--checkpoint DIR [DIR ...] runs trained VLA checkpoints on the split (several folders = the seeds
of one method, named by --checkpoint-name) and saves each one's raw answers, with its provenance,
as <out>/<checkpoint folder>.json (re-scorable with --pred; a later checkpoint whose folder name
is taken gets <out>/<parent>_<folder>.json). Their perception tokens come from the
source each checkpoint was trained with; --tokens oracle|FILE picks another (oracle rows get
" (oracle tokens)" in their name). A checkpoint trained on oracle tokens is refused unless
--tokens oracle. A checkpoint with a fitted plan head answers from it (its 12 numbers written by
the codec); otherwise answers are decoded template-constrained (every answer parses to 6 waypoints
within the bound, so their Failed count is 0 by construction); --decoding picks another; each run's
provenance line says which. A checkpoint trained with the structured answer (data.answer.structured)
is decoded block by block and scored on the trajectory inside its <answer> block, in the same
table as plain answers; its provenance line counts the answers whose blocks are malformed.
Every --checkpoint plan then passes the collision guard (vla_world.inference, planning.collision_guard):
a plan that runs into a perceived agent is replaced by the CTRA prior or by the same path driven slower;
the provenance line says how many were replaced; --no-guard scores the model's plans as decoded.

Writes report.md, metrics.json and metrics.csv under --out and prints the tables; --results-md
docs/results.md also writes the project's headline results page. Every output records the split,
the command and, per run, its file, seed, checkpoint folder and token source.

Missing predictions are an error that lists them, unless --allow-missing. Missing, unparseable
and implausible predictions fail: they keep the stand-still L2, count as a collision at every
counted step, and are counted in the "Failed" column of every row (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

from planning.evaluate import MissingPredictionsError, RunLabelError, evaluate_methods
from planning.metrics import CONVENTIONS
from planning.pdm_eval import PdmRow, evaluate_pdm, pdm_markdown, pdm_scene
from planning.predictions import (
    PredictionFileError,
    Predictions,
    load_predictions,
    predictions_from_texts,
    save_predictions,
)
from planning.report import evaluation_markdown, write_outputs, write_results_md
from vla_world.data.drivable_area import DrivableAreas
from vla_world.data.fingerprint import data_identity
from vla_world.data.targets import planning_targets

ORACLE = "oracle"  # vla_world.inference.ORACLE; spelled here so --help needs no torch import
ORACLE_SUFFIX = " (oracle tokens)"
DECODINGS = ("auto", "head", "constrained", "greedy")  # vla_world.inference.DECODINGS, spelled here for the same reason


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", nargs="+", default=[], metavar="FILE",
                   help="predictions files (.json / .npz), one run each")
    p.add_argument("--names", nargs="+", default=None,
                   help="row names for --pred, in order (default: file stems); a repeated name = seeds of one method")
    p.add_argument("--checkpoint", nargs="+", default=[], metavar="DIR",
                   help="trained VLA checkpoint folder(s) to run on the split; several = the seeds of one method")
    p.add_argument("--checkpoint-name", default=None, help="row name for --checkpoint (default: the first folder's name)")
    p.add_argument("--tokens", default=None, metavar="oracle|FILE",
                   help="perception tokens for --checkpoint: 'oracle' (ground truth; the row is named so) or a token "
                        "cache file (default: the source each checkpoint was trained with)")
    p.add_argument("--decoding", choices=DECODINGS, default=DECODINGS[0],
                   help="how --checkpoint answers are decoded: auto (default: head where the checkpoint fitted a plan "
                        "head, else constrained), head (the trajectory from the plan head on the LLM's hidden state, "
                        "written by the codec), constrained (the model writes only the numbers of the trajectory "
                        "template) or greedy (free text, may fail to parse)")
    p.add_argument("--no-guard", action="store_true",
                   help="score --checkpoint plans as decoded, without the collision guard (by default a plan that runs "
                        "into a perceived agent is replaced by the CTRA prior or by the same path driven slower)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="--checkpoint answers decoded at once (default 8; batched decoding gives the same answers "
                        "as one at a time, larger batches are faster on CPU for long structured answers)")
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: auto)")
    p.add_argument("--split", default="val", help="split to evaluate on (default: val)")
    p.add_argument("--conventions", nargs="+", default=list(CONVENTIONS), choices=CONVENTIONS,
                   help="metric conventions to report (default: all)")
    p.add_argument("--allow-missing", action="store_true", help="score samples without a prediction as failures")
    p.add_argument("--with-gt", action="store_true", help="add a 'GT (sanity)' row (must show 0 L2, 0 collisions)")
    p.add_argument("--out", default="outputs/eval", help="folder for report.md, metrics.json, metrics.csv")
    p.add_argument("--results-md", default=None, help="also write the headline results page here (docs/results.md)")
    p.add_argument("--results-note", default=None,
                   help="a paragraph for the top of --results-md: what produced the runs (e.g. the make target)")
    p.add_argument("--no-pdms", action="store_true",
                   help="skip the pseudo-simulation table (PDMS: each plan driven by a controller against the recorded "
                        "agents and the map's drivable area; planning/pdm_score.py); it needs the dataroot's map expansion")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no printed tables")
    return p


def row_names(files: list[str], names: list[str] | None) -> list[str]:
    """One row name per --pred file; a name given twice makes those files runs of one method."""
    if names is None:
        names = [Path(f).stem for f in files]
    if len(names) != len(files):
        raise SystemExit(f"--names has {len(names)} entries but --pred has {len(files)} files; give one name per file "
                         "(repeat a name for the seeds of one method)")
    return names


def load_methods(files: list[str], names: list[str]) -> dict[str, list[Predictions]]:
    """{row name: [Predictions per run]} in the order the names first appear."""
    methods: dict[str, list[Predictions]] = {}
    for name, path in zip(names, files):
        methods.setdefault(name, []).append(load_predictions(path))
    return methods


def read_records(dataroot: str, version: str | None, split: str, progress: bool) -> list:
    """Records of `split`, or exit with the data layer's explanation (missing dataroot, bad split, ...)."""
    from vla_world.data import RecordError, load_records

    try:
        return load_records(dataroot, version=version, split=split, progress=progress)
    except RecordError as exc:
        raise SystemExit(str(exc)) from exc


def check_prediction_worlds(methods: dict, dataroot: str, version: str | None) -> None:
    """Refuse a prediction file this project wrote from another world (its data fingerprint); others load as before."""
    from vla_world.data.fingerprint import DataMismatchError, check_data_identity

    for runs in methods.values():
        for preds in runs if isinstance(runs, list) else [runs]:
            try:
                check_data_identity(preds.source, preds.meta, dataroot, version,
                                    fix="re-run the planner that wrote it on this dataroot")
            except DataMismatchError as exc:
                raise SystemExit(str(exc)) from exc


def checkpoint_seed(checkpoint: str) -> int | None:
    """The training seed in <checkpoint>/config.yaml (train.seed), or None when it does not say."""
    config = Path(checkpoint) / "config.yaml"
    if not config.is_file():
        return None
    train = (yaml.safe_load(config.read_text()) or {}).get("train") or {}
    return train.get("seed")


def answer_files(checkpoints: list[str], out: Path) -> list[Path]:
    """<out>/<folder>.json per checkpoint, as earlier versions wrote for one; a later checkpoint whose
    folder name is taken (planning/last, planning-seed1/last) gets <parent>_<folder>.json."""
    stems: list[str] = []
    for checkpoint in checkpoints:
        path = Path(checkpoint)
        stem = path.name if path.name not in stems else f"{path.parent.name}_{path.name}"
        stems.append(stem if stem not in stems else f"{stem}_{len(stems)}")
    return [out / f"{stem}.json" for stem in stems]


def checkpoint_runs(checkpoints: list[str], records: list, split: str, tokens: str | None, out: Path,
                    dataroot: str, decoding: str = DECODINGS[0], version: str | None = None,
                    batch_size: int = 8, guard: bool = True) -> list[Predictions]:
    """Run each checkpoint on `records` through vla_world.inference; keep its raw text and provenance."""
    try:
        from vla_world.inference import (
            check_planner_checkpoint,
            checkpoint_decoding,
            predict_split,
            resolve_token_source,
        )
    except ImportError as exc:
        raise SystemExit(f"--checkpoint needs vla_world.inference.predict_split ({exc}); "
                         "evaluate prediction files with --pred instead") from exc
    runs = []
    for checkpoint, save_to in zip(checkpoints, answer_files(checkpoints, out)):
        try:  # never oracle silently: the checkpoint's own source, or what --tokens names
            check_planner_checkpoint(checkpoint, "eval_planning --checkpoint")
            source = resolve_token_source(checkpoint, split, tokens)
            choices: dict[str, int] = {}
            texts = predict_split(checkpoint, records, source=source, dataroot=dataroot,  # dataroot: online perception
                                  decoding=decoding, batch_size=batch_size, guard=guard, guard_choices=choices)
        except (ValueError, FileNotFoundError) as exc:  # CheckpointError, DataMismatchError are ValueErrors
            raise SystemExit(f"--checkpoint {checkpoint}: {exc}") from exc
        meta = {"checkpoint": str(checkpoint), "token_source": source.label, "seed": checkpoint_seed(checkpoint),
                "split": split, "decoding": checkpoint_decoding(checkpoint, decoding) + guard_note(guard, choices)
                + answer_form(texts.values()),
                 **data_identity(dataroot, version)}
        save_predictions(save_to, {}, texts=texts, meta=meta)  # re-scorable later with --pred, no second inference
        preds = predictions_from_texts(texts, meta=meta)
        preds.source = str(save_to)
        runs.append(preds)
    return runs


def guard_note(guard: bool, choices: dict[str, int]) -> str:
    """" + collision guard (k of n plans replaced)" for a guarded run, "" otherwise (its provenance line)."""
    if not guard:
        return ""
    return f" + collision guard ({sum(c > 0 for c in choices.values())} of {len(choices)} plans replaced)"


def answer_form(texts) -> str:
    """", structured answers: N of M with malformed blocks" (planning.structured.parse_answer), or "" for plain ones.

    Structured and plain answers share one table: both are scored on the trajectory the codec reads
    (inside `<answer>`); this note says how many structured answers broke their block structure.
    """
    from planning.structured import parse_answer

    parsed = [parse_answer(t) for t in texts]
    structured = [p for p in parsed if p.structured]
    if not structured:
        return ""
    broken = sum(p.error is not None for p in structured)
    return f", structured answers: {broken} of {len(structured)} with malformed blocks"


def checkpoint_row_name(checkpoints: list[str], name: str | None, tokens: str | None) -> str:
    base = name or Path(checkpoints[0]).name
    return base + ORACLE_SUFFIX if tokens == ORACLE else base


def pseudo_simulation(records: list, methods: dict, args: argparse.Namespace) -> list[PdmRow]:
    """The PDMS rows of every run (and of the logged future with --with-gt)."""
    areas = DrivableAreas(args.dataroot)
    scenes = [pdm_scene(r, areas) for r in tqdm(records, desc="drivable areas", unit="sample", disable=args.quiet)]
    return evaluate_pdm(scenes, methods, allow_missing=args.allow_missing, with_gt=args.with_gt,
                        progress=not args.quiet)


def write_pdm_outputs(rows: list[PdmRow], out: str, report: Path) -> dict[str, Path]:
    """pdms.json (every run) and the PDMS table appended to report.md."""
    path = Path(out) / "pdms.json"
    path.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    with open(report, "a") as f:
        f.write("\n## Pseudo-simulation (PDMS)\n\n" + pdm_markdown(rows) + "\n")
    return {"pdms": path}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.pred and not args.checkpoint and not args.with_gt:
        raise SystemExit("nothing to evaluate: give --pred FILE..., --checkpoint DIR... or --with-gt")
    if args.decoding != DECODINGS[0] and not args.checkpoint:
        raise SystemExit("--decoding picks how --checkpoint answers are decoded; give --checkpoint DIR too")
    if args.no_guard and not args.checkpoint:
        raise SystemExit("--no-guard applies to --checkpoint runs; give --checkpoint DIR too")
    if args.tokens and not args.checkpoint:
        raise SystemExit("--tokens picks the perception tokens of --checkpoint runs; give --checkpoint DIR too")
    try:  # read the (fast) prediction files first, so a typo fails before records are built
        methods = load_methods(args.pred, row_names(args.pred, args.names))
    except PredictionFileError as exc:
        raise SystemExit(str(exc)) from exc
    if args.checkpoint:
        name = checkpoint_row_name(args.checkpoint, args.checkpoint_name, args.tokens)
        if name in methods:
            raise SystemExit(f"--checkpoint-name {name!r} is also a --names entry; give the checkpoint row its own name")
    records = read_records(args.dataroot, args.version, args.split, progress=not args.quiet)
    check_prediction_worlds(methods, args.dataroot, args.version)
    if args.checkpoint:
        methods[name] = checkpoint_runs(args.checkpoint, records, args.split, args.tokens, Path(args.out), args.dataroot,
                                        args.decoding, args.version, args.batch_size, not args.no_guard)
    targets = [planning_targets(r) for r in records]  # scores read labels only
    try:
        result = evaluate_methods(targets, methods, tuple(args.conventions), allow_missing=args.allow_missing,
                                  with_gt=args.with_gt, split=args.split, progress=not args.quiet)
    except (MissingPredictionsError, RunLabelError) as exc:
        raise SystemExit(str(exc)) from exc
    command = "python tools/eval_planning.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    paths = write_outputs(result, args.out, command)
    pdms = None if args.no_pdms else pseudo_simulation(records, methods, args)
    if pdms is not None:
        paths.update(write_pdm_outputs(pdms, args.out, paths["markdown"]))
    if args.results_md:
        paths["results"] = write_results_md(result, args.results_md, command, args.results_note)
    if not args.quiet:
        print(evaluation_markdown(result, command))
        if pdms is not None:
            print("\n## Pseudo-simulation (PDMS)\n\n" + pdm_markdown(pdms))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
