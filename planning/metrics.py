"""Open-loop planning metrics (L2 and collision rate) exactly as UniAD, ST-P3 and VAD compute them.

Why this module exists: papers report "L2" and "collision" numbers that come from four slightly
different pieces of reference code (at-t vs up-to-t averaging, GT masks, sample sets, grid flips,
whole-cell box shifts, GT-collision exclusion). This module reproduces each of them bit for bit on
the same inputs, vectorised over the whole dataset, so our numbers can sit in the same table as
the published ones. Spec: /work/shared/specs/planning_metrics.md; user guide: docs/metrics.md.

Inputs (the boundary every caller crosses):
  * ``pred``, ``gt``: (N, 6, 2) metres in the current LiDAR_TOP frame (x right, y forward),
    steps t = 0.5 ... 3.0 s (the current pose excluded).
  * ``gt_mask``: (N, 6) or UniAD's (N, 6, 2), 0/1; 0 past the scene end.
  * ``occupancy``: (N, 6, 200, 200) uint8 in **UniAD's raster layout**: 0.5 m cells over
    [-50, 50) m, row index grows with forward y, column index grows with +x (right), non-zero =
    obstacle, 255 = a future frame without annotations. Build it with
    ``planning.occupancy.rasterize_occupancy``. Each convention re-orients it as its own code
    does (never by copying the big array: the mirror is folded into the gather indices).

Conventions (``planning_metrics(..., convention=...)``):
  * ``"uniad"``         UniAD's own: value *at* 1/2/3 s, L2 x mask, all samples, native grid.
  * ``"stp3"``          OpenDriveVLA / GPT-Driver "ST-P3" table: mean *up to* 1/2/3 s of the same
                        masked per-step values, x negated on a column-flipped grid (199 - col).
  * ``"stp3_original"`` ST-P3's evaluate.py: only samples with all 6 future steps, no mask, up-to
                        averaging, x negated on ST-P3's own left-positive grid (200 - col).
  * ``"vad"``           VAD: per-sample up-to averages over samples with all 6 future steps, VAD's
                        front-at-row-0 grid (200 - row) and its ``200 - (row)`` box index.
                        VAD's point test ``obj_col`` is off by ~25 m in VAD's code, so it is not
                        reported.

Failed answers (``planning_metrics(..., failed=)``): the evaluator's failure policy
(planning/evaluate.py) is applied here, inside the vectorised core, so it uses each convention's
own sample set and GT-collision exclusion: a failed sample collides at every counted step. Without
``failed`` the numbers are exactly the references'.

Run: ``python -c "from planning.metrics import planning_metrics; help(planning_metrics)"``;
the speed and equality check against the plain loop is ``python benchmarks/bench_metrics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONVENTIONS: tuple[str, ...] = ("uniad", "stp3", "stp3_original", "vad")
NUM_STEPS = 6  # 0.5 ... 3.0 s
HORIZONS_SECONDS: tuple[int, ...] = (1, 2, 3)

# The BEV grid every reference builds from bounds [-50, 50, 0.5] (gen_dx_bx), as float32 like there.
GRID_CELLS = 200
CELL_METRES = np.float32(0.5)
CELL0_CENTRE = np.float32(-49.75)  # "bx": treated as the centre of cell 0
IGNORE_VALUE = 255  # a whole future frame without annotation (UniAD's ignore_index)

# The ego box of all four references: 4.084 m x 1.85 m, centre 0.5 m ahead of the planned point.
EGO_LENGTH = 4.084
EGO_WIDTH = 1.85
EGO_FORWARD_SHIFT = 0.5

# Index clamp applied before integer conversion; far beyond the grid, so clipping is unaffected
# (the references' int32 cast would overflow instead above ~1e9 m).
_INDEX_GUARD = 4 * GRID_CELLS


@dataclass(frozen=True)
class Convention:
    """How one reference evaluator reads trajectories and the UniAD-layout occupancy."""

    name: str
    lateral_sign: int  # s of spec §2.6: the grid column follows s * x
    column_map: str  # "native" (col), "flip" (199 - col, torch.flip) or "mirror" (200 - col)
    row_map: str  # "native" (row) or "mirror" (VAD: its row r is UniAD row 200 - r)
    up_to: bool  # metric@k s = mean over steps 1..2k (ST-P3 / VAD) instead of value at step 2k
    use_mask: bool  # L2 multiplied by the GT mask (UniAD, OpenDriveVLA)
    full_future_only: bool  # evaluate only samples whose 6 future steps all exist
    reports_obj_col: bool  # the single-point test is meaningful in this reference
    # Past keyframes a sample needs in its own scene: ST-P3's get_indices keeps only samples whose
    # 3 context frames (t = -1.0, -0.5, 0 s) and 6 future frames lie in one scene (spec §4).
    context_frames: int = 0


CONVENTION_TABLE: dict[str, Convention] = {
    "uniad": Convention("uniad", +1, "native", "native", False, True, False, True),
    "stp3": Convention("stp3", -1, "flip", "native", True, True, False, True),
    "stp3_original": Convention("stp3_original", -1, "mirror", "native", True, False, True, True, context_frames=2),
    "vad": Convention("vad", +1, "native", "mirror", True, False, True, False),
}


def get_convention(name: str) -> Convention:
    """The `Convention` called `name`, or a ValueError that lists the valid names."""
    if name not in CONVENTION_TABLE:
        raise ValueError(f"convention={name!r} is unknown; use one of {', '.join(CONVENTIONS)} (see docs/metrics.md)")
    return CONVENTION_TABLE[name]


def ego_footprint() -> tuple[np.ndarray, np.ndarray]:
    """Rows (forward) and columns (lateral) of the 32 cells the ego box covers with the point at the origin.

    The references rasterise the axis-aligned box with skimage.draw.polygon (cells whose centre
    lies inside); for an axis-aligned box with non-integer edges that is ceil(lo)..floor(hi) per
    axis, so we compute it directly instead of depending on scikit-image.
    """
    forward = np.array([-EGO_LENGTH / 2 + EGO_FORWARD_SHIFT, EGO_LENGTH / 2 + EGO_FORWARD_SHIFT])
    lateral = np.array([-EGO_WIDTH / 2, EGO_WIDTH / 2])
    bx, dx = np.float64(CELL0_CENTRE), np.float64(CELL_METRES)
    row_lo, row_hi = (forward - bx) / dx
    col_lo, col_hi = (lateral - bx) / dx
    rows, cols = np.meshgrid(np.arange(np.ceil(row_lo), np.floor(row_hi) + 1), np.arange(np.ceil(col_lo), np.floor(col_hi) + 1), indexing="ij")
    return rows.ravel().astype(np.int64), cols.ravel().astype(np.int64)


def _index_dtype(traj: np.ndarray) -> type:
    """The float type the references compute indices in: float32 for float32 (or smaller) inputs."""
    return np.float64 if traj.dtype == np.float64 else np.float32


def _whole_cells(metres: np.ndarray) -> np.ndarray:
    """floor(metres / 0.5) as int64: the whole-cell shift the references apply to the footprint.

    metres/0.5 is exact in float32 and float64, and `astype(int32)` of (footprint + shift) after the
    clip equals floor for every finite value (spec §2.3), so floor is taken once per point.
    """
    cells = np.floor(metres.astype(_index_dtype(metres)) / _index_dtype(metres)(CELL_METRES))
    return np.clip(cells, -_INDEX_GUARD, _INDEX_GUARD).astype(np.int64)


def _to_uniad_index(index: np.ndarray, mapping: str) -> tuple[np.ndarray, np.ndarray]:
    """Map a convention's grid index (0..199) to UniAD's; also flag cells outside UniAD's grid.

    "mirror" is the exact geometric mirror (cell k <-> 200 - k, since round-half-even rasterising
    is symmetric about the even 100); its cell 0 lies just outside UniAD's grid and is empty
    unless the frame is an all-255 ignore frame (read from the border cell next to it).
    """
    if mapping == "native":
        return index, np.zeros(index.shape, bool)
    if mapping == "flip":
        return GRID_CELLS - 1 - index, np.zeros(index.shape, bool)
    outside = index == 0
    return np.where(outside, GRID_CELLS - 1, GRID_CELLS - index), outside


def _gather(occupancy: np.ndarray, samples: np.ndarray, rows: np.ndarray, cols: np.ndarray, conv: Convention) -> np.ndarray:
    """occupancy[samples[n], t, row, col] for convention-grid indices of shape (n, 6, ...); no copy of the occupancy."""
    uniad_rows, rows_outside = _to_uniad_index(rows, conv.row_map)
    uniad_cols, cols_outside = _to_uniad_index(cols, conv.column_map)
    trailing = (1,) * (rows.ndim - 2)
    n = samples.reshape(-1, 1, *trailing)
    t = np.arange(rows.shape[1]).reshape(1, -1, *trailing)
    if occupancy.flags.c_contiguous:  # one flat index gathers faster than four index arrays
        flat = ((n * occupancy.shape[1] + t) * GRID_CELLS + uniad_rows) * GRID_CELLS + uniad_cols
        values = occupancy.reshape(-1).take(flat)
    else:
        values = occupancy[n, t, uniad_rows, uniad_cols]
    outside = rows_outside | cols_outside
    if outside.any():
        values = np.where(outside & (values != IGNORE_VALUE), 0, values)
    return values


def box_collisions(traj: np.ndarray, occupancy: np.ndarray, convention: str = "uniad") -> np.ndarray:
    """(N, 6) bool: does the ego box at each planned point touch a non-zero cell (spec §2.3, §5.3)?

    traj: (N, 6, 2) metres, LiDAR frame (x right, y forward); occupancy: (N, 6, 200, 200) in UniAD
    layout (module doc). The box is never rotated and moves by whole cells; off-grid boxes are
    clamped onto the border. Also the building block of a collision reward.
    """
    traj = _check_trajectory("traj", traj)
    occupancy = _check_occupancy(occupancy, len(traj))
    return _box_collisions(traj, occupancy, np.arange(len(traj)), get_convention(convention))


def _box_collisions(traj: np.ndarray, occupancy: np.ndarray, samples: np.ndarray, conv: Convention) -> np.ndarray:
    """`box_collisions` for trajectories of the occupancy samples `samples` (indices into axis 0)."""
    return (_box_cells(traj, occupancy, samples, conv) != 0).any(axis=(-2, -1))


def _box_cells(traj: np.ndarray, occupancy: np.ndarray, samples: np.ndarray, conv: Convention) -> np.ndarray:
    """(n, 6, 8, 4) occupancy values under the ego box at each point (spec §2.3)."""
    foot_rows, foot_cols = (np.unique(axis) for axis in ego_footprint())  # the box is a full 8 x 4 block
    if conv.row_map == "mirror":  # VAD: r = int32(200 - (R_k + y/dx)) = 200 - R_k + floor(-y/dx)
        rows = GRID_CELLS - foot_rows + _whole_cells(-traj[..., 1])[..., None]
    else:
        rows = foot_rows + _whole_cells(traj[..., 1])[..., None]
    cols = foot_cols + _whole_cells(conv.lateral_sign * traj[..., 0])[..., None]
    # clip the 8 rows and 4 columns per point first, then gather the (8, 4) block
    rows = np.clip(rows, 0, GRID_CELLS - 1)[..., :, None]
    cols = np.clip(cols, 0, GRID_CELLS - 1)[..., None, :]
    return _gather(occupancy, samples, rows, cols, conv)


def point_values(traj: np.ndarray, occupancy: np.ndarray, convention: str = "uniad") -> np.ndarray:
    """(N, 6) int64: the raw occupancy value under the planned point itself, 0 off the grid (spec §2.4).

    Indices are trunc((coordinate - bx) / dx) in the input's float type, like torch `.long()`.
    """
    traj = _check_trajectory("traj", traj)
    occupancy = _check_occupancy(occupancy, len(traj))
    return _point_values(traj, occupancy, np.arange(len(traj)), get_convention(convention))


def _point_values(traj: np.ndarray, occupancy: np.ndarray, samples: np.ndarray, conv: Convention) -> np.ndarray:
    """`point_values` for trajectories of the occupancy samples `samples` (indices into axis 0)."""
    dtype = _index_dtype(traj)
    row_f = np.trunc((traj[..., 1].astype(dtype) - CELL0_CENTRE.astype(dtype)) / dtype(CELL_METRES))
    col_f = np.trunc((dtype(conv.lateral_sign) * traj[..., 0].astype(dtype) - CELL0_CENTRE.astype(dtype)) / dtype(CELL_METRES))
    on_grid = (row_f >= 0) & (row_f < GRID_CELLS) & (col_f >= 0) & (col_f < GRID_CELLS)
    rows = np.where(on_grid, row_f, 0).astype(np.int64)[..., None]
    cols = np.where(on_grid, col_f, 0).astype(np.int64)[..., None]
    values = _gather(occupancy, samples, rows, cols, conv)[..., 0].astype(np.int64)
    return np.where(on_grid, values, 0)


def _check_trajectory(name: str, traj) -> np.ndarray:
    """`traj` as a finite float (N, 6, 2) array, or a ValueError naming the argument and the fix."""
    traj = np.asarray(traj)
    if traj.ndim != 3 or traj.shape[1:] != (NUM_STEPS, 2) or len(traj) == 0:
        raise ValueError(f"{name} has shape {traj.shape}; expected (N > 0, {NUM_STEPS}, 2) metres (x right, y forward) at 0.5..3.0 s")
    if not np.issubdtype(traj.dtype, np.floating):
        raise ValueError(f"{name} has dtype {traj.dtype}; pass float32 or float64 metres")
    bad = np.argwhere(~np.isfinite(traj))
    if len(bad):
        raise ValueError(f"{name} is not finite at sample {bad[0][0]} step {bad[0][1]}; fix or drop that sample")
    return traj


def _check_occupancy(occupancy, num: int) -> np.ndarray:
    """`occupancy` as a (num, 6, 200, 200) uint8/bool array (no copy), or a readable ValueError."""
    occupancy = np.asarray(occupancy)
    if occupancy.shape != (num, NUM_STEPS, GRID_CELLS, GRID_CELLS):
        raise ValueError(f"occupancy has shape {occupancy.shape}; expected ({num}, {NUM_STEPS}, {GRID_CELLS}, {GRID_CELLS}) (planning.occupancy.rasterize_occupancy)")
    if not (occupancy.dtype == np.uint8 or occupancy.dtype == bool):
        raise ValueError(f"occupancy has dtype {occupancy.dtype}; expected uint8 (0 free, 1 obstacle, 255 no annotation)")
    return occupancy


def _check_inputs(pred, gt, gt_mask, occupancy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and values; return arrays (never copies of the occupancy, never mutated)."""
    pred, gt, gt_mask = _check_trajectory("pred", pred), _check_trajectory("gt", gt), np.asarray(gt_mask)
    n = pred.shape[0]
    if gt.shape[0] != n:
        raise ValueError(f"pred has {n} samples and gt has {gt.shape[0]}; pass the same samples in the same order")
    if gt_mask.shape not in ((n, NUM_STEPS), (n, NUM_STEPS, 2)):
        raise ValueError(f"gt_mask has shape {gt_mask.shape}; expected ({n}, {NUM_STEPS}) or UniAD's ({n}, {NUM_STEPS}, 2)")
    if not np.isin(gt_mask, (0, 1)).all():
        raise ValueError("gt_mask must hold only 0/1 (or False/True)")
    return pred, gt, gt_mask, _check_occupancy(occupancy, n)


