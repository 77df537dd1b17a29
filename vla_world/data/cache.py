"""Cached records: build once per (dataroot, version, split), then load in well under a second.

File format (no pickle, so a cache file cannot run code): one uncompressed `.npz` per split with
  * every array field of all records concatenated along axis 0, plus `<field>.len` (N,) lengths,
    so ragged fields (agents, future boxes, map elements) cost one array each;
  * scalar fields (tokens, timestamps, speeds) as one (N,) array each;
  * map polylines as concatenated points + per-polyline lengths + per-record counts;
  * `__header__`: UTF-8 JSON (builder version, cache key, record count, data fingerprint).
A truncated or corrupt file, or one made from another world, is rebuilt with a warning.
The file name carries a key hashed from BUILDER_VERSION, the build options, the resolved
dataroot and the size/mtime of every table, map and CAN file, so editing a table or bumping the
builder makes a new file (stale ones for the same split are deleted).

    records = load_records("data/mini_world", split="val")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from vla_world.data.builder import BUILDER_VERSION, BuildOptions, build_records
from vla_world.data.fingerprint import FINGERPRINT_KEY, data_fingerprint
from vla_world.data.nuscenes_db import detect_version
from vla_world.data.records import SampleRecord

REPO_CACHE_DIR = Path(__file__).resolve().parents[2] / "cache" / "records"
_FIELDS = [f.name for f in dataclasses.fields(SampleRecord)]
_POLYLINES = "map_polylines"
KEY_LENGTH = 16  # hex digits of the cache key in the file name


def load_records(dataroot: str | Path, version: str | None = None, split: str = "train",
                 cache_dir: str | Path | None = None, progress: bool = True,
                 options: BuildOptions | None = None) -> list[SampleRecord]:
    """The records of `split`, from the cache when it matches the dataroot, else built and cached.

    `version=None` picks the single `v1.0-*` folder; `cache_dir=None` uses
    `<dataroot>/.vla_world_cache/` when writable, else `cache/records/` in the repository.
    """
    dataroot = Path(dataroot)
    version = version or detect_version(dataroot)
    options = options or BuildOptions()
    key = cache_key(dataroot, version, split, options)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(dataroot)
    path = folder / f"records_{version}_{split}_{key}.npz"
    fingerprint = data_fingerprint(dataroot, version)
    if path.is_file():
        try:
            return read_records(path, fingerprint)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # truncated/foreign: rebuild, say so
            warnings.warn(f"{path}: unreadable record cache ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=2)
    records = build_records(dataroot, version, split, options, progress=progress)
    write_records(path, records, {"builder_version": BUILDER_VERSION, "key": key, "split": split, "version": version,
                                  FINGERPRINT_KEY: fingerprint})
    _remove_stale(folder, f"records_{version}_{split}_", keep=path)
    return records


def default_cache_dir(dataroot: Path) -> Path:
    folder = dataroot / ".vla_world_cache"
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return REPO_CACHE_DIR
    return folder if os.access(folder, os.W_OK) else REPO_CACHE_DIR


def cache_key(dataroot: Path, version: str, split: str, options: BuildOptions) -> str:
    """16 hex digits that change with the builder, the options or any input file's size/mtime."""
    inputs = sorted((dataroot / version).glob("*.json")) + sorted((dataroot / "maps" / "expansion").glob("*.json"))
    can_dir = dataroot / "can_bus"
    if can_dir.is_dir():
        inputs.append(can_dir)  # a directory's mtime changes when files are added or removed
    stats = [(str(p.relative_to(dataroot)), p.stat().st_size, p.stat().st_mtime_ns) for p in inputs]
    blob = json.dumps([BUILDER_VERSION, str(dataroot.resolve()), version, split, options.key(), stats])
    return hashlib.sha1(blob.encode()).hexdigest()[:KEY_LENGTH]


def write_records(path: Path, records: list[SampleRecord], header: dict) -> None:
    """Write atomically (temp file + rename) so a killed run never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _encode(records)
    arrays["__header__"] = np.frombuffer(json.dumps({**header, "count": len(records)}).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_records(path: Path, fingerprint: str | None = None) -> list[SampleRecord]:
    """Records of a cache file; ValueError when another builder or (given `fingerprint`) another world made it."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["__header__"]).decode())
        if header.get("builder_version") != BUILDER_VERSION:
            raise ValueError(f"builder version {header.get('builder_version')} != {BUILDER_VERSION}")
        if fingerprint is not None and header.get(FINGERPRINT_KEY) not in (None, fingerprint):
            raise ValueError(f"made from world {header[FINGERPRINT_KEY]}, not this dataroot's {fingerprint}")
        count = int(header["count"])
        columns = {name: _decode_field(data, name, count) for name in _FIELDS}
    return [SampleRecord(**{name: columns[name][i] for name in _FIELDS}) for i in range(count)]


def _encode(records: list[SampleRecord]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        values = [getattr(r, name) for r in records]
        if name == _POLYLINES:
            lines = [line for v in values for line in v]
            arrays[f"{name}.count"] = np.array([len(v) for v in values], dtype=np.int64)
            arrays[f"{name}.len"] = np.array([len(line) for line in lines], dtype=np.int64)
            arrays[name] = np.concatenate(lines).astype(np.float32) if lines else np.zeros((0, 2), np.float32)
        elif values and isinstance(values[0], np.ndarray):
            arrays[f"{name}.len"] = np.array([len(v) for v in values], dtype=np.int64)
            arrays[name] = np.concatenate(values) if values else np.zeros(0)
        else:
            arrays[name] = np.array(values)
    return arrays


def _decode_field(data: np.lib.npyio.NpzFile, name: str, count: int) -> list:
    if name == _POLYLINES:
        lines = _split(data[name], data[f"{name}.len"])
        return _group(lines, data[f"{name}.count"])
    if f"{name}.len" in data.files:
        return _split(data[name], data[f"{name}.len"])
    return data[name].tolist() if count else []


def _split(concatenated: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    ends = np.cumsum(lengths).tolist()
    return [concatenated[start:end] for start, end in zip([0, *ends[:-1]], ends)]  # views, no copies


def _group(items: list[np.ndarray], counts: np.ndarray) -> list[list[np.ndarray]]:
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [items[bounds[i]: bounds[i + 1]] for i in range(len(counts))]


def _remove_stale(folder: Path, prefix: str, keep: Path) -> None:
    """Delete caches of the same version/split with another key (`?` x 16 so "train" spares "train_detect")."""
    for old in folder.glob(f"{prefix}{'?' * KEY_LENGTH}.npz"):
        if old != keep:
            old.unlink(missing_ok=True)
