"""A plain per-sample, per-step re-statement of the planning metrics, kept as an independent reference.

Why it exists: `planning.metrics` is vectorised and folds the grid mirrors into index arithmetic,
which is fast but not obviously right. This file follows the reference repositories' structure
instead (one sample and one step at a time, a re-oriented copy of each sample's occupancy, the
footprint found by testing cell centres) straight from /work/shared/specs/planning_metrics.md, so
the tests and `benchmarks/bench_metrics.py` can check that both give the same numbers. It is
~100x slower; do not use it for evaluation.

Inputs and outputs are those of `planning.metrics.planning_metrics` (LiDAR frame: x right,
y forward, metres; occupancy in UniAD's layout: row = forward, column = +x).
"""

from __future__ import annotations

import math

import numpy as np

BX = np.float32(-49.75)  # centre of cell 0, metres
DX = np.float32(0.5)  # cell size, metres
CELLS = 200
EGO_H, EGO_W, EGO_SHIFT = 4.084, 1.85, 0.5  # ego box length / width / forward offset, metres

# lateral sign, grid re-orientation, "up to" averaging, mask used, full-future samples only, VAD style
SETTINGS = {
    "uniad": {"sign": 1, "grid": "native", "up_to": False, "masked": True, "full_only": False, "vad": False},
    "stp3": {"sign": -1, "grid": "flip_columns", "up_to": True, "masked": True, "full_only": False, "vad": False},
    "stp3_original": {"sign": -1, "grid": "mirror_columns", "up_to": True, "masked": False, "full_only": True, "vad": False},
    "vad": {"sign": 1, "grid": "mirror_rows", "up_to": True, "masked": False, "full_only": True, "vad": True},
}


def footprint_cells() -> np.ndarray:
    """(32, 2) (row, col) cells whose centres lie inside the ego box, like skimage.draw.polygon."""
    forward = ((-EGO_H / 2 + EGO_SHIFT - BX) / DX, (EGO_H / 2 + EGO_SHIFT - BX) / DX)
    lateral = ((-EGO_W / 2 - BX) / DX, (EGO_W / 2 - BX) / DX)
    cells = [(r, c) for r in range(CELLS) for c in range(CELLS) if forward[0] <= r <= forward[1] and lateral[0] <= c <= lateral[1]]
    return np.array(cells, dtype=np.int64)


def convention_grid(frames: np.ndarray, grid: str) -> np.ndarray:
    """One sample's (6, 200, 200) UniAD-layout occupancy re-oriented as the convention's code sees it.

    flip_columns is OpenDriveVLA's torch.flip(..., [-1]); the mirrors are the geometric ones of
    ST-P3's left-positive columns and VAD's front-first rows (cell k <-> UniAD cell 200 - k). The
    new cell 0 has no UniAD counterpart: empty, or 255 in an ignore frame.
    """
    if grid == "native":
        return frames.copy()
    if grid == "flip_columns":
        return frames[:, :, ::-1].copy()
    out = np.zeros_like(frames)
    if grid == "mirror_columns":
        out[:, :, 1:] = frames[:, :, :0:-1]
        out[:, :, 0] = np.where(frames[:, :, CELLS - 1] == 255, 255, 0)
    else:  # mirror_rows
        out[:, 1:, :] = frames[:, :0:-1, :]
        out[:, 0, :] = np.where(frames[:, CELLS - 1, :] == 255, 255, 0)
    return out


def box_hit(point: np.ndarray, frame: np.ndarray, sign: int, vad: bool, footprint: np.ndarray) -> bool:
    """Does the (unrotated) ego box at `point` (x, y) touch a non-zero cell of `frame`?"""
    dtype = np.float64 if point.dtype == np.float64 else np.float32
    forward_cells = point[1].astype(dtype) / dtype(DX)
    lateral_cells = (dtype(sign) * point[0].astype(dtype)) / dtype(DX)
    rows = footprint[:, 0] + np.float64(forward_cells)
    rows = (CELLS - rows) if vad else rows
    rows = np.clip(rows.astype(np.int32), 0, CELLS - 1)
    cols = np.clip((footprint[:, 1] + np.float64(lateral_cells)).astype(np.int32), 0, CELLS - 1)
    return bool(np.any(frame[rows, cols]))