def _check_failed(failed, num: int) -> np.ndarray:
    """`failed` as an (num,) bool array (all False when None), or a ValueError naming the fix."""
    if failed is None:
        return np.zeros(num, dtype=bool)
    failed = np.asarray(failed)
    if failed.shape != (num,) or not np.isin(failed, (0, 1)).all():
        raise ValueError(f"failed has shape {failed.shape} and dtype {failed.dtype}; expected ({num},) bool, "
                         "True where the planner gave no usable answer")
    return failed.astype(bool)


def _step_mask(gt_mask: np.ndarray) -> np.ndarray:
    """(N, 6, 2) float mask: UniAD's per-coordinate layout, broadcast from (N, 6) if needed."""
    mask = gt_mask.astype(np.float64)
    return mask if mask.ndim == 3 else np.repeat(mask[..., None], 2, axis=-1)


def _evaluated_samples(mask: np.ndarray, conv: Convention) -> np.ndarray:
    """Indices of the samples a convention evaluates: all, or those with the whole 3 s future."""
    if not conv.full_future_only:
        return np.arange(len(mask))
    samples = np.flatnonzero(mask.reshape(len(mask), -1).all(axis=1))
    if len(samples) == 0:
        raise ValueError(f"convention={conv.name!r} evaluates only samples with all {NUM_STEPS} future steps, and gt_mask has none")
    return samples


