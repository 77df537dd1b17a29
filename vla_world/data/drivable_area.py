"""The drivable area around one keyframe, in its LiDAR frame: what the pseudo-simulation's DAC checks.

Why here: drivable-area compliance (NAVSIM's DAC) needs the map's `drivable_area` polygons
around the ego, in the same frame as the plans (x right, y forward, metres). Records keep only
polylines (dividers, boundaries, crossings), so the polygons are read from the map expansion
once per location and cut out per keyframe, with the same 2-D re-framing as
`vla_world.data.map_polylines`.

    areas = DrivableAreas(dataroot)
    region = areas.around(record.location, record.lidar2global)   # shapely geometry, LiDAR frame
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from vla_world.data.geometry import invert_pose
from vla_world.data.map_polylines import (
    MapPatch,
    SpatialLayer,
    global_region,
    to_frame,
    valid_polygon,
)
from vla_world.data.nuscenes_db import open_map

# 3 s at up to ~25 m/s plus the ego's half length: the region any plan we score can reach.
DRIVABLE_PATCH = MapPatch(x_min=-80.0, x_max=80.0, y_min=-80.0, y_max=80.0)


class DrivableAreas:
    """Per-location drivable polygons (global frame, spatially indexed), cut out per keyframe."""

    def __init__(self, dataroot: str | Path, patch: MapPatch = DRIVABLE_PATCH):
        self.dataroot, self.patch = Path(dataroot), patch
        self._layers: dict[str, SpatialLayer] = {}

    def around(self, location: str, lidar2global: np.ndarray) -> BaseGeometry:
        """The drivable area inside the patch, in the LiDAR frame of `lidar2global`."""
        layer = self._layer(location)
        near = layer.near(global_region(lidar2global, self.patch))
        local = shapely.union_all(to_frame(near, invert_pose(lidar2global))) if len(near) else shapely.Polygon()
        return shapely.intersection(local, box(self.patch.x_min, self.patch.y_min, self.patch.x_max, self.patch.y_max))

    def _layer(self, location: str) -> SpatialLayer:
        if location not in self._layers:
            nusc_map = open_map(self.dataroot, location)
            self._layers[location] = SpatialLayer([valid_polygon(nusc_map.extract_polygon(token))
                                              for record in nusc_map.drivable_area for token in record["polygon_tokens"]])
        return self._layers[location]
