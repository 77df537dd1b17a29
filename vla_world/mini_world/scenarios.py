"""Per-scene set-up: the ego's behaviour, its route, the traffic around it and the light plans.

Each scene is given one ego behaviour so the default 10-scene world covers all of them:
"left"/"right" (a real 90-degree turn at a junction), "forward" (straight through a green
junction), "stop" (the light is red when the ego arrives; it stops and waits) and "slow-right"
(it catches up with a slow truck or cyclist and follows it through a right turn). Lights at the ego's junction are timed from a
dry run of the ego alone, which is exact because nothing else can enter its clear lane
before it reaches the stop line.

Scenes are split train / val / test at scene level. Val is for choosing settings; test is held
out for reporting only, and its scenes are added after the train and val scenes (with their
own seeds) so that adding them leaves train and val exactly as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .agents import BICYCLE, PEDESTRIAN, TRUCK, AgentType, sample_vehicle_type
from .road_network import (
    ARM_VECTORS,
    ROAD_HALF_WIDTH,
    SIDEWALK_WIDTH,
    RoadNetwork,
    left_normal,
)
from .sensors import EGO_SIZE_WLH
from .signals import GREEN_SECONDS, SignalPlan, standard_plan
from .traffic import (
    PED_SPACING,
    AgentTrack,
    Pedestrian,
    TrafficSimulation,
    Vehicle,
    build_route,
    extend_randomly,
)

# Behaviour of scene i is SCENE_BEHAVIOURS[i % 10]. Turn-heavy on purpose (turn keyframes are the rare
# commands), and laid out so the val scenes (i % 3 == 2: 2, 5, 8) get a right turn, a left turn and a stop.
SCENE_BEHAVIOURS: tuple[str, ...] = ("left", "right", "right", "stop", "left", "left", "slow-right", "right", "stop",
                                     "forward")
EGO_TYPE = AgentType("vehicle.ego", "vehicle", EGO_SIZE_WLH, 0.0, (8.0, 9.5))
SPAWN_RADIUS = 90.0  # metres around the ego's path where traffic is placed
MEAN_VEHICLE_GAP = 30.0  # metres between spawned vehicles on a lane (plus a 10 m minimum)


def behaviour_for_scene(index: int) -> str:
    return SCENE_BEHAVIOURS[index % len(SCENE_BEHAVIOURS)]


def movement_of(behaviour: str) -> str:
    """The ego's movement at its scripted junction: "left", "right" or "straight"."""
    for turn in ("left", "right"):
        if behaviour.endswith(turn):
            return turn
    return "straight"


def split_scene_indices(num_scenes: int) -> tuple[list[int], list[int]]:
    """Scene-level split: ~30 % val (every third scene from the third), never empty for >= 2 scenes."""
    num_val = 0 if num_scenes < 2 else max(1, round(0.3 * num_scenes))
    val = [i for i in range(num_scenes) if i % 3 == 2][:num_val]
    if len(val) < num_val:
        val += [i for i in reversed(range(num_scenes)) if i not in val][: num_val - len(val)]
    return [i for i in range(num_scenes) if i not in val], sorted(val)


def held_out_mix(train_scenes: list[tuple[str, str]], num_test: int) -> list[tuple[str, str]]:
    """(behaviour, location) of each held-out test scene, in the proportions of the train scenes' pairs.

    Each next test scene takes the behaviour furthest below its train share so far (ties: the one
    train meets first), so every prefix is as close to the train mix as whole scenes allow and
    every train behaviour is in test as soon as there are as many test scenes as kinds. The train
    scenes of that behaviour then lend their locations in turn: the location matters (a right
    turn is a kerb-side turn in Boston and a turn across traffic in Singapore), and any multiple
    of len(train_scenes) repeats the train (behaviour, location) mix exactly.
    """
    if num_test > 0 and not train_scenes:
        raise ValueError("test scenes copy the train scene mix, but there are no train scenes")
    locations = {b: [loc for other, loc in train_scenes if other == b] for b, _ in train_scenes}  # first-seen order
    taken = dict.fromkeys(locations, 0)
    out = []
    for j in range(num_test):
        # integer form of share_b * (j + 1) - taken_b, scaled by len(train_scenes)
        pick = max(locations, key=lambda b: len(locations[b]) * (j + 1) - taken[b] * len(train_scenes))
        out.append((pick, locations[pick][taken[pick] % len(locations[pick])]))
        taken[pick] += 1
    return out


