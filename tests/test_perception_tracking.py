"""Association tracking keeps ids of constant-velocity agents while the ego moves."""

import numpy as np
import torch

from perception.tracking import CentreTracker
from vla_world.data.synthetic import synthetic_record


def record_at(frame: int, ego_y: float):
    record = synthetic_record(token=f"t{frame}")
    record.timestamp = frame * 500_000
    record.lidar2global = np.eye(4)
    record.lidar2global[1, 3] = ego_y  # ego drives +y in the global frame
    return record


def test_ids_survive_ego_motion_and_new_agents_get_new_ids():
    tracker = CentreTracker(max_distance=1.0)
    cls = torch.tensor([0, 5])
    vel = torch.tensor([[0.0, 4.0], [0.0, 0.0]])  # car drives +y at 4 m/s; pedestrian stands still
    ids0 = tracker.update(record_at(0, 0.0), torch.tensor([[0.0, 10.0, 0, 2, 4, 2, 0], [5.0, 5.0, 0, 1, 1, 2, 0]]), vel, cls)
    # 0.5 s later the ego has moved 5 m: car global y 12 -> LiDAR y 7; pedestrian global y 5 -> LiDAR y 0
    ids1 = tracker.update(record_at(1, 5.0), torch.tensor([[0.0, 7.0, 0, 2, 4, 2, 0], [5.0, 0.0, 0, 1, 1, 2, 0]]), vel, cls)
    ids2 = tracker.update(record_at(2, 10.0), torch.tensor([[-15.0, 0.0, 0, 2, 4, 2, 0]]), torch.zeros(1, 2), cls[:1])
    assert ids0.tolist() == [0, 1]
    assert ids1.tolist() == [0, 1]
    assert ids2.tolist() == [2]
