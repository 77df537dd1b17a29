"""On-disk cache of the frozen camera features of one split (perception/tail.py says what and why).

    store = load_or_build_features(model, cfg, records, dataroot)    # builds once, with a progress bar
    features = store.get(["sample_token", ...])                      # FrozenFeatures, float32

One safetensors file per (dataroot, split, backbone) under `<dataroot>/.vla_world_cache/` (or
`cache/records/` when the dataroot is read-only), named `features_<split>_<key>.safetensors`.
The key hashes the backbone weights, the settings that shape the features (image size, FPN
width, BEV grid) and every record's camera paths and calibration, so a fine-tuned perception
whose backbone stayed frozen reuses the file of the model it started from, while a retrained
backbone or a rebuilt dataroot gets a new one. Features are stored as float16, which halves the
file (about 170 MB for the 400 keyframes of the default mini world); the tokens computed from
it match the float32 path to ~1e-3 (tests/test_online_perception.py).

At the paper's sizes (configs/perception/base.yaml: 256 x 200 x 200 BEV) one keyframe takes 20 MB,
about 570 GB for nuScenes trainval, so `LiveFeatures` computes the same features from the images
when a batch asks for them instead (`data.cache_features: false` in the stage config).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from perception.config import PerceptionConfig
from perception.inputs import image_cache, load_camera_batch
from perception.model import BevPerception
from perception.tail import FrozenFeatures, frozen_features
from vla_world.data.records import SampleRecord

STORAGE_DTYPE = torch.float16
KEY_LENGTH = 16


class FeatureStore:
    """Frozen features of a set of keyframes, in memory (float16), looked up by sample token."""

    def __init__(self, bev: dict[str, torch.Tensor], coarse: dict[str, torch.Tensor], path: Path | None = None):
        self.bev, self.coarse, self.path = bev, coarse, path

    def __contains__(self, sample_token: str) -> bool:
        return sample_token in self.bev

    def get(self, sample_tokens: list[str]) -> FrozenFeatures:
        missing = [t for t in sample_tokens if t not in self.bev]
        if missing:
            raise KeyError(f"{self.path or 'feature store'}: no frozen features for {len(missing)} sample(s), e.g. "
                           f"{missing[0]}; the store was built for other records (another split or dataroot)")
        return FrozenFeatures(torch.stack([self.bev[t] for t in sample_tokens]).float(),
                              torch.stack([self.coarse[t] for t in sample_tokens]).float())


class LiveFeatures:
    """Frozen features computed from the images on every `get` (no disk cache, no image cache)."""

    path = None

    def __init__(self, model: BevPerception, cfg: PerceptionConfig, records: list[SampleRecord], dataroot: str | Path):
        self.model, self.model_cfg, self.dataroot = model, cfg.model, dataroot
        self.by_token = {r.sample_token: r for r in records}

    def __contains__(self, sample_token: str) -> bool:
        return sample_token in self.by_token

    def get(self, sample_tokens: list[str]) -> FrozenFeatures:
        # a fresh image cache per call: decoded images of a whole dataset would not fit in memory
        images = image_cache(self.dataroot, self.model_cfg)
        return frozen_features(self.model, load_camera_batch([self.by_token[t] for t in sample_tokens], images))


def features_key(model: BevPerception, cfg: PerceptionConfig, records: list[SampleRecord]) -> str:
    """Hex digest of everything the frozen features depend on (see the module docstring)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    settings = {"image_size": list(cfg.model.image_size), "fpn": cfg.model.fpn_channels, "grid": asdict(cfg.grid)}
    ground = cfg.model.ground_view_scale > 0
    if ground:  # only when on, so the keys of caches made before the ground view stay valid
        settings["ground_view"] = [cfg.model.ground_view_scale, list(cfg.model.ground_image_size)]
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for r in records:
        digest.update(r.sample_token.encode())
        digest.update("|".join(map(str, r.camera_paths)).encode())
        digest.update(np.asarray(r.camera_intrinsics, np.float64).tobytes())
        digest.update(np.asarray(r.camera_sensor2lidar, np.float64).tobytes())
        if ground:
            digest.update(np.asarray(r.lidar2global, np.float64)[2].tobytes())  # the ground plane
    return digest.hexdigest()[:KEY_LENGTH]


def build_features(model: BevPerception, cfg: PerceptionConfig, records: list[SampleRecord], dataroot: str | Path,
                   batch_size: int = 4, progress: bool = True) -> FeatureStore:
    """Run the frozen backbone + view transform over `records` (no grad)."""
    model.eval()
    images = image_cache(dataroot, cfg.model)
    bev, coarse = {}, {}
    for start in tqdm(range(0, len(records), batch_size), desc="frozen camera features", disable=not progress):
        chunk = records[start:start + batch_size]
        features = frozen_features(model, load_camera_batch(chunk, images))
        for i, record in enumerate(chunk):
            bev[record.sample_token] = features.bev[i].to(STORAGE_DTYPE)
            coarse[record.sample_token] = features.coarse[i].to(STORAGE_DTYPE)
    return FeatureStore(bev, coarse)


def save_features(path: Path, store: FeatureStore) -> None:
    tensors = {f"{t}/bev": v.contiguous() for t, v in store.bev.items()}
    tensors.update({f"{t}/coarse": v.contiguous() for t, v in store.coarse.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache that looks valid


def read_features(path: Path) -> FeatureStore:
    bev, coarse = {}, {}
    for name, tensor in load_file(str(path)).items():
        token, kind = name.rsplit("/", 1)
        (bev if kind == "bev" else coarse)[token] = tensor
    return FeatureStore(bev, coarse, path)


def load_or_build_features(model: BevPerception, cfg: PerceptionConfig, records: list[SampleRecord],
                           dataroot: str | Path, cache_dir: str | Path | None = None,
                           progress: bool = True) -> FeatureStore:
    """The frozen features of `records`: read from the cache file when its key matches, else built and saved."""
    from vla_world.data.cache import default_cache_dir

    split = "-".join(sorted({r.split for r in records})) or "empty"
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(Path(dataroot))
    path = folder / f"features_{split}_{features_key(model, cfg, records)}.safetensors"
    if path.is_file():
        return read_features(path)
    store = build_features(model, cfg, records, dataroot, progress=progress)
    save_features(path, store)
    store.path = path
    return store
