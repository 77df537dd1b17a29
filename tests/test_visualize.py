"""Pictures: camera projection on hand cases, drawing functions' artists, both tools end to end.

Hand cases use a forward camera whose axes are the LiDAR axes relabelled (camera x = LiDAR x,
camera y = -LiDAR z, camera z = LiDAR y), so every expected pixel is a one-line computation.
The tools run twice: on synthetic records with a nuScenes-like six-camera rig (always), and on the
tiny mini world from tests/conftest.py (through the `mini_world` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from PIL import Image

from planning.bev_plot import (
    EGO_LENGTH_M,
    EGO_WIDTH_M,
    GT_STYLE,
    PRED_STYLE,
    PlannedTrajectory,
    box_corners,
    collision_steps,
    draw_agents,
    draw_collisions,
    draw_ego_box,
    draw_map,
    draw_scene,
    draw_trajectory,
    gt_trajectory,
    headings_from_waypoints,
    l2_at_seconds,
    legend_handles,
    make_bev_axes,
)
from planning.camera_plot import (
    NUSCENES_LIDAR_HEIGHT_M,
    box_corners_3d,
    densify,
    draw_projected_boxes,
    draw_projected_map,
    draw_projected_trajectory,
    ground_heights,
    project_points,
)
from vla_world.data.records import CAMERAS
from vla_world.data.synthetic import synthetic_record
from vla_world.data.targets import planning_targets

K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]])  # 160 x 90 image
LIDAR_HEIGHT = 1.84


def camera_to_lidar(yaw_left_deg: float, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(4, 4) camera -> LiDAR for a level camera looking `yaw_left_deg` left of +y (forward)."""
    a = np.radians(yaw_left_deg)
    right, down, optical = (np.cos(a), np.sin(a), 0.0), (0.0, 0.0, -1.0), (-np.sin(a), np.cos(a), 0.0)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([right, down, optical])
    pose[:3, 3] = translation
    return pose


RIG_YAWS = {"CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55, "CAM_FRONT_LEFT": 55, "CAM_BACK": 180,
            "CAM_BACK_LEFT": 110, "CAM_BACK_RIGHT": -110}


def rig_record(token: str = "tok0", frame: int = 0, scene: str = "scene-rig"):
    """A synthetic record with a nuScenes-like rig: LiDAR 1.84 m up, boxes standing on the ground."""
    record = synthetic_record(speed=6.0, agents=[("car", 3.5, 18.0, 0.0, 4.0), ("pedestrian", -4.0, 9.0, 1.0, 0.0),
                                                 ("truck", -3.5, -12.0, 0.0, 5.0)], token=token, scene=scene)
    record.frame_index = frame
    record.lidar2global = np.eye(4)
    record.lidar2global[2, 3] = LIDAR_HEIGHT
    record.agent_box[:, 2] = -LIDAR_HEIGHT + record.agent_box[:, 5] / 2
    record.camera_sensor2lidar = np.stack([camera_to_lidar(RIG_YAWS[c], (0.0, 0.8, -0.3)) for c in CAMERAS])
    record.camera_intrinsics = np.tile(K, (6, 1, 1))
    record.camera_paths = np.array([f"samples/{c}/{token}.jpg" for c in CAMERAS])
    return record


def write_images(dataroot: Path, record) -> None:
    """Plain sky-over-road pictures at the record's camera paths (160 x 90)."""
    pixels = np.zeros((90, 160, 3), np.uint8)
    pixels[:45] = (170, 200, 230)
    pixels[45:] = (110, 110, 110)
    for rel in record.camera_paths:
        path = dataroot / str(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def assert_nontrivial_image(path: Path, min_side: int = 200) -> None:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int64)
    assert min(pixels.shape[:2]) >= min_side, f"{path} is only {pixels.shape[1]} x {pixels.shape[0]} px"
    assert pixels.std() > 10, f"{path} is (almost) uniform"
    colours = pixels @ np.array([1 << 16, 1 << 8, 1])  # one int per RGB triple: a fast 1-D unique
    assert len(np.unique(colours)) > 50, f"{path} has too few colours"


