"""BEV flips: the mirrored targets rasterise to the mirrored rasters, flips undo themselves, draws are
reproducible, and the packed ground view is flipped in its own resolution."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from perception.augment import Flip, draw_flips, flip_bev, flip_targets
from perception.config import GridConfig
from perception.ground_view import pack_ground
from perception.map_raster import raster_targets
from perception.targets import FrameTargets, dense_bev_targets

GRID = GridConfig(x_half=10.0, y_half=10.0, cells=20)


def targets() -> FrameTargets:
    boxes = np.array([[3.2, -4.7, -1.0, 1.8, 4.5, 1.6, 0.3], [-6.1, 2.4, -1.2, 0.6, 0.6, 1.7, -2.0]], np.float32)
    points = np.array([[[-8.0, -9.0], [-7.0, 0.0], [-2.5, 8.5]], [[4.0, 4.0], [6.0, 4.5], [9.0, 6.0]]], np.float32)
    return FrameTargets(boxes, np.array([[1.0, 5.0], [0.5, -0.2]], np.float32), np.array([0, 3]), np.array([7, 9]),
                        np.array([0, 1]), points)


def within_a_cell(a: np.ndarray, b: np.ndarray) -> bool:
    """Every marked cell of each mask is at most one cell (8-neighbourhood) from a marked cell of the other:
    OpenCV's line rasteriser is not exactly mirror-symmetric."""
    grow = lambda m: ndimage.binary_dilation(m, np.ones((3, 3), bool))
    return bool((a <= grow(b)).all() and (b <= grow(a)).all())


@pytest.mark.parametrize("flip", [Flip(x=True), Flip(y=True), Flip(x=True, y=True)])
def test_flipped_targets_rasterise_to_the_flipped_raster(flip):
    dims = [d for d, on in ((-1, flip.x), (-2, flip.y)) if on]
    original, mirrored = targets(), flip_targets(targets(), flip)
    dense, dense_mirrored = np.flip(dense_bev_targets(original, GRID), dims), dense_bev_targets(mirrored, GRID)
    assert np.array_equal(dense[0], dense_mirrored[0])  # agent centres: exact
    lines, lines_mirrored = np.flip(raster_targets(original, GRID, 1, 3), dims) > 0, raster_targets(mirrored, GRID, 1, 3) > 0
    assert all(within_a_cell(a, b) for a, b in zip(lines, lines_mirrored)) and lines[0].sum() > 5
    assert not within_a_cell(raster_targets(original, GRID, 1, 3)[0] > 0, lines_mirrored[0])  # the flip did move them


def test_flip_headings_and_velocities_golden():
    mirrored = flip_targets(targets(), Flip(x=True))
    assert mirrored.boxes[0, :2].tolist() == pytest.approx([-3.2, -4.7])
    assert mirrored.boxes[0, 6] == pytest.approx(np.pi - 0.3)  # heading (cos, sin) -> (-cos, sin)
    assert mirrored.velocities[0].tolist() == pytest.approx([-1.0, 5.0])
    back = flip_targets(flip_targets(targets(), Flip(x=True, y=True)), Flip(x=True, y=True))
    assert np.allclose(back.boxes, targets().boxes, atol=1e-6) and np.allclose(back.map_points, targets().map_points)
    assert flip_targets(targets(), Flip()) is not None and np.array_equal(flip_targets(targets(), Flip()).boxes, targets().boxes)


def test_packed_ground_view_is_flipped_at_its_own_resolution():
    camera, ground = torch.randn(5, 6, 6), torch.randn(1, 4, 24, 24)
    bev = torch.cat([camera, pack_ground(ground, 4)[0]])
    flipped = flip_bev(bev, Flip(x=True), ground_channels=64, ground_scale=4)
    assert torch.equal(flipped[:5], camera.flip(-1))
    assert torch.equal(flipped[5:], pack_ground(ground.flip(-1), 4)[0])
    assert torch.equal(flip_bev(flipped, Flip(x=True), 64, 4), bev)


def test_draws_are_a_function_of_seed_and_step():
    assert draw_flips(0, 12, 4, 0.5) == draw_flips(0, 12, 4, 0.5)
    assert draw_flips(0, 12, 4, 0.0) == [Flip()] * 4
    draws = [f for step in range(200) for f in draw_flips(0, step, 2, 0.5)]
    assert 0.4 < np.mean([f.x for f in draws]) < 0.6 and all(f.x == f.y for f in draws)  # half turns only
