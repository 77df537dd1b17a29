"""Score prediction sets against a split: one row of L2 / collision numbers per method, convention
and command group. This is the one place that decides how failed answers count and how the runs
(seeds) of one method are summarised, so that no table can flatter a method.

Failure policy (`FAILURE_POLICY`, the footnote of every table). A prediction *fails* when it is
missing (only with `allow_missing`), could not be parsed (no or an ambiguous point list, a wrong
number of points, a non-finite value: `planning.codec`), or is implausible: a waypoint farther
than `PLAUSIBLE_RANGE_M` (100 m) from the ego, which no car reaches in 3 s. A failed sample
  * keeps the stand-still L2: it is scored with the zero trajectory (all six waypoints at (0, 0),
    the ego stands still at its current position for 3 s), and
  * counts as a collision at every step the convention counts (every evaluated step where the
    logged ego box is collision-free: each convention's own GT-collision exclusion and sample set,
    `planning.metrics.planning_metrics(..., failed=)`), and
  * stays in the sample count, and in the row's `Failed` column.
So failing never lowers a collision rate: a real answer collides at most at the counted steps, a
failure at all of them. Its L2 is the stand-still L2, so failing never beats an answer that is at
least as close to the GT as standing still (a failure has no answer to score, so nothing stronger
can be said about L2). The old policy (stand still, 0 % collisions) let an unparsed answer lower a
collision rate: standing still rarely collides, since the GT occupancy never covers the ego's own
cell.

Runs and seeds. A method may have several runs (seeds, or checkpoints trained with different
seeds): `evaluate_methods(targets, {"Ego-MLP": [seed0, seed1, seed2]})`. Every run is scored on
its own (`EvaluationResult.rows`); `EvaluationResult.method_rows` gives per method the mean and the
**sample** standard deviation (n - 1 in the denominator) over its n runs, and the failures per run
(mean) and in total.

Inputs: `PlanningTargets` (labels only, LiDAR frame; `vla_world.data.targets.planning_targets`),
`Predictions` per run (planning.predictions). The metric is `planning.metrics.planning_metrics`;
the occupancy comes from `planning.occupancy.rasterize_occupancy`, built once per convention and
shared by all methods.

    targets = [planning_targets(r) for r in val_records]
    result = evaluate_methods(targets, {"Kinematic": load_predictions("kinematic.json")})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from planning.metrics import CONVENTIONS, get_convention, planning_metrics
from planning.occupancy import rasterize_occupancy
from planning.predictions import PLAUSIBLE_RANGE_M, Predictions, implausible
from vla_world.data.records import CMD_FORWARD, CMD_LEFT, CMD_RIGHT, NUM_FUTURE
from vla_world.data.targets import PlanningTargets

CONVENTION_TITLES = {"uniad": "UniAD", "stp3": "ST-P3", "stp3_original": "ST-P3 (original)", "vad": "VAD"}
METRIC_KEYS: tuple[str, ...] = ("L2_1s", "L2_2s", "L2_3s", "L2_avg", "col_1s", "col_2s", "col_3s", "col_avg")
# "all" first, then the per-command breakdown in the order papers list them.
COMMAND_GROUPS: dict[str, int | None] = {"all": None, "forward": CMD_FORWARD, "left": CMD_LEFT, "right": CMD_RIGHT}
GT_ROW_NAME = "GT (sanity)"
STD_DDOF = 1  # sample standard deviation over a method's runs
FAILURE_POLICY = (
    f"Failed = missing, unparseable (no, an ambiguous or a wrong-length point list, non-finite values) or "
    f"implausible (a waypoint farther than {PLAUSIBLE_RANGE_M:.0f} m from the ego) predictions. Each failed sample "
    "keeps the stand-still L2 (scored as the zero trajectory: the ego stands still at its current position "
    "for 3 s), counts as a collision at every step the convention counts (every evaluated step where the "
    "logged ego box is collision-free), and stays in the sample count; so failing never lowers a collision rate.")
SEEDS_NOTE = ("A row over several runs (\"n seeds\" in its name) shows mean ± sample standard deviation "
              "(n - 1 in the denominator) over its n runs; its Failed is the mean number of failures per run. "
              "Each run's own numbers are in metrics.json (\"rows\") and in report.md's per-run tables.")


class MissingPredictionsError(ValueError):
    """A predictions file lacks samples of the evaluated split (and --allow-missing was not given)."""


class RunLabelError(ValueError):
    """Two runs of one method carry the same label (the same seed counted twice)."""


@dataclass(frozen=True)
class RunInfo:
    """Where one run's predictions came from (the provenance every report prints)."""

    method: str  # the table row it belongs to
    run: str  # "" for a method's only run, else "seed N" (from the file's metadata) or "run K"
    source: str  # the predictions file ("" when built in memory)
    seed: int | str | None = None
    checkpoint: str | None = None  # the VLA checkpoint folder that wrote the answers
    token_source: str | None = None  # `vla_world.inference.TokenSource.label` of a checkpoint run
    decoding: str | None = None  # how a checkpoint run's answers were decoded: "constrained" | "greedy"

    @property
    def name(self) -> str:
        """Unique name of the run: the method, plus the run label when the method has several."""
        return f"{self.method} [{self.run}]" if self.run else self.method


