"""Per-class BEV map probabilities -> scored polylines of P points (deterministic, no learning).

Why: a dense per-cell map head trains on the short CPU schedule where a DETR polyline decoder
does not (the same lesson as the agents' centre head), but the LLM and the Chamfer metric want
polylines. No installed library turns a probability raster into ordered polylines (skimage is
not installed; scipy and OpenCV are), so this module does it with scipy.ndimage and
scipy.sparse.csgraph:

  1. threshold each class map, optionally close small gaps (`scipy.ndimage.binary_closing`), and
     split it into 8-connected components (`scipy.ndimage.label`);
  2. lines (dividers, road boundaries): the longest shortest path through the component's cell
     graph (two Dijkstra sweeps: the graph's diameter) is the polyline; cells within `peel` cells
     of it are removed and what remains (a branch, a second line touching the first) is vectorised
     again, so crossings and T-junctions give one polyline per arm;
  3. closed outlines (pedestrian crossings): the outer contour of the component (OpenCV), closed;
     for an open piece (a crossing cut by the grid edge) the contour runs along it and back, which
     has the same points;
  4. resample to P points evenly spaced by arc length; score = mean probability of its cells.

Raster layout as everywhere in perception: (rows, cols) with rows growing forward (+y) and
columns to the right (+x); cell (r, c) has its centre at x = -x_half + (c + 0.5) * cell_w,
y = -y_half + (r + 0.5) * cell_h (metres, LiDAR frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import LineString

from perception.targets import resample_polyline

EIGHT_CONNECTED = np.ones((3, 3), bool)
RIDGE_CONTRAST = 0.05  # a window whose values differ by less than this is flat (no ridge across it)


@dataclass
class VectoriseConfig:
    """Thresholds of the vectoriser (cells are raster cells, whatever their size in metres)."""

    threshold: float = 0.4  # a cell belongs to a class when its probability is at least this
    min_cells: int = 4  # components (and peeled remainders) smaller than this are noise
    peel: float = 1.5  # cells: after taking a path, drop the component's cells this close to it
    closed_types: tuple[int, ...] = (2,)  # classes drawn as closed outlines (MAP_CLASSES: ped_crossing)
    ridge: int = 0  # > 0: keep only cells that are the maximum of a 1 x (2*ridge+1) row or column window (thin lines
    # out of a wide band of probability, as Canny's non-maximum suppression; separates parallel lines in one blob)
    close: int = 0  # binary closing iterations (3x3) before splitting into components: bridges gaps of ~2*close cells
    crest: bool = False  # thin line classes to the crest of the mask's distance transform (`crest_cells`): a confident
    # head paints a band several cells wide, whose diameter path would run corner to corner; the traced line's
    # ends then grow by the band's half width there, which thinning took off

    def validate(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: must be a probability in (0, 1)")
        if self.min_cells < 2:
            raise ValueError(f"min_cells={self.min_cells}: a polyline needs at least 2 cells")


@dataclass
class Polyline:
    """One vectorised element: type index, (P, 2) points in metres, score in [0, 1]."""

    kind: int
    points: np.ndarray
    score: float


def cell_xy(cells: np.ndarray, shape: tuple[int, int], half: tuple[float, float]) -> np.ndarray:
    """(N, 2) integer (row, col) -> (N, 2) float (x, y) metres at the cell centres."""
    rows, cols = shape
    size = np.array([2 * half[0] / cols, 2 * half[1] / rows])
    return (cells[:, ::-1] + 0.5) * size - np.asarray(half)


def diameter_path(cells: np.ndarray) -> np.ndarray:
    """Indices into `cells` (N, 2) of the longest shortest path through their 8-neighbour graph, in order."""
    index = {tuple(c): i for i, c in enumerate(cells.tolist())}
    src, dst, weight = [], [], []
    for i, (r, c) in enumerate(cells.tolist()):
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each undirected edge once
            j = index.get((r + dr, c + dc))
            if j is not None:
                src.append(i)
                dst.append(j)
                weight.append(float(np.hypot(dr, dc)))
    graph = coo_matrix((weight, (src, dst)), shape=(len(cells), len(cells))).tocsr()
    first = dijkstra(graph, directed=False, indices=0)
    start = int(np.argmax(np.where(np.isfinite(first), first, -1)))
    distance, predecessors = dijkstra(graph, directed=False, indices=start, return_predecessors=True)
    node = int(np.argmax(np.where(np.isfinite(distance), distance, -1)))
    path = [node]
    while predecessors[node] >= 0:
        node = int(predecessors[node])
        path.append(node)
    return np.array(path[::-1])


def line_paths(mask: np.ndarray, cfg: VectoriseConfig) -> list[np.ndarray]:
    """Ordered (n, 2) (row, col) cell paths covering a boolean mask: one per arm of each component."""
    labels, count = ndimage.label(mask, EIGHT_CONNECTED)
    paths = []
    for label in range(1, count + 1):
        cells = np.argwhere(labels == label)
        if len(cells) < cfg.min_cells:
            continue
        path = cells[diameter_path(cells)]
        if len(path) >= 2:
            paths.append(path)
        near = np.min(np.linalg.norm(cells[:, None, :] - path[None, :, :], axis=-1), axis=1) <= cfg.peel
        rest = np.zeros_like(mask)
        rest[tuple(cells[~near].T)] = True
        if rest.sum() >= cfg.min_cells:
            paths += line_paths(rest, cfg)
    return paths


def outline_paths(mask: np.ndarray, cfg: VectoriseConfig) -> list[np.ndarray]:
    """Closed (n, 2) (row, col) outer contours of the mask's components (first point repeated at the end)."""
    labels, count = ndimage.label(mask, EIGHT_CONNECTED)
    paths = []
    for label in range(1, count + 1):
        component = labels == label
        if component.sum() < cfg.min_cells:
            continue
        contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=len)[:, 0, ::-1]  # OpenCV gives (x=col, y=row)
        if len(contour) >= 2:
            paths.append(np.concatenate([contour, contour[:1]]))
    return paths


