"""The mini world's traffic with the ego driven from outside: the simulator of closed-loop episodes.

Why: in the recorded scenes the ego follows its route with the IDM, like every other vehicle.
A closed-loop run instead lets a planner drive it; the other vehicles and pedestrians must then
react to where the ego really is. `TrafficSimulation` already makes every agent look at every
other agent's pose, so replacing vehicle 0's pose by the externally driven one each step is
all it takes: vehicles behind or crossing yield to the ego wherever it goes, pedestrians wait
for it, lights run on their plans.

Episodes come from held-out generator keys (`episode_setup`), never used by any mini world the
project trains on (those use the keys of `generate.plan_scenes`).

Frame and units: global map frame, metres, seconds, yaw rad CCW from +x; the ego's pose is its
origin (rear axle), as nuScenes `ego_pose`; its box centre is EGO_CENTER_AHEAD_OF_REAR_AXLE ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import shapely

from .road_network import LOCATIONS, RoadNetwork, build_road_network
from .scenarios import SceneSetup, setup_scene
from .sensors import EGO_CENTER_AHEAD_OF_REAR_AXLE, EGO_SIZE_WLH
from .traffic import TrafficSimulation, _State

EPISODE_TAG = 7919  # generator-key tag of closed-loop episodes (disjoint from plan_scenes' keys)
EPISODE_BEHAVIOURS: tuple[str, ...] = ("left", "right", "forward", "stop", "slow-right")


@dataclass(frozen=True)
class EgoPose:
    """The ego's origin (rear axle) in the global frame, its heading and speed."""

    xy: np.ndarray  # (2,)
    yaw: float
    speed: float  # m/s

    @property
    def centre(self) -> np.ndarray:
        return self.xy + EGO_CENTER_AHEAD_OF_REAR_AXLE * np.array([math.cos(self.yaw), math.sin(self.yaw)])


@dataclass(frozen=True)
class AgentPoses:
    """Every agent but the ego at one instant (box centres)."""

    xy: np.ndarray  # (N, 2)
    yaw: np.ndarray  # (N,)
    speed: np.ndarray  # (N,)
    length: np.ndarray  # (N,)
    width: np.ndarray  # (N,)
    is_pedestrian: np.ndarray  # (N,) bool
    category: tuple[str, ...]  # nuScenes category names


class InteractiveTraffic:
    """`TrafficSimulation` stepped 0.1 s at a time, with vehicle 0 (the ego) placed from outside."""

    def __init__(self, traffic: TrafficSimulation):
        self.traffic = traffic
        self.state = _State.from_agents(traffic.vehicles, traffic.pedestrians)
        self.t = 0.0
        self._categories = tuple(a.type.category for a in [*traffic.vehicles[1:], *traffic.pedestrians])

    @property
    def dt(self) -> float:
        return self.traffic.dt

    def own_ego(self) -> EgoPose:
        """Where the simulator's own (IDM) ego is now: the expert, and the warm-up before a planner drives."""
        xy, yaw, speed = self.state.poses()
        heading = np.array([math.cos(yaw[0]), math.sin(yaw[0])])
        return EgoPose(xy[0] - EGO_CENTER_AHEAD_OF_REAR_AXLE * heading, float(yaw[0]), float(speed[0]))

    def step(self, ego: EgoPose | None = None) -> None:
        """Advance everyone by dt; the others see the ego at `ego` (None: the simulator's own IDM ego)."""
        poses = self.state.poses()
        if ego is not None:
            xy, yaw, speed = (p.copy() for p in poses)
            xy[0], yaw[0], speed[0] = ego.centre, ego.yaw, ego.speed
            poses = (xy, yaw, speed)
        self.traffic._advance(self.state, poses, self.t)
        self.t += self.dt

    def others(self) -> AgentPoses:
        xy, yaw, speed = self.state.poses()
        st = self.state
        return AgentPoses(xy[1:], yaw[1:], speed[1:], st.length[1:], st.width[1:], st.is_ped[1:], self._categories)

    def signal_state(self, junction: int) -> int:
        return self.traffic.signals[junction].state(self.t)


@dataclass
class Episode:
    """One held-out closed-loop scenario: where, what the ego is meant to do, its traffic."""

    index: int
    location: str
    net: RoadNetwork
    setup: SceneSetup
    seed: int = 0  # the episode set (maps and traffic generator keys)

    @cached_property
    def drivable_area(self) -> shapely.Polygon:
        """The network's drivable area, prepared for fast point and box tests (a union: built once)."""
        area = self.net.drivable_area()
        shapely.prepare(area)
        return area

    @property
    def route_xy(self) -> np.ndarray:
        """The ego's planned route (lane centre samples every metre, global frame)."""
        return self.traffic_ego.route.xy

    @property
    def traffic_ego(self):
        return self.setup.traffic.vehicles[0]

    @property
    def name(self) -> str:
        return f"episode-s{self.seed}-{self.index:03d}-{self.setup.behaviour}-{self.location}"  # unique across sets


def episode_setup(index: int, duration: float, seed: int = 0) -> Episode:
    """Held-out episode `index`: behaviours and locations in turn, traffic from its own generator key."""
    behaviour = EPISODE_BEHAVIOURS[index % len(EPISODE_BEHAVIOURS)]
    location = LOCATIONS[(index // len(EPISODE_BEHAVIOURS)) % len(LOCATIONS)]
    net = build_road_network(location, np.random.default_rng([seed, LOCATIONS.index(location)]))
    setup = setup_scene(net, behaviour, duration, np.random.default_rng([seed, EPISODE_TAG, index]))
    return Episode(index, location, net, setup, seed)


EGO_LENGTH_M, EGO_WIDTH_M = EGO_SIZE_WLH[1], EGO_SIZE_WLH[0]