# ----------------------------------------------------------------------------- projection


def test_point_straight_ahead_lands_on_principal_point():
    uv, in_front = project_points(np.array([[0.0, 10.0, 0.0]]), camera_to_lidar(0), K)
    np.testing.assert_allclose(uv, [[80.0, 45.0]])
    assert in_front.all()


def test_offset_points_follow_the_pinhole_model():
    # right 1 m and down 2 m (z = -2) at 10 m depth: u = 80 + 100 * 1/10, v = 45 + 100 * 2/10
    uv, _ = project_points(np.array([[1.0, 10.0, -2.0]]), camera_to_lidar(0), K)
    np.testing.assert_allclose(uv, [[90.0, 65.0]])


def test_camera_translation_is_inverted():
    # camera 2 m forward of the LiDAR: a point 12 m ahead of the LiDAR is 10 m ahead of the camera
    uv, _ = project_points(np.array([[1.0, 12.0, 0.0]]), camera_to_lidar(0, (0.0, 2.0, 0.0)), K)
    np.testing.assert_allclose(uv, [[90.0, 45.0]])


def test_points_behind_the_camera_are_dropped():
    uv, in_front = project_points(np.array([[0.0, -5.0, 0.0], [0.0, 0.1, 0.0]]), camera_to_lidar(0), K)
    assert not in_front.any()
    assert np.isnan(uv).all()


def test_back_camera_sees_behind():
    uv, in_front = project_points(np.array([[0.0, -10.0, 0.0]]), camera_to_lidar(180), K)
    np.testing.assert_allclose(uv, [[80.0, 45.0]], atol=1e-9)
    assert in_front.all()


def test_ground_height_comes_from_the_record_or_the_constant():
    xy = np.array([[0.0, 0.0], [0.0, 10.0], [5.0, 10.0]])
    np.testing.assert_allclose(ground_heights(rig_record(), xy), -LIDAR_HEIGHT)  # level LiDAR, flat road
    np.testing.assert_allclose(ground_heights(synthetic_record(), xy), -NUSCENES_LIDAR_HEIGHT_M)  # no pose: fallback


