"""The nuScenes format as the devkit's own tools use it, on the tiny test world: a format regression fails here.

Each test drives public devkit calls unpatched (rendering only after `patch_map_rendering`, the
documented shapely-2 workaround): split helpers, lane graph, map rendering, sample rendering and box
projection, the prediction rasteriser, and `DetectionEval` on perfect boxes.
"""

from __future__ import annotations

import itertools
import json

import matplotlib

matplotlib.use("Agg")  # before pyplot: the devkit's renderers import it

import matplotlib.pyplot as plt
import numpy as np
import pytest
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.common.loaders import load_gt
from nuscenes.eval.detection.data_classes import DetectionBox
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.map_expansion.map_api import NuScenesMap
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.geometry_utils import BoxVisibility, view_points
from nuscenes.utils.splits import create_splits_scenes, get_scenes_of_split
from shapely.geometry import Polygon

from vla_world.data.devkit_render import patch_map_rendering, polygon_path
from vla_world.mini_world.scene_names import assign_scene_names

VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def nusc(mini_world):
    return NuScenes(version=VERSION, dataroot=str(mini_world), verbose=False)


@pytest.fixture(scope="module")
def our_splits(mini_world):
    return json.loads((mini_world / VERSION / "vla_world_splits.json").read_text())


def _ego_xy(nusc, sample) -> tuple[str, float, float]:
    """(location, x, y) of the ego at a sample."""
    scene = nusc.get("scene", sample["scene_token"])
    pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["LIDAR_TOP"])["ego_pose_token"])
    return nusc.get("log", scene["log_token"])["location"], pose["translation"][0], pose["translation"][1]


def test_scene_names_follow_the_official_split_of_their_split():
    names = assign_scene_names(["train", "val", "train", "test", "val", "val"], "v1.0-mini")
    official = create_splits_scenes()
    assert names[:3] == ["scene-0061", "scene-0103", "scene-0553"] and names[4] == "scene-0916"
    assert names[3] in official["test"] and names[5] in official["val"]  # mini_val has 2 names only
    assert len(set(names)) == len(names)
    trainval = assign_scene_names(["train", "val", "test"], "v1.0-trainval")
    assert [n in official[s] for n, s in zip(trainval, ("train", "val", "test"))] == [True, True, True]


def test_devkit_split_helpers_select_our_splits_unpatched(nusc, our_splits):
    present = {s["name"] for s in nusc.scene}
    assert set(create_splits_scenes()["mini_val"]) & present == set(our_splits["val"])
    assert set(create_splits_scenes()["mini_train"]) & present == set(our_splits["train"])
    for split in ("train", "val", "test"):  # the devkit's custom-split file mirrors ours
        assert get_scenes_of_split(f"vla_world_{split}", nusc) == our_splits[split]


def test_lanes_connectors_and_junctions_share_end_nodes(nusc, mini_world):
    location, x, y = _ego_xy(nusc, nusc.sample[3])
    nmap = NuScenesMap(dataroot=str(mini_world), map_name=location)
    for lane in nmap.lane:
        to_edge = set(nmap.get("line", lane["to_edge_line_token"])["node_tokens"])
        outgoing = nmap.get_outgoing_lane_ids(lane["token"])
        assert outgoing, f"lane {lane['token']} dead-ends"
        for token in outgoing:
            assert nmap.get_incoming_lane_ids(token).count(lane["token"]) == 1
            polygon = nmap.get("polygon", nmap.get("lane_connector", token)["polygon_token"])
            assert to_edge <= set(polygon["exterior_node_tokens"])
    nxt = nmap.get_next_roads(x, y)
    assert nxt["road_segment"] and all(nmap.get("road_segment", t)["is_intersection"] for t in nxt["road_segment"])


def test_lane_graph_traversal_follows_arclines(nusc, mini_world):
    location, x, y = _ego_xy(nusc, nusc.sample[0])
    nmap = NuScenesMap(dataroot=str(mini_world), map_name=location)
    lane = nmap.get_closest_lane(x, y, radius=2.0)
    path = [lane]
    for _ in range(3):
        path.append(nmap.get_outgoing_lane_ids(path[-1])[0])
    poses = nmap.discretize_lanes(path, 0.5)
    for a, b in itertools.pairwise(path):  # each lane ends where the next one starts
        assert np.allclose(poses[a][-1][:2], poses[b][0][:2], atol=0.05)


def test_polygon_path_keeps_exterior_and_holes():
    shape = Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (2, 1), (2, 2), (1, 2)]])
    path = polygon_path(shape)
    assert len(path.vertices) == 10 and list(path.codes).count(path.MOVETO) == 2
    def signed_area(ring: np.ndarray) -> float:
        return 0.5 * float(np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1]))

    # the hole was given in the exterior's sense; filled by winding it must turn the other way to stay empty
    assert signed_area(path.vertices[:5]) == 16.0 and signed_area(path.vertices[5:]) == -1.0


