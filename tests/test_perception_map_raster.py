"""Raster map head: the vectoriser's golden cases, raster targets, the loss, and the head end to end."""

import numpy as np
import pytest
import torch
from shapely.geometry import LineString

from perception.config import GridConfig, LossConfig
from perception.inference import decode_map
from perception.losses import map_loss
from perception.map_eval import chamfer
from perception.map_raster import (
    MapRasterHead,
    element_embeddings,
    raster_targets,
    segmentation_loss,
)
from perception.map_vectorise import VectoriseConfig, diameter_path, vectorise
from perception.targets import FrameTargets, resample_polyline
from tests.test_perception_train import tiny_config

HALF = (10.0, 10.0)  # a 20 x 20 raster of 1 m cells below


def raster(*cells: tuple[int, int], kind: int = 0, size: int = 20) -> np.ndarray:
    prob = np.zeros((3, size, size), np.float32)
    for r, c in cells:
        prob[kind, r, c] = 0.9
    return prob


def map_targets(kind: int, points: list[list[float]]) -> FrameTargets:
    return FrameTargets(np.zeros((0, 7), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int64),
                        np.zeros(0, np.int64), np.array([kind]), np.array([points], np.float32))


def test_straight_raster_line_vectorises_to_the_line_within_a_cell():
    prob = raster(*[(r, 7) for r in range(2, 18)])  # column 7: x = -10 + 7.5 = -2.5 m; rows 2..17: y -7.5 .. 7.5
    (line,) = vectorise(prob, HALF, 16, VectoriseConfig())
    assert line.kind == 0 and line.score == pytest.approx(0.9)
    assert np.allclose(line.points[:, 0], -2.5)
    ends = sorted([line.points[0, 1], line.points[-1, 1]])
    assert ends == pytest.approx([-7.5, 7.5])
    truth = np.stack([np.full(17, -2.3), np.linspace(-8.0, 8.0, 17)], 1)  # the drawn line, 0.2 m off the cell centres
    assert chamfer(line.points, truth) < 1.0  # within one cell


def test_two_components_give_two_polylines_and_empty_gives_none():
    prob = raster(*[(r, 3) for r in range(5, 15)], *[(r, 15) for r in range(5, 15)], kind=1)
    lines = vectorise(prob, HALF, 4, VectoriseConfig())
    assert [p.kind for p in lines] == [1, 1]
    assert sorted(round(float(p.points[:, 0].mean()), 1) for p in lines) == [-6.5, 5.5]
    assert vectorise(np.zeros((3, 20, 20), np.float32), HALF, 4, VectoriseConfig()) == []


def test_below_threshold_and_small_components_are_dropped():
    prob = raster(*[(r, 3) for r in range(5, 15)])
    prob[0] *= 0.3 / 0.9  # every cell at 0.3 < 0.4
    assert vectorise(prob, HALF, 4, VectoriseConfig(threshold=0.4)) == []
    assert vectorise(raster((1, 1), (1, 2)), HALF, 4, VectoriseConfig(min_cells=4)) == []


def test_a_cross_gives_one_polyline_per_arm():
    prob = raster(*[(10, c) for c in range(2, 18)], *[(r, 10) for r in range(2, 18) if abs(r - 10) > 0])
    lines = vectorise(prob, HALF, 5, VectoriseConfig(peel=1.5))
    assert len(lines) == 3  # the longest path (one full bar) and the two halves of the other bar


def test_diameter_path_orders_an_l_shape_end_to_end():
    cells = np.array([(0, c) for c in range(5)] + [(r, 4) for r in range(1, 5)])
    path = cells[diameter_path(cells)]
    assert {tuple(path[0]), tuple(path[-1])} == {(0, 0), (4, 4)}
    assert len(path) >= len(cells) - 1  # the corner cell may be cut diagonally (the geodesic)
    assert np.all(np.abs(np.diff(path, axis=0)).max(1) == 1)  # consecutive cells are neighbours


def test_closed_outline_for_crossings():
    prob = raster(*[(r, c) for r in range(4, 9) for c in range(4, 12) if r in (4, 8) or c in (4, 11)], kind=2)
    (outline,) = vectorise(prob, HALF, 9, VectoriseConfig())
    assert outline.kind == 2 and np.allclose(outline.points[0], outline.points[-1], atol=1e-5)
    square = LineString([[-5.5, -5.5], [1.5, -5.5], [1.5, -1.5], [-5.5, -1.5], [-5.5, -5.5]])
    assert chamfer(outline.points, resample_polyline(square, 40)) < 1.0


def test_raster_targets_mark_the_cells_a_polyline_crosses():
    grid = GridConfig(x_half=10.0, y_half=10.0, cells=10)
    masks = raster_targets(map_targets(1, [[-2.5, -9.0], [-2.5, 9.0]]), grid, scale=2, num_types=3)
    assert masks.shape == (3, 20, 20) and masks[0].sum() == 0 and masks[2].sum() == 0
    assert set(np.argwhere(masks[1])[:, 1].tolist()) == {7}  # x = -2.5 m -> column 7 of 1 m cells