@dataclass
class ScoreRow:
    """Metrics of one run of a method under one convention on one command group."""

    method: str
    convention: str  # one of CONVENTIONS
    command: str  # key of COMMAND_GROUPS
    metrics: dict[str, float]  # METRIC_KEYS; L2 in metres, collisions as fractions (0..1)
    num_samples: int  # samples the metric counted (convention-dependent, e.g. VAD drops short futures)
    num_records: int  # samples in the group before the convention's own filtering
    num_failed: int  # missing + unparseable + implausible predictions in the group (failure policy)
    num_missing: int  # of which missing from the file
    run: str = ""  # RunInfo.run: "" for a method's only run


@dataclass
class MethodRow:
    """One table row: a method's runs under one convention and command, summarised."""

    method: str
    convention: str
    command: str
    mean: dict[str, float]  # METRIC_KEYS, mean over the runs (the run's own values for one run)
    std: dict[str, float] | None  # sample standard deviation over the runs; None for a single run
    num_runs: int
    num_samples: int  # samples the convention counted (the same for every run)
    num_records: int
    failed_mean: float  # failures per run
    failed_total: int  # failures over all runs


@dataclass
class EvaluationResult:
    """All rows of one evaluation plus what is needed to describe it."""

    rows: list[ScoreRow]  # one per run x convention x command
    split: str
    num_records: int
    methods: list[str]  # row names in table order (a method with several runs appears once)
    conventions: list[str]
    runs: list[RunInfo] = field(default_factory=list)
    failure_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # run name -> reason -> count
    extra_tokens: dict[str, int] = field(default_factory=dict)  # run name -> predictions not in the split

    def select(self, convention: str, command: str = "all") -> list[ScoreRow]:
        """Per-run rows of one convention and command, in method order."""
        return [r for r in self.rows if r.convention == convention and r.command == command]

    def method_rows(self, convention: str, command: str = "all") -> list[MethodRow]:
        """One summarised row per method (mean ± std over its runs), in method order."""
        selected = self.select(convention, command)
        return [summarise_runs([r for r in selected if r.method == m]) for m in self.methods]

    def runs_of(self, method: str) -> list[RunInfo]:
        return [r for r in self.runs if r.method == method]


def summarise_runs(rows: Sequence[ScoreRow]) -> MethodRow:
    """Mean and sample std (ddof 1) of the runs' metrics; one run gives its own values and no std."""
    if not rows:
        raise ValueError("summarise_runs: no rows to summarise")
    first = rows[0]
    if len({(r.method, r.convention, r.command) for r in rows}) != 1:
        raise ValueError("summarise_runs: rows of different methods, conventions or commands")
    values = {key: np.array([r.metrics[key] for r in rows], dtype=np.float64) for key in METRIC_KEYS}
    mean = {key: float(v.mean()) for key, v in values.items()}
    std = None if len(rows) == 1 else {key: float(v.std(ddof=STD_DDOF)) for key, v in values.items()}
    failed = [r.num_failed for r in rows]
    return MethodRow(first.method, first.convention, first.command, mean, std, len(rows), first.num_samples,
                     first.num_records, float(np.mean(failed)), int(np.sum(failed)))


