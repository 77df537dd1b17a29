"""Camera inputs of a batch of keyframes: JPEGs loaded with PIL, resized and normalised.

    batch = load_camera_batch(records, dataroot, image_size=(128, 72))

Images are (B, 6, 3, H, W) float32 in CAMERAS order, normalised with ImageNet mean/std; the
calibration stays in the original image's pixels (see perception/geometry.py), so resizing does
not touch it. `ImageCache` keeps decoded uint8 images in memory across epochs (the mini world
fits easily), because JPEG decoding would otherwise dominate a CPU step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vla_world.data.records import CAMERAS, SampleRecord

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass
class CameraBatch:
    images: torch.Tensor  # (B, 6, 3, H, W) normalised
    intrinsics: torch.Tensor  # (B, 6, 3, 3) in original image pixels
    sensor2lidar: torch.Tensor  # (B, 6, 4, 4) camera -> current LiDAR_TOP
    image_size: torch.Tensor  # (B, 6, 2) original (width, height)


class ImageCache:
    """Decoded, resized uint8 images keyed by path; `get` loads on first use."""

    def __init__(self, dataroot: str | Path, image_size: tuple[int, int]) -> None:
        self.dataroot = Path(dataroot)
        self.image_size = tuple(image_size)
        self._images: dict[str, torch.Tensor] = {}

    def get(self, relative_path: str) -> torch.Tensor:
        if relative_path not in self._images:
            self._images[relative_path] = self._load(relative_path)
        return self._images[relative_path]

    def _load(self, relative_path: str) -> torch.Tensor:
        path = self.dataroot / relative_path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: camera image of a record's camera_paths is missing; "
                                    f"check --dataroot (it must be the folder the records were built from)")
        with Image.open(path) as image:
            resized = image.convert("RGB").resize(self.image_size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)  # (3, H, W) uint8


def _check_cameras(record: SampleRecord) -> None:
    if len(record.camera_paths) != len(CAMERAS):
        raise ValueError(f"record {record.sample_token}: camera_paths has {len(record.camera_paths)} entries, "
                         f"expected {len(CAMERAS)} ({', '.join(CAMERAS)})")


def load_camera_batch(records: list[SampleRecord], cache: ImageCache) -> CameraBatch:
    """Stack the six cameras of each record (CAMERAS order) into one batch."""
    images, intrinsics, sensor2lidar, sizes = [], [], [], []
    for record in records:
        _check_cameras(record)
        cams = torch.stack([cache.get(str(p)) for p in record.camera_paths]).float() / 255.0
        images.append((cams - MEAN) / STD)
        intrinsics.append(torch.as_tensor(np.asarray(record.camera_intrinsics), dtype=torch.float32))
        sensor2lidar.append(torch.as_tensor(np.asarray(record.camera_sensor2lidar), dtype=torch.float32))
        sizes.append(torch.as_tensor(np.asarray(record.camera_image_size), dtype=torch.float32))
    return CameraBatch(torch.stack(images), torch.stack(intrinsics), torch.stack(sensor2lidar), torch.stack(sizes))
