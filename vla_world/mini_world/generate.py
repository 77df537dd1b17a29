"""Builds the whole mini world: maps, traffic, sensors and the nuScenes tables, for one seed.

Run it through `tools/make_mini_world.py` or call `make_mini_world(out_dir, ...)`. Train/val
scene i (of `num_scenes`) is placed in location LOCATIONS[i % 4] with behaviour
SCENE_BEHAVIOURS[i % 10]; the `test_scenes` held-out test scenes that follow them copy the train
(behaviour, location) mix. Everything random comes from generators seeded by (seed, scene key),
so a seed gives byte-identical tables, and test scenes have keys of their own so that adding
them changes no train or val scene.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .ground_texture import GroundTexture, build_ground_texture
from .lidar import LidarBox, LidarModel
from .map_expansion import (
    SEMANTIC_PRIOR_HASHES,
    write_basemap,
    write_intensity_basemap,
    write_map_expansion,
)
from .prediction_scenes import write_prediction_scenes
from .render_camera import CameraRenderer, RenderBox, class_colour
from .road_network import LOCATIONS, RoadNetwork, build_road_network
from .scenarios import (
    SceneSimulation,
    behaviour_for_scene,
    held_out_mix,
    simulate_scene,
    split_scene_indices,
)
from .scene_names import assign_scene_names
from .sensors import ALL_SENSORS, CAMERAS, EGO_CENTER_AHEAD_OF_REAR_AXLE, LIDAR
from .tables import BoxAnnotation, SceneTables, TableWriter
from .tokens import TokenFactory
from .traffic import AgentTrack

KEYFRAME_SECONDS = 0.5  # nuScenes keyframes are at 2 Hz
ANNOTATION_RANGE = 50.0  # metres from the ego within which objects are annotated
SENSOR_RANGE = 80.0  # metres; agents farther away are neither rendered nor ray cast
LIDAR_AZIMUTH_STEPS = 720  # 0.5 degree azimuth resolution
JPEG_QUALITY = 90
MARKER = ".vla_world_mini_world"  # marks a folder this tool may overwrite
SPLITS_FILE = "vla_world_splits.json"
# The devkit's own custom-split file (nuscenes.utils.splits.get_scenes_of_custom_split), so that
# DetectionEval(..., eval_set="vla_world_test") scores exactly our split even where no official split
# name covers it (a mini world's 14 test scenes); the prefix keeps clear of the official split names.
DEVKIT_SPLITS_FILE = "splits.json"
DEVKIT_SPLIT_PREFIX = "vla_world_"
SPLITS: tuple[str, ...] = ("train", "val", "test")  # keys of SPLITS_FILE; val chooses settings, test reports
FIRST_DAY = dt.datetime(2018, 7, 10, 3, 0, 0, tzinfo=dt.UTC)
# Held-out test scenes of a default build: twice the 7 train scenes, so test repeats the train
# behaviour mix exactly. 14 x 20 s scenes give 448 samples counted by every planning convention
# (34 with a full 3 s future per scene, 32 of them with ST-P3's 2 past frames): >= 400, so one
# sample moves a collision rate by at most 0.25 %.
DEFAULT_TEST_SCENES = 14
# Generator keys of test scene j are (seed, TEST_SEED_TAG, j + 1) (traffic) and (seed, TEST_SEED_TAG + 1, j + 1, k)
# (lidar noise): train/val scene i uses (seed, 1000 + i) and (seed, i, k), and no scene index gets near the tag,
# so test scenes never replay a train/val scene, whatever --scenes is.
TEST_SEED_TAG = 0x7E570000


@dataclass(frozen=True)
class WorldSpec:
    """What to build (the CLI flags)."""

    out_dir: Path
    num_scenes: int = 10
    seed: int = 0
    image_size: tuple[int, int] = (256, 144)  # (width, height) of every camera image
    scene_seconds: float = 20.0
    version: str = "v1.0-mini"
    test_scenes: int = DEFAULT_TEST_SCENES  # held-out test scenes, added after the num_scenes train/val scenes

    def validate(self) -> None:
        if self.num_scenes < 1:
            raise ValueError(f"num_scenes must be >= 1, got {self.num_scenes}")
        if self.test_scenes < 0:
            raise ValueError(f"test_scenes must be >= 0 (0 = no test split), got {self.test_scenes}")
        if self.scene_seconds < 4.0:
            raise ValueError(f"scene_seconds must be >= 4 (a few keyframes plus the 3 s future), got {self.scene_seconds}")
        if min(self.image_size) < 16:
            raise ValueError(f"image_size must be at least 16x16 pixels, got {self.image_size}")
        if not split_scene_indices(self.num_scenes)[1]:
            raise ValueError(f"num_scenes {self.num_scenes} leaves no val scene (settings are chosen on val, and the "
                             "training tools read it); use --scenes 2 or more")
        if not self.version.startswith("v1.0-"):
            raise ValueError(f"version {self.version!r}: readers look for a v1.0-* table folder (as nuScenes names "
                             "them); use v1.0-mini or v1.0-trainval")


# Options that change what a scene of a given name holds, with their defaults: a world built with the defaults
# keeps the namespace "vla-world/seed<N>" (and so the tokens every existing cache was made with); any other value
# enters the namespace, so two worlds that differ in content never share a sample token. num_scenes is one: it
# decides which scene index is a test scene and the test mix. test_scenes is not: more test scenes append new
# ones and leave every earlier scene byte-identical (tests/test_test_split.py), so shared tokens mean shared labels.
_CONTENT_DEFAULTS = {"num_scenes": 10, "image_size": (256, 144), "scene_seconds": 20.0, "version": "v1.0-mini"}


def world_namespace(spec: WorldSpec) -> str:
    """The token namespace of a world: the seed plus every content option that differs from its default."""
    changed = [f"{name}={getattr(spec, name)}" for name, default in _CONTENT_DEFAULTS.items()
               if getattr(spec, name) != default]
    return "/".join([f"vla-world/seed{spec.seed}", *changed])


def make_mini_world(out_dir, num_scenes: int = 10, seed: int = 0, image_size: tuple[int, int] = (256, 144),
                    scene_seconds: float = 20.0, version: str = "v1.0-mini", progress: bool = True,
                    test_scenes: int = DEFAULT_TEST_SCENES) -> Path:
    """Write a procedurally generated nuScenes-format dataset to `out_dir` and return it.

    `num_scenes` train/val scenes, then `test_scenes` held-out test scenes (0 = no test split).
    """
    spec = WorldSpec(Path(out_dir), num_scenes, seed, tuple(int(v) for v in image_size), float(scene_seconds), version,
                     int(test_scenes))
    spec.validate()
    _prepare_output(spec)
    tokens = TokenFactory(world_namespace(spec))
    writer = TableWriter(tokens)
    plans = plan_scenes(spec)
    nets = {loc: build_road_network(loc, np.random.default_rng([seed, LOCATIONS.index(loc)]))
            for loc in dict.fromkeys(plan.location for plan in plans)}
    textures: dict[str, GroundTexture] = {}
    logs_by_location: dict[str, list[str]] = {loc: [] for loc in nets}
    for plan in tqdm(plans, desc="mini world scenes", unit="scene", disable=not progress):
        if plan.location not in textures:
            textures[plan.location] = build_ground_texture(nets[plan.location])
        scene_tables = _build_scene(spec, plan, nets[plan.location], textures[plan.location], writer, tokens)
        logs_by_location[plan.location].append(scene_tables.log_token)
        writer.add_scene(scene_tables)
    _write_maps(spec, nets, textures, logs_by_location, writer)
    write_prediction_scenes(writer.tables, spec.out_dir)
    writer.write(spec.out_dir / version)
    splits = {split: [plan.name for plan in plans if plan.split == split] for split in SPLITS}
    (spec.out_dir / version / SPLITS_FILE).write_text(json.dumps(splits, indent=1))
    devkit_splits = {f"{DEVKIT_SPLIT_PREFIX}{split}": names for split, names in splits.items()}
    (spec.out_dir / version / DEVKIT_SPLITS_FILE).write_text(json.dumps(devkit_splits, indent=1))
    return spec.out_dir


@dataclass(frozen=True)
class ScenePlan:
    """What a scene is before it is simulated: its place, split, ego behaviour and generator keys."""

    index: int  # position in scene.json; names the scene and its log
    split: str  # "train" | "val" | "test"
    behaviour: str  # one of SCENE_BEHAVIOURS
    location: str  # one of LOCATIONS
    sim_key: tuple[int, ...]  # entropy of the scene's traffic generator
    noise_key: tuple[int, ...]  # entropy prefix of its per-keyframe lidar noise (keyframe index appended)
    name: str = ""  # official nuScenes scene name for its split and the version (scene_names.py)

    @property
    def key(self) -> str:
        """Readable key of the scene's tokens and log; independent of its official name."""
        return f"scene-{self.index + 1:04d}"


