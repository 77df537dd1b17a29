"""Online multi-object tracking by association: detections of consecutive keyframes of a scene are
linked by Hungarian matching on centre distance, after moving each track forward with its velocity.

Why association (not carried-over track queries as in MOTR/UniAD): it needs no sequential
training (which would multiply CPU cost by the clip length) and the decoder already predicts
velocity. Positions are compared in the nuScenes global frame (records' `lidar2global`), because
each record's boxes live in its own LiDAR frame and the ego moves between keyframes.

    tracker = CentreTracker(max_distance=3.0)
    ids = tracker.update(record, boxes, velocities, classes)   # call per keyframe, in scene order
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception.matching import hungarian
from vla_world.data.records import SampleRecord

MICROSECONDS = 1e6


@dataclass
class Track:
    track_id: int
    centre: np.ndarray  # (2,) global x, y metres
    velocity: np.ndarray  # (2,) global m/s
    cls: int
    missed: int = 0  # consecutive keyframes without a detection


def to_global(record: SampleRecord, xy: np.ndarray, vectors: bool = False) -> np.ndarray:
    """LiDAR-frame (N, 2) points (or velocity vectors) -> global (N, 2), ignoring z (flat ground)."""
    transform = np.asarray(record.lidar2global, np.float64)
    out = np.asarray(xy, np.float64).reshape(-1, 2) @ transform[:2, :2].T
    return out if vectors else out + transform[:2, 3]


class CentreTracker:
    """Tracks of one scene; call `reset()` between scenes.

    `own_velocity`: weight of the track's own velocity (its last two matched global positions over
    the time between them) against the detector's in the constant-velocity prediction; the
    detector's velocity is noisy (about 2 m/s error on the tiny model), a track's own displacement
    is not once it has two detections. `same_class`: never link detections of different classes
    (a car seen as a truck for one frame then starts a new track)."""

    def __init__(self, max_distance: float, max_missed: int = 1, own_velocity: float = 0.0,
                 same_class: bool = True) -> None:
        self.max_distance = max_distance
        self.max_missed = max_missed
        self.own_velocity = own_velocity
        self.same_class = same_class
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.next_id = 0
        self.last_timestamp: int | None = None

    def update(self, record: SampleRecord, boxes: torch.Tensor, velocities: torch.Tensor, classes: torch.Tensor) -> np.ndarray:
        """Assign a track id to each detection (N,) of this keyframe; new ids for unmatched ones."""
        dt = 0.0 if self.last_timestamp is None else (record.timestamp - self.last_timestamp) / MICROSECONDS
        self.last_timestamp = record.timestamp
        centres = to_global(record, boxes[:, :2].numpy())
        vels = to_global(record, velocities.numpy(), vectors=True)
        classes_np = classes.numpy()
        predicted = np.array([t.centre + t.velocity * dt for t in self.tracks]).reshape(-1, 2)
        distance = np.linalg.norm(centres[:, None] - predicted[None], axis=-1)
        if self.same_class:
            distance[classes_np[:, None] != np.array([t.cls for t in self.tracks])[None]] = 1e6
        ids = np.full(len(centres), -1, np.int64)
        matched_tracks = set()
        rows, cols = hungarian(torch.from_numpy(distance))
        for det, trk in zip(rows, cols):
            if distance[det, trk] <= self.max_distance:
                ids[det] = self.tracks[trk].track_id
                self.tracks[trk] = self._moved(self.tracks[trk], centres[det], vels[det], int(classes_np[det]), dt)
                matched_tracks.add(trk)
        self._age_unmatched(matched_tracks, dt)
        for det in np.flatnonzero(ids < 0):
            ids[det] = self.next_id
            self.tracks.append(Track(self.next_id, centres[det], vels[det], int(classes_np[det])))
            self.next_id += 1
        return ids

    def _moved(self, track: Track, centre: np.ndarray, detector_velocity: np.ndarray, cls: int, dt: float) -> Track:
        """The track after a matched detection (its centre is still the previous detection's, or a
        coasted track's prediction, whose own velocity is kept)."""
        velocity = detector_velocity
        if self.own_velocity > 0 and dt > 0:
            own = (centre - track.centre) / dt if track.missed == 0 else track.velocity
            velocity = self.own_velocity * own + (1 - self.own_velocity) * detector_velocity
        return Track(track.track_id, centre, velocity, cls)

    def _age_unmatched(self, matched: set[int], dt: float) -> None:
        kept = []
        for index, track in enumerate(self.tracks):
            if index not in matched:
                track.missed += 1
                track.centre = track.centre + track.velocity * dt  # coast, so the next prediction starts here
            if track.missed <= self.max_missed:
                kept.append(track)
        self.tracks = kept
