"""The frame tokenizer: a VQ autoencoder (diffusers `VQModel`) that turns a CAM_FRONT image into K codes.

Why: the world model (paper 004, sections 3/B) has the LLM write the next keyframe's front camera
as discrete tokens; this module owns the image <-> code mapping and nothing else. No other image
stack: diffusers' VQModel is the encoder, quantiser and decoder.

    tok = FrameTokenizer.build(FrameTokenizerConfig())            # fresh, seeded by the caller
    codes = tok.encode(images)        # uint8 (B, H, W, 3) at cfg.image_size -> int64 (B, K), raster order
    images = tok.decode(codes)        # int64 (B, K) -> uint8 (B, H, W, 3)
    tok.save(folder); FrameTokenizer.load(folder)                 # safetensors + JSON, atomic
    FrameTokenizer.from_pretrained_folder(path, cfg)              # a local diffusers VQModel folder (--vq PATH)

Pixels map to [-1, 1] as diffusers' VQ models expect. Image size is (height, width) here, as in
`FrameCodeMeta`; the latent grid is the image size divided by 2 per down block after the first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vla_world.checkpoint import load_checkpoint, save_checkpoint
from vla_world.config import config_from_dict, config_to_dict

VQ_CONFIG_FILE = "vq_config.json"  # diffusers' own VQModel config, so any architecture reloads exactly
TOKENIZER_CONFIG_FILE = "tokenizer.json"  # our FrameTokenizerConfig (model + train), as JSON


@dataclass
class FrameTokenizerModelConfig:
    """VQModel sizes. Codes per frame = (H / 2^(n-1)) * (W / 2^(n-1)) for n = len(block_out_channels)."""

    image_size: tuple[int, int] = (48, 80)  # (height, width) pixels the tokenizer reads (CAM_FRONT resized)
    block_out_channels: tuple[int, ...] = (32, 64, 64, 64)  # one down/up block each; every block after the first halves H, W
    layers_per_block: int = 1  # ResNet layers per block
    latent_channels: int = 32  # encoder output width before the 1x1 quant conv
    vq_embed_dim: int = 32  # width of a codebook entry
    num_vq_embeddings: int = 256  # codebook size: code ids are 0 .. num_vq_embeddings - 1
    norm_num_groups: int = 16  # GroupNorm groups (must divide every block width)
    mid_block_attention: bool = False  # self-attention in the mid block (diffusers' default True; off is ~2x faster on CPU)
    codes_per_frame: int = 60  # K, stated so a preset reads plainly; validated against the derived grid

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.downsample, self.image_size[1] // self.downsample

    def validate(self) -> None:
        h, w = self.image_size
        if h % self.downsample or w % self.downsample:
            raise ValueError(f"image_size {self.image_size} must be divisible by {self.downsample} "
                             f"(2 per block after the first of {len(self.block_out_channels)})")
        if self.grid[0] * self.grid[1] != self.codes_per_frame:
            raise ValueError(f"codes_per_frame={self.codes_per_frame}, but image_size {self.image_size} with "
                             f"{len(self.block_out_channels)} blocks gives a {self.grid} grid = "
                             f"{self.grid[0] * self.grid[1]} codes; set codes_per_frame to that")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"norm_num_groups={self.norm_num_groups} must divide every block width {self.block_out_channels}")
        if self.num_vq_embeddings < 2:
            raise ValueError("num_vq_embeddings must be >= 2")


@dataclass
class FrameTokenizerTrainConfig:
    """Optimisation of the frame_tokenizer stage. One step = `batch_size` train-split CAM_FRONT images."""

    epochs: int = 30  # passes over the train split (0: keep the initial / pretrained weights, only evaluate)
    batch_size: int = 16
    lr: float = 2e-3  # AdamW peak learning rate (linear warm-up, then cosine decay to 0)
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max grad norm
    commit_weight: float = 1.0  # weight of VQModel's returned commit_loss (commitment + 0.25 * codebook term) beside the L1+MSE recon loss
    kmeans_init: bool = True  # initialise the codebook by k-means on the first batches' encoder outputs (against codebook collapse)
    kmeans_iters: int = 10  # Lloyd iterations of that initialisation
    dead_code_restart: bool = True  # each epoch, move entries unused in that epoch onto random recent encoder outputs
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads (keep low on shared CPUs)
    log_every: int = 10  # steps between loss lines in train_log.jsonl

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ValueError("epochs must be >= 0 and batch_size >= 1")


@dataclass
class FrameTokenizerConfig:
    """Top level of `configs/frame_tokenizer/*.yaml`."""

    version: str = "v1.0-mini"  # nuScenes table folder of the dataroot
    camera: str = "CAM_FRONT"  # the camera tokenised (records' camera_paths[0]); only CAM_FRONT is supported
    pretrained: str = ""  # local diffusers VQModel folder to start from (tools/train.py --vq PATH); never downloaded
    model: FrameTokenizerModelConfig = field(default_factory=FrameTokenizerModelConfig)
    train: FrameTokenizerTrainConfig = field(default_factory=FrameTokenizerTrainConfig)

    def validate(self) -> None:
        if self.camera != "CAM_FRONT":
            raise ValueError(f"camera={self.camera!r}: the world model tokenises CAM_FRONT only")


def vq_model_kwargs(cfg: FrameTokenizerModelConfig) -> dict:
    """diffusers.VQModel constructor arguments of a config."""
    blocks = len(cfg.block_out_channels)
    return {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * blocks,
            "up_block_types": ["UpDecoderBlock2D"] * blocks, "block_out_channels": list(cfg.block_out_channels),
            "layers_per_block": cfg.layers_per_block, "latent_channels": cfg.latent_channels,
            "vq_embed_dim": cfg.vq_embed_dim, "num_vq_embeddings": cfg.num_vq_embeddings,
            "norm_num_groups": cfg.norm_num_groups, "sample_size": max(cfg.image_size),
            "mid_block_add_attention": cfg.mid_block_attention}


def resize_image(image: np.ndarray | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) at `size` = (height, width); PIL bilinear, which antialiases when shrinking."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    return np.asarray(pil.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)).copy()


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """One camera JPEG as uint8 (height, width, 3) at `size`; a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: camera image missing; check --dataroot (the folder the records were built from)")
    with Image.open(path) as image:
        return resize_image(image, size)