def plan_scenes(spec: WorldSpec) -> list[ScenePlan]:
    """Train/val scenes 0..num_scenes-1 (keys as before test scenes existed), then the test scenes."""
    _, val = split_scene_indices(spec.num_scenes)
    plans = [ScenePlan(i, "val" if i in val else "train", behaviour_for_scene(i), LOCATIONS[i % len(LOCATIONS)],
                       (spec.seed, 1000 + i), (spec.seed, i)) for i in range(spec.num_scenes)]
    mix = held_out_mix([(p.behaviour, p.location) for p in plans if p.split == "train"], spec.test_scenes)
    plans += [ScenePlan(spec.num_scenes + j, "test", behaviour, location, (spec.seed, TEST_SEED_TAG, j + 1),
                        (spec.seed, TEST_SEED_TAG + 1, j + 1)) for j, (behaviour, location) in enumerate(mix)]
    names = assign_scene_names([plan.split for plan in plans], spec.version)
    return [replace(plan, name=name) for plan, name in zip(plans, names)]


def _prepare_output(spec: WorldSpec) -> None:
    """Refuse to write into a foreign non-empty folder; clear our own previous build."""
    out = spec.out_dir
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(f"{out} is not empty and was not made by make_mini_world; choose an empty --out folder")
    for sub in ("samples", "maps", spec.version):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by vla_world.mini_world.make_mini_world; safe to delete\n")