@dataclass
class SceneSimulation:
    behaviour: str
    ego: AgentTrack  # box centre track of the ego
    agents: list[AgentTrack]  # everyone else
    description: str


@dataclass
class SceneSetup:
    """A scene before it runs: its traffic (vehicles[0] is the ego) and the ego's scripted junction."""

    behaviour: str
    traffic: TrafficSimulation
    junction: int  # index of the junction where the ego makes its scripted movement
    stop_s: float  # arc length of the ego's stop line there, along its route


def setup_scene(net: RoadNetwork, behaviour: str, duration: float, rng: np.random.Generator) -> SceneSetup:
    """Place the ego, its traffic, pedestrians and light plans for a scene of `duration` seconds."""
    movement = movement_of(behaviour)
    ego_speed = EGO_TYPE.sample_speed(rng)
    # when the ego would reach its stop line at its own speed; a slow leader delays it, so start closer
    arrival = {"stop": 0.3, "slow-right": 0.2}.get(behaviour, 0.4) * duration
    lanes, ego_s, junction, arm = _ego_route(net, movement, ego_speed * arrival, rng)
    lanes = extend_randomly(net, lanes, ego_s + ego_speed * duration + 80.0, rng, straight_weight=6.0)
    ego = Vehicle(EGO_TYPE, EGO_SIZE_WLH, ego_speed, build_route(net, lanes), ego_s, ego_speed)
    lead = _slow_lead(ego, rng) if behaviour.startswith("slow") else []
    signals = {j.index: standard_plan(j.arms, float(rng.uniform(0, 40))) for j in net.junctions}
    stop_s = next(s for s, jn, _ in ego.route.stops if jn == junction)
    _keep_ego_green_before(net, signals, ego, junction, duration)
    if behaviour == "stop":
        signals[junction] = standard_plan(net.junctions[junction].arms, 0.8 * duration, first_arm=arm)
    else:
        crossing = _dry_run_crossing_time(net, signals, ego, lead, junction, arm, stop_s, duration)
        signals[junction] = standard_plan(net.junctions[junction].arms, 0.0, first_arm=arm,
                                          first_green=max(GREEN_SECONDS, crossing + 3.0))
    ego_path = ego.route.xy[int(ego_s): int(ego_s + ego_speed * duration) + 1: 5]
    connector = next(i for i in lanes if net.lanes[i].kind == "connector" and net.lanes[i].junction == junction)
    others = _spawn_vehicles(net, ego, ego_path, lead, stop_s, connector, duration, rng)
    peds = _spawn_pedestrians(net, ego_path, duration, rng)
    return SceneSetup(behaviour, TrafficSimulation(net, signals, [ego, *lead, *others], peds), junction, stop_s)


def simulate_scene(net: RoadNetwork, behaviour: str, duration: float, keyframe_step: float,
                   rng: np.random.Generator) -> SceneSimulation:
    """Set up and run one scene; tracks are sampled every `keyframe_step` s from 0 to `duration`."""
    setup = setup_scene(net, behaviour, duration, rng)
    tracks = setup.traffic.run(duration, keyframe_step)
    return SceneSimulation(behaviour, tracks[0], tracks[1:], scene_description(behaviour))


def scene_description(behaviour: str) -> str:
    """`scene.description` of a scene with this ego behaviour."""
    return f"mini world: ego {_verb(behaviour)}; cars, trucks, buses, cyclists, pedestrians, traffic lights"


def behaviour_from_description(description: str) -> str | None:
    """The behaviour a mini world `scene.description` names; None for any other description (real nuScenes)."""
    return {scene_description(b): b for b in SCENE_BEHAVIOURS}.get(description)


