"""The mini world's held-out test split: disjoint, with the train behaviour mix, big enough, and additive.

Val chooses settings and test reports, so the test scenes must be scenes no setting was tuned
on, of the same kinds as train, and adding them must leave every train/val scene untouched
(numbers reported on val before the test split existed stay comparable).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from planning.evaluate import has_context_frames
from planning.metrics import CONVENTIONS, get_convention
from vla_world.data import RecordError, load_records
from vla_world.data.splits import SPLITS_FILE, check_disjoint
from vla_world.mini_world import make_mini_world
from vla_world.mini_world.generate import (
    DEFAULT_TEST_SCENES,
    KEYFRAME_SECONDS,
    WorldSpec,
    plan_scenes,
)
from vla_world.mini_world.scenarios import held_out_mix
from vla_world.mini_world.summary import split_mix, summarize_world

VERSION = "v1.0-mini"
# 3 train/val scenes (train: left, right; val: right) and 2 test scenes, the fewest that can hold the
# train mix; 5 s scenes so that the strictest convention still counts 2 samples per scene.
TINY = {"num_scenes": 3, "seed": 0, "image_size": (32, 18), "scene_seconds": 5.0, "progress": False}
TINY_TEST_SCENES = 2
# Samples a 20 s scene loses under the strictest convention: the 6 keyframes without a full 3 s
# future (VAD, ST-P3 original) and the 2 without ST-P3's past context frames. Checked on real
# records by test_strictest_convention_drops_future_and_context_frames.
STRICTEST_LOSS = 6 + 2
MIN_COUNTED_SAMPLES = 400  # one sample then moves a collision rate by at most 0.25 %


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[int, Path]:
    """The same tiny world built without and with test scenes."""
    root = tmp_path_factory.mktemp("test_split")
    return {n: make_mini_world(root / f"test{n}", test_scenes=n, **TINY) for n in (0, TINY_TEST_SCENES)}


def _splits(root: Path) -> dict[str, list[str]]:
    return json.loads((root / VERSION / SPLITS_FILE).read_text())


def _table(root: Path, name: str) -> list[dict]:
    return json.loads((root / VERSION / f"{name}.json").read_text())


def _trainval_rows(root: Path) -> dict[str, list[dict]]:
    """sample, sample_data, ego_pose and sample_annotation rows of the train and val scenes, in file order."""
    splits = _splits(root)
    names = set(splits["train"]) | set(splits["val"])
    scenes = {s["token"] for s in _table(root, "scene") if s["name"] in names}
    samples = [s for s in _table(root, "sample") if s["scene_token"] in scenes]
    tokens = {s["token"] for s in samples}
    data = [d for d in _table(root, "sample_data") if d["sample_token"] in tokens]
    poses = {d["ego_pose_token"] for d in data}
    return {"sample": samples, "sample_data": data, "ego_pose": [p for p in _table(root, "ego_pose") if p["token"] in poses],
            "sample_annotation": [a for a in _table(root, "sample_annotation") if a["sample_token"] in tokens]}


# --- planning the scenes (no simulation) ---------------------------------------------------------------------------

def test_test_mix_repeats_the_train_behaviours_and_locations():
    train = [("left", "A"), ("right", "B"), ("stop", "C"), ("left", "A"), ("slow-right", "D"), ("right", "C"),
             ("forward", "B")]
    twice = held_out_mix(train, 2 * len(train))
    assert Counter(twice) == Counter({pair: 2 * n for pair, n in Counter(train).items()})
    first = held_out_mix(train, 5)  # as many as there are behaviours: one of each
    assert sorted(b for b, _ in first) == sorted({b for b, _ in train})
    assert held_out_mix(train, 2)[1] == ("right", "B") and twice[6] == ("right", "C")  # right turns take turns
    assert held_out_mix(train, 0) == []
    with pytest.raises(ValueError, match="no train scenes"):
        held_out_mix([], 1)


def test_default_world_plans_test_scenes_after_train_and_val():
    plans = plan_scenes(WorldSpec(Path("unused")))
    by_split = {s: [p for p in plans if p.split == s] for s in ("train", "val", "test")}
    assert [len(v) for v in by_split.values()] == [7, 3, DEFAULT_TEST_SCENES]
    assert min(p.index for p in by_split["test"]) == 10  # added after scene-0010
    kinds = {s: Counter((p.behaviour, p.location) for p in by_split[s]) for s in ("train", "test")}
    assert kinds["test"] == Counter({kind: 2 * n for kind, n in kinds["train"].items()})
    assert len({p.sim_key for p in plans}) == len(plans) and len({p.noise_key for p in plans}) == len(plans)


def test_default_test_split_counts_enough_samples_for_every_convention():
    frames = round(WorldSpec(Path("unused")).scene_seconds / KEYFRAME_SECONDS)
    assert DEFAULT_TEST_SCENES * (frames - STRICTEST_LOSS) >= MIN_COUNTED_SAMPLES


def test_negative_test_scenes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="test_scenes must be >= 0"):
        make_mini_world(tmp_path / "w", test_scenes=-1, **TINY)
    assert not (tmp_path / "w").exists()


# --- a built world -----------------------------------------------------------------------------------------------

def test_splits_are_disjoint_and_cover_every_scene(worlds):
    splits = _splits(worlds[TINY_TEST_SCENES])
    check_disjoint(splits, where="built world")
    assert len(splits["test"]) == TINY_TEST_SCENES
    assert sum(map(len, splits.values())) == len(set().union(*splits.values()))
    assert set().union(*splits.values()) == {s["name"] for s in _table(worlds[TINY_TEST_SCENES], "scene")}
    assert _splits(worlds[0])["test"] == []


def test_test_split_holds_every_train_behaviour(worlds):
    scenes = summarize_world(worlds[TINY_TEST_SCENES], VERSION)
    mix = {m.split: m for m in split_mix(scenes)}
    assert set(mix["train"].behaviours) <= set(mix["test"].behaviours)
    assert "?" not in mix["test"].behaviours  # every description was read back to a behaviour
    kinds = {split: Counter((s.behaviour, s.location) for s in scenes if s.split == split) for split in ("train", "test")}
    assert kinds["test"] == kinds["train"]  # as many test as train scenes here: the same pairs


def test_adding_test_scenes_leaves_train_and_val_unchanged(worlds):
    before, after = worlds[0], worlds[TINY_TEST_SCENES]
    assert {k: v for k, v in _splits(after).items() if k != "test"} == {k: v for k, v in _splits(before).items()
                                                                         if k != "test"}
    old, new = _trainval_rows(before), _trainval_rows(after)
    assert old["sample"] and old["sample_annotation"]
    assert old == new
    for row in old["sample_data"]:  # camera JPEGs and lidar sweeps
        assert (before / row["filename"]).read_bytes() == (after / row["filename"]).read_bytes(), row["filename"]
    # the records too, including the track ids taken from instance.json row numbers
    for split in ("train", "val"):
        a, b = (load_records(w, split=split, progress=False) for w in (before, after))
        assert [r.sample_token for r in a] == [r.sample_token for r in b]
        assert all(np.array_equal(x.agent_track_id, y.agent_track_id) for x, y in zip(a, b, strict=True))


def test_test_scenes_are_new_scenes(worlds):
    """No test scene replays a train/val drive (their own generator keys), even where the location repeats."""
    world = worlds[TINY_TEST_SCENES]
    trainval = _trainval_rows(world)["ego_pose"]
    test = [p for p in _table(world, "ego_pose") if p not in trainval]
    assert len(test) == TINY_TEST_SCENES * len(trainval) // TINY["num_scenes"]
    assert not {tuple(p["translation"]) for p in test} & {tuple(p["translation"]) for p in trainval}


def test_records_of_the_test_split_load(worlds):
    records = load_records(worlds[TINY_TEST_SCENES], split="test", progress=False)
    assert {r.split for r in records} == {"test"}
    assert list(dict.fromkeys(r.scene_name for r in records)) == _splits(worlds[TINY_TEST_SCENES])["test"]
    with pytest.raises(RecordError, match=rf"{SPLITS_FILE}: split 'test' lists no scenes.*--test-scenes"):
        load_records(worlds[0], split="test", progress=False)


def test_strictest_convention_drops_future_and_context_frames(worlds):
    """Per scene, the strictest convention counts frames - STRICTEST_LOSS samples (so the default size is enough)."""
    records = load_records(worlds[TINY_TEST_SCENES], split="test", progress=False)
    future = np.stack([r.ego_future_mask for r in records]).all(axis=1)
    past = np.stack([r.ego_past_mask for r in records])
    counted = []
    for name in CONVENTIONS:
        conv = get_convention(name)
        eligible = has_context_frames(past, conv.context_frames) & (future if conv.full_future_only else True)
        counted.append(int(eligible.sum()))
    frames = round(TINY["scene_seconds"] / KEYFRAME_SECONDS)
    assert min(counted) == TINY_TEST_SCENES * (frames - STRICTEST_LOSS)
    assert max(counted) == len(records) == TINY_TEST_SCENES * frames