def test_segmentation_loss_is_lower_for_the_right_mask():
    target = torch.zeros(3, 8, 8)
    target[0, :, 3] = 1
    good, bad = (target * 2 - 1) * 6, -(target * 2 - 1) * 6
    assert segmentation_loss(good, target, 10.0) < 0.1 < segmentation_loss(bad, target, 10.0)


def test_head_loss_and_decoding_end_to_end():
    cfg = tiny_config()
    cfg.model.map_head = "raster"
    head = MapRasterHead(cfg.model, cfg.grid, 3)
    bev = torch.randn(2, cfg.model.token_dim, cfg.grid.cells, cfg.grid.cells)
    out = head(bev)
    assert out["segmentation"].shape == (2, 3, 2 * cfg.grid.cells, 2 * cfg.grid.cells)
    one = {k: v[0] for k, v in out.items()}
    loss = map_loss(one, map_targets(0, [[0.0, -10.0], [0.0, 10.0]]), head.grid_half, LossConfig())
    loss["map_seg"].backward()
    assert head.refine[-1].weight.grad is not None and float(loss["map_seg"].detach()) > 0
    with torch.no_grad():  # force a line at x in [0, 1) m (column 16 of the 1 m raster): decoded as one element
        one["segmentation"][:] = -10.0
        one["segmentation"][0, 4:28, 16] = 10.0
    elements = decode_map(one, cfg.inference, 0.05, cfg.model.map_points)
    assert elements.types.tolist() == [0] and elements.points.shape == (1, cfg.model.map_points, 2)
    assert np.allclose(elements.points[0, :, 0].numpy(), 0.5)
    assert elements.embeddings.shape == (1, cfg.model.token_dim) and elements.embeddings.requires_grad


def test_element_embeddings_sample_the_features_along_the_polyline():
    features = torch.zeros(2, 4, 4)
    features[0, :, 1] = 1.0  # channel 0 is 1 in column 1 (x in [-5, 0) m for half 10)
    type_embed = torch.tensor([[0.0, 0.0], [0.0, 5.0]])
    points = torch.tensor([[[-2.5, -5.0], [-2.5, 5.0]]])
    tokens = element_embeddings(features, type_embed, torch.tensor([1]), points, torch.tensor([10.0, 10.0]))
    assert tokens.tolist() == [[1.0, 5.0]]
    assert element_embeddings(features, type_embed, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, 2),
                              torch.tensor([10.0, 10.0])).shape == (0, 2)


def test_ridge_thins_a_wide_band_to_its_crest():
    prob = np.zeros((3, 20, 20), np.float32)
    for col, value in zip(range(5, 10), (0.5, 0.7, 0.9, 0.7, 0.5)):  # a 5-cell-wide vertical band, crest at column 7
        prob[0, :, col] = value
    (line,) = vectorise(prob, HALF, 6, VectoriseConfig(threshold=0.4, ridge=2))
    assert np.allclose(line.points[:, 0], -2.5) and line.score == pytest.approx(0.9)
    blob = vectorise(prob, HALF, 6, VectoriseConfig(threshold=0.4, ridge=0))[0]  # without: a path through the blob
    assert blob.score < 0.9 and not np.allclose(blob.points[:, 0], -2.5)


def test_ground_sampling_adds_bev_channels():
    from perception.model import BevPerception

    cfg = tiny_config()
    cfg.grid.ground_height = -1.84
    model = BevPerception(cfg)
    assert model.ground_transform.grid.heights == (-1.84,)
    assert model.bev_encoder.input.in_channels == 2 * cfg.model.fpn_channels


def test_model_with_the_raster_head_gives_tokens_with_gradient(tmp_path):
    from perception.inference import outputs_to_tokens, per_keyframe
    from perception.inputs import ImageCache, load_camera_batch
    from perception.model import BevPerception
    from tests.test_perception_train import synthetic_dataroot

    cfg = tiny_config()
    cfg.model.map_head = "raster"
    cfg.inference.map_raster_threshold = 0.05  # an untrained head: let its weak cells through
    records = synthetic_dataroot(tmp_path)
    out = BevPerception(cfg)(load_camera_batch(records, ImageCache(tmp_path, cfg.model.image_size)))
    with torch.no_grad():
        out["map"]["segmentation"][:, 1, 5:25, 10] = 10.0  # a road boundary along x = -5.5 m in both keyframes
    tokens = outputs_to_tokens(per_keyframe(out), records, cfg)
    for record in records:
        t = tokens[record.sample_token]
        assert 1 in t.map_types.tolist() and t.map.shape[1] == cfg.model.token_dim and t.map.requires_grad
        assert t.map_points.shape[1:] == (cfg.model.map_points, 2)
