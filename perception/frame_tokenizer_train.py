"""Training of the frame_tokenizer stage: the VQ autoencoder on the train split's CAM_FRONT images.

    python tools/train.py --stage frame_tokenizer --config configs/frame_tokenizer/tiny.yaml \
        [--dataroot data/mini_world] [--out checkpoints/frame_tokenizer] [--resume] [--max-steps N] [--vq PATH]

Loss: L1 + MSE between image and reconstruction, plus `commit_weight` x the commit_loss that
diffusers' VQModel returns (its legacy form: commitment term + 0.25 x codebook term). Codebook collapse (few entries
used) is the usual failure of a small VQ model trained briefly, so two standard fixes are on by
default: k-means initialisation of the codebook on the first encoder outputs (as in SoundStream /
"Jukebox"-style data init) and, at every epoch end, a restart of the entries unused during that
epoch onto random encoder outputs of the epoch's last batch.

Writes `<out>/last` (each epoch and at the end; model + optimizer safetensors, state.json with step,
RNG, usage counts and the fingerprint, tokenizer.json, vq_config.json) and `<out>/train_log.jsonl`;
the end of training prints reconstruction quality on val (PSNR, SSIM, codebook usage, perplexity).
`--resume` continues from `<out>/last` exactly: the epoch order is a function of (seed, epoch).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from perception.frame_tokenizer import FrameTokenizer, FrameTokenizerConfig, load_image
from perception.image_quality import codebook_stats, psnr, ssim
from perception.train import batches_per_epoch, epoch_order, learning_rate
from vla_world.checkpoint import load_checkpoint, rng_state, set_rng_state
from vla_world.config import load_config
from vla_world.data.records import SampleRecord


@dataclass
class TokenizerTrainResult:
    checkpoint: Path
    step: int
    losses: list[float] = field(default_factory=list)  # total loss of every step run in this call
    seconds: float = 0.0


def front_images(records: list[SampleRecord], dataroot: str | Path, size: tuple[int, int], progress: bool = False) -> np.ndarray:
    """uint8 (N, H, W, 3): each record's own CAM_FRONT (camera_paths[0], CAMERAS order) resized to `size`."""
    root = Path(dataroot)
    return np.stack([load_image(root / str(r.camera_paths[0]), size)
                     for r in tqdm(records, desc="loading CAM_FRONT", unit="image", disable=not progress)])


def recon_loss(tokenizer: FrameTokenizer, pixels: torch.Tensor, commit_weight: float) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """(loss, parts, codes) of one batch in [-1, 1]: L1 + MSE + commit_weight * VQModel's commit_loss."""
    latents = tokenizer.latents(pixels)
    quant, commit, (_, _, indices) = tokenizer.model.quantize(latents)
    spatial = quant if tokenizer.model.config.norm_type == "spatial" else None
    out = tokenizer.model.decoder(tokenizer.model.post_quant_conv(quant), spatial)
    l1, mse = (out - pixels).abs().mean(), F.mse_loss(out, pixels)
    loss = l1 + mse + commit_weight * commit.mean()
    return loss, {"l1": float(l1), "mse": float(mse), "commit": float(commit.mean())}, indices.reshape(-1)


@torch.no_grad()
def kmeans_init(tokenizer: FrameTokenizer, images: np.ndarray, iters: int, batch: int = 64) -> None:
    """Set the codebook to k-means centres of the encoder's outputs on `images` (random rows when too few)."""
    latents = torch.cat([tokenizer.latents(tokenizer.to_pixels(images[i:i + batch])) for i in range(0, len(images), batch)])
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    k = tokenizer.codebook_size
    centres = flat[torch.randint(len(flat), (k,))].clone()
    for _ in range(iters):
        assign = torch.cdist(flat, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=k).float()
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    tokenizer.model.quantize.embedding.weight.data.copy_(centres)


