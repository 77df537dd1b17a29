"""Split resolution, readable errors on broken dataroots, and the record cache (reuse, invalidation, speed)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from nuscenes_fixture import LOCATION, SPLITS, VERSION, write_tiny_dataroot

from vla_world.data import RecordError, build_records, load_records
from vla_world.data.nuscenes_db import detect_version
from vla_world.data.splits import (
    SPLITS_FILE,
    load_split_table,
    official_split_name,
    split_scene_names,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_tiny_dataroot(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def root(pristine, tmp_path) -> Path:
    """A private copy of the tiny dataroot that a test may break."""
    return Path(shutil.copytree(pristine, tmp_path / "root"))


def edit_table(root: Path, table: str, edit) -> None:
    path = root / VERSION / f"{table}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


# --------------------------------------------------------------------------- splits


def test_split_file_is_used_and_splits_are_disjoint(pristine):
    scenes = ["scene-a", "scene-b", "scene-c"]
    train = split_scene_names(pristine, VERSION, "train", scenes)
    val = split_scene_names(pristine, VERSION, "val", scenes)
    assert train == SPLITS["train"] and val == SPLITS["val"]
    assert not set(train) & set(val)


def test_official_splits_map_mini_names_and_are_disjoint(root):
    (root / VERSION / SPLITS_FILE).unlink()
    assert official_split_name("v1.0-mini", "train") == "mini_train"
    assert official_split_name("v1.0-trainval", "val") == "val"
    table = load_split_table(root, VERSION)
    assert table["train"] == table["mini_train"] and "scene-0061" in table["train"]
    assert not set(table["mini_train"]) & set(table["mini_val"])
    # the tiny world's scene names are in no official split: the error says how to fix it
    with pytest.raises(RecordError, match=SPLITS_FILE):
        split_scene_names(root, VERSION, "train", ["scene-a"])


def test_overlapping_split_file_is_rejected(root):
    (root / VERSION / SPLITS_FILE).write_text(json.dumps({"train": ["scene-a", "scene-b"], "val": ["scene-b"]}))
    with pytest.raises(RecordError, match="scene-b.*both train and val"):
        load_records(root, split="train", progress=False)


@pytest.mark.parametrize("splits, pair", [
    ({"train": ["scene-a"], "val": ["scene-b"], "test": ["scene-c", "scene-a"]}, "train and test"),
    ({"train": ["scene-a"], "val": ["scene-b"], "test": ["scene-b", "scene-c"]}, "val and test"),
])
def test_test_split_must_not_overlap_train_or_val(root, splits, pair):
    (root / VERSION / SPLITS_FILE).write_text(json.dumps(splits))
    with pytest.raises(RecordError, match=rf"{VERSION}/{SPLITS_FILE}: scenes \['scene-[ab]'\].*both {pair}"):
        load_records(root, split="val", progress=False)


def test_test_split_from_the_split_file(root):
    (root / VERSION / SPLITS_FILE).write_text(json.dumps({"train": ["scene-a"], "val": ["scene-b"], "test": ["scene-c"]}))
    records = load_records(root, split="test", progress=False)
    assert {r.scene_name for r in records} == {"scene-c"} and {r.split for r in records} == {"test"}


def test_unknown_split_names_the_choices(pristine, tmp_path):
    with pytest.raises(RecordError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        build_records(pristine, split="test", progress=False)


def test_version_detection(root):
    assert detect_version(root) == VERSION
    (root / "v1.0-trainval").mkdir()
    with pytest.raises(RecordError, match=r"several table folders \['v1.0-mini', 'v1.0-trainval'\]"):
        detect_version(root)
    with pytest.raises(RecordError, match="dataroot does not exist"):
        detect_version(root / "nowhere")


# --------------------------------------------------------------------------- broken input


def test_missing_table_names_the_file(root):
    (root / VERSION / "sample_annotation.json").unlink()
    with pytest.raises(RecordError, match=r"v1.0-mini/sample_annotation.json: table missing.*make_mini_world"):
        load_records(root, progress=False)


def test_broken_instance_link_names_table_token_and_target(root):
    def point_to_ghost(anns):
        anns[0]["instance_token"] = "ghost-instance"

    edit_table(root, "sample_annotation", point_to_ghost)
    with pytest.raises(RecordError) as err:
        load_records(root, progress=False)
    message = str(err.value)
    for part in ("sample_annotation.json", "scene-a-car-a0", "instance ghost-instance", "not in instance.json",
                 "re-run tools/make_mini_world.py"):
        assert part in message


def test_broken_link_found_while_building_names_the_record(root):
    def lose_pose(rows):
        next(r for r in rows if r["token"] == "scene-a-s2-LIDAR_TOP")["ego_pose_token"] = "ghost-pose"

    edit_table(root, "sample_data", lose_pose)
    with pytest.raises(RecordError, match=r"sample_data.json: sample_data scene-a-s2-LIDAR_TOP field 'ego_pose_token' "
                                          r"points to ego_pose ghost-pose which is not in ego_pose.json"):
        load_records(root, progress=False)


def test_missing_map_expansion_names_the_file_and_location(root):
    (root / "maps" / "expansion" / f"{LOCATION}.json").unlink()
    with pytest.raises(RecordError, match=rf"maps/expansion/{LOCATION}.json: map expansion for location '{LOCATION}'"):
        load_records(root, progress=False)


def test_missing_camera_names_the_sample(root):
    edit_table(root, "sample_data", lambda rows: rows.remove(next(r for r in rows if r["token"] == "scene-b-s1-CAM_BACK")))
    with pytest.raises(RecordError, match="sample scene-b-s1 has no CAM_BACK keyframe"):
        load_records(root, progress=False)


def test_broken_map_link_names_the_map_file(root):
    path = root / "maps" / "expansion" / f"{LOCATION}.json"
    expansion = json.loads(path.read_text())
    expansion["road_segment"][0]["polygon_token"] = "ghost-polygon"
    path.write_text(json.dumps(expansion))
    with pytest.raises(RecordError, match=rf"{LOCATION}.json: map expansion is broken.*ghost-polygon"):
        load_records(root, progress=False)


def test_keyframe_without_annotations_gives_empty_agent_arrays(root):
    def drop_last_car_box(anns):
        anns.remove(next(a for a in anns if a["token"] == "scene-a-car-a7"))
        next(a for a in anns if a["token"] == "scene-a-car-a6")["next"] = ""

    edit_table(root, "sample_annotation", drop_last_car_box)
    edit_table(root, "instance", lambda rows: rows[0].update(nbr_annotations=7, last_annotation_token="scene-a-car-a6"))
    last = [r for r in load_records(root, progress=False) if r.scene_name == "scene-a"][-1]
    assert last.num_agents == 0
    assert last.agent_box.shape == (0, 7) and last.agent_future.shape == (0, 6, 2)
    assert last.future_box.shape == (0, 7)
    # the car (instance row 0) is still occupancy context: it was seen at t = -1.0 and -0.5 s
    np.testing.assert_array_equal(last.context_track_ids, [0])


# --------------------------------------------------------------------------- cache


def test_cache_is_reused_then_rebuilt_when_a_table_changes(root, tmp_path):
    cache = tmp_path / "cache"
    first = load_records(root, split="val", cache_dir=cache, progress=False)
    (old_file,) = cache.glob("*.npz")
    assert first[0].agent_box[0, 3] == pytest.approx(1.9)

    def widen_cars(anns):
        for ann in anns:
            if "car" in ann["instance_token"]:
                ann["size"] = [2.5, 4.6, 1.7]

    edit_table(root, "sample_annotation", widen_cars)
    second = load_records(root, split="val", cache_dir=cache, progress=False)
    car = list(second[0].agent_category).index("vehicle.car")
    assert second[0].agent_box[car, 3] == pytest.approx(2.5)
    (new_file,) = cache.glob("*.npz")  # the stale file was removed
    assert new_file != old_file


def test_default_cache_lives_in_the_dataroot_and_loads_fast(root):
    built = load_records(root, split="train", progress=False)
    assert list((root / ".vla_world_cache").glob("records_v1.0-mini_train_*.npz"))
    start = time.perf_counter()
    cached = load_records(root, split="train", progress=False)
    assert time.perf_counter() - start < 1.0
    assert [r.sample_token for r in cached] == [r.sample_token for r in built]


def test_corrupt_cache_is_rebuilt_with_a_warning(root):
    load_records(root, split="val", progress=False)
    (path,) = (root / ".vla_world_cache").glob("*.npz")
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable record cache"):
        records = load_records(root, split="val", progress=False)
    assert len(records) == 8 and np.isfinite(records[0].ego_future).all()


def test_unwritable_dataroot_falls_back_to_the_repo_cache(root, monkeypatch, tmp_path):
    from vla_world.data import cache as cache_module

    monkeypatch.setattr(cache_module, "REPO_CACHE_DIR", tmp_path / "repo_cache")
    os.chmod(root, 0o555)
    try:
        if os.access(root, os.W_OK):  # running as root: permissions do not bind, simulate instead
            monkeypatch.setattr(cache_module.os, "access", lambda *_: False)
        assert cache_module.default_cache_dir(root) == tmp_path / "repo_cache"
    finally:
        os.chmod(root, 0o755)
