"""Frames: a LiDAR point lands on the right camera pixel and BEV cell; the view transform puts
image evidence on the camera ray and nowhere behind the camera. Hand-computed answers."""

import numpy as np
import torch

from perception.config import GridConfig
from perception.geometry import (
    cell_centres,
    cell_index,
    project_to_cameras,
    sampling_grid,
)
from perception.view_transform import ProjectionViewTransform

K = torch.tensor([[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]])
IMAGE_SIZE = torch.tensor([[160.0, 90.0]])


def forward_camera() -> torch.Tensor:
    """Camera at the LiDAR origin looking along +y: camera x = LiDAR +x, camera y = LiDAR -z, optical axis = LiDAR +y."""
    sensor2lidar = torch.eye(4)
    sensor2lidar[:3, :3] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    return sensor2lidar[None]


def test_point_projects_to_hand_computed_pixel():
    pixels, depth = project_to_cameras(torch.tensor([[2.0, 10.0, -0.5]]), forward_camera(), K[None])
    # camera coords (2, 0.5, 10): u = 100 * 2 / 10 + 80 = 100, v = 100 * 0.5 / 10 + 45 = 50
    assert torch.allclose(pixels[0, 0], torch.tensor([100.0, 50.0]), atol=1e-4)
    assert abs(float(depth[0, 0]) - 10.0) < 1e-5


def test_point_behind_camera_is_not_visible():
    _, visible = sampling_grid(torch.tensor([[0.0, -10.0, 0.0], [0.0, 10.0, 0.0]]), forward_camera(), K[None], IMAGE_SIZE)
    assert visible.tolist() == [[False, True]]


def test_bev_cell_of_a_point_and_its_centre():
    grid = GridConfig(x_half=25.0, y_half=25.0, cells=50)
    # x = 3.2 -> column floor(28.2) = 28; y = 10.7 -> row floor(35.7) = 35 (rows grow forward)
    assert cell_index(np.array([[3.2, 10.7]]), grid).tolist() == [[35, 28]]
    assert torch.allclose(cell_centres(grid)[35, 28], torch.tensor([3.5, 10.5]))


def test_view_transform_puts_a_bright_column_on_its_ray():
    grid = GridConfig(x_half=8.0, y_half=8.0, cells=16, heights=(0.0,))
    # One feature channel (16 columns of 10 px), bright in columns 9 and 10: full brightness for u in [95, 105].
    features = torch.zeros(1, 1, 1, 9, 16)
    features[..., 9:11] = 1.0
    bev = ProjectionViewTransform(grid)(features, forward_camera()[None], K[None, None], IMAGE_SIZE[None])[0, 0]
    on_ray = cell_index(np.array([[0.5, 2.5]]), grid)[0]  # cell centre (0.5, 2.5): u = 80 + 100 * 0.5 / 2.5 = 100
    behind = cell_index(np.array([[0.5, -2.5]]), grid)[0]
    off_ray = cell_index(np.array([[-4.5, 5.5]]), grid)[0]  # u = 80 - 100 * 4.5 / 5.5 = 1.8
    assert abs(float(bev[on_ray[0], on_ray[1]]) - 1.0) < 1e-5
    assert bev[behind[0], behind[1]] == 0
    assert bev[off_ray[0], off_ray[1]] == 0


def test_dense_bev_targets_use_the_bev_layout():
    from perception.targets import dense_bev_targets, frame_targets
    from vla_world.data.synthetic import synthetic_record

    grid = GridConfig(x_half=25.0, y_half=25.0, cells=50)
    masks = dense_bev_targets(frame_targets(synthetic_record(agents=[("car", 3.2, 10.7, 0.0, 1.0)]), grid, 10), grid)
    assert masks.shape == (4, 50, 50)
    # centre cell (row 35, col 28) and its 3x3 neighbourhood; nothing at the mirrored row 14
    assert masks[0, 34:37, 27:30].sum() == 9 and masks[0].sum() == 9
    # lane dividers at x = -1.75 / +1.75 -> columns 23 and 26, along every row
    assert masks[1, :, 23].sum() == 50 and masks[1, :, 26].sum() == 50 and masks[2:].sum() == 0


def test_sparse_view_transform_equals_grid_sample_average():
    """The sparse-matrix transform must equal grid_sample averaged over the (camera, height) pairs that see a point."""
    import torch.nn.functional as F

    grid = GridConfig(x_half=8.0, y_half=8.0, cells=16, heights=(-1.0, 0.5))
    second = forward_camera()[0].clone()
    second[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looks along +x
    cams = torch.stack([forward_camera()[0], second])
    torch.manual_seed(0)
    features = torch.randn(1, 2, 3, 9, 16)
    transform = ProjectionViewTransform(grid)
    bev = transform(features, cams[None], K.expand(2, 3, 3)[None], IMAGE_SIZE.expand(2, 2)[None])[0]
    coords, visible = sampling_grid(transform.pillar_points, cams, K.expand(2, 3, 3), IMAGE_SIZE.expand(2, 2))
    sampled = F.grid_sample(features[0], coords[:, None], align_corners=False)[:, :, 0] * visible[:, None]  # (cams, C, N)
    summed = sampled.sum(0).reshape(3, 2, -1).sum(1)
    count = visible.float().sum(0).reshape(2, -1).sum(0).clamp(min=1.0)
    assert torch.allclose(bev, (summed / count).reshape(3, 16, 16), atol=1e-5)
    assert visible.any(1).all()  # both cameras contribute
