"""Tracking identity consistency: do the predicted ids follow the GT instances?

Per keyframe, predictions are matched to GT agents (Hungarian on centre distance, within
`match_distance` m). Along each GT track (in scene order) the matched predicted ids form a
sequence; an ID switch is a change between consecutive matched keyframes.
  id_switches              total switches
  id_switches_per_100      switches per 100 matched GT boxes
  tracks_single_id         fraction of GT tracks matched in >= 2 keyframes that kept one id
  matched_fraction         fraction of GT boxes matched to some prediction (detection recall)
"""

from __future__ import annotations

import numpy as np

from perception.inference import gt_track_ids


def tracking_metrics(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]], match_distance: float) -> dict:
    """frames: per keyframe in scene order (pred_centres (A, 2), pred_ids (A,), gt_centres (G, 2), gt_ids (G,), scene)."""
    sequences: dict[tuple[str, int], list[int]] = {}
    num_gt = matched = 0
    for pred_centres, pred_ids, gt_centres, gt_ids, scene in frames:
        num_gt += len(gt_ids)
        # gt_track_ids assigns GT to predictions; invert it to get the predicted id of each GT agent
        assigned = gt_track_ids(pred_centres, gt_centres, gt_ids, match_distance)
        for pred_index in np.flatnonzero(assigned >= 0):
            sequences.setdefault((scene, int(assigned[pred_index])), []).append(int(pred_ids[pred_index]))
            matched += 1
    switches = sum(int(np.count_nonzero(np.diff(ids))) for ids in sequences.values())
    long_tracks = [ids for ids in sequences.values() if len(ids) >= 2]
    return {
        "id_switches": switches,
        "id_switches_per_100": 100.0 * switches / max(matched, 1),
        "tracks_single_id": float(np.mean([len(set(ids)) == 1 for ids in long_tracks])) if long_tracks else float("nan"),
        "matched_fraction": matched / max(num_gt, 1),
        "gt_tracks": len(sequences),
    }
