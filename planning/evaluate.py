"""Score prediction sets against a split: one row of L2 / collision numbers per method, convention
and command group. This is the one place that decides how missing and unparseable answers count.

Failure policy (stated in every table footnote): a sample whose prediction is missing (only with
`allow_missing`) or could not be parsed is scored with the **zero trajectory**: all six
waypoints at (0, 0), i.e. the ego stands still at its current position for 3 s. It stays in
the sample count, so failures cost L2 (roughly the distance the GT ego drives) and are never
silently dropped; every row also carries its failure count.

Inputs: `SampleRecord`s (ground truth, LiDAR frame), `Predictions` per method (planning.predictions).
The metric itself is `planning.metrics.planning_metrics`; the occupancy comes from
`planning.occupancy.rasterize_occupancy`, built once per convention and shared by all methods.

    result = evaluate_methods(val_records, {"Kinematic": load_predictions("kinematic.json")})
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from planning.metrics import get_convention, planning_metrics
from planning.occupancy import rasterize_occupancy
from planning.predictions import Predictions
from vla_world.data.records import (
    CMD_FORWARD,
    CMD_LEFT,
    CMD_RIGHT,
    NUM_FUTURE,
    SampleRecord,
)

CONVENTIONS: tuple[str, ...] = ("uniad", "stp3", "stp3_original", "vad")
CONVENTION_TITLES = {"uniad": "UniAD", "stp3": "ST-P3", "stp3_original": "ST-P3 (original)", "vad": "VAD"}
METRIC_KEYS: tuple[str, ...] = ("L2_1s", "L2_2s", "L2_3s", "L2_avg", "col_1s", "col_2s", "col_3s", "col_avg")
# "all" first, then the per-command breakdown in the order papers list them.
COMMAND_GROUPS: dict[str, int | None] = {"all": None, "forward": CMD_FORWARD, "left": CMD_LEFT, "right": CMD_RIGHT}
GT_ROW_NAME = "GT (sanity)"
FAILURE_POLICY = ("Failed = missing or unparseable predictions; each is scored as the zero trajectory "
                  "(the ego stands still at its current position for 3 s) and stays in the sample count.")


class MissingPredictionsError(ValueError):
    """A predictions file lacks samples of the evaluated split (and --allow-missing was not given)."""


@dataclass
class ScoreRow:
    """Metrics of one method under one convention on one command group."""

    method: str
    convention: str  # one of CONVENTIONS
    command: str  # key of COMMAND_GROUPS
    metrics: dict[str, float]  # METRIC_KEYS; L2 in metres, collisions as fractions (0..1)
    num_samples: int  # samples the metric counted (convention-dependent, e.g. VAD drops short futures)
    num_records: int  # records in the group before the convention's own filtering
    num_failed: int  # missing + unparseable predictions in the group, scored as the zero trajectory
    num_missing: int  # of which missing from the file


@dataclass
class EvaluationResult:
    """All rows of one evaluation plus what is needed to describe it."""

    rows: list[ScoreRow]
    split: str
    num_records: int
    methods: list[str]
    conventions: list[str]
    failure_reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # method -> reason -> count
    extra_tokens: dict[str, int] = field(default_factory=dict)  # method -> predictions not in the split

    def select(self, convention: str, command: str = "all") -> list[ScoreRow]:
        return [r for r in self.rows if r.convention == convention and r.command == command]


@dataclass
class _Assembled:
    trajectories: np.ndarray  # (N, 6, 2) LiDAR frame, metres; zero rows where failed
    failed: np.ndarray  # (N,) bool
    missing: np.ndarray  # (N,) bool


def assemble_trajectories(records: list[SampleRecord], preds: Predictions, name: str,
                          allow_missing: bool = False) -> _Assembled:
    """Align a prediction set with `records`; apply the failure policy (zero trajectory)."""
    tokens = [r.sample_token for r in records]
    missing = np.array([t not in preds.tokens for t in tokens], dtype=bool)
    if missing.any() and not allow_missing:
        absent = [t for t, m in zip(tokens, missing) if m]
        raise MissingPredictionsError(
            f"{name}: {len(absent)} of {len(tokens)} samples have no prediction (first: {', '.join(absent[:5])}); "
            "predict the whole split, or pass --allow-missing to score them as failures")
    trajectories = np.zeros((len(tokens), NUM_FUTURE, 2))
    for i, token in enumerate(tokens):
        if token in preds.trajectories:
            trajectories[i] = preds.trajectories[token]
    failed = np.array([t not in preds.trajectories for t in tokens], dtype=bool)
    return _Assembled(trajectories, failed, missing)


def evaluate_methods(records: list[SampleRecord], methods: dict[str, Predictions], conventions: tuple[str, ...] = CONVENTIONS,
                     allow_missing: bool = False, with_gt: bool = False, split: str = "val",
                     progress: bool = True) -> EvaluationResult:
    """Score every method under every convention, overall and per command (see module doc)."""
    if not records:
        raise ValueError(f"no records to evaluate on split {split!r}; check --dataroot and --split")
    unknown = sorted(set(conventions) - set(CONVENTIONS))
    if unknown:
        raise ValueError(f"unknown convention(s) {unknown}; choose from {list(CONVENTIONS)}")
    assembled = {name: assemble_trajectories(records, preds, name, allow_missing) for name, preds in methods.items()}
    gt = np.stack([r.ego_future for r in records]).astype(np.float64)
    gt_mask = np.stack([r.ego_future_mask for r in records])
    if with_gt:
        assembled[GT_ROW_NAME] = _Assembled(gt.copy(), np.zeros(len(records), bool), np.zeros(len(records), bool))
    commands = np.array([r.command for r in records])
    past_mask = np.stack([r.ego_past_mask for r in records])
    rows = []
    for convention in conventions:
        occupancy = _occupancy(records, convention, progress)
        eligible = has_context_frames(past_mask, get_convention(convention).context_frames)
        for name, traj in assembled.items():
            for group, command in COMMAND_GROUPS.items():
                in_group = commands == command if command is not None else np.ones(len(records), bool)
                index = np.flatnonzero(in_group & eligible)
                rows.append(_score(name, convention, group, index, traj, gt, gt_mask, occupancy))
    return EvaluationResult(
        rows=rows, split=split, num_records=len(records), methods=list(assembled), conventions=list(conventions),
        failure_reasons={name: _reason_counts(p) for name, p in methods.items()},
        extra_tokens={name: len(p.tokens - {r.sample_token for r in records}) for name, p in methods.items()},
    )


def has_context_frames(past_mask: np.ndarray, frames: int) -> np.ndarray:
    """(N,) True where the last `frames` past keyframes exist (ST-P3 needs 2; the others 0)."""
    if frames == 0:
        return np.ones(len(past_mask), dtype=bool)
    return past_mask[:, past_mask.shape[1] - frames:].all(axis=1)


def _occupancy(records: list[SampleRecord], convention: str, progress: bool) -> np.ndarray:
    """(N, 6, 200, 200) uint8, about 240 kB per sample: one convention at a time keeps memory flat."""
    return rasterize_occupancy(records, convention, progress=progress)


def _score(name: str, convention: str, group: str, index: np.ndarray, traj: _Assembled,
           gt: np.ndarray, gt_mask: np.ndarray, occupancy: np.ndarray) -> ScoreRow:
    failed, missing = int(traj.failed[index].sum()), int(traj.missing[index].sum())
    full_future = gt_mask[index].all(axis=1)
    if index.size == 0 or (get_convention(convention).full_future_only and not full_future.any()):
        # No left turn in a small split, say: report n/a rather than a made-up zero.
        empty = {key: float("nan") for key in METRIC_KEYS}
        return ScoreRow(name, convention, group, empty, 0, int(index.size), failed, missing)

    result = planning_metrics(traj.trajectories[index], gt[index], gt_mask[index], occupancy[index], convention)
    absent = [key for key in METRIC_KEYS + ("num_samples",) if key not in result]
    if absent:
        raise KeyError(f"planning.metrics.planning_metrics returned no {absent} for convention {convention!r}")
    metrics = {key: float(result[key]) for key in METRIC_KEYS}
    return ScoreRow(name, convention, group, metrics, int(result["num_samples"]), int(index.size), failed, missing)


def _reason_counts(preds: Predictions) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in preds.failures.values():
        # Reasons like "point 3 is not a list of numbers: (a,b)" vary per sample; count by their kind.
        kind = reason.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts
