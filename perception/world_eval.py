"""Scoring imagined next frames: code accuracy, PSNR and SSIM against the true next keyframe, with baselines.

Why a module: tools/eval_world.py (numbers) and tools/visualize.py (pictures) pair every keyframe
with its next keyframe the same way, and the baselines a world model must beat are defined once:

  * imagined          decode(imagined codes) vs the true next CAM_FRONT;
  * copy frame        the current CAM_FRONT itself vs the next one (codes: current vs next codes);
  * copy frame codes  decode(current codes) vs the next image: the copy baseline through the same
                      decoder as the world model, so the decoder's blur is not counted against it;
  * true codes        decode(true next codes) vs the next image: the tokenizer's ceiling.

All images are at the tokenizer's input size (the true next image is resized to it, never the
decoded one upsampled). A keyframe's next keyframe is the one with the same scene and
frame_index + 1 in the same split; the last keyframe of a scene has none and is left out (counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perception.frame_tokenizer import FrameTokenizer
from perception.image_quality import frechet_distance, psnr, ssim
from vla_world.data.records import SampleRecord

ROWS = {
    "imagined": "World model (imagined next frame)",
    "copy_frame": "Copy the current frame (image)",
    "copy_codes": "Copy the current frame (decoded codes)",
    "true_codes": "Decode the true next codes (tokenizer ceiling)",
}
FID_SIZE = 299  # Inception-v3 input side


def next_keyframes(records: list[SampleRecord]) -> dict[str, SampleRecord]:
    """{sample_token: the record of its next keyframe} for every record that has one in `records`."""
    by_position = {(r.scene_token, r.frame_index): r for r in records}
    return {r.sample_token: by_position[(r.scene_token, r.frame_index + 1)]
            for r in records if (r.scene_token, r.frame_index + 1) in by_position}


@dataclass
class WorldFrames:
    """Aligned arrays over the N evaluated keyframes (uint8 images at the tokenizer size, int64 codes)."""

    tokens: list[str]  # current sample tokens
    current: np.ndarray  # (N, H, W, 3)
    next: np.ndarray  # (N, H, W, 3) the true next frame
    current_codes: np.ndarray  # (N, K)
    next_codes: np.ndarray  # (N, K)
    imagined_codes: np.ndarray  # (N, K)

    def decoded(self, tokenizer: FrameTokenizer, which: str, batch: int = 32) -> np.ndarray:
        codes = {"imagined": self.imagined_codes, "copy_codes": self.current_codes, "true_codes": self.next_codes}[which]
        return np.concatenate([tokenizer.decode(codes[i:i + batch]) for i in range(0, len(codes), batch)])


def gather_frames(tokenizer: FrameTokenizer, records: list[SampleRecord], dataroot: str | Path,
                  imagined: dict[str, np.ndarray], pool: list[SampleRecord] | None = None) -> tuple[WorldFrames, dict[str, int]]:
    """The evaluated keyframes (a next keyframe and imagined codes) and the counts of those left out.

    `pool`: the whole split when `records` is a selection of it, so a selected keyframe finds its
    next keyframe even when that one was not selected.
    """
    from perception.frame_tokenizer_train import front_images

    wanted = {r.sample_token for r in records}
    nexts = {t: n for t, n in next_keyframes(pool or records).items() if t in wanted}
    chosen = [r for r in records if r.sample_token in nexts and r.sample_token in imagined]
    counts = {"keyframes": len(records), "with_next": len(nexts), "evaluated": len(chosen),
              "no_imagined_codes": sum(t not in imagined for t in nexts)}
    if not chosen:
        raise ValueError(f"no keyframe has both a next keyframe and imagined codes ({counts}); check that the "
                         "imagined codes are keyed by the CURRENT sample tokens of this split")
    current = front_images(chosen, dataroot, tokenizer.image_size)
    following = front_images([nexts[r.sample_token] for r in chosen], dataroot, tokenizer.image_size)
    imagined_codes = np.stack([np.asarray(imagined[r.sample_token], dtype=np.int64) for r in chosen])
    if imagined_codes.shape[1] != tokenizer.codes_per_frame:
        raise ValueError(f"imagined codes have {imagined_codes.shape[1]} codes per frame, the tokenizer "
                         f"{tokenizer.codes_per_frame}: they were made for another tokenizer")
    frames = WorldFrames([r.sample_token for r in chosen], current, following, encode_all(tokenizer, current), encode_all(tokenizer, following), imagined_codes)
    return frames, counts


def encode_all(tokenizer: FrameTokenizer, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, K) codes of uint8 (N, H, W, 3) images, in batches."""
    return np.concatenate([tokenizer.encode(images[i:i + batch]) for i in range(0, len(images), batch)])


