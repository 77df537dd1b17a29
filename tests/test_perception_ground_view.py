"""Ground view (inverse perspective mapping): the plane from the pose, golden pictures from a camera looking
straight down, packing into BEV channels, and the raster map head and the model reading it."""

import numpy as np
import pytest
import torch

from perception.config import GridConfig
from perception.ground_view import (
    GroundView,
    ground_plane,
    ground_points,
    pack_ground,
    unpack_ground,
)
from perception.map_raster import MapRasterHead, raster_targets
from perception.map_vectorise import VectoriseConfig, crest_cells, vectorise
from perception.targets import FrameTargets
from tests.test_perception_train import tiny_config

HEIGHT = 2.0  # m: the LiDAR above the ground in the golden cases


def lidar2global(pitch: float = 0.0) -> torch.Tensor:
    """LiDAR HEIGHT m above the global ground, pitched by `pitch` rad about its x axis."""
    c, s = np.cos(pitch), np.sin(pitch)
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    pose[2, 3] = HEIGHT
    return torch.tensor(pose)


def test_ground_points_lie_on_the_global_ground_also_when_the_lidar_is_tilted():
    xy = torch.tensor([[0.0, 0.0], [3.0, 10.0], [-5.0, -20.0]], dtype=torch.float64)
    level = ground_points(xy, ground_plane(lidar2global()))
    assert torch.allclose(level[:, 2], torch.full((3,), -HEIGHT, dtype=torch.float64))
    pose = lidar2global(pitch=np.radians(1.0))
    tilted = ground_points(xy, ground_plane(pose))
    world = tilted @ pose[:3, :3].T + pose[:3, 3]
    assert torch.allclose(world[:, 2], torch.zeros(3, dtype=torch.float64), atol=1e-9)
    assert abs(float(tilted[1, 2] + HEIGHT)) > 0.15  # a degree of pitch moves the road 10 m ahead by ~0.17 m