@dataclass
class _Assembled:
    trajectories: np.ndarray  # (N, 6, 2) LiDAR frame, metres; zero rows where failed
    failed: np.ndarray  # (N,) bool
    missing: np.ndarray  # (N,) bool
    reasons: dict[str, int] = field(default_factory=dict)  # kind of failure -> count, over the split


def assemble_trajectories(targets: Sequence[PlanningTargets], preds: Predictions, name: str,
                          allow_missing: bool = False) -> _Assembled:
    """Align a prediction set with `targets`; apply the failure policy (zero trajectory, flagged)."""
    tokens = [t.sample_token for t in targets]
    missing = np.array([t not in preds.tokens for t in tokens], dtype=bool)
    if missing.any() and not allow_missing:
        absent = [t for t, m in zip(tokens, missing) if m]
        raise MissingPredictionsError(
            f"{name}: {len(absent)} of {len(tokens)} samples have no prediction (first: {', '.join(absent[:5])}); "
            "predict the whole split, or pass --allow-missing to score them as failures")
    trajectories = np.zeros((len(tokens), NUM_FUTURE, 2))
    failed = np.zeros(len(tokens), dtype=bool)
    reasons: dict[str, int] = {}
    for i, token in enumerate(tokens):
        reason = _failure_reason(preds, token)
        if reason is None:
            trajectories[i] = preds.trajectories[token]
        else:
            failed[i] = True
            # Reasons like "point 3 is not a list of numbers: (a,b)" vary per sample; count by their kind.
            kind = reason.split(":")[0]
            reasons[kind] = reasons.get(kind, 0) + 1
    return _Assembled(trajectories, failed, missing, reasons)


def _failure_reason(preds: Predictions, token: str) -> str | None:
    """Why `token` has no usable answer (missing, unparsed, implausible), or None when it has one."""
    if token not in preds.tokens:
        return "missing from the file"
    if token not in preds.trajectories:
        return preds.failures[token]
    return implausible(preds.trajectories[token])  # in-memory predictions too, not only files


def evaluate_methods(targets: Sequence[PlanningTargets], methods: Mapping[str, Predictions | Sequence[Predictions]],
                     conventions: tuple[str, ...] = CONVENTIONS, allow_missing: bool = False, with_gt: bool = False,
                     split: str = "val", progress: bool = True) -> EvaluationResult:
    """Score every run of every method under every convention, overall and per command (module doc).

    `methods`: row name -> one `Predictions`, or a sequence of them (the runs, e.g. seeds, of one
    method). Each run's provenance comes from its `Predictions.meta` and `.source`.
    """
    _check_targets(targets, split)
    unknown = sorted(set(conventions) - set(CONVENTIONS))
    if unknown:
        raise ValueError(f"unknown convention(s) {unknown}; choose from {list(CONVENTIONS)}")
    runs = method_runs(methods)
    split_tokens = {t.sample_token for t in targets}
    assembled = [(info, assemble_trajectories(targets, preds, info.name, allow_missing)) for info, preds in runs]
    gt = np.stack([t.ego_future for t in targets]).astype(np.float64)
    gt_mask = np.stack([t.ego_future_mask for t in targets])
    if with_gt:
        none = np.zeros(len(targets), bool)
        assembled.append((RunInfo(GT_ROW_NAME, "", ""), _Assembled(gt.copy(), none, none)))  # the GT is its own source
    commands = np.array([t.command for t in targets])
    past_mask = np.stack([t.ego_past_mask for t in targets])
    rows = []
    for convention in conventions:
        occupancy = _occupancy(targets, convention, progress)
        eligible = has_context_frames(past_mask, get_convention(convention).context_frames)
        for info, traj in assembled:
            for group, command in COMMAND_GROUPS.items():
                in_group = commands == command if command is not None else np.ones(len(targets), bool)
                index = np.flatnonzero(in_group & eligible)
                rows.append(_score(info, convention, group, index, traj, gt, gt_mask, occupancy))
    infos = [info for info, _ in assembled]
    return EvaluationResult(
        rows=rows, split=split, num_records=len(targets), methods=list(dict.fromkeys(i.method for i in infos)),
        conventions=list(conventions), runs=infos,
        failure_reasons={info.name: traj.reasons for info, traj in assembled if traj.reasons},
        extra_tokens={info.name: len(preds.tokens - split_tokens) for info, preds in runs},
    )


