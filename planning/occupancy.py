"""Ground-truth future occupancy for the collision metric, drawn the way each reference draws it.

Why it exists: the collision rate depends as much on what the GT occupancy contains (vehicles
only, or humans too; agents first seen in the future or not) as on the metric itself, so each
convention has its own content rule. The output is always in **UniAD's raster layout**, the single
input layout of `planning.metrics.planning_metrics` (which re-orients it per convention):

  * (N, 6, 200, 200) uint8, frame t = the keyframe at t = 0.5 ... 3.0 s;
  * 0.5 m cells over [-50, 50) m of the current LiDAR_TOP frame; row index = round((y + 50) / 0.5)
    (y forward), column index = round((x + 50) / 0.5) (x right), numpy round-half-even;
  * 1 = covered by a GT box, 0 = free, 255 = a future frame past the scene end (no annotation).

Boxes come from `PlanningTargets.future_box*` (already re-framed to the current frame; build the
targets with `vla_world.data.targets.planning_targets(record)`), each drawn as its 4 bottom
corners with cv2.fillPoly (spec §9). The input is the targets type, not the record, because the
occupancy is what a plan is scored against: it is built from labels only. Content per convention:

  * "uniad": vehicle classes car, bus, construction_vehicle, bicycle, motorcycle, truck, trailer
    (nuScenes category -> detection class via nuscenes-devkit), no visibility filter;
  * "stp3", "stp3_original": every 'vehicle' or 'human' category, but only instances already seen
    in the context frames (`targets.context_track_ids`), as ST-P3's future labels do;
  * "vad": every vehicle.* and human.* category (VAD's intended index lists), no context filter.

Note "stp3" (OpenDriveVLA's table) uses ST-P3's content here; OpenDriveVLA's own script passes
UniAD's vehicle-only raster (spec §4), which is `rasterize_occupancy(targets, "uniad")`.

    targets = [planning_targets(r) for r in records]
    occupancy = rasterize_occupancy(targets, "stp3")   # (N, 6, 200, 200) uint8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from nuscenes.eval.detection.utils import category_to_detection_name

from vla_world.data.records import NUM_FUTURE
from vla_world.data.targets import PlanningTargets

GRID_CELLS = 200
CELL_METRES = 0.5
GRID_HALF_EXTENT = 50.0  # metres: the grid covers [-50, 50) on both axes
IGNORE_VALUE = 255  # a whole frame without annotation

UNIAD_VEHICLE_CLASSES = frozenset({"car", "bus", "construction_vehicle", "bicycle", "motorcycle", "truck", "trailer"})


def box_bottom_corners(box: np.ndarray) -> np.ndarray:
    """(4, 2) bottom corners (x, y) in metres, in drawing order, of box (x, y, z, w, l, h, yaw).

    The length l lies along the heading yaw (CCW from +x), the width w across it.
    """
    x, y, _, w, l, _, yaw = (float(v) for v in box[:7])
    along = np.array([np.cos(yaw), np.sin(yaw)])
    across = np.array([-np.sin(yaw), np.cos(yaw)])
    signs = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64)
    return np.array([x, y]) + (signs[:, :1] * l / 2) * along + (signs[:, 1:] * w / 2) * across


def metres_to_cells(points: np.ndarray) -> np.ndarray:
    """(K, 2) (x, y) metres -> int32 (column, row) pixel coordinates, as cv2 expects them."""
    return np.round((np.asarray(points, np.float64) + GRID_HALF_EXTENT) / CELL_METRES).astype(np.int32)


def rasterize_box(box: np.ndarray, grid: np.ndarray, value: int = 1) -> np.ndarray:
    """Fill box (x, y, z, w, l, h, yaw) into `grid` (200, 200) uint8 in place (UniAD layout); return it."""
    cv2.fillPoly(grid, [metres_to_cells(box_bottom_corners(box))], int(value))
    return grid


def _is_uniad_vehicle(category: str) -> bool:
    return category_to_detection_name(category) in UNIAD_VEHICLE_CLASSES


def _is_vehicle_or_human(category: str) -> bool:
    return "vehicle" in category or "human" in category


def _selector(convention: str) -> Callable[[PlanningTargets], np.ndarray]:
    """A function giving, for one sample's targets, the (M,) bool mask of future boxes the convention draws."""

    def by_category(targets: PlanningTargets, keep: Callable[[str], bool]) -> np.ndarray:
        return np.array([keep(str(c)) for c in targets.future_box_category], dtype=bool)

    if convention == "uniad":
        return lambda r: by_category(r, _is_uniad_vehicle)
    if convention in ("stp3", "stp3_original"):
        return lambda r: by_category(r, _is_vehicle_or_human) & np.isin(r.future_box_track_id, r.context_track_ids)
    if convention == "vad":
        return lambda r: by_category(r, lambda c: c.startswith(("vehicle.", "human.")))
    raise ValueError(f"convention={convention!r} is unknown; use one of uniad, stp3, stp3_original, vad (docs/metrics.md)")


