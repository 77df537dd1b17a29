"""Road users of the mini world: nuScenes categories, realistic sizes and driving parameters.

Sizes are (width, length, height) in metres, drawn around the means of the real nuScenes
classes; speeds are m/s for an urban grid. IDM parameters follow Treiber's textbook values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AgentType:
    category: str  # nuScenes category name
    kind: str  # "vehicle" | "cycle" | "pedestrian"
    size_wlh: tuple[float, float, float]  # mean (width, length, height), metres
    size_jitter: float  # relative standard deviation of each dimension
    speed_range: tuple[float, float]  # desired speed, m/s
    max_accel: float = 1.5  # IDM a, m/s^2
    comfort_decel: float = 2.5  # IDM b, m/s^2
    headway: float = 1.3  # IDM T, s
    min_gap: float = 2.5  # IDM s0, m

    def sample_size(self, rng: np.random.Generator) -> tuple[float, float, float]:
        jitter = 1.0 + self.size_jitter * rng.standard_normal(3).clip(-2, 2)
        return tuple(round(float(s * j), 3) for s, j in zip(self.size_wlh, jitter))

    def sample_speed(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(*self.speed_range))


CAR = AgentType("vehicle.car", "vehicle", (1.95, 4.62, 1.73), 0.06, (8.0, 11.5))
TRUCK = AgentType("vehicle.truck", "vehicle", (2.5, 6.9, 2.85), 0.08, (7.0, 9.5), max_accel=1.0, headway=1.6)
BUS = AgentType("vehicle.bus.rigid", "vehicle", (2.95, 11.2, 3.5), 0.04, (6.5, 8.5), max_accel=0.9, headway=1.6)
BICYCLE = AgentType("vehicle.bicycle", "cycle", (0.6, 1.7, 1.3), 0.05, (3.5, 5.5), max_accel=1.0, min_gap=1.5)
PEDESTRIAN = AgentType("human.pedestrian.adult", "pedestrian", (0.67, 0.73, 1.77), 0.07, (1.1, 1.7))

# Spawn mix on road lanes: mostly cars, like nuScenes' class frequencies.
VEHICLE_MIX: tuple[tuple[AgentType, float], ...] = ((CAR, 0.72), (TRUCK, 0.1), (BUS, 0.05), (BICYCLE, 0.13))


def sample_vehicle_type(rng: np.random.Generator) -> AgentType:
    types, weights = zip(*VEHICLE_MIX)
    return types[int(rng.choice(len(types), p=np.array(weights) / sum(weights)))]
