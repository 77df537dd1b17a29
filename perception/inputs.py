"""Camera inputs of a batch of keyframes: JPEGs loaded with PIL, resized and normalised.

    batch = load_camera_batch(records, ImageCache(dataroot, image_size=(128, 72)))
    batch = load_camera_batch(records, image_cache(dataroot, cfg.model))   # + the ground view's images when it is on

Images are (B, 6, 3, H, W) float32 in CAMERAS order, normalised with ImageNet mean/std; the
calibration stays in the original image's pixels (see perception/geometry.py), so resizing does
not touch it. With `ground_image_size` the cache also keeps each image at that (larger) size for the
ground view (perception/ground_view.py), which resamples pixels, not features. `ImageCache` keeps decoded uint8 images in memory across epochs (the mini world
fits easily), because JPEG decoding would otherwise dominate a CPU step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from perception.config import BevModelConfig
from perception.ground_view import ground_plane
from vla_world.data.records import CAMERAS, SampleRecord

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass
class CameraBatch:
    images: torch.Tensor  # (B, 6, 3, H, W) normalised
    intrinsics: torch.Tensor  # (B, 6, 3, 3) in original image pixels
    sensor2lidar: torch.Tensor  # (B, 6, 4, 4) camera -> current LiDAR_TOP
    image_size: torch.Tensor  # (B, 6, 2) original (width, height)
    ground_plane: torch.Tensor  # (B, 4) ground in the LiDAR frame: a x + b y + c z + d = 0 (perception/ground_view.py)
    ground_images: torch.Tensor | None = None  # (B, 6, 3, Hg, Wg) normalised, for the ground view; None when it is off


class ImageCache:
    """Decoded, resized uint8 images keyed by path; `get` loads on first use.

    `ground_image_size`: also keep every image at this size (`get_ground`), for the ground view."""

    def __init__(self, dataroot: str | Path, image_size: tuple[int, int],
                 ground_image_size: tuple[int, int] | None = None) -> None:
        self.dataroot = Path(dataroot)
        self.image_size = tuple(image_size)
        self.ground_image_size = None if ground_image_size is None else tuple(ground_image_size)
        self._images: dict[tuple[str, tuple[int, int]], torch.Tensor] = {}

    def get(self, relative_path: str) -> torch.Tensor:
        return self._cached(relative_path, self.image_size)

    def get_ground(self, relative_path: str) -> torch.Tensor:
        if self.ground_image_size is None:
            raise ValueError("ImageCache.get_ground: this cache was made without ground_image_size")
        return self._cached(relative_path, self.ground_image_size)

    def _cached(self, relative_path: str, size: tuple[int, int]) -> torch.Tensor:
        key = (relative_path, size)
        if key not in self._images:
            self._images[key] = self._load(relative_path, size)
        return self._images[key]

    def _load(self, relative_path: str, size: tuple[int, int]) -> torch.Tensor:
        path = self.dataroot / relative_path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: camera image of a record's camera_paths is missing; "
                                    f"check --dataroot (it must be the folder the records were built from)")
        with Image.open(path) as image:
            resized = image.convert("RGB").resize(size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)  # (3, H, W) uint8


def image_cache(dataroot: str | Path, model: BevModelConfig) -> ImageCache:
    """The cache a model with this config reads: its backbone size, and the ground view's size when it is on."""
    ground = tuple(model.ground_image_size) if model.ground_view_scale > 0 else None
    return ImageCache(dataroot, model.image_size, ground)


def _check_cameras(record: SampleRecord) -> None:
    if len(record.camera_paths) != len(CAMERAS):
        raise ValueError(f"record {record.sample_token}: camera_paths has {len(record.camera_paths)} entries, "
                         f"expected {len(CAMERAS)} ({', '.join(CAMERAS)})")


def _normalised(images: list[torch.Tensor]) -> torch.Tensor:
    return (torch.stack(images).float() / 255.0 - MEAN) / STD


def load_camera_batch(records: list[SampleRecord], cache: ImageCache) -> CameraBatch:
    """Stack the six cameras of each record (CAMERAS order) into one batch."""
    images, ground, intrinsics, sensor2lidar, sizes, planes = [], [], [], [], [], []
    for record in records:
        _check_cameras(record)
        images.append(_normalised([cache.get(str(p)) for p in record.camera_paths]))
        if cache.ground_image_size is not None:
            ground.append(_normalised([cache.get_ground(str(p)) for p in record.camera_paths]))
        intrinsics.append(torch.as_tensor(np.asarray(record.camera_intrinsics), dtype=torch.float32))
        sensor2lidar.append(torch.as_tensor(np.asarray(record.camera_sensor2lidar), dtype=torch.float32))
        sizes.append(torch.as_tensor(np.asarray(record.camera_image_size), dtype=torch.float32))
        planes.append(ground_plane(torch.as_tensor(np.asarray(record.lidar2global), dtype=torch.float64)).float())
    return CameraBatch(torch.stack(images), torch.stack(intrinsics), torch.stack(sensor2lidar), torch.stack(sizes),
                       torch.stack(planes), torch.stack(ground) if ground else None)