def point_value(point: np.ndarray, frame: np.ndarray, sign: int) -> int:
    """Raw occupancy value under the point itself (UniAD's obj_col), 0 when it is off the grid."""
    dtype = np.float64 if point.dtype == np.float64 else np.float32
    row = math.trunc(float((point[1].astype(dtype) - BX.astype(dtype)) / dtype(DX)))
    col = math.trunc(float((dtype(sign) * point[0].astype(dtype) - BX.astype(dtype)) / dtype(DX)))
    if 0 <= row < CELLS and 0 <= col < CELLS:
        return int(frame[row, col])
    return 0


def reference_planning_metrics(pred, gt, gt_mask, occupancy, convention: str, failed=None) -> dict:
    """Same result dict as `planning.metrics.planning_metrics`, computed one sample at a time.

    `failed` (N,) bool: the evaluator's failure policy, stated per step: a failed sample collides
    (box and point test) at every step whose GT box is collision-free.
    """
    cfg = SETTINGS[convention]
    failed = np.zeros(len(pred), bool) if failed is None else np.asarray(failed, bool)
    footprint = footprint_cells()
    mask = np.asarray(gt_mask, dtype=np.float64)
    mask = mask if mask.ndim == 3 else np.repeat(mask[..., None], 2, axis=-1)
    l2_sum, col_sum, obj_sum = np.zeros(6), np.zeros(6), np.zeros(6)
    horizon_sums = {"L2": np.zeros(3), "col": np.zeros(3)}  # VAD's per-sample "up to k s" values
    total, gt_collisions, gt_collision_samples, num_failed = 0, 0, 0, 0
    for n in range(len(pred)):
        if cfg["full_only"] and not mask[n].all():
            continue  # ST-P3 drops the sample; VAD skips it in both sum and count
        total += 1
        num_failed += int(failed[n])
        frames = convention_grid(np.asarray(occupancy[n]), cfg["grid"])
        l2_n, col_n = np.zeros(6), np.zeros(6)
        gt_on_obstacle = False
        for t in range(6):
            step_mask = mask[n, t] if cfg["masked"] else np.ones(2)
            diff = pred[n, t].astype(np.float64) - gt[n, t].astype(np.float64)
            l2_n[t] = math.sqrt(float((diff**2 * step_mask).sum()))
            if box_hit(gt[n, t], frames[t], cfg["sign"], cfg["vad"], footprint):
                gt_collisions += 1
                gt_on_obstacle |= bool((frames[t] == 0).any())  # OpenDriveVLA: "0 in segmentation[t]"
                continue  # GT box collides: not counted, but the sample stays in N
            if failed[n]:  # no usable answer: a collision wherever the step counts
                col_n[t] = 1
                obj_sum[t] += max(point_value(pred[n, t], frames[t], cfg["sign"]), 1)
                continue
            col_n[t] = box_hit(pred[n, t], frames[t], cfg["sign"], cfg["vad"], footprint)
            obj_sum[t] += point_value(pred[n, t], frames[t], cfg["sign"])
        gt_collision_samples += gt_on_obstacle
        l2_sum += l2_n
        col_sum += col_n
        for k in range(3):
            horizon_sums["L2"][k] += l2_n[: 2 * (k + 1)].mean()
            horizon_sums["col"][k] += col_n[: 2 * (k + 1)].mean()
    if total == 0:
        raise ValueError(f"no sample to evaluate for convention {convention!r}")
    result = {"convention": convention, "num_samples": total, "num_failed": num_failed,
              "gt_collision_steps": gt_collisions, "gt_collision_samples": gt_collision_samples}
    for name, sums in (("L2", l2_sum), ("col", col_sum), ("obj_col", obj_sum)):
        if name == "obj_col" and cfg["vad"]:
            continue  # VAD's point lookup is offset by ~25 m; not reported
        per_step = sums / total
        if cfg["vad"]:
            values = list(horizon_sums[name] / total)
        elif cfg["up_to"]:
            values = [per_step[: 2 * k].mean() for k in (1, 2, 3)]
        else:
            values = [per_step[2 * k - 1] for k in (1, 2, 3)]
        for k, v in zip((1, 2, 3), values):
            result[f"{name}_{k}s"] = float(v)
        result[f"{name}_avg"] = float(np.mean(values))
        result[f"{name}_per_step"] = [float(v) for v in per_step]
    return result