def _write_maps(spec: WorldSpec, nets: dict[str, RoadNetwork], textures: dict[str, GroundTexture],
                logs: dict[str, list[str]], writer: TableWriter) -> None:
    """Per location: the expansion JSON, the semantic prior named as the devkit's BitMap expects, the basemap."""
    for loc, net in nets.items():
        write_map_expansion(net, spec.out_dir)
        filename = f"maps/{SEMANTIC_PRIOR_HASHES[loc]}.png"
        write_basemap(net, spec.out_dir / filename)
        write_intensity_basemap(textures[loc].intensity, spec.out_dir / "maps" / "basemap" / f"{loc}.png")
        writer.add_map(loc, logs[loc], filename)


def _log_identity(index: int, location: str) -> tuple[str, str, int]:
    """(logfile, date, first timestamp in microseconds) in nuScenes style, one day per scene."""
    start = FIRST_DAY + dt.timedelta(days=index, minutes=7 * index)
    boston = location.startswith("boston")
    local = start + dt.timedelta(hours=-4 if boston else 8)
    vehicle = "n008" if boston else "n015"
    logfile = f"{vehicle}-{local:%Y-%m-%d-%H-%M-%S}{'-0400' if boston else '+0800'}"
    return logfile, f"{local:%Y-%m-%d}", int(start.timestamp() * 1_000_000) + 412_345


@dataclass
class _SceneContext:
    """What every keyframe of one scene needs."""

    spec: WorldSpec
    plan: ScenePlan
    sim: SceneSimulation
    logfile: str
    spans: list[tuple[int, int] | None]
    renderer: CameraRenderer
    lidar: LidarModel
    texture: GroundTexture


def _build_scene(spec: WorldSpec, plan: ScenePlan, net: RoadNetwork, texture: GroundTexture, writer: TableWriter,
                 tokens: TokenFactory) -> SceneTables:
    """Simulate the planned scene, write its sensor files and return its table rows (not yet chained)."""
    rng = np.random.default_rng(list(plan.sim_key))
    num_frames = round(spec.scene_seconds / KEYFRAME_SECONDS)
    sim = simulate_scene(net, plan.behaviour, (num_frames - 1) * KEYFRAME_SECONDS, KEYFRAME_SECONDS, rng)
    logfile, date, first_ts = _log_identity(plan.index, net.location)
    key = plan.key  # tokens hang off the index key, so renaming scenes changed no token
    log_token = writer.add_log(key, logfile, net.location, date)
    calib = {s.channel: writer.add_calibration(key, s, spec.image_size) for s in ALL_SENSORS}
    scene = SceneTables(tokens, tokens.make(key, "scene"), plan.name, log_token, sim.description, calib, key=key)
    ctx = _SceneContext(spec, plan, sim, logfile, _annotation_spans(sim), CameraRenderer(texture, spec.image_size),
                        LidarModel(LIDAR.sensor_to_ego(), LIDAR_AZIMUTH_STEPS), texture)
    for k in range(num_frames):
        _write_keyframe(ctx, scene, k, first_ts + k * int(KEYFRAME_SECONDS * 1_000_000))
    return scene