@torch.no_grad()
def restart_dead_codes(tokenizer: FrameTokenizer, usage: torch.Tensor, pixels: torch.Tensor) -> int:
    """Move entries with zero `usage` onto random encoder outputs of `pixels`; returns how many moved."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead) == 0:
        return 0
    latents = tokenizer.latents(pixels)
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    tokenizer.model.quantize.embedding.weight.data[dead] = flat[torch.randint(len(flat), (len(dead),))]
    return len(dead)


def build_optimizer(tokenizer: FrameTokenizer, cfg: FrameTokenizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(tokenizer.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def train_step(tokenizer: FrameTokenizer, optimizer: torch.optim.Optimizer, pixels: torch.Tensor,
               cfg: FrameTokenizerConfig) -> tuple[float, dict[str, float], torch.Tensor]:
    tokenizer.model.train()
    loss, parts, codes = recon_loss(tokenizer, pixels, cfg.train.commit_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tokenizer.model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    tokenizer.model.eval()
    return float(loss.detach()), parts, codes


def _save(tokenizer: FrameTokenizer, optimizer: torch.optim.Optimizer, folder: Path, step: int,
          usage: torch.Tensor, parts: dict[str, float]) -> Path:
    state = {"step": step, "rng": rng_state(), "usage": usage.tolist(), "losses": parts}
    return tokenizer.save(folder, optimizer.state_dict(), state)


def train(tokenizer: FrameTokenizer, optimizer: torch.optim.Optimizer, images: np.ndarray, out: Path,
          start_step: int = 0, usage: torch.Tensor | None = None, max_steps: int | None = None,
          progress: bool = True) -> TokenizerTrainResult:
    """Optimizer steps from `start_step` to the end of training (or `max_steps`), saving `<out>/last`."""
    cfg = tokenizer.cfg
    per_epoch = batches_per_epoch(len(images), cfg.train.batch_size)
    schedule = per_epoch * cfg.train.epochs  # the LR schedule ignores --max-steps, so a cut run resumes onto the same curve
    total = schedule if max_steps is None else min(max_steps, schedule)
    usage = torch.zeros(tokenizer.codebook_size, dtype=torch.int64) if usage is None else usage
    result, started, step, parts = TokenizerTrainResult(out / "last", start_step), time.time(), start_step, {}
    if start_step == 0 and cfg.train.kmeans_init and not cfg.pretrained and total > 0:
        kmeans_init(tokenizer, images[epoch_order(len(images), cfg.train.seed, 0)[:256]], cfg.train.kmeans_iters)
    bar = tqdm(total=total, initial=start_step, desc="frame_tokenizer", disable=not progress, dynamic_ncols=True)
    with (out / "train_log.jsonl").open("a") as log_file:
        while step < total:
            epoch, position = divmod(step, per_epoch)
            chosen = epoch_order(len(images), cfg.train.seed, epoch)[position * cfg.train.batch_size:(position + 1) * cfg.train.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, schedule, cfg.train.lr, cfg.train.warmup_steps)
            pixels = tokenizer.to_pixels(images[chosen])
            loss, parts, codes = train_step(tokenizer, optimizer, pixels, cfg)
            usage += torch.bincount(codes, minlength=tokenizer.codebook_size)
            step += 1
            result.losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch)
            if step % per_epoch == 0:
                parts["used"] = int((usage > 0).sum())
                if cfg.train.dead_code_restart and step < schedule:
                    parts["restarted"] = restart_dead_codes(tokenizer, usage, pixels)
                usage.zero_()
            if step % cfg.train.log_every == 0 or step == total or "used" in parts:
                log_file.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, **parts}) + "\n")
                log_file.flush()
            if step % per_epoch == 0 or step == total:
                _save(tokenizer, optimizer, out / "last", step, usage, parts)
    bar.close()
    if total == 0 or step == start_step:
        _save(tokenizer, optimizer, out / "last", step, usage, parts)
    result.step, result.seconds = step, time.time() - started
    return result


def reconstruction_metrics(tokenizer: FrameTokenizer, images: np.ndarray, batch: int = 32) -> dict[str, float]:
    """Mean PSNR / SSIM of decode(encode(x)) vs x, and the codebook usage / perplexity of the codes."""
    codes = np.concatenate([tokenizer.encode(images[i:i + batch]) for i in range(0, len(images), batch)])
    recon = np.concatenate([tokenizer.decode(codes[i:i + batch]) for i in range(0, len(codes), batch)])
    stats = codebook_stats(codes, tokenizer.codebook_size)
    return {"images": len(images), "psnr": float(np.mean(psnr(recon, images))), "ssim": float(np.mean(ssim(recon, images))),
            **stats, "codebook_size": tokenizer.codebook_size, "codes_per_frame": tokenizer.codes_per_frame}


def format_metrics(split: str, m: dict[str, float]) -> str:
    return (f"{split} reconstruction ({m['images']} CAM_FRONT images, {m['codes_per_frame']} codes each): "
            f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, codebook usage {m['usage']:.3f} "
            f"({m['entries_used']}/{m['codebook_size']}), perplexity {m['perplexity']:.1f}")


def prepare(cfg: FrameTokenizerConfig, out: Path, resume: bool = False, vq: str | None = None
            ) -> tuple[FrameTokenizer, torch.optim.Optimizer, int, torch.Tensor | None]:
    """Fresh (seeded) or pretrained tokenizer and optimizer, or `<out>/last` when resuming; + start step, usage."""
    torch.manual_seed(cfg.train.seed)
    if resume:
        tokenizer = FrameTokenizer.load(out / "last")
        tokenizer.cfg = cfg
        optimizer = build_optimizer(tokenizer, cfg)
        _, optimizer_state, state = load_checkpoint(out / "last")
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        set_rng_state(state["rng"])
        return tokenizer, optimizer, int(state["step"]), torch.tensor(state["usage"], dtype=torch.int64)
    path = vq or cfg.pretrained
    tokenizer = FrameTokenizer.from_pretrained_folder(path, cfg) if path else FrameTokenizer.build(cfg)
    return tokenizer, build_optimizer(tokenizer, cfg), 0, None


def run_frame_tokenizer_stage(args: argparse.Namespace) -> TokenizerTrainResult:
    """Entry point of `tools/train.py --stage frame_tokenizer` (args fields: see tools/train.py)."""
    from vla_world.data import load_records

    cfg = load_config(args.config, FrameTokenizerConfig, getattr(args, "overrides", None))
    cfg.version = args.version or cfg.version
    if getattr(args, "vq", None):
        cfg.pretrained = str(args.vq)
    torch.set_num_threads(cfg.train.num_threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.resume and not (out / "last" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{out / 'last'}: nothing to resume; run once without --resume (or pass the right --out)")
    size = tuple(cfg.model.image_size)
    train_images = front_images(load_records(args.dataroot, version=cfg.version, split="train"), args.dataroot, size, True)
    tokenizer, optimizer, start, usage = prepare(cfg, out, args.resume, getattr(args, "vq", None))
    params = sum(p.numel() for p in tokenizer.model.parameters())
    print(f"frame tokenizer: {params / 1e6:.2f}M parameters, {size[0]}x{size[1]} images -> {tokenizer.grid[0]}x"
          f"{tokenizer.grid[1]} = {tokenizer.codes_per_frame} codes of {tokenizer.codebook_size}; "
          f"{len(train_images)} train CAM_FRONT images, starting at step {start}")
    result = train(tokenizer, optimizer, train_images, out, start, usage, args.max_steps)
    val = load_records(args.dataroot, version=cfg.version, split="val", progress=False)
    if val:
        metrics = reconstruction_metrics(tokenizer, front_images(val, args.dataroot, size))
        (out / "last" / "val_metrics.json").write_text(json.dumps(metrics, indent=1))
        print(format_metrics("val", metrics))
    print(f"done: step {result.step} in {result.seconds:.0f} s; checkpoint {result.checkpoint} "
          f"(fingerprint {tokenizer.fingerprint()})")
    return result
