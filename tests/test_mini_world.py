"""Spec tests for the procedurally generated mini world (vla_world.mini_world) and the table validator."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vla_world.data.validate import validate_nuscenes_tables
from vla_world.mini_world import make_mini_world
from vla_world.mini_world.generate import DEFAULT_TEST_SCENES, visibility_level
from vla_world.mini_world.lidar import LidarBox, LidarModel
from vla_world.mini_world.scenarios import split_scene_indices
from vla_world.mini_world.sensors import CAMERAS, LIDAR
from vla_world.mini_world.signals import ALL_RED, WALK, standard_plan

VERSION = "v1.0-mini"
TOOL = Path(__file__).resolve().parents[1] / "tools" / "make_mini_world.py"
# Written out independently of the generator so a typo there cannot pass.
NUSCENES_CATEGORIES = {
    "animal", "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility", "human.pedestrian.police_officer", "human.pedestrian.stroller",
    "human.pedestrian.wheelchair", "movable_object.barrier", "movable_object.debris",
    "movable_object.pushable_pullable", "movable_object.trafficcone", "static_object.bicycle_rack", "vehicle.bicycle",
    "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction", "vehicle.emergency.ambulance",
    "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer", "vehicle.truck"}
NUSCENES_ATTRIBUTES = {"vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider",
                       "cycle.without_rider", "pedestrian.sitting_lying_down", "pedestrian.standing",
                       "pedestrian.moving"}


@pytest.fixture(scope="module")
def nusc(mini_world):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=VERSION, dataroot=str(mini_world), verbose=False)


def _copy_tables(mini_world: Path, tmp_path: Path) -> Path:
    shutil.copytree(mini_world / VERSION, tmp_path / VERSION)
    return tmp_path


# --- schema and validator -------------------------------------------------------------------------------------------

def test_tables_validate_without_problems(mini_world):
    assert validate_nuscenes_tables(mini_world, VERSION) == []


def test_validator_names_table_and_token_of_broken_prev_link(mini_world, tmp_path):
    root = _copy_tables(mini_world, tmp_path)
    path = root / VERSION / "sample_data.json"
    rows = json.loads(path.read_text())
    victim = next(r for r in rows if r["prev"])
    victim["prev"] = "0" * 32
    path.write_text(json.dumps(rows))
    problems = validate_nuscenes_tables(root, VERSION)
    assert any(p.startswith("sample_data.json") and victim["token"] in p for p in problems), problems


def test_validator_reports_missing_table_and_uncovered_log(mini_world, tmp_path):
    root = _copy_tables(mini_world, tmp_path)
    (root / VERSION / "visibility.json").unlink()
    assert any("visibility.json: missing table" in p for p in validate_nuscenes_tables(root, VERSION))
    (root / VERSION / "visibility.json").write_text((mini_world / VERSION / "visibility.json").read_text())
    maps = json.loads((root / VERSION / "map.json").read_text())
    dropped = maps[0]["log_tokens"].pop()
    (root / VERSION / "map.json").write_text(json.dumps(maps))
    assert any(p.startswith("log.json") and dropped in p for p in validate_nuscenes_tables(root, VERSION))


def test_validator_reports_wrong_instance_count(mini_world, tmp_path):
    root = _copy_tables(mini_world, tmp_path)
    path = root / VERSION / "instance.json"
    rows = json.loads(path.read_text())
    rows[0]["nbr_annotations"] += 1
    path.write_text(json.dumps(rows))
    assert any(p.startswith("instance.json") and rows[0]["token"] in p for p in validate_nuscenes_tables(root, VERSION))


# --- devkit loading -------------------------------------------------------------------------------------------------

def test_devkit_loads_all_tables_with_2hz_keyframes(nusc, mini_world):
    assert len(nusc.scene) == 4
    for scene in nusc.scene:
        assert scene["nbr_samples"] == 20  # 10 s at 2 Hz
    first = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    second = nusc.get("sample", first["next"])
    assert second["timestamp"] - first["timestamp"] == 500_000  # microseconds
    assert set(first["data"]) == {c.channel for c in CAMERAS} | {"LIDAR_TOP"}
    splits = json.loads((mini_world / VERSION / "vla_world_splits.json").read_text())
    assert len(splits["train"]) == 3 and len(splits["val"]) == 1 and splits["test"] == []  # fixture: test_scenes=0
    assert not set(splits["train"]) & set(splits["val"])
    assert set(splits["train"]) | set(splits["val"]) == {s["name"] for s in nusc.scene}


def test_categories_and_attributes_are_real_nuscenes_names(nusc):
    assert {c["name"] for c in nusc.category} <= NUSCENES_CATEGORIES
    assert {a["name"] for a in nusc.attribute} == NUSCENES_ATTRIBUTES
    used = {nusc.get("instance", a["instance_token"])["category_token"] for a in nusc.sample_annotation}
    assert {"vehicle.car", "human.pedestrian.adult"} <= {nusc.get("category", t)["name"] for t in used}
    for ann in nusc.sample_annotation:
        category = ann["category_name"]
        attribute = nusc.get("attribute", ann["attribute_tokens"][0])["name"]
        if category.startswith("human.pedestrian"):
            assert attribute.startswith("pedestrian.")
        elif category == "vehicle.bicycle":
            assert attribute == "cycle.with_rider"
        else:
            assert attribute.startswith("vehicle.")


def test_map_expansion_loads_and_answers_queries(nusc, mini_world):
    from nuscenes.map_expansion.map_api import NuScenesMap

    sample = nusc.sample[3]
    location = nusc.get("log", nusc.get("scene", sample["scene_token"])["log_token"])["location"]
    nmap = NuScenesMap(dataroot=str(mini_world), map_name=location)
    pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
    x, y = pose["translation"][:2]
    mask = nmap.get_map_mask((x, y, 60, 60), 0.0, ["drivable_area", "lane", "ped_crossing"], (120, 120))
    assert mask.shape == (3, 120, 120) and mask[0, 60, 60] == 1  # the ego stands on drivable area
    lane = nmap.get_closest_lane(x, y, radius=5)
    assert lane in nmap.arcline_path_3
    points = np.array(nmap.discretize_lanes([lane], 0.5)[lane])[:, :2]
    assert np.min(np.linalg.norm(points - [x, y], axis=1)) < 3.0  # the ego drives on that lane
    records = nmap.get_records_in_patch((x - 150, y - 150, x + 150, y + 150), ["ped_crossing", "stop_line", "lane"])
    assert all(records[layer] for layer in ("ped_crossing", "stop_line", "lane"))


def test_basemap_png_marks_the_ego_position_drivable(nusc):
    sample = nusc.sample[7]
    pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
    log_token = nusc.get("scene", sample["scene_token"])["log_token"]
    basemap = next(m for m in nusc.map if log_token in m["log_tokens"])["mask"]
    assert basemap.is_on_mask(pose["translation"][0], pose["translation"][1])[0]
    assert not basemap.is_on_mask(5.0, 5.0)[0]  # the map border is grass


def test_explorer_returns_vector_map_elements(nusc, mini_world):
    from nuscenes.map_expansion.map_api import NuScenesMap

    nmap = NuScenesMap(dataroot=str(mini_world), map_name="singapore-onenorth")
    junction = np.mean([[n["x"], n["y"]] for n in nmap.node], axis=0)  # the grid centre is a junction
    patch = (junction[0], junction[1], 60.0, 60.0)
    assert len(nmap.explorer._get_layer_line(patch, 0.0, "lane_divider")) > 0
    assert len(nmap.explorer._get_layer_line(patch, 0.0, "road_divider")) > 0
    assert len(nmap.explorer._get_layer_polygon(patch, 0.0, "ped_crossing")) == 4  # one per arm
    assert len(nmap.explorer._get_layer_polygon(patch, 0.0, "drivable_area")) > 0


# --- sensors --------------------------------------------------------------------------------------------------------

def test_intrinsics_scale_with_image_size():
    k = CAMERAS[0].intrinsic((160, 90))  # a tenth of 1600x900
    assert k[0, 0] == pytest.approx(126.6417203046554)
    assert k[0, 2] == pytest.approx(81.62670197447984)
    assert k[1, 2] == pytest.approx(49.150706579294757)


def test_lidar_frame_is_x_right_y_forward():
    rot = LIDAR.sensor_to_ego()[:3, :3]
    assert rot @ [0, 1, 0] == pytest.approx([1, 0, 0], abs=0.03)  # lidar +y = ego forward
    assert rot @ [1, 0, 0] == pytest.approx([0, -1, 0], abs=0.03)  # lidar +x = ego right


def test_lidar_hits_a_box_ahead_at_the_hand_computed_range():
    # Ego at the origin facing +x; a 4 m long box centred 20 m ahead: its rear face is at x = 18 m.
    model = LidarModel(LIDAR.sensor_to_ego(), azimuth_steps=720)
    box = LidarBox(np.array([20.0, 0.0, 1.0]), np.array([2.0, 4.0, 2.0]), 0.0, 50.0)
    sweep = model.cast(np.eye(4), [box], lambda xy: np.zeros(len(xy)), np.random.default_rng(0))
    points = sweep.points
    assert points.shape[1] == 5 and sweep.points_per_box[0] > 20
    on_box = points[(np.abs(points[:, 0]) < 0.3) & (points[:, 3] == 50.0)]
    assert on_box[:, 1].min() == pytest.approx(18.0 - 0.943713, abs=0.1)
    assert sweep.unoccluded_share[0] == pytest.approx(1.0)


def test_visibility_levels_follow_nuscenes_bins():
    assert visibility_level(0.85, 12) == "4"
    assert visibility_level(0.7, 12) == "3"
    assert visibility_level(0.5, 12) == "2"
    assert visibility_level(0.2, 12) == "1"
    assert visibility_level(float("nan"), 0) == "1"


def test_lidar_file_is_readable_and_has_points_on_boxes(nusc):
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    sample = nusc.sample[10]
    path, boxes, _ = nusc.get_sample_data(sample["data"]["LIDAR_TOP"])  # boxes in the lidar frame
    assert Path(path).stat().st_size % (5 * 4) == 0
    cloud = LidarPointCloud.from_file(path)
    assert cloud.points.shape[1] > 5000
    raw = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
    assert set(np.unique(raw[:, 4])) <= set(range(32))
    checked = 0
    for box in boxes:
        ann = nusc.get("sample_annotation", box.token)
        inside = int(points_in_box(box, cloud.points[:3], wlh_factor=1.05).sum())
        if ann["num_lidar_pts"] >= 10:
            assert inside >= 0.8 * ann["num_lidar_pts"]
            checked += 1
    assert checked > 0


def test_projected_box_lands_on_its_class_colour(nusc):
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    best = None
    for sample in nusc.sample:
        path, boxes, k = nusc.get_sample_data(sample["data"]["CAM_FRONT"], box_vis_level=BoxVisibility.ALL)
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            fully_visible_car = ann["category_name"] == "vehicle.car" and ann["visibility_token"] == "4"
            if fully_visible_car and (best is None or box.center[2] < best[1].center[2]):
                best = (path, box, k)
    assert best is not None, "no fully visible car in any CAM_FRONT image"
    path, box, k = best
    image = np.asarray(Image.open(path).convert("RGB")).astype(float)
    u, v = view_points(box.center[:, None], k, normalize=True)[:2, 0]
    height, width = image.shape[:2]
    assert 0 <= u < width and 0 <= v < height
    pixel = image[int(v), int(u)]
    assert pixel[2] > pixel[0] + 40 and pixel[2] > pixel[1] + 20  # cars are rendered blue


def test_ego_behaviours_follow_the_scene_script(nusc):
    def ego_track(scene):
        token, yaws, _speeds, xy = scene["first_sample_token"], [], [], []
        while token:
            sample = nusc.get("sample", token)
            pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
            w, _, _, z = pose["rotation"]
            yaws.append(2 * math.atan2(z, w))
            xy.append(pose["translation"][:2])
            token = sample["next"]
        steps = np.linalg.norm(np.diff(np.array(xy), axis=0), axis=1) / 0.5
        return np.unwrap(yaws), steps

    left_yaw, _ = ego_track(nusc.scene[0])  # scene index i has behaviour SCENE_BEHAVIOURS[i]
    right_yaw, _ = ego_track(nusc.scene[1])
    _, stop_speed = ego_track(nusc.scene[3])
    # a 90-degree junction turn, possibly not finished when a 10 s scene ends
    assert 1.0 < left_yaw[-1] - left_yaw[0] < math.pi / 2 + 0.15
    assert -math.pi / 2 - 0.15 < right_yaw[-1] - right_yaw[0] < -1.0
    assert stop_speed.max() > 5.0 and stop_speed.min() < 0.3


# --- generator internals and the tool -------------------------------------------------------------------------------

def test_scene_split_is_disjoint_and_sized():
    train, val = split_scene_indices(10)
    assert (len(train), len(val)) == (7, 3) and not set(train) & set(val)
    assert split_scene_indices(4)[1] == [2]
    assert split_scene_indices(1) == ([0], [])


def test_signal_plan_cycles_arms_then_pedestrians():
    plan = standard_plan([0, 1, 2, 3], anchor=0.0)  # 6 s green + 1.5 s all-red per arm, then 8 s walk
    assert plan.state(0.0) == 0 and plan.state(6.5) == ALL_RED and plan.state(7.6) == 1
    assert plan.state(4 * 7.5 + 1.0) == WALK
    assert plan.state(plan.cycle + 0.1) == 0


def _table_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / VERSION).glob("*.json"))}


def test_same_seed_gives_byte_identical_tables(tmp_path):
    tiny = {"num_scenes": 2, "image_size": (32, 18), "scene_seconds": 4.0, "progress": False, "test_scenes": 1}
    a = make_mini_world(tmp_path / "a", seed=7, **tiny)
    b = make_mini_world(tmp_path / "b", seed=7, **tiny)
    c = make_mini_world(tmp_path / "c", seed=8, **tiny)
    assert _table_bytes(a) == _table_bytes(b)  # test scenes included
    assert json.loads(_table_bytes(a)["vla_world_splits.json"])["test"] == ["scene-0077"]  # first official test name
    assert _table_bytes(a)["sample_annotation.json"] != _table_bytes(c)["sample_annotation.json"]
    expansion = "maps/expansion/singapore-onenorth.json"
    assert (a / expansion).read_bytes() == (b / expansion).read_bytes()


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_mini_world_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_builds_and_validates_then_refuses_a_foreign_folder(tmp_path, capsys):
    main = _load_tool().main

    out = tmp_path / "world"
    tiny = ["--scenes", "2", "--seconds", "4", "--image-size", "32", "18", "--test-scenes", "1"]  # 2: one val scene
    assert main(["--out", str(out), *tiny]) == 0
    printed = capsys.readouterr().out
    assert "0 problems" in printed
    assert "scene-0077 test" in printed and "test    1 scene  (left 1)" in printed  # per scene and per split mix
    assert main(["--out", str(out), *tiny[:-2], "--test-scenes", "0"]) == 0  # rebuild, without a test split
    assert json.loads((out / VERSION / "vla_world_splits.json").read_text())["test"] == []
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["--out", str(foreign), "--scenes", "2", "--seconds", "4"]) == 2
    assert (foreign / "notes.txt").exists()
    assert main(["--out", str(tmp_path / "bad"), "--scenes", "0"]) == 2
    assert main(["--out", str(tmp_path / "bad"), "--test-scenes", "-1"]) == 2
    assert _load_tool().parse_args([]).test_scenes == DEFAULT_TEST_SCENES


# --- traffic model --------------------------------------------------------------------------------------------------

def _straight_route_into_junction(net):
    from vla_world.mini_world.traffic import build_route

    lane = next(ln for ln in net.lanes if ln.kind == "road" and len(net.junctions[ln.junction].arms) == 4)
    connector = next(i for i in lane.successors if net.lanes[i].turn == "straight")
    return lane, build_route(net, [lane.index, connector, net.lanes[connector].successors[0]])


def test_vehicle_stops_at_red_light_and_passes_on_green():
    from vla_world.mini_world.agents import CAR
    from vla_world.mini_world.road_network import build_road_network
    from vla_world.mini_world.signals import SignalPlan
    from vla_world.mini_world.traffic import TrafficSimulation, Vehicle

    net = build_road_network("boston-seaport", np.random.default_rng(0))
    lane, route = _straight_route_into_junction(net)
    stop_s = route.stops[0][0]
    size = (1.9, 4.6, 1.7)
    always = {"red": SignalPlan(((WALK, 1000.0),), 0.0), "green": SignalPlan(((lane.arm, 1000.0),), 0.0)}
    for light, plan in always.items():
        signals = {j.index: plan for j in net.junctions}
        car = Vehicle(CAR, size, 10.0, route, stop_s - 60.0, 10.0)
        track = TrafficSimulation(net, signals, [car]).run(20.0, 0.5)[0]
        travelled = np.linalg.norm(np.diff(track.xy, axis=0), axis=1).sum()
        front_to_stop_line = stop_s - (car.s + travelled + size[1] / 2)
        if light == "red":
            assert 0.0 <= front_to_stop_line <= 1.5 and track.speed[-1] < 0.1
        else:
            assert front_to_stop_line < -100.0  # 20 s at ~10 m/s: well through the junction


def test_faster_car_follows_slower_one_without_touching():
    from vla_world.mini_world.agents import BICYCLE, CAR
    from vla_world.mini_world.road_network import build_road_network
    from vla_world.mini_world.signals import SignalPlan
    from vla_world.mini_world.traffic import TrafficSimulation, Vehicle

    net = build_road_network("boston-seaport", np.random.default_rng(0))
    lane, route = _straight_route_into_junction(net)
    signals = {j.index: SignalPlan(((lane.arm, 1000.0),), 0.0) for j in net.junctions}
    follower = Vehicle(CAR, (1.9, 4.6, 1.7), 11.0, route, 5.0, 11.0)
    leader = Vehicle(BICYCLE, (0.6, 1.7, 1.3), 4.0, route, 35.0, 4.0)
    tracks = TrafficSimulation(net, signals, [follower, leader]).run(15.0, 0.5)
    bumper_gap = np.linalg.norm(tracks[1].xy - tracks[0].xy, axis=1) - (4.6 + 1.7) / 2
    assert bumper_gap.min() > 1.0
    assert tracks[0].speed[-1] == pytest.approx(4.0, abs=0.6)  # settled to the cyclist's speed


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from(["sample", "sample_data", "sample_annotation"]), field=st.sampled_from(["prev", "next"]),
       pick=st.integers(min_value=0, max_value=10_000), token=st.text("0123456789abcdef", min_size=32, max_size=32))
def test_validator_catches_any_corrupted_chain_link(mini_world, table, field, pick, token):
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy_tables(mini_world, Path(tmp))
        path = root / VERSION / f"{table}.json"
        rows = json.loads(path.read_text())
        victim = rows[pick % len(rows)]
        if victim[field] == token:
            return
        victim[field] = token
        path.write_text(json.dumps(rows))
        problems = validate_nuscenes_tables(root, VERSION)
    assert any(p.startswith(f"{table}.json") and victim["token"] in p for p in problems), problems