def ridge_cells(prob: np.ndarray, reach: int) -> np.ndarray:
    """Cells that peak in their row window or their column window of 2*reach+1 cells: the maximum of a
    window that is not flat (along a line the window is flat, so only the direction across it counts)."""
    size = 2 * reach + 1
    keep = np.zeros(prob.shape, bool)
    for axis in (0, 1):
        high = ndimage.maximum_filter1d(prob, size, axis=axis, mode="nearest")
        low = ndimage.minimum_filter1d(prob, size, axis=axis, mode="nearest")
        keep |= (prob >= high) & (high > low + RIDGE_CONTRAST)
    return keep


def distance_to_edge(mask: np.ndarray) -> np.ndarray:
    """Per cell of a boolean mask, the Euclidean distance (cells) to the nearest empty cell; the raster's border
    counts as empty."""
    return ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]


def crest_cells(mask: np.ndarray, inner: np.ndarray | None = None) -> np.ndarray:
    """The centre line of each band of a boolean mask: cells on the ridge of its Euclidean distance transform
    (the distance to the nearest empty cell), which is sharp however flat the probabilities inside are.

    A cell is on the ridge when, along its row or its column (any band crosses one of them), it is above both
    neighbours, or equal to one of them and above the other and the cell beyond (the two middle cells of an
    even-width band); a step up to a plateau, as at a band's flat end, is not a ridge. Cells on the mask's
    border are not either (their corners would fork the line's ends); components at most two cells wide stay whole.
    `inner`: the mask's `distance_to_edge`, when the caller has it already.
    """
    inner = distance_to_edge(mask) if inner is None else inner
    distance = np.pad(inner, 2)
    rows, cols = mask.shape
    keep = np.zeros(mask.shape, bool)

    def shifted(dr: int, dc: int) -> np.ndarray:
        return distance[2 + dr:2 + dr + rows, 2 + dc:2 + dc + cols]

    for dr, dc in ((0, 1), (1, 0)):
        before, after = shifted(-dr, -dc), shifted(dr, dc)
        beyond_before, beyond_after = shifted(-2 * dr, -2 * dc), shifted(2 * dr, 2 * dc)
        keep |= (inner > before) & (inner > after)
        keep |= (inner == after) & (inner > before) & (inner > beyond_after)
        keep |= (inner == before) & (inner > after) & (inner > beyond_before)
    labels, count = ndimage.label(mask, EIGHT_CONNECTED)
    width = np.asarray(ndimage.maximum(inner, labels, np.arange(count + 1)))[labels]  # per component
    return mask & ((keep & (inner > 1)) | (width <= 1))


def end_direction(xy: np.ndarray, end: int, reach: int = 3) -> np.ndarray | None:
    """Unit vector pointing out of the polyline (n, 2) at its first (`end` 0) or last (-1) point, from the point
    `reach` steps back; None for a degenerate line."""
    back = xy[min(reach, len(xy) - 1)] if end == 0 else xy[max(-reach - 1, -len(xy))]
    step = xy[end] - back
    norm = float(np.linalg.norm(step))
    return step / norm if norm > 0 else None


def extend_ends(xy: np.ndarray, lengths: tuple[float, float], half: tuple[float, float]) -> np.ndarray:
    """The polyline (n, 2) metres with both ends lengthened along their directions by `lengths` metres,
    clipped to the grid."""
    limit = np.asarray(half, np.float64)
    ends = []
    for end, length in zip((0, -1), lengths):
        direction = end_direction(xy, end)
        tip = xy[end].astype(np.float64)
        if direction is not None:
            tip = tip + direction * length
        ends.append(np.clip(tip, -limit, limit))
    return np.concatenate([ends[0][None], xy, ends[1][None]])


def vectorise(probabilities: np.ndarray, half: tuple[float, float], num_points: int,
              cfg: VectoriseConfig) -> list[Polyline]:
    """(types, rows, cols) probabilities -> polylines of `num_points` points, highest score first."""
    out = []
    for kind, prob in enumerate(probabilities):
        mask = prob >= cfg.threshold
        cell = 2 * np.asarray(half) / np.array(prob.shape[::-1])  # metres (x, y) per raster cell
        inner = np.zeros(prob.shape)  # band half widths (cells) that thinning removed
        if cfg.ridge > 0:
            mask &= ridge_cells(prob, cfg.ridge)
        if cfg.crest and kind not in cfg.closed_types:
            inner = distance_to_edge(mask)
            mask = crest_cells(mask, inner)
        if cfg.close > 0:  # a line seen in pieces is one element: Chamfer punishes fragments at both ends
            mask = ndimage.binary_closing(mask, EIGHT_CONNECTED, iterations=cfg.close, border_value=0) | mask
        paths = outline_paths(mask, cfg) if kind in cfg.closed_types else line_paths(mask, cfg)
        for path in paths:
            xy = cell_xy(path, prob.shape, half)
            if cfg.crest and kind not in cfg.closed_types:
                grow = (max(inner[tuple(path[0])] - 1, 0) * cell.mean(), max(inner[tuple(path[-1])] - 1, 0) * cell.mean())
                xy = extend_ends(xy, grow, half)
            line = LineString(xy)
            if line.length <= 0:
                continue
            out.append(Polyline(kind, resample_polyline(line, num_points), float(prob[tuple(path.T)].mean())))
    return sorted(out, key=lambda p: -p.score)