def test_ground_follows_a_tilted_lidar():
    # LiDAR pitched nose-down by a (its +y axis points a below the horizon): global z =
    # -sin(a) y + cos(a) z + h, so the road (global z = 0) 10 m ahead is at z = (10 sin a - h) / cos a.
    a = np.radians(2.0)
    record = rig_record()
    record.lidar2global = np.eye(4)
    record.lidar2global[1:3, 1:3] = [[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]
    record.lidar2global[2, 3] = LIDAR_HEIGHT
    z = ground_heights(record, np.array([[0.0, 10.0]]))[0]
    assert z == pytest.approx((10.0 * np.sin(a) - LIDAR_HEIGHT) / np.cos(a))
    world = record.lidar2global @ np.array([0.0, 10.0, z, 1.0])
    assert world[2] == pytest.approx(0.0, abs=1e-12)


def test_box_corners_3d_bottom_then_top():
    corners = box_corners_3d(np.array([0.0, 10.0, 1.0, 2.0, 4.0, 2.0, np.pi / 2]))
    np.testing.assert_allclose(corners[:4, 2], 0.0)
    np.testing.assert_allclose(corners[4:, 2], 2.0)
    np.testing.assert_allclose(np.sort(np.unique(corners[:, 1].round(9))), [8.0, 12.0])


def test_projected_trajectory_draws_ground_points_below_the_horizon():
    record = rig_record()
    fig = Figure()
    ax = fig.add_subplot()
    xy = np.array([[0.0, 5.0 * k] for k in range(1, 7)])
    line, markers = draw_projected_trajectory(ax, record, "CAM_FRONT", xy, GT_STYLE)
    u, v = markers.get_xdata(), markers.get_ydata()
    depth = xy[:, 1] - 0.8  # camera 0.8 m ahead of the LiDAR, 0.3 m below it
    np.testing.assert_allclose(v, 45.0 + 100.0 * (LIDAR_HEIGHT - 0.3) / depth)
    np.testing.assert_allclose(u, 80.0)
    assert np.isnan(line.get_ydata()).any()  # the bit under the car is behind the camera: cut


def test_projected_boxes_one_wireframe_per_visible_box():
    record = rig_record()  # car ahead-right, pedestrian ahead-left, truck behind
    fig = Figure()
    ax = fig.add_subplot()
    wireframes = draw_projected_boxes(ax, record, "CAM_FRONT")
    assert len(wireframes.get_segments()) == 2 * 12  # the truck is behind the front camera
    car_centre_uv, _ = project_points(record.agent_box[:1, :3], record.camera_sensor2lidar[0], K)
    car_edges = np.concatenate(wireframes.get_segments()[:12])
    np.testing.assert_allclose(car_edges.mean(axis=0), car_centre_uv[0], atol=3.0)  # box drawn around its centre
    record.agent_box = record.agent_box[2:]
    assert draw_projected_boxes(ax, record, "CAM_FRONT") is None


def test_projected_map_is_cut_behind_the_camera():
    record = rig_record()  # lane dividers at x = +-1.75 m from y = -30 to 30 m
    fig = Figure()
    ax = fig.add_subplot()
    left, right = draw_projected_map(ax, record, "CAM_FRONT")
    u, v = left.get_xdata(), left.get_ydata()
    assert np.isnan(u).any() and np.isfinite(u).any()
    seen = np.isfinite(u)
    assert (u[seen] < 80.0).all() and (v[seen] > 45.0).all()  # left of centre, below the horizon
    assert (right.get_xdata()[seen] > 80.0).all()


def test_densify_keeps_the_waypoints():
    xy = np.array([[0.0, 2.0], [1.0, 4.0]])
    dense = densify(xy, points_per_step=4)
    assert dense.shape == (8, 2)
    np.testing.assert_allclose(dense[[3, 7]], xy)
    np.testing.assert_allclose(dense[0], [0.0, 0.5])


# ----------------------------------------------------------------------------- BEV drawing


def test_box_corners_hand_case():
    # 4 m long, 2 m wide, heading +y: length runs along y
    np.testing.assert_allclose(box_corners(1.0, 2.0, 2.0, 4.0, np.pi / 2),
                               [[0.0, 4.0], [0.0, 0.0], [2.0, 0.0], [2.0, 4.0]], atol=1e-12)


def test_draw_ego_box_adds_polygon_with_hand_computed_corners():
    _fig, ax = make_bev_axes()
    patch = draw_ego_box(ax, np.array([0.0, 0.0]), np.pi / 2)
    assert patch in ax.patches and isinstance(patch, Polygon)
    # heading +y: the 4.084 m length runs along y, the centre 0.5 m ahead of the LiDAR point
    half_w, half_l = EGO_WIDTH_M / 2, EGO_LENGTH_M / 2
    expected = [[-half_w, 0.5 + half_l], [-half_w, 0.5 - half_l], [half_w, 0.5 - half_l], [half_w, 0.5 + half_l]]
    np.testing.assert_allclose(patch.get_xy()[:4], expected, atol=1e-12)


def test_bev_axes_state_frame_and_units():
    _, ax = make_bev_axes((-10, 10, -5, 30))
    assert ax.get_xlabel() == "x (m, right) — LiDAR_TOP frame"
    assert ax.get_ylabel() == "y (m, forward)"
    assert ax.get_xlim() == (-10, 10) and ax.get_ylim() == (-5, 30)


def test_draw_map_one_line_per_polyline():
    record = synthetic_record()
    _, ax = make_bev_axes()
    artists = draw_map(ax, record)
    assert len(artists) == 2
    np.testing.assert_allclose(artists[0].get_xdata(), [-1.75, -1.75])


def test_draw_agents_box_heading_tick_and_future():
    record = synthetic_record(agents=[("car", 3.0, 10.0, 0.0, 2.0)])
    _, ax = make_bev_axes()
    draw_agents(ax, record, with_futures=True)
    assert len(ax.patches) == 1 and len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    _, ax2 = make_bev_axes()
    draw_agents(ax2, record, with_futures=False)
    assert len(ax2.lines) == 1


def test_draw_trajectory_starts_at_origin_and_boxes_each_valid_step():
    record = synthetic_record(speed=4.0, future_valid=4)
    _, ax = make_bev_axes()
    draw_trajectory(ax, record.ego_future, GT_STYLE, mask=record.ego_future_mask)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.0, 2.0, 4.0, 6.0, 8.0])
    assert len(ax.patches) == 4
    np.testing.assert_allclose(ax.patches[3].get_xy()[:4].mean(axis=0), [0.0, 8.5])  # box centre 0.5 m ahead


