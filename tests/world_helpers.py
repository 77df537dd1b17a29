"""Random frame-code caches for the world-stage tests (the real ones come from tools/export_frame_codes.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.frame_codes import FrameCodeMeta, save_frame_codes

CODEBOOK, CODES_PER_FRAME = 32, 6  # tiny: a 2 x 3 latent grid of a 32-entry codebook


def random_frame_codes(world: Path, folder: Path, splits: tuple[str, ...] = ("train", "val"), seed: int = 0) -> Path:
    """Write `<folder>/<split>.safetensors` with random codes for every sample of `world`; returns `folder`."""
    from vla_world.data import load_records

    meta = FrameCodeMeta(CODEBOOK, CODES_PER_FRAME, (2, 3), "random-test-codes", (54, 96))
    rng = np.random.default_rng(seed)
    for split in splits:
        records = load_records(world, split=split, progress=False)
        save_frame_codes(folder / f"{split}.safetensors",
                         {r.sample_token: rng.integers(0, CODEBOOK, CODES_PER_FRAME) for r in records}, meta)
    return folder