def rasterize_targets(targets: PlanningTargets, convention: str = "uniad") -> np.ndarray:
    """(6, 200, 200) uint8 future occupancy of one sample (layout in the module docstring)."""
    _check_targets(targets)
    keep = _selector(convention)(targets)
    frames = np.zeros((NUM_FUTURE, GRID_CELLS, GRID_CELLS), np.uint8)
    for step in range(NUM_FUTURE):
        if not targets.ego_future_mask[step]:
            frames[step] = IGNORE_VALUE  # past the scene end: no annotation, the metric ignores it
            continue
        for box in targets.future_box[keep & (targets.future_box_step == step)]:
            # one fillPoly call per box, as UniAD does: a single call with several polygons
            # fills by parity and would leave the overlap of two boxes empty
            rasterize_box(box, frames[step])
    return frames


def _check_targets(targets: PlanningTargets) -> None:
    """Readable errors for a non-targets input, or future-box arrays that disagree (drawn wrongly)."""
    if not isinstance(targets, PlanningTargets):
        raise TypeError(f"expected PlanningTargets, got {type(targets).__name__}; build them with "
                        "vla_world.data.targets.planning_targets(record): the occupancy is drawn from labels only")
    m = len(targets.future_box)
    for field in ("future_box_step", "future_box_category", "future_box_track_id"):
        if len(getattr(targets, field)) != m:
            raise ValueError(f"sample {targets.sample_token}: {field} has {len(getattr(targets, field))} entries but future_box has {m}; rebuild the records")
    if targets.future_box.ndim != 2 or targets.future_box.shape[1] != 7:
        raise ValueError(f"sample {targets.sample_token}: future_box has shape {targets.future_box.shape}; expected (M, 7) (x, y, z, w, l, h, yaw)")
    if m and not np.isfinite(targets.future_box).all():
        raise ValueError(f"sample {targets.sample_token}: future_box holds NaN/inf; fix the record builder")
    if m and ((targets.future_box_step < 0) | (targets.future_box_step >= NUM_FUTURE)).any():
        raise ValueError(f"sample {targets.sample_token}: future_box_step outside 0..{NUM_FUTURE - 1}")


def rasterize_occupancy(targets: Sequence[PlanningTargets], convention: str = "uniad", progress: bool = False) -> np.ndarray:
    """(N, 6, 200, 200) uint8 GT future occupancy of `targets` in UniAD's layout, content per `convention`."""
    _selector(convention)  # fail on a bad convention before allocating
    out = np.zeros((len(targets), NUM_FUTURE, GRID_CELLS, GRID_CELLS), np.uint8)
    items = targets
    if progress:
        from tqdm import tqdm

        items = tqdm(targets, desc=f"occupancy ({convention})", unit="sample")
    for i, sample in enumerate(items):
        out[i] = rasterize_targets(sample, convention)
    return out