def _check_targets(targets: Sequence[PlanningTargets], split: str) -> None:
    if not targets:
        raise ValueError(f"no samples to evaluate on split {split!r}; check --dataroot and --split")
    if not isinstance(targets[0], PlanningTargets):
        raise TypeError(f"evaluate_methods takes PlanningTargets, got {type(targets[0]).__name__}; build them with "
                        "vla_world.data.targets.planning_targets(record) (scores read labels only)")


def method_runs(methods: Mapping[str, Predictions | Sequence[Predictions]]) -> list[tuple[RunInfo, Predictions]]:
    """(RunInfo, Predictions) per run, methods in order; run labels from metadata seeds, else "run K"."""
    runs = []
    for method, given in methods.items():
        sets = [given] if isinstance(given, Predictions) else list(given)
        if not sets:
            raise ValueError(f"method {method!r} has no predictions; give at least one file")
        labels = [_run_label(preds, k, len(sets)) for k, preds in enumerate(sets)]
        if len(set(labels)) != len(labels):
            sources = ", ".join(f"{p.source or '(in memory)'}: {label}" for p, label in zip(sets, labels))
            raise RunLabelError(f"{method!r}: two runs have the same label ({sources}); a seed counted twice would "
                             "shrink the std; give each run its own seed (metadata 'seed') or drop the duplicate")
        for preds, label in zip(sets, labels):
            meta = preds.meta
            runs.append((RunInfo(method, label, preds.source, meta.get("seed"), meta.get("checkpoint"),
                                 meta.get("token_source"), meta.get("decoding")), preds))
    return runs


def _run_label(preds: Predictions, index: int, count: int) -> str:
    if count == 1:
        return ""
    seed = preds.meta.get("seed")
    return f"seed {seed}" if seed is not None else f"run {index + 1}"


def has_context_frames(past_mask: np.ndarray, frames: int) -> np.ndarray:
    """(N,) True where the last `frames` past keyframes exist (ST-P3 needs 2; the others 0)."""
    if frames == 0:
        return np.ones(len(past_mask), dtype=bool)
    return past_mask[:, past_mask.shape[1] - frames:].all(axis=1)


def _occupancy(targets: Sequence[PlanningTargets], convention: str, progress: bool) -> np.ndarray:
    """(N, 6, 200, 200) uint8, about 240 kB per sample: one convention at a time keeps memory flat."""
    return rasterize_occupancy(targets, convention, progress=progress)


def _score(info: RunInfo, convention: str, group: str, index: np.ndarray, traj: _Assembled,
           gt: np.ndarray, gt_mask: np.ndarray, occupancy: np.ndarray) -> ScoreRow:
    failed, missing = int(traj.failed[index].sum()), int(traj.missing[index].sum())
    full_future = gt_mask[index].all(axis=1)
    if index.size == 0 or (get_convention(convention).full_future_only and not full_future.any()):
        # No left turn in a small split, say: report n/a rather than a made-up zero.
        empty = {key: float("nan") for key in METRIC_KEYS}
        return ScoreRow(info.method, convention, group, empty, 0, int(index.size), failed, missing, info.run)

    result = planning_metrics(traj.trajectories[index], gt[index], gt_mask[index], occupancy[index], convention,
                              failed=traj.failed[index])
    absent = [key for key in METRIC_KEYS + ("num_samples",) if key not in result]
    if absent:
        raise KeyError(f"planning.metrics.planning_metrics returned no {absent} for convention {convention!r}")
    metrics = {key: float(result[key]) for key in METRIC_KEYS}
    return ScoreRow(info.method, convention, group, metrics, int(result["num_samples"]), int(index.size), failed,
                    missing, info.run)