def _write_keyframe(ctx: _SceneContext, scene: SceneTables, k: int, timestamp: int) -> None:
    """Sample rows, one lidar sweep, six JPEGs and the annotations of keyframe k."""
    sim, out = ctx.sim, ctx.spec.out_dir
    ego_to_global = _ego_pose(sim.ego, k)
    filenames = {s.channel: f"samples/{s.channel}/{ctx.logfile}__{s.channel}__{timestamp}."
                 f"{'pcd.bin' if s.modality == 'lidar' else 'jpg'}" for s in ALL_SENSORS}
    sample_token = scene.add_keyframe(k, timestamp, ego_to_global[:3, 3].round(4).tolist(), float(sim.ego.yaw[k]),
                                      filenames, ctx.spec.image_size)
    in_span = [s is not None and s[0] <= k <= s[1] for s in ctx.spans]
    nearby = [a for a, agent in enumerate(sim.agents)
              if in_span[a] or np.linalg.norm(agent.xy[k] - sim.ego.xy[k]) < SENSOR_RANGE]
    sweep = ctx.lidar.cast(ego_to_global, [_lidar_box(sim.agents[a], k) for a in nearby], ctx.texture.reflectance,
                           np.random.default_rng([*ctx.plan.noise_key, k]))
    _write_lidar(out / filenames["LIDAR_TOP"], sweep.points)
    images = ctx.renderer.render(ego_to_global, [_render_box(sim.agents[a], k) for a in nearby])
    for cam in CAMERAS:
        _write_jpeg(out / filenames[cam.channel], images[cam.channel])
    for j, a in enumerate(nearby):
        if in_span[a]:
            scene.add_annotation(sample_token, _annotation(a, sim.agents[a], k, int(sweep.points_per_box[j]),
                                                           float(sweep.unoccluded_share[j])))


def _annotation_spans(sim: SceneSimulation) -> list[tuple[int, int] | None]:
    """Keyframe range [first, last] in which each agent is annotated (contiguous, like nuScenes tracks)."""
    spans = []
    for agent in sim.agents:
        close = np.nonzero(np.linalg.norm(agent.xy - sim.ego.xy, axis=1) < ANNOTATION_RANGE)[0]
        spans.append((int(close[0]), int(close[-1])) if len(close) else None)
    return spans


def _ego_pose(ego: AgentTrack, k: int) -> np.ndarray:
    """Ego -> global 4x4 at keyframe k; the ego origin is the rear axle, behind the box centre."""
    yaw = float(ego.yaw[k])
    heading = np.array([math.cos(yaw), math.sin(yaw)])
    pose = np.eye(4)
    pose[:2, :2] = [[heading[0], -heading[1]], [heading[1], heading[0]]]
    pose[:2, 3] = ego.xy[k] - heading * EGO_CENTER_AHEAD_OF_REAR_AXLE
    return pose


def _box_center(agent: AgentTrack, k: int) -> np.ndarray:
    return np.array([agent.xy[k, 0], agent.xy[k, 1], agent.size[2] / 2])


def _lidar_box(agent: AgentTrack, k: int) -> LidarBox:
    reflect = {"vehicle": 45.0, "cycle": 30.0, "pedestrian": 18.0}[agent.type.kind]
    return LidarBox(_box_center(agent, k), np.array(agent.size), float(agent.yaw[k]), reflect)


def _render_box(agent: AgentTrack, k: int) -> RenderBox:
    return RenderBox(_box_center(agent, k), np.array(agent.size), float(agent.yaw[k]), class_colour(agent.type.category))


def _attribute(agent: AgentTrack, k: int) -> str:
    speed = float(agent.speed[k])
    if agent.type.kind == "pedestrian":
        return "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    if agent.type.kind == "cycle":
        return "cycle.with_rider"
    return "vehicle.moving" if speed > 0.5 else "vehicle.stopped"


def visibility_level(unoccluded_share: float, points: int) -> str:
    """nuScenes visibility token ("1" = 0-40 % .. "4" = 80-100 %) from the lidar's unblocked share."""
    if points == 0 or not np.isfinite(unoccluded_share):
        return "1"
    return str(1 + int(np.searchsorted([0.4, 0.6, 0.8], unoccluded_share, side="right")))


def _annotation(agent_id: int, agent: AgentTrack, k: int, points: int, share: float) -> BoxAnnotation:
    return BoxAnnotation(agent_id, agent.type.category, _attribute(agent, k), tuple(_box_center(agent, k)),
                         agent.size, float(agent.yaw[k]), points, visibility_level(share, points))


def _write_lidar(path: Path, points: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    points.astype(np.float32).tofile(path)


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    path.write_bytes(data.tobytes())