def test_headings_follow_the_path_and_hold_when_standing():
    xy = np.array([[1.0, 0.0], [1.0, 0.05], [1.0, 1.0]])
    np.testing.assert_allclose(headings_from_waypoints(xy), [0.0, 0.0, np.pi / 2])


def test_collision_steps_and_markers():
    # a car (4.6 m long) parked 9 m ahead spans y in [6.7, 11.3]; the ego box (4.084 m) centred at
    # y = 4 t reaches it when 4 t + 2.042 > 6.7, i.e. from t = 1.5 s (y = 6) to the end (y = 12)
    record = synthetic_record(speed=4.0, agents=[("car", 0.0, 9.0, 0.0, 0.0)])
    collided = collision_steps(planning_targets(record), record.ego_future)
    np.testing.assert_array_equal(collided, [False, False, True, True, True, True])
    record.future_box_category[:] = "movable_object.barrier"  # not a vehicle/human: not counted
    assert not collision_steps(planning_targets(record), record.ego_future).any()
    _, ax = make_bev_axes()
    (scatter,) = draw_collisions(ax, record.ego_future, collided)
    np.testing.assert_allclose(scatter.get_offsets(), [[0, 6], [0, 8], [0, 10], [0, 12]])
    assert draw_collisions(ax, record.ego_future, np.zeros(6, bool)) == []


def test_draw_scene_reports_collisions_per_trajectory_and_legend_names_them():
    record = synthetic_record(speed=4.0, agents=[("car", 0.0, 9.0, 0.0, 0.0)])
    swerve = PlannedTrajectory(np.stack([np.full(6, 4.0), record.ego_future[:, 1]], 1), PRED_STYLE)
    _, ax = make_bev_axes()
    collided = draw_scene(ax, record, [gt_trajectory(record), swerve])
    np.testing.assert_array_equal(collided["GT ego future"], [False, False, True, True, True, True])
    assert not collided["prediction"].any()  # 4 m to the right clears the 1.9 m wide car
    labels = [h.get_label() for h in legend_handles(record, [GT_STYLE, PRED_STYLE], "uniad")]
    assert labels[:4] == ["ego now (4.084 x 1.85 m)", "ego past 2 s", "GT ego future", "prediction"]
    assert {"car", "lane divider"} <= set(labels) and labels[-1].startswith("collision (UniAD")


def test_l2_at_seconds_hand_case():
    gt = np.zeros((6, 2))
    pred = np.stack([np.arange(6.0), np.zeros(6)], 1)
    mask = np.array([True] * 5 + [False])
    assert l2_at_seconds(pred, gt, mask)["1s"] == 1.0 and l2_at_seconds(pred, gt, mask)["2s"] == 3.0
    assert np.isnan(l2_at_seconds(pred, gt, mask)["3s"])