def test_map_rendering_works_after_the_shapely2_patch(nusc, mini_world, tmp_path):
    patch_map_rendering()
    sample = nusc.sample[2]
    location, x, y = _ego_xy(nusc, sample)
    nmap = NuScenesMap(dataroot=str(mini_world), map_name=location)
    _, ax = nmap.render_map_patch((x - 30, y - 30, x + 30, y + 30), ["drivable_area", "lane", "ped_crossing"],
                                  figsize=(2, 2))
    assert len(ax.patches) > 3
    nmap.render_layers(["drivable_area", "lane"], figsize=1)
    nmap.render_map_in_image(nusc, sample["token"], layer_names=["drivable_area", "lane"], camera_channel="CAM_FRONT",
                             out_path=str(tmp_path / "map_in_image.png"))
    assert (tmp_path / "map_in_image.png").stat().st_size > 1000
    plt.close("all")


def test_sample_renders_and_boxes_project_into_the_camera(nusc, tmp_path):
    sample = nusc.sample[4]
    # one camera with its boxes: render_sample draws all seven sensors and costs ~10 s for the same code path
    nusc.render_sample_data(sample["data"]["CAM_FRONT"], out_path=str(tmp_path / "sample.png"), verbose=False)
    plt.close("all")
    assert (tmp_path / "sample.png").stat().st_size > 1000
    projected = 0
    for channel in ("CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT"):
        record = nusc.get("sample_data", sample["data"][channel])
        _, boxes, intrinsic = nusc.get_sample_data(record["token"], box_vis_level=BoxVisibility.ALL)
        for box in boxes:
            corners = view_points(box.corners(), intrinsic, normalize=True)[:2]
            assert (corners >= -1).all() and (corners[0] <= record["width"] + 1).all()
            assert (corners[1] <= record["height"] + 1).all()
            projected += 1
    assert projected > 0


def test_prediction_rasteriser_draws_a_challenge_agent(nusc, mini_world):
    from nuscenes.eval.prediction.splits import get_prediction_challenge_split
    from nuscenes.prediction import PredictHelper
    from nuscenes.prediction.input_representation.agents import (
        AgentBoxesWithFadedHistory,
    )
    from nuscenes.prediction.input_representation.combinators import Rasterizer
    from nuscenes.prediction.input_representation.interface import InputRepresentation
    from nuscenes.prediction.input_representation.static_layers import (
        StaticLayerRasterizer,
    )

    entries = get_prediction_challenge_split("mini_train", dataroot=str(mini_world))
    assert entries
    helper = PredictHelper(nusc)
    instance, sample = entries[0].split("_")
    assert len(helper.get_future_for_agent(instance, sample, 6, in_agent_frame=True)) == 12
    raster = InputRepresentation(StaticLayerRasterizer(helper), AgentBoxesWithFadedHistory(helper, seconds_of_history=1),
                                 Rasterizer())
    image = raster.make_input_representation(instance, sample)
    assert image.shape == (500, 500, 3) and image.std() > 0


def test_detection_eval_scores_perfect_boxes_ap_one(nusc, tmp_path):
    gt = load_gt(nusc, "mini_val", DetectionBox)
    results = {token: [{**box.serialize(), "detection_score": 1.0} for box in gt[token]] for token in gt.sample_tokens}
    meta = {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": meta, "results": results}, default=lambda a: a.tolist()))  # velocities are arrays
    evaluator = DetectionEval(nusc, config_factory("detection_cvpr_2019"), str(path), "mini_val", str(tmp_path / "out"),
                              verbose=False)
    metrics, _ = evaluator.evaluate()
    present = {b.detection_name for token in evaluator.gt_boxes.sample_tokens for b in evaluator.gt_boxes[token]}
    assert present
    for name in present:
        assert metrics.get_label_ap(name, 2.0) == pytest.approx(1.0), name
    assert metrics.mean_ap == pytest.approx(len(present) / 10)  # absent classes score AP 0 in the devkit's mean


def test_a_trainval_world_has_official_names_and_the_devkit_loads_its_val(tmp_path):
    from vla_world.mini_world import make_mini_world

    root = make_mini_world(tmp_path / "trainval", num_scenes=2, seed=0, image_size=(32, 18), scene_seconds=4.0,
                           version="v1.0-trainval", progress=False, test_scenes=1)
    ours = json.loads((root / "v1.0-trainval" / "vla_world_splits.json").read_text())
    official = create_splits_scenes()
    assert all(name in official[split] for split, names in ours.items() for name in names)
    nusc = NuScenes(version="v1.0-trainval", dataroot=str(root), verbose=False)
    val_samples = {s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in ours["val"]}
    assert set(load_gt(nusc, "val", DetectionBox).sample_tokens) == val_samples
    assert get_scenes_of_split("vla_world_test", nusc) == ours["test"]
