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


def run_track(tracker: CentreTracker, ys: list[float | None], detector_vy: list[float]) -> list[int]:
    """Ids given to one car at global y (None: not detected), the ego at rest; the detector's vy per frame."""
    ids = []
    for frame, (y, vy) in enumerate(zip(ys, detector_vy)):
        boxes = torch.tensor([[0.0, y, 0, 2, 4, 2, 0]]) if y is not None else torch.zeros(0, 7)
        vel = torch.tensor([[0.0, vy]]) if y is not None else torch.zeros(0, 2)
        cls = torch.zeros(len(boxes), dtype=torch.long)
        ids += tracker.update(record_at(frame, 0.0), boxes, vel, cls).tolist()
    return ids


def test_own_velocity_keeps_the_id_when_the_detector_velocity_is_wrong():
    ys, vy = [10.0, 14.0, 18.0, 22.0], [8.0, 0.0, 0.0, 0.0]  # 8 m/s; the detector says 0 after the first frame
    assert run_track(CentreTracker(2.5), ys, vy) == [0, 0, 1, 2]
    assert run_track(CentreTracker(2.5, own_velocity=1.0), ys, vy) == [0, 0, 0, 0]


def test_a_track_coasts_through_max_missed_frames():
    ys, vy = [10.0, 12.0, None, None, 18.0], [4.0] * 5
    assert run_track(CentreTracker(1.0, max_missed=1), ys, vy) == [0, 0, 1]
    assert run_track(CentreTracker(1.0, max_missed=2), ys, vy) == [0, 0, 0]