def down_camera() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One 100x100 pinhole camera at the LiDAR origin looking straight down (image right = +x, image down = -y)."""
    sensor2lidar = torch.eye(4)
    sensor2lidar[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]])
    intrinsics = torch.tensor([[50.0, 0, 50], [0, 50.0, 50], [0, 0, 1]])
    return sensor2lidar[None], intrinsics[None], torch.tensor([[100.0, 100.0]])


def test_a_camera_looking_down_gives_the_image_as_the_ground_picture():
    # The camera sees |x|, |y| < HEIGHT (its half-width at the ground); left half of its image bright, right half dark.
    image = torch.zeros(1, 3, 100, 100)
    image[..., :50] = 1.0
    view = GroundView(GridConfig(x_half=4.0, y_half=4.0, cells=8), scale=2)  # 16x16 cells of 0.5 m
    picture = view(image[None], *[t[None] for t in down_camera()], ground_plane(lidar2global()).float()[None])[0]
    assert picture.shape == (4, 16, 16)
    visible = picture[3]
    assert visible[4:12, 4:12].all() and not visible[0].any() and not visible[:, 15].any()  # |x|, |y| > 2 m: unseen
    colour = picture[0]
    assert (colour[5:11, 4:7] == 1).all() and (colour[5:11, 9:12] == 0).all()  # x < 0 bright, x > 0 dark
    assert (colour[~visible.bool()] == 0).all()


def test_pack_and_unpack_are_inverse():
    picture = torch.randn(2, 4, 12, 12)
    packed = pack_ground(picture, 4)
    assert packed.shape == (2, 64, 3, 3)
    assert torch.equal(unpack_ground(packed, 4), picture)


def test_crest_thins_a_flat_band_to_its_centre_line():
    band = np.zeros((20, 20), bool)
    band[8:13, 2:18] = True  # five rows wide, flat inside (a confident head)
    crest = crest_cells(band)
    assert np.unique(np.argwhere(crest)[:, 0]).tolist() == [10]  # not the edges, and the flat ends do not fork
    assert not crest[:, :3].any() and not crest[:, 17:].any()
    even = np.zeros((20, 20), bool)
    even[8:12, 2:18] = True
    assert np.unique(np.argwhere(crest_cells(even)[:, 5:15])[:, 0]).tolist() == [9, 10]
    prob = np.zeros((3, 20, 20), np.float32)
    prob[0][band] = 1.0
    (line,) = vectorise(prob, (10.0, 10.0), 8, VectoriseConfig(crest=True, peel=2.5))
    assert np.abs(line.points[:, 1] - 0.5).max() < 0.01  # row 10 is y = 0.5 m
    assert sorted(np.round(line.points[[0, -1], 0], 2).tolist()) == [-7.5, 7.5]  # ends grown back to the band's
    diagonal = vectorise(prob, (10.0, 10.0), 8, VectoriseConfig(peel=2.5))[0]
    assert np.abs(diagonal.points[:, 1] - 0.5).max() > 1.5  # without the crest the path runs corner to corner


def test_crest_of_a_diagonal_band_is_one_cell_wide():
    band = np.zeros((20, 20), bool)
    for i in range(2, 18):
        band[i, max(i - 2, 0):i + 3] = True  # five cells wide along each row, at 45 degrees
    crest = crest_cells(band)
    assert all(crest[i].sum() == 1 and crest[i, i] for i in range(5, 15))


def test_closed_crossings_are_filled_in_the_raster_targets_and_open_pieces_are_not():
    square = [[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0], [-3.0, 3.0], [-3.0, -3.0]]
    cut = [[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0]]
    grid = GridConfig(x_half=10.0, y_half=10.0, cells=20)
    for points, centre_filled in ((square, True), (cut, False)):
        targets = FrameTargets(np.zeros((0, 7), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.int64),
                               np.zeros(0, np.int64), np.array([2]), np.array([points], np.float32))
        mask = raster_targets(targets, grid, 1, 3)
        assert mask[2, 10, 10] == float(centre_filled) and mask[2, 7, 7] == 1.0


def test_raster_head_reads_the_ground_view_and_refuses_a_missing_one():
    cfg = tiny_config()
    cfg.model.map_head, cfg.model.ground_view_scale = "raster", 4
    grid = cfg.grid
    head = MapRasterHead(cfg.model, grid, 3)
    bev = torch.randn(1, cfg.model.token_dim, grid.cells, grid.cells)
    ground = torch.randn(1, 4, 4 * grid.cells, 4 * grid.cells)
    out = head(bev, ground)
    size = cfg.model.map_raster_scale * grid.cells
    assert out["segmentation"].shape == (1, 3, size, size)
    out["segmentation"].sum().backward()
    assert head.ground.stem[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ground view"):
        head(bev)


def test_ground_view_scale_must_be_a_multiple_of_the_raster_scale():
    cfg = tiny_config()
    cfg.model.ground_view_scale, cfg.model.map_raster_scale = 3, 2
    with pytest.raises(ValueError, match="multiple of map_raster_scale"):
        cfg.model.validate()


def test_model_with_the_ground_view_end_to_end(tmp_path):
    from perception.inference import outputs_to_tokens, per_keyframe
    from perception.inputs import ImageCache, image_cache, load_camera_batch
    from perception.model import BevPerception
    from perception.tail import PerceptionTail, frozen_features
    from tests.test_perception_train import synthetic_dataroot

    cfg = tiny_config()
    cfg.model.map_head, cfg.model.ground_view_scale, cfg.model.ground_image_size = "raster", 2, (80, 45)
    records = synthetic_dataroot(tmp_path)
    model = BevPerception(cfg)
    batch = load_camera_batch(records, image_cache(tmp_path, cfg.model))
    assert batch.ground_images.shape[-2:] == (45, 80)
    out = model(batch)
    features = frozen_features(model, batch)
    assert features.bev.shape[1] == cfg.model.fpn_channels + 4 * 2 * 2
    assert torch.allclose(PerceptionTail(model)(features)["map"]["segmentation"], out["map"]["segmentation"], atol=1e-5)
    tokens = outputs_to_tokens(per_keyframe(out), records, cfg)
    assert set(tokens) == {r.sample_token for r in records}
    with pytest.raises(ValueError, match="ground_image_size"):
        model(load_camera_batch(records, ImageCache(tmp_path, cfg.model.image_size)))


def test_pillar_heights_from_the_ground_follow_the_tilted_plane():
    from perception.view_transform import ProjectionViewTransform

    grid = GridConfig(x_half=10.0, y_half=10.0, cells=4, heights=(0.5, 1.5), heights_from_ground=True)
    transform = ProjectionViewTransform(grid)
    pose = lidar2global(pitch=np.radians(1.0))
    points = transform.points(ground_plane(pose).float()).double()
    world = points @ pose[:3, :3].T + pose[:3, 3]
    assert torch.allclose(world[:16, 2], torch.full((16,), 0.5, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(world[16:, 2], torch.full((16,), 1.5, dtype=torch.float64), atol=1e-3)
    with pytest.raises(ValueError, match="ground plane"):
        transform.points(None)
    assert torch.equal(ProjectionViewTransform(GridConfig(cells=4)).points(None)[:, 2].unique(),
                       torch.tensor(GridConfig().heights))