def _verb(behaviour: str) -> str:
    turn = {"left": "turns left at a junction", "right": "turns right at a junction"}
    if behaviour.startswith("slow"):
        then = f", then {turn[movement_of(behaviour)]}" if movement_of(behaviour) in turn else ""
        return "slows behind a slow vehicle" + then
    return {**turn, "forward": "drives straight through a junction", "stop": "stops for a red light"}[behaviour]


def _ego_route(net: RoadNetwork, movement: str, approach: float,
               rng: np.random.Generator) -> tuple[list[int], float, int, int]:
    """(lanes [.., road lane, connector] ending with `movement`, ego start arc length, junction, entry arm)."""
    connectors = [ln for ln in net.lanes if ln.kind == "connector" and ln.turn == movement]
    connector = connectors[int(rng.integers(len(connectors)))]
    lanes = [connector.predecessors[0], connector.index]
    while sum(net.lanes[i].length for i in lanes[:-1]) < approach + 10.0:
        first = net.lanes[lanes[0]]
        straight = [p for p in first.predecessors if net.lanes[p].turn == "straight"] or first.predecessors
        lanes = [net.lanes[straight[0]].predecessors[0], straight[0]] + lanes
    to_stop = sum(net.lanes[i].length for i in lanes[:-1])
    return lanes, to_stop - approach, connector.junction, connector.arm


def _keep_ego_green_before(net: RoadNetwork, signals: dict, ego: Vehicle, junction: int, duration: float) -> None:
    """Junctions the ego passes before its scripted one stay green for it (else the script breaks)."""
    for _, jn, arm in ego.route.stops:
        if jn == junction:
            return
        signals[jn] = standard_plan(net.junctions[jn].arms, 0.0, first_arm=arm, first_green=duration + 5.0)


def _slow_lead(ego: Vehicle, rng: np.random.Generator) -> list[Vehicle]:
    kind = TRUCK if rng.random() < 0.5 else BICYCLE
    speed = float(rng.uniform(2.5, 3.5))
    return [Vehicle(kind, kind.sample_size(rng), speed, ego.route, ego.s + float(rng.uniform(26, 32)), speed)]


def _dry_run_crossing_time(net: RoadNetwork, signals: dict[int, SignalPlan], ego: Vehicle, lead: list[Vehicle],
                           junction: int, arm: int, stop_s: float, duration: float) -> float:
    """When the ego's centre passes its stop line if its light stays green (ego and lead only)."""
    trial = dict(signals)
    trial[junction] = standard_plan(net.junctions[junction].arms, 0.0, first_arm=arm, first_green=duration + 5.0)
    probe = Vehicle(ego.type, ego.size, ego.desired_speed, ego.route, ego.s, ego.speed)
    leads = [Vehicle(v.type, v.size, v.desired_speed, v.route, v.s, v.speed) for v in lead]
    track = TrafficSimulation(net, trial, [probe, *leads]).run(duration, 0.1)[0]
    travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(track.xy, axis=0), axis=1))])
    passed = np.nonzero(ego.s + travelled >= stop_s)[0]
    return float(passed[0]) * 0.1 if len(passed) else duration


def _distance_to(points: np.ndarray, path: np.ndarray) -> float:
    return float(np.sqrt(np.square(points[:, None] - path[None]).sum(-1).min()))