def _at_horizons(per_step: np.ndarray, up_to: bool) -> list[float]:
    """Metric at 1/2/3 s: the value at step 2k (UniAD) or the mean of steps 1..2k (ST-P3, VAD)."""
    return [float(per_step[: 2 * k].mean() if up_to else per_step[2 * k - 1]) for k in HORIZONS_SECONDS]


def _summary(name: str, per_step: np.ndarray, up_to: bool) -> dict:
    """{name_1s, name_2s, name_3s, name_avg, name_per_step} for one metric."""
    values = _at_horizons(per_step, up_to)
    out = {f"{name}_{k}s": v for k, v in zip(HORIZONS_SECONDS, values)}
    out[f"{name}_avg"] = float(np.mean(values))
    out[f"{name}_per_step"] = [float(v) for v in per_step]
    return out


def planning_metrics(pred, gt, gt_mask, occupancy, convention: str = "uniad", failed=None) -> dict:
    """L2 (metres) and collision rate (a fraction; x100 for %) as `convention`'s reference code computes them.

    Arguments follow the module docstring (LiDAR frame, UniAD-layout occupancy). `failed`: an
    optional (N,) bool, True where the planner gave no usable answer (the evaluator's failure
    policy, planning/evaluate.py): such a sample's L2 is that of `pred` as given (the evaluator
    passes the zero trajectory), and it counts as a collision, in both tests, at every step this
    convention counts, i.e. every evaluated step where the GT box is collision-free. A failure
    therefore never has a lower collision rate than any real answer. Without `failed` the numbers
    are the references' own.

    Returns floats L2_{1,2,3}s, L2_avg, col_{1,2,3}s, col_avg (ego-box test, the papers'
    "Collision"), obj_col_* (single-point test; not for "vad"), the per-step vectors L2_per_step,
    col_per_step (and obj_col_per_step), num_samples evaluated, num_failed (of those, the failed
    ones), gt_collision_steps (sample-steps excluded because the GT box itself collides, 255
    frames included), gt_collision_samples (samples whose GT box overlaps a real obstacle at some
    step) and convention. Inputs are never modified.
    """
    conv = get_convention(convention)
    pred, gt, gt_mask, occupancy = _check_inputs(pred, gt, gt_mask, occupancy)
    failed = _check_failed(failed, len(pred))
    mask = _step_mask(gt_mask)
    samples = _evaluated_samples(mask, conv)
    pred, gt, mask = pred[samples], gt[samples], (mask[samples] if conv.use_mask else np.ones_like(mask[samples]))
    failed = failed[samples][:, None]  # (n, 1): broadcast over the six steps
    num = len(samples)
    diff = pred.astype(np.float64) - gt.astype(np.float64)
    l2 = np.sqrt((diff**2 * mask).sum(axis=-1))
    gt_cells = _box_cells(gt, occupancy, samples, conv)
    gt_collides = (gt_cells != 0).any(axis=(-2, -1))
    counted = ~gt_collides  # GT-collision exclusion: not in the numerator, still in N
    box_hits = (_box_collisions(pred, occupancy, samples, conv) | failed) & counted
    # GT boxes on a real obstacle (not just an all-255 frame): OpenDriveVLA's "gt collision" count
    gt_on_obstacle = ((gt_cells != 0) & (gt_cells != IGNORE_VALUE)).any(axis=(-3, -2, -1))
    result = {
        "convention": convention,
        "num_samples": int(num),
        "num_failed": int(failed.sum()),
        "gt_collision_steps": int(gt_collides.sum()),
        "gt_collision_samples": int(gt_on_obstacle.sum()),
    }
    result.update(_summary("L2", l2.sum(axis=0) / num, conv.up_to))
    result.update(_summary("col", box_hits.sum(axis=0) / num, conv.up_to))
    if conv.reports_obj_col:
        # a failure hits at least value 1 (an obstacle cell) wherever the step is counted
        values = _point_values(pred, occupancy, samples, conv)
        point_hits = np.where(failed, np.maximum(values, 1), values) * counted
        result.update(_summary("obj_col", point_hits.sum(axis=0) / num, conv.up_to))
    return result
