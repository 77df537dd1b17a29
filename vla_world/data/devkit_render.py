"""Makes the devkit's map rendering work with shapely 2: call `patch_map_rendering()` before rendering.

Why: `NuScenesMap.render_map_patch`, `render_layers`, `render_map_in_image` and
`render_egoposes_on_fancy_map` draw polygons with `descartes.PolygonPatch`, and descartes 1.1 reads
coordinates through the numpy array interface that shapely 2 removed, so every call fails with
"IndexError: too many indices for array" (nuscenes-devkit issue #1180; PR #1193 proposes the same kind
of fix upstream). nuscenes-devkit 1.2.0 pins shapely ~= 2.0, so no pin can avoid it. The patch gives
the devkit's map module a `descartes` of its own whose `PolygonPatch` reads `.coords` (and, unlike
descartes, orients rings so that holes, e.g. the city blocks in the drivable area, stay unfilled); the descartes
package and site-packages are left untouched, and nothing else changes. Calling it twice is harmless.
"""

from __future__ import annotations

import types

import numpy as np
from matplotlib.patches import PathPatch
from matplotlib.path import Path
from shapely.geometry.polygon import orient


def polygon_path(shape) -> Path:
    """A compound matplotlib path (exteriors and holes) of a shapely Polygon or MultiPolygon."""
    polygons = list(getattr(shape, "geoms", [shape]))
    if not polygons or any(p.geom_type != "Polygon" for p in polygons):
        raise ValueError(f"a Polygon or MultiPolygon is required, got {shape.geom_type}")
    vertices, codes = [], []
    for polygon in polygons:
        polygon = orient(polygon, sign=1.0)  # holes must wind against the exterior to stay empty when filled
        for ring in [polygon.exterior, *polygon.interiors]:
            xy = np.asarray(ring.coords, dtype=np.float64)[:, :2]
            ring_codes = np.full(len(xy), Path.LINETO, dtype=Path.code_type)
            ring_codes[0] = Path.MOVETO
            vertices.append(xy)
            codes.append(ring_codes)
    return Path(np.concatenate(vertices), np.concatenate(codes))


def polygon_patch(shape, **kwargs) -> PathPatch:
    """Drop-in for `descartes.PolygonPatch` (same keyword arguments: fc, alpha, label, ...)."""
    return PathPatch(polygon_path(shape), **kwargs)


def patch_map_rendering() -> None:
    """Point the devkit's map API at `polygon_patch` instead of descartes' (see the module doc)."""
    from nuscenes.map_expansion import (
        map_api,  # lazy: importing the devkit costs about a second
    )

    map_api.descartes = types.SimpleNamespace(PolygonPatch=polygon_patch)
