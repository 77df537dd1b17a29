"""Centre-head detection: dense targets land in the right BEV cell, and decoding the targets
themselves gives back the GT boxes (so targets and decoder share one frame). Hand-computed answers."""

import numpy as np
import torch

from perception.centre_head import CentreHead, local_maxima
from perception.config import BevModelConfig, GridConfig
from perception.losses import centre_heatmap_loss
from perception.targets import centre_targets, frame_targets
from vla_world.data.synthetic import synthetic_record

GRID = GridConfig(x_half=25.0, y_half=25.0, cells=50)
CAR, PEDESTRIAN = 0, 5


def targets_of_two_agents():
    record = synthetic_record(agents=[("car", 3.2, 10.7, 0.0, 1.0), ("pedestrian", -4.0, 6.0, 0.5, 0.0)])
    return frame_targets(record, GRID, 10)


def test_heatmap_peaks_at_the_centre_cell_of_each_class():
    dense = centre_targets(targets_of_two_agents(), GRID, 10)
    # car (3.2, 10.7): column floor(28.2) = 28, row floor(35.7) = 35; pedestrian (-4, 6): column 21, row 31
    assert dense.heatmap[CAR, 35, 28] == 1.0 and dense.heatmap[PEDESTRIAN, 31, 21] == 1.0
    assert (dense.heatmap == 1.0).sum() == 2
    assert dense.heatmap[CAR, 14, 28] < 1e-6  # the row mirrored across the ego is empty
    # regression is supervised on 3x3 cells per agent; the car's centre cell holds its offset in cells
    assert dense.mask.sum() == 18
    np.testing.assert_allclose(dense.regression[:2, 35, 28], [0.2 - 0.5, 0.7 - 0.5], atol=1e-5)
    np.testing.assert_allclose(dense.regression[8:, 35, 28], [0.0, 1.0])  # velocity m/s


def test_decoding_the_targets_recovers_the_gt_boxes():
    targets = targets_of_two_agents()
    dense = centre_targets(targets, GRID, 10)
    head = CentreHead(BevModelConfig(num_agent_queries=4), GRID, 10)
    heatmap = torch.logit(torch.from_numpy(dense.heatmap).clamp(1e-4, 1 - 1e-4))[None]
    scores = heatmap.sigmoid().amax(1)
    cells = torch.where(local_maxima(scores), scores, torch.zeros_like(scores)).flatten(1).topk(2, 1).indices
    out = head.gather(torch.zeros(1, 64, 50, 50), heatmap, torch.from_numpy(dense.regression)[None], cells)
    order = out["logits"][0].argmax(-1).argsort()  # car first
    np.testing.assert_allclose(out["centres"][0, order].numpy(), targets.boxes[:, :2], atol=1e-4)
    np.testing.assert_allclose(out["z"][0, order].numpy(), targets.boxes[:, 2], atol=1e-4)
    np.testing.assert_allclose(out["log_size"][0, order].exp().numpy(), targets.boxes[:, 3:6], atol=1e-4)
    np.testing.assert_allclose(out["velocity"][0, order].numpy(), targets.velocities, atol=1e-5)


def test_forward_keeps_only_local_maxima_as_confident_queries():
    torch.manual_seed(0)
    head = CentreHead(BevModelConfig(token_dim=16, num_agent_queries=5), GridConfig(x_half=8.0, y_half=8.0, cells=8), 10)
    out = head(torch.randn(2, 16, 8, 8))
    assert out["logits"].shape == (2, 5, 10) and out["centres"].shape == (2, 5, 2) and out["embeddings"].shape == (2, 5, 16)
    assert float(out["centres"].detach().abs().max()) <= 8.0
    peaks = local_maxima(out["heatmap"].sigmoid().amax(1)).flatten(1).sum(1)
    confident = (out["logits"].amax(-1) > -20.0).sum(1)
    assert torch.equal(confident, peaks.clamp(max=5))


def test_heatmap_loss_prefers_the_right_peak():
    target = torch.zeros(1, 5, 5)
    target[0, 2, 2], target[0, 2, 1], target[0, 2, 3] = 1.0, 0.5, 0.5
    right, wrong = torch.full((1, 5, 5), -5.0), torch.full((1, 5, 5), -5.0)
    right[0, 2, 2], wrong[0, 0, 0] = 5.0, 5.0
    assert centre_heatmap_loss(right, target) < 0.1 * centre_heatmap_loss(wrong, target)