# ----------------------------------------------------------------------------- tools end to end


def test_visualize_render_on_synthetic_rig(tmp_path):
    from planning.predictions import load_predictions, save_predictions
    from tools.visualize import FigureOptions, PredictionLayer, render

    records = [rig_record(f"tok{i}", frame=i) for i in range(2)]
    for record in records:
        write_images(tmp_path, record)
    pred_file = save_predictions(tmp_path / "pred.json", {"tok0": records[0].ego_future + np.array([0.5, 0.0])},
                                 texts={"tok1": "no numbers"})
    layers = [PredictionLayer(PRED_STYLE, load_predictions(pred_file))]
    written = render(records, tmp_path, layers, tmp_path / "vis", gif=True, options=FigureOptions(dpi=50),
                     progress=False)
    pngs, gifs = [p for p in written if p.suffix == ".png"], [p for p in written if p.suffix == ".gif"]
    assert len(pngs) == 2 and len(gifs) == 1
    for png in pngs:
        assert_nontrivial_image(png)
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 2


def test_select_records_orders_cuts_and_names_unknown_tokens():
    from tools.visualize import select_records

    records = [rig_record("b", 1, "scene-2"), rig_record("a", 0, "scene-2"), rig_record("c", 5, "scene-1")]
    assert [r.sample_token for r in select_records(records, None, None)] == ["c", "a", "b"]
    assert [r.sample_token for r in select_records(records, 2, None)] == ["c", "a"]
    assert [r.sample_token for r in select_records(records, None, ["b", "c"])] == ["b", "c"]
    with pytest.raises(SystemExit, match="'zz'"):
        select_records(records, None, ["zz"])
    with pytest.raises(SystemExit, match="positive"):
        select_records(records, 0, None)


def test_show_sample_picks_the_busiest_sample_by_default():
    from tools.show_sample import pick_record

    records = [rig_record("few", 0), rig_record("many", 1)]
    records[0].agent_box = records[0].agent_box[:1]
    assert pick_record(records, None, None).sample_token == "many"
    assert pick_record(records, None, 0).sample_token == "few"
    with pytest.raises(SystemExit, match="out of range"):
        pick_record(records, None, 2)


def test_visualize_cli_on_mini_world(mini_world, mini_records, tmp_path):
    from tools.visualize import main

    token = mini_records["val"][0].sample_token
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({token: {"trajectory": mini_records["val"][0].ego_future.tolist()}}))
    out = tmp_path / "vis"
    assert main(["--dataroot", str(mini_world), "--split", "val", "--pred", str(pred), "--out", str(out),
                 "--samples", "2", "--gif", "--dpi", "40"]) == 0
    pngs, gifs = sorted(out.rglob("*.png")), sorted(out.glob("*.gif"))
    assert len(pngs) == 2 and len(gifs) >= 1
    assert_nontrivial_image(pngs[0])


def test_show_sample_cli_on_mini_world(mini_world, tmp_path):
    from tools.show_sample import main

    out = tmp_path / "sample.png"
    assert main(["--dataroot", str(mini_world), "--out", str(out), "--index", "0", "--dpi", "40"]) == 0
    assert_nontrivial_image(out)


def test_visualize_rejects_unknown_tokens_on_mini_world(mini_world, tmp_path):
    from tools.visualize import main

    with pytest.raises(SystemExit, match="not in this split"):
        main(["--dataroot", str(mini_world), "--out", str(tmp_path), "--tokens", "no-such-token"])


def test_visualize_names_a_missing_predictions_file(mini_world, tmp_path):
    from tools.visualize import main

    with pytest.raises(SystemExit, match="nope.json: predictions file not found"):
        main(["--dataroot", str(mini_world), "--out", str(tmp_path), "--pred", str(tmp_path / "nope.json")])
