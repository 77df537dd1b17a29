"""The pseudo-simulation table: PDMS and its five terms per method, next to the L2 tables.

Each sample is a `PdmScene`: the labels it is scored on (`PlanningTargets`), the ego state the
controller starts from (speed and acceleration from the `PlannerInput`, which every planner
also sees) and the drivable area around it. Runs, seeds and failures follow the L2 tables
(`planning.evaluate`): a failed answer (missing, unparseable, implausible) scores 0 on every
term; a method's runs are summarised as mean ± sample std. Only samples with a complete logged
future are scored (`planning.pdm_score.scorable`); the table says how many.

    scenes = [pdm_scene(record, areas) for record in records]
    result = evaluate_pdm(scenes, {"CTRA prior": preds})
    print(pdm_markdown(result))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from planning.evaluate import GT_ROW_NAME, STD_DDOF, assemble_trajectories, method_runs
from planning.pdm_score import FAILED, SUBSCORES, scene_context, scorable, score_plan
from planning.predictions import Predictions
from planning.tracking import EgoState
from vla_world.data.drivable_area import DrivableAreas
from vla_world.data.planner_input import planner_input
from vla_world.data.records import SampleRecord
from vla_world.data.targets import PlanningTargets, planning_targets

PDM_KEYS: tuple[str, ...] = (*SUBSCORES, "PDMS")


@dataclass(frozen=True)
class PdmScene:
    """One keyframe as the pseudo-simulation sees it (see module doc)."""

    targets: PlanningTargets
    start: EgoState
    drivable: BaseGeometry


@dataclass(frozen=True)
class PdmRow:
    method: str
    run: str  # "" for a method's only run
    scores: dict[str, float]  # PDM_KEYS, means over the scored samples
    num_samples: int
    num_failed: int


@dataclass(frozen=True)
class PdmMethodRow:
    method: str
    mean: dict[str, float]
    std: dict[str, float] | None  # None for a single run
    num_runs: int
    num_samples: int
    failed_mean: float


def pdm_scene(record: SampleRecord, areas: DrivableAreas) -> PdmScene:
    """The scene of one record: labels, the input's ego state (heading +y: acceleration's y part), the map."""
    inp = planner_input(record)
    start = EgoState(speed=float(inp.ego_speed), accel=float(inp.ego_acceleration[1]))
    return PdmScene(planning_targets(record), start, areas.around(record.location, record.lidar2global))


def evaluate_pdm(scenes: Sequence[PdmScene], methods: Mapping[str, Predictions | Sequence[Predictions]],
                 allow_missing: bool = False, with_gt: bool = False, progress: bool = True) -> list[PdmRow]:
    """One `PdmRow` per run of every method (and the logged future as `GT (sanity)` with `with_gt`)."""
    kept = [s for s in scenes if scorable(s.targets)]
    targets = [s.targets for s in kept]
    contexts = [scene_context(s.targets, s.start) for s in kept]
    runs = [(info.method, info.run, assemble_trajectories(targets, preds, info.name, allow_missing))
            for info, preds in method_runs(methods)]
    if with_gt:
        gt = np.stack([t.ego_future for t in targets]) if targets else np.zeros((0, 6, 2))
        runs.append((GT_ROW_NAME, "", _GtRun(gt)))
    rows = []
    for method, run, traj in tqdm(runs, desc="pseudo-simulation", unit="run", disable=not progress):
        results = [FAILED if traj.failed[i] else score_plan(traj.trajectories[i], s.start, s.targets, s.drivable, c)
                   for i, (s, c) in enumerate(zip(kept, contexts))]
        scores = {k: float(np.mean([r.as_dict()[k] for r in results])) if results else float("nan") for k in PDM_KEYS}
        rows.append(PdmRow(method, run, scores, len(kept), int(traj.failed.sum())))
    return rows


@dataclass
class _GtRun:
    trajectories: np.ndarray

    @property
    def failed(self) -> np.ndarray:
        return np.zeros(len(self.trajectories), dtype=bool)


def summarise_pdm(rows: Sequence[PdmRow]) -> list[PdmMethodRow]:
    """Mean and sample std over each method's runs, methods in first-seen order."""
    out = []
    for method in dict.fromkeys(r.method for r in rows):
        mine = [r for r in rows if r.method == method]
        values = {k: np.array([r.scores[k] for r in mine]) for k in PDM_KEYS}
        std = None if len(mine) == 1 else {k: float(v.std(ddof=STD_DDOF)) for k, v in values.items()}
        out.append(PdmMethodRow(method, {k: float(v.mean()) for k, v in values.items()}, std, len(mine),
                                mine[0].num_samples, float(np.mean([r.num_failed for r in mine]))))
    return out


def pdm_markdown(rows: Sequence[PdmRow]) -> str:
    """The PDMS table (terms in %, as NAVSIM prints them) with its footnote."""
    summary = summarise_pdm(rows)
    lines = ["| Method | NC | DAC | EP | TTC | C | PDMS | Samples | Failed |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        name = row.method + (f" ({row.num_runs} seeds)" if row.num_runs > 1 else "")
        cells = [_cell(row, k) for k in PDM_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row.num_samples} | {row.failed_mean:g} |")
    lines.append("")
    lines.append("NAVSIM-style pseudo-simulation (planning/pdm_score.py): each plan is tracked for 3 s by a kinematic "
                 "bicycle against the recorded agents; NC no at-fault collision, DAC drivable-area compliance, EP ego "
                 "progress vs the logged path, TTC time to collision > 1 s, C comfort (nuPlan bounds); "
                 "PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12, in %. Failed answers score 0; samples with a complete "
                 "logged future only. docs/evaluation.md lists every threshold and where it differs from NAVSIM.")
    return "\n".join(lines)


def _cell(row: PdmMethodRow, key: str) -> str:
    text = f"{100 * row.mean[key]:.1f}"
    return text + (f" ± {100 * row.std[key]:.1f}" if row.std is not None else "")