class FrameTokenizer:
    """A diffusers VQModel plus the config that says how images and codes are laid out."""

    def __init__(self, model, cfg: FrameTokenizerConfig) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self._check_model()

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, cfg: FrameTokenizerConfig) -> FrameTokenizer:
        """A fresh VQModel from `cfg.model` (weights from torch's current RNG: seed it first)."""
        from diffusers import VQModel

        return cls(VQModel(**vq_model_kwargs(cfg.model)), cfg)

    @classmethod
    def from_pretrained_folder(cls, path: str | Path, cfg: FrameTokenizerConfig) -> FrameTokenizer:
        """A local diffusers VQModel folder (config.json + weights); never downloads anything."""
        from diffusers import VQModel

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no diffusers VQModel folder here (expected config.json and "
                                    "diffusion_pytorch_model.safetensors); pass --vq a local folder, nothing is downloaded")
        model = VQModel.from_pretrained(str(folder), local_files_only=True)
        return cls(model, cfg)

    @classmethod
    def load(cls, folder: str | Path) -> FrameTokenizer:
        """A tokenizer saved by `save` (e.g. checkpoints/frame_tokenizer/last)."""
        from diffusers import VQModel

        folder = Path(folder)
        for name in (VQ_CONFIG_FILE, TOKENIZER_CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name}: not a frame tokenizer checkpoint; train one with "
                                        "`tools/train.py --stage frame_tokenizer` and pass its `last` folder")
        cfg = config_from_dict(FrameTokenizerConfig, json.loads((folder / TOKENIZER_CONFIG_FILE).read_text()),
                               str(folder / TOKENIZER_CONFIG_FILE))
        model = VQModel.from_config(json.loads((folder / VQ_CONFIG_FILE).read_text()))
        weights, _, _ = load_checkpoint(folder)
        model.load_state_dict(weights)
        return cls(model, cfg)

    def save(self, folder: str | Path, optimizer_state: dict | None = None, state: dict | None = None) -> Path:
        """Atomic checkpoint folder: model.safetensors, state.json (with the fingerprint), both configs."""
        meta = {**(state or {}), "fingerprint": self.fingerprint(), "stage": "frame_tokenizer"}
        extra = {VQ_CONFIG_FILE: json.dumps(dict(self.model.config), indent=1, default=list),
                 TOKENIZER_CONFIG_FILE: json.dumps(config_to_dict(self.cfg), indent=1)}
        return save_checkpoint(folder, self.model.state_dict(), optimizer_state, meta, extra_files=extra)

    def _check_model(self) -> None:
        """The VQModel must agree with the config on codebook size and grid (a pretrained folder may not)."""
        config, m = self.model.config, self.cfg.model
        if config.num_vq_embeddings != m.num_vq_embeddings:
            raise ValueError(f"VQModel has {config.num_vq_embeddings} codebook entries, the config says "
                             f"{m.num_vq_embeddings}: set model.num_vq_embeddings to match")
        down = 2 ** (len(config.block_out_channels) - 1)
        if (m.image_size[0] // down, m.image_size[1] // down) != m.grid:
            raise ValueError(f"VQModel downsamples by {down}, the config by {m.downsample}: set "
                             "model.block_out_channels to the folder's")

    # ------------------------------------------------------------------ layout
    @property
    def grid(self) -> tuple[int, int]:
        return self.cfg.model.grid

    @property
    def codes_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.num_vq_embeddings)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.cfg.model.image_size)

    def fingerprint(self) -> str:
        """sha256 (16 hex) over the weights' names, shapes and bytes: a code cache names the tokenizer that made it."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    # ------------------------------------------------------------------ images <-> codes
    def to_pixels(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], refusing another size."""
        x = torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3 or tuple(x.shape[1:3]) != self.image_size:
            raise ValueError(f"frame tokenizer: expected uint8 images (B, {self.image_size[0]}, {self.image_size[1]}, 3), "
                             f"got {x.dtype} {tuple(x.shape)}; resize with perception.frame_tokenizer.resize_image")
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encoder output before quantisation, (B, vq_embed_dim, h, w)."""
        return self.model.encode(pixels).latents

    def codes_of_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry per latent cell, (B, h * w) int64 in row-major order."""
        b, d, h, w = latents.shape
        flat = latents.permute(0, 2, 3, 1).reshape(-1, d)
        return torch.cdist(flat, self.model.quantize.embedding.weight).argmin(dim=1).reshape(b, h * w)

    @torch.no_grad()
    def encode(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 (B, H, W, 3) at `image_size` -> int64 (B, K) codes."""
        return self.codes_of_latents(self.latents(self.to_pixels(images))).numpy().astype(np.int64)

    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, K) code ids -> float (B, 3, H, W) in about [-1, 1] (differentiable w.r.t. the decoder)."""
        b = codes.shape[0]
        h, w = self.grid
        shape = (b, h, w, self.model.quantize.vq_embed_dim)
        quant = self.model.quantize.get_codebook_entry(codes.reshape(-1), shape)
        spatial = quant if self.model.config.norm_type == "spatial" else None  # as VQModel.decode does
        return self.model.decoder(self.model.post_quant_conv(quant), spatial)

    @torch.no_grad()
    def decode(self, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """int64 (B, K) codes -> uint8 (B, H, W, 3) images."""
        c = torch.as_tensor(np.asarray(codes), dtype=torch.int64)
        if c.ndim != 2 or c.shape[1] != self.codes_per_frame or (c.numel() and (c.min() < 0 or c.max() >= self.codebook_size)):
            raise ValueError(f"frame tokenizer: expected int codes (B, {self.codes_per_frame}) in 0..{self.codebook_size - 1}, "
                             f"got shape {tuple(c.shape)}")
        return to_uint8(self.decode_pixels(c))


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> uint8 (B, H, W, 3), rounded and clipped."""
    x = ((pixels.detach().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()
