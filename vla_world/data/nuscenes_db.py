"""Open a nuScenes-format dataroot (tables, map expansion, CAN bus) with errors a person can act on.

The devkit fails on broken input with bare `FileNotFoundError`, `KeyError('3f2a...')` or
`AssertionError`. This module checks what the devkit needs before calling it and turns its
errors into `RecordError`s that name the file, the record/token and the fix. It is used by the
record builder; nothing else should construct `NuScenes` directly.

    nusc = open_nuscenes("data/mini_world", detect_version("data/mini_world"))
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the devkit is imported where it is used: it pulls in sklearn and matplotlib (~3 s)
    from nuscenes import NuScenes
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus
    from nuscenes.map_expansion.map_api import NuScenesMap

TABLES: tuple[str, ...] = (
    "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor",
    "ego_pose", "log", "scene", "sample", "sample_data", "sample_annotation", "map",
)
FIX_TABLES = "re-run tools/make_mini_world.py (mini world) or re-download the nuScenes tables (real data)"
FIX_MAPS = "re-run tools/make_mini_world.py (mini world) or download the nuScenes map expansion v1.3 into <dataroot>/maps/expansion/"

# Reference fields whose target table cannot be read off the field name.
_LINK_TARGETS = {"prev": None, "next": None, "first_sample_token": "sample", "last_sample_token": "sample",
                 "first_annotation_token": "sample_annotation", "last_annotation_token": "sample_annotation",
                 "polygon_token": None}


class RecordError(RuntimeError):
    """A dataroot that cannot be turned into records; the message names the file, token and fix."""


def detect_version(dataroot: str | Path) -> str:
    """The single `v1.0-*` table folder under `dataroot` (error naming the choices if not one)."""
    root = Path(dataroot)
    if not root.is_dir():
        raise RecordError(f"{root}: dataroot does not exist; make one with tools/make_mini_world.py --out {root} "
                          "or point --dataroot at a nuScenes download")
    versions = sorted(p.name for p in root.glob("v1.0-*") if p.is_dir())
    if len(versions) == 1:
        return versions[0]
    if not versions:
        raise RecordError(f"{root}: no v1.0-* table folder found; {FIX_TABLES}")
    raise RecordError(f"{root}: several table folders {versions}; pass version= (e.g. --version {versions[0]})")


def check_tables(dataroot: Path, version: str) -> None:
    """Raise if a table the devkit needs is missing, before the devkit raises a bare error."""
    table_dir = dataroot / version
    if not table_dir.is_dir():
        raise RecordError(f"{table_dir}: table folder not found; {FIX_TABLES}")
    for table in TABLES:
        if not (table_dir / f"{table}.json").is_file():
            raise RecordError(f"{version}/{table}.json: table missing in {dataroot}; {FIX_TABLES}")


def open_nuscenes(dataroot: str | Path, version: str) -> NuScenes:
    """Load the tables through the devkit; broken links become `RecordError`s naming the record."""
    from nuscenes import NuScenes

    root = Path(dataroot)
    check_tables(root, version)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the devkit prints even with verbose=False
            return NuScenes(version=version, dataroot=str(root), verbose=False)
    except KeyError as exc:
        raise RecordError(explain_missing_token(_raw_tables(root, version), version, str(exc.args[0]))) from exc
    except AssertionError as exc:  # the only asserts at load time check the map mask png files
        raise RecordError(f"{version}/map.json: {exc}; {FIX_TABLES}") from exc
    except ValueError as exc:  # json.JSONDecodeError / UnicodeDecodeError: say which table
        raise RecordError(f"{unreadable_table(root, version) or root / version}: not valid JSON ({exc}); "
                          f"{FIX_TABLES}") from exc


def unreadable_table(root: Path, version: str) -> Path | None:
    """The first table file that does not parse as JSON (the devkit's error does not name it)."""
    for table in TABLES:
        path = root / version / f"{table}.json"
        try:
            json.loads(path.read_bytes())
        except ValueError:
            return path
    return None


@contextlib.contextmanager
def explained_lookups(nusc: NuScenes) -> Iterator[None]:
    """Turn a devkit `KeyError` raised while walking the tables into a `RecordError` naming the link."""
    try:
        yield
    except KeyError as exc:
        tables = {name: getattr(nusc, name) for name in TABLES}
        raise RecordError(explain_missing_token(tables, nusc.version, str(exc.args[0]))) from exc


def explain_missing_token(tables: dict[str, list[dict]], version: str, token: str) -> str:
    """Find the record that points at the unknown `token` and say which table should hold it."""
    for table, records in tables.items():
        for record in records:
            for field, value in record.items():
                if field != "token" and _is_link(field) and (value == token or (isinstance(value, list) and token in value)):
                    target = _link_target(table, field)
                    return (f"{version}/{table}.json: {table} {record.get('token', '?')} field '{field}' points to "
                            f"{target} {token} which is not in {target}.json; {FIX_TABLES}")
    owner = next((t for t, records in tables.items() if any(r.get("token") == token for r in records)), None)
    if owner == "log":
        return f"{version}/map.json: log {token} is not listed in any map record's log_tokens; {FIX_TABLES}"
    if owner is not None:
        return f"{version}/{owner}.json: {owner} {token} is not linked as the devkit expects; {FIX_TABLES}"
    return f"{version}: '{token}' is referenced (a token or a required field) but found in no table; {FIX_TABLES}"


def _link_target(table: str, field: str) -> str:
    if field in ("prev", "next"):
        return table
    if _LINK_TARGETS.get(field):
        return _LINK_TARGETS[field]
    return field.removesuffix("s").removesuffix("_token")


def _is_link(field: str) -> bool:
    return field.endswith(("_token", "_tokens")) or field in _LINK_TARGETS


def _raw_tables(root: Path, version: str) -> dict[str, list[dict]]:
    return {t: json.loads((root / version / f"{t}.json").read_text()) for t in TABLES}


def open_map(dataroot: str | Path, location: str) -> NuScenesMap:
    """The map expansion of one location (`maps/expansion/<location>.json`)."""
    path = Path(dataroot) / "maps" / "expansion" / f"{location}.json"
    if not path.is_file():
        raise RecordError(f"{path}: map expansion for location '{location}' (log.json) is missing; {FIX_MAPS}")
    from nuscenes.map_expansion.map_api import NuScenesMap

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenesMap(dataroot=str(dataroot), map_name=location)
    except AssertionError as exc:  # the devkit only knows the four nuScenes map names
        raise RecordError(f"{path}: {exc} (log.json location must be one of the nuScenes map names); {FIX_MAPS}") from exc
    except (KeyError, ValueError) as exc:
        raise RecordError(f"{path}: map expansion is broken ({type(exc).__name__}: {exc}); {FIX_MAPS}") from exc


def open_can_bus(dataroot: str | Path) -> NuScenesCanBus | None:
    """The CAN bus expansion if `<dataroot>/can_bus` exists (real nuScenes), else None."""
    if not (Path(dataroot) / "can_bus").is_dir():
        return None
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    with contextlib.redirect_stdout(io.StringIO()):
        return NuScenesCanBus(dataroot=str(dataroot))


def can_pose_messages(can_bus: NuScenesCanBus | None, scene_name: str) -> list[dict]:
    """The CAN 'pose' messages of a scene (utime, vel, accel, rotation_rate), [] if it has none."""
    if can_bus is None:
        return []
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(can_bus.get_messages(scene_name, "pose"))
    except Exception:  # noqa: BLE001 - the devkit raises bare Exception (blacklisted scene, missing file); caller falls back to poses
        return []