def _spawn_vehicles(net: RoadNetwork, ego: Vehicle, ego_path: np.ndarray, lead: list[Vehicle], stop_s: float,
                    scripted_connector: int, duration: float, rng: np.random.Generator) -> list[Vehicle]:
    """Random vehicles on road lanes near the ego, keeping its approach to the scripted junction clear."""
    ego_xy = ego.route.xy[int(ego.s)]
    approach_lanes = set(ego.route.lanes[: ego.route.lanes.index(scripted_connector) + 1])
    clear_until = ego.route.xy[int(min(stop_s + 5, len(ego.route.xy) - 1))]
    vehicles = []
    for lane in net.lanes:
        if lane.kind != "road" or _distance_to(lane.points[::4], ego_path) > SPAWN_RADIUS:
            continue
        on_ego_route = lane.index in approach_lanes
        pos = float(rng.uniform(4.0, 20.0))
        while pos < lane.length - 6.0:
            kind = sample_vehicle_type(rng)
            if kind is BICYCLE and lane.slot == 0:
                kind = sample_vehicle_type(rng)
            point = lane.points[min(int(pos / 0.5), len(lane.points) - 1)]
            blocked = np.linalg.norm(point - ego_xy) < 15.0 or any(
                np.linalg.norm(point - v.route.xy[int(v.s)]) < 15.0 for v in lead)
            if on_ego_route and np.dot(point - ego_xy, clear_until - ego_xy) > 0:
                blocked = True  # ahead of the ego on its approach: keep it clear for the script
            if not blocked:
                speed = kind.sample_speed(rng)
                lanes = extend_randomly(net, [lane.index], pos + speed * duration + 60.0, rng)
                vehicles.append(Vehicle(kind, kind.sample_size(rng), speed, build_route(net, lanes), pos, 0.7 * speed))
            pos += 10.0 + float(rng.exponential(MEAN_VEHICLE_GAP))
    return vehicles


def _spawn_pedestrians(net: RoadNetwork, ego_path: np.ndarray, duration: float,
                       rng: np.random.Generator) -> list[Pedestrian]:
    """Crossers at crosswalks (they wait for the walk phase), walkers and standers on sidewalks."""
    peds = []
    for cw in net.crosswalks:
        if _distance_to(cw.ends, ego_path) > SPAWN_RADIUS * 0.7:
            continue
        outward = ARM_VECTORS[cw.arm]
        for _ in range(int(rng.integers(0, 3))):
            start, end = cw.ends if rng.random() < 0.5 else cw.ends[::-1]
            approach = start + outward * float(rng.uniform(1.0, 15.0))
            path, wait_at = _ped_path([approach, start, end, end + outward * 25.0], duration, wait_index=1)
            peds.append(_pedestrian(rng, path, wait_at, cw.junction))
    for road in net.roads:
        if _distance_to(np.stack([road.start, road.end]), ego_path) > SPAWN_RADIUS * 0.7:
            continue
        for _ in range(int(rng.integers(1, 4))):
            side = 1.0 if rng.random() < 0.5 else -1.0
            lateral = left_normal(road.direction) * side * (ROAD_HALF_WIDTH + SIDEWALK_WIDTH / 2 + rng.uniform(-0.6, 0.6))
            a, b = (road.start, road.end) if rng.random() < 0.5 else (road.end, road.start)
            u = float(rng.uniform(0.05, 0.9))
            begin = a + (b - a) * u + lateral
            stand = rng.random() < 0.25
            path, _ = _ped_path([begin, begin if stand else b + lateral], duration)
            peds.append(_pedestrian(rng, path, math.inf, None))
    return peds


def _pedestrian(rng: np.random.Generator, path: np.ndarray, wait_at: float, junction: int | None) -> Pedestrian:
    return Pedestrian(PEDESTRIAN, PEDESTRIAN.sample_size(rng), PEDESTRIAN.sample_speed(rng), path, wait_at, junction)


def _ped_path(waypoints: list[np.ndarray], duration: float, wait_index: int | None = None):
    """Polyline resampled every PED_SPACING m, padded so the walker stands still at its end."""
    pts = np.asarray(waypoints, dtype=np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, cum[-1] + 1e-9, PED_SPACING) if cum[-1] > 0 else np.zeros(1)
    path = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=1)
    if cum[-1] == 0:
        # a stander faces a random but fixed direction along the road: give it a 1 cm heading stub
        path = np.stack([pts[0], pts[0] + np.array([0.01, 0.0])])
    pad = int(duration * 2.0 / PED_SPACING) + 2
    path = np.concatenate([path, np.repeat(path[-1:], pad, axis=0)])
    wait_at = math.inf if wait_index is None else round(cum[wait_index] / PED_SPACING) * PED_SPACING
    return path, wait_at
