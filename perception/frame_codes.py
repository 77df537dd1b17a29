"""The frame-code cache: the discrete VQ codes of each keyframe's CAM_FRONT image, one file per split.

Why a cache: the world stage teaches the LLM to write the codes of the *next* keyframe's front
camera; encoding every image once (tools/export_frame_codes.py, after the frame_tokenizer stage)
keeps the VQ encoder out of every LLM training step, as the perception token cache does.

One safetensors file per split (`cache/frames/<split>.safetensors`):
  * tensor `codes`: int64 (N, K), row i = the codes of sample `sample_tokens[i]`'s own CAM_FRONT,
    raster order over the latent grid (row-major, `grid` = (h, w), K = h * w);
  * header `samples`: JSON list of the N sample tokens;
  * header `meta`: JSON with `codebook_size`, `codes_per_frame`, `grid`, `tokenizer_fingerprint`
    (a hash of the tokenizer's weights: a cache made by another tokenizer is refused), the
    image size the tokenizer reads and `data_fingerprint` (vla_world.data.fingerprint: a cache
    of another world is refused when the reader passes its dataroot).

A sample's world-stage target is the row of its next keyframe (`next_sample_token`); the codes of a
sample's own frame are an input only where an issue says so (never in the planner's prompt today).

    save_frame_codes(path, {token: codes}, FrameCodeMeta(...))
    codes, meta = load_frame_codes(path)                       # {token: (K,) int64}, FrameCodeMeta
    codes = frame_codes_for(path, tokens, fingerprint=fp)     # refuses missing samples / other tokenizer
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vla_world.data.fingerprint import FINGERPRINT_KEY, check_data_identity


@dataclass(frozen=True)
class FrameCodeMeta:
    codebook_size: int  # number of VQ codebook entries (code ids are 0 .. codebook_size - 1)
    codes_per_frame: int  # K = grid[0] * grid[1]
    grid: tuple[int, int]  # latent grid (h, w), codes in row-major order
    tokenizer_fingerprint: str  # hash of the frame tokenizer's weights
    image_size: tuple[int, int]  # (height, width) in pixels the tokenizer reads
    data_fingerprint: str = ""  # vla_world.data.fingerprint of the world the images came from ("" = unknown)

    def __post_init__(self) -> None:
        if self.grid[0] * self.grid[1] != self.codes_per_frame:
            raise ValueError(f"frame codes: grid {self.grid} does not hold {self.codes_per_frame} codes")


def save_frame_codes(path: str | Path, codes: dict[str, np.ndarray], meta: FrameCodeMeta) -> None:
    """Write {sample_token: (K,) codes} atomically; every row must have K codes inside the codebook."""
    path = Path(path)
    tokens = list(codes)
    matrix = np.stack([np.asarray(codes[t], dtype=np.int64) for t in tokens]) if tokens else \
        np.zeros((0, meta.codes_per_frame), np.int64)
    if matrix.shape[1] != meta.codes_per_frame or (matrix.size and (matrix.min() < 0 or matrix.max() >= meta.codebook_size)):
        raise ValueError(f"{path}: codes of shape {matrix.shape} (range {matrix.min(initial=0)}..{matrix.max(initial=0)}) "
                         f"do not fit {meta.codes_per_frame} codes per frame in a codebook of {meta.codebook_size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({"codes": torch.from_numpy(matrix)}, str(tmp),
              metadata={"samples": json.dumps(tokens), "meta": json.dumps(asdict(meta))})
    tmp.replace(path)


def load_frame_codes(path: str | Path) -> tuple[dict[str, np.ndarray], FrameCodeMeta]:
    """({sample_token: (K,) int64 codes}, meta) of one cache file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame-code cache; train the tokenizer (`tools/train.py --stage "
                                "frame_tokenizer`) and run `tools/export_frame_codes.py` for this split")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        matrix = f.get_tensor("codes").numpy()
    try:
        tokens = json.loads(header["samples"])
        raw = json.loads(header["meta"])
        meta = FrameCodeMeta(raw["codebook_size"], raw["codes_per_frame"], tuple(raw["grid"]),
                             raw["tokenizer_fingerprint"], tuple(raw["image_size"]), raw.get("data_fingerprint", ""))
    except (KeyError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a frame-code cache (header field {err}); re-run tools/export_frame_codes.py") from err
    return {t: matrix[i] for i, t in enumerate(tokens)}, meta


def frame_codes_for(path: str | Path, sample_tokens: list[str], fingerprint: str | None = None,
                    dataroot: str | Path | None = None) -> dict[str, np.ndarray]:
    """`load_frame_codes`, refusing a cache that lacks a sample or was made by another tokenizer or world."""
    codes, meta = load_frame_codes(path)
    if dataroot is not None:
        check_data_identity(path, {FINGERPRINT_KEY: meta.data_fingerprint}, dataroot,
                            fix="re-run tools/export_frame_codes.py on this dataroot")
    if fingerprint is not None and meta.tokenizer_fingerprint != fingerprint:
        raise ValueError(f"{path}: made by frame tokenizer {meta.tokenizer_fingerprint}, not {fingerprint}; "
                         "re-run tools/export_frame_codes.py with the tokenizer you train with")
    missing = [t for t in sample_tokens if t not in codes]
    if missing:
        raise KeyError(f"{path}: no frame codes for {len(missing)} of {len(sample_tokens)} samples (e.g. {missing[0]}); "
                       "re-run tools/export_frame_codes.py for this dataroot and split")
    return codes