def score_rows(tokenizer: FrameTokenizer, frames: WorldFrames, fid_model=None) -> dict[str, dict[str, float]]:
    """{row: {code_accuracy, psnr, ssim[, fid]}} for the four rows of ROWS (means over the keyframes)."""
    images = {"copy_frame": frames.current, **{k: frames.decoded(tokenizer, k) for k in ("imagined", "copy_codes", "true_codes")}}
    accuracy = {"imagined": (frames.imagined_codes == frames.next_codes).mean(),
                "copy_frame": (frames.current_codes == frames.next_codes).mean(),
                "copy_codes": (frames.current_codes == frames.next_codes).mean(), "true_codes": 1.0}
    reference = None if fid_model is None else inception_features(fid_model, frames.next)
    rows = {}
    for key in ROWS:
        row = {"code_accuracy": float(accuracy[key]), "psnr": float(np.mean(psnr(images[key], frames.next))),
               "ssim": float(np.mean(ssim(images[key], frames.next)))}
        if fid_model is not None:
            row["fid"] = frechet_distance(inception_features(fid_model, images[key]), reference)
        rows[key] = row
    return rows


def load_inception(path: str | Path):
    """A local TorchScript Inception feature extractor (e.g. inception-2015-12-05.pt); never downloaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no TorchScript Inception file here; pass --fid-weights a local .pt "
                                "(e.g. clean-fid / StyleGAN's inception-2015-12-05.pt); nothing is downloaded")
    return torch.jit.load(str(path), map_location="cpu").eval()


@torch.no_grad()
def inception_features(model, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """(N, F) features of uint8 (N, H, W, 3) images, fed as float 0..255 at 299x299 (StyleGAN's convention)."""
    feats = []
    for i in range(0, len(images), batch):
        x = torch.as_tensor(images[i:i + batch]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(FID_SIZE, FID_SIZE), mode="bilinear", align_corners=False)
        try:  # StyleGAN / clean-fid's script returns pool features when asked
            out = model(x, return_features=True)
        except (RuntimeError, TypeError):
            out = model(x)
        feats.append(out.reshape(len(x), -1).double().numpy())
    return np.concatenate(feats)


def markdown_table(rows: dict[str, dict[str, float]], counts: dict[str, int], split: str) -> str:
    """The world-model table: one line per row of ROWS, FID only when measured."""
    fid = all("fid" in r for r in rows.values())
    head = "| method | code accuracy | PSNR (dB) | SSIM |" + (" FID |" if fid else "")
    lines = [head, "|---|---|---|---|" + ("---|" if fid else "")]
    for key, name in ROWS.items():
        r = rows[key]
        lines.append(f"| {name} | {r['code_accuracy']:.3f} | {r['psnr']:.2f} | {r['ssim']:.3f} |" + (f" {r['fid']:.1f} |" if fid else ""))
    note = (f"\n{counts['evaluated']} of {counts['keyframes']} `{split}` keyframes scored against their next keyframe "
            f"(+0.5 s); {counts['keyframes'] - counts['with_next']} have no next keyframe (scene ends), "
            f"{counts['no_imagined_codes']} had no imagined codes.\n")
    return "\n".join(lines) + "\n" + note
