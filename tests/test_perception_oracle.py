"""Oracle tokens from known samples: shapes, counts, determinism, clipping, raster orientation."""

import numpy as np
import torch

from perception.config import GridConfig, PerceptionConfig
from perception.oracle import gt_raster, oracle_tokens
from perception.targets import frame_targets
from vla_world.data.synthetic import synthetic_record

AGENTS = [("car", 3.0, 10.0, 0.0, 5.0), ("pedestrian", -4.0, 6.0, 1.0, 0.0), ("truck", 40.0, 0.0, 0.0, 0.0)]


def test_shapes_and_counts_follow_the_ground_truth_in_the_grid():
    cfg = PerceptionConfig()
    tokens = oracle_tokens(synthetic_record(agents=AGENTS), cfg)
    d = cfg.model.token_dim
    # the truck at x = 40 m is outside the +-25 m grid; the two +-30 m lane dividers are clipped to +-25 m
    assert tokens.counts() == {"scene": cfg.num_scene_tokens, "agents": 2, "map": 2}
    assert tokens.scene.shape == (36, d) and tokens.agents.shape == (2, d) and tokens.map.shape == (2, d)
    assert tokens.agent_classes.tolist() == [0, 5]  # car, pedestrian
    assert tokens.map_points.shape == (2, cfg.model.map_points, 2)
    assert torch.allclose(tokens.map_points[0, [0, -1], 1].abs(), torch.tensor([25.0, 25.0]))
    assert torch.allclose(tokens.map_points[0, :, 0], torch.full((cfg.model.map_points,), -1.75))


def test_tokens_are_deterministic_and_depend_on_the_boxes():
    cfg = PerceptionConfig()
    a = oracle_tokens(synthetic_record(agents=AGENTS), cfg)
    b = oracle_tokens(synthetic_record(agents=AGENTS), cfg)
    moved = oracle_tokens(synthetic_record(agents=[("car", 3.0, 12.0, 0.0, 5.0)] + AGENTS[1:]), cfg)
    for name in ("scene", "agents", "map"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.allclose(a.agents[0], moved.agents[0])
    assert torch.equal(a.agents[1], moved.agents[1])


def test_empty_scene_gives_empty_agent_tokens():
    tokens = oracle_tokens(synthetic_record(agents=[]), PerceptionConfig())
    assert tokens.agents.shape == (0, 64) and tokens.agent_boxes.shape == (0, 7)


def test_raster_puts_a_forward_car_ahead_and_lengthwise():
    grid = GridConfig(x_half=25.0, y_half=25.0, cells=50)
    targets = frame_targets(synthetic_record(agents=[("car", 0.0, 10.0, 0.0, 5.0)]), grid, 10)
    occupied = np.argwhere(gt_raster(targets, grid, 50)[-1] > 0)
    rows, cols = occupied[:, 0], occupied[:, 1]
    # raster row 0 is +y = 25 m: y = 10 m -> row 15; x = 0 -> col 25; heading +y: 4.6 m along rows, 1.9 m across
    assert abs(rows.mean() - 15) <= 1 and abs(cols.mean() - 25) <= 1
    assert np.ptp(rows) > np.ptp(cols)
