"""Typed config of the BEV perception stage, read from `configs/perception/*.yaml`.

    from vla_world.config import load_config
    cfg = load_config("configs/perception/tiny.yaml", PerceptionConfig)

`tiny.yaml` is the 2-core CPU default for the mini world; `base.yaml` has the paper's sizes
(200x200 BEV, D=256, 900 agent queries) for real nuScenes on GPUs. Lengths are metres in the
current LiDAR_TOP frame (x right, y forward), image sizes are (width, height) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vla_world.data.records import CAMERAS


@dataclass
class GridConfig:
    """The BEV grid around the ego and the perception range (targets outside it are dropped)."""

    x_half: float = 25.0  # grid covers x in [-x_half, x_half] m (LiDAR x, right)
    y_half: float = 25.0  # grid covers y in [-y_half, y_half] m (LiDAR y, forward)
    cells: int = 50  # cells per side (square grid): resolution = 2 * half / cells
    heights: tuple[float, ...] = (-1.6, -0.9, -0.2)  # z (m, LiDAR frame; ground ~ -1.84 m) of pillar points projected into cameras
    ground_height: float | None = None  # z (m): also sample the cameras at this one height and add it as BEV channels, so
    # road markings are not averaged with the features of points above them (for the map head); None: off
    heights_from_ground: bool = False  # heights (and ground_height) are metres above the ground plane from the pose,
    # not LiDAR z: the nuScenes LiDAR is tilted by ~1 degree, so LiDAR z = -1.84 m is 0.2 m off the road 10 m away

    def validate(self) -> None:
        if self.x_half <= 0 or self.y_half <= 0:
            raise ValueError("x_half and y_half must be positive metres")
        if self.cells < 2:
            raise ValueError(f"cells={self.cells}: need at least 2 cells per side")
        if not self.heights:
            raise ValueError("heights: give at least one pillar height, e.g. [0.0]")


@dataclass
class BevModelConfig:
    """Network sizes. Every token (scene, agent, map) has width `token_dim`."""

    image_size: tuple[int, int] = (128, 72)  # camera images are resized to (width, height) before the backbone
    backbone_channels: tuple[int, ...] = (16, 32, 64)  # ResNet-style stages, each halving resolution after a stride-2 stem
    fpn_channels: int = 64  # FPN output width (one fused level at the last stage's stride)
    token_dim: int = 64  # D: width of BEV features and of every token
    bev_encoder_blocks: int = 2  # residual conv blocks on the BEV grid
    scene_pool: tuple[int, int] = (2, 3)  # (rows, cols) adaptive pooling per camera -> 6*rows*cols scene tokens
    num_agent_queries: int = 30  # agent queries = the K strongest centre-heatmap peaks (perception/centre_head.py)
    num_map_queries: int = 20  # queries for map polylines
    map_points: int = 10  # P: points per decoded polyline
    decoder_layers: int = 2  # transformer decoder layers of the map decoder
    decoder_heads: int = 4  # attention heads
    ffn_dim: int = 128  # decoder feed-forward width
    dropout: float = 0.0  # decoder dropout (0 keeps CPU runs deterministic)
    map_head: Literal["detr", "raster"] = "detr"  # detr: query decoder (perception/decoders.py); raster: per-class
    # segmentation vectorised into polylines (perception/map_raster.py); "detr" is the default so older checkpoints load
    map_raster_scale: int = 2  # raster head: map raster cells per BEV cell side (2 at tiny size: 0.5 m cells)
    map_raster_thickness: int = 1  # raster head: width (map raster cells) of the drawn target lines; wider is easier to learn
    ground_view_scale: int = 0  # > 0: resample the camera images onto the ground plane at this many cells per BEV cell side
    # (perception/ground_view.py; 4 at tiny size: 0.25 m) for the raster map head and the BEV encoder; 0: off
    ground_image_size: tuple[int, int] = (256, 144)  # (width, height) the images are resized to for the ground view

    def validate(self) -> None:
        if self.token_dim % self.decoder_heads:
            raise ValueError(f"token_dim={self.token_dim} must be divisible by decoder_heads={self.decoder_heads}")
        if len(self.backbone_channels) < 2:
            raise ValueError("backbone_channels: give at least two stages for the FPN to fuse")
        if self.map_points < 2:
            raise ValueError("map_points must be >= 2 (a polyline needs two points)")
        if self.map_head not in ("detr", "raster"):
            raise ValueError(f"map_head={self.map_head!r}: use 'detr' or 'raster'")
        if self.map_raster_thickness < 1:
            raise ValueError(f"map_raster_thickness={self.map_raster_thickness}: must be >= 1 raster cell")
        if self.map_raster_scale < 1:
            raise ValueError(f"map_raster_scale={self.map_raster_scale}: must be >= 1 (1 = the BEV grid itself)")
        if self.ground_view_scale < 0:
            raise ValueError(f"ground_view_scale={self.ground_view_scale}: use 0 (off) or cells per BEV cell side, e.g. 4")
        if self.ground_view_scale and self.ground_view_scale % self.map_raster_scale:
            raise ValueError(f"ground_view_scale={self.ground_view_scale} must be a multiple of map_raster_scale="
                             f"{self.map_raster_scale} (the map head strides from the one to the other)")


@dataclass
class LossConfig:
    """Loss weights: dense centre-head losses for agents, Hungarian-matched losses (and costs) for map elements."""

    cls_weight: float = 2.0  # CenterNet focal loss on the per-class agent centre heatmap
    box_weight: float = 1.0  # L1 on centre offset (cells), z / 3 m, log size, sin/cos yaw around GT centres
    velocity_weight: float = 0.5  # L1 on velocity (m/s) around GT centres
    map_cls_weight: float = 2.0  # focal loss on map element classes
    map_points_weight: float = 5.0  # L1 on normalised polyline points (direction-agnostic)
    dense_weight: float = 2.0  # focal loss on the auxiliary per-cell BEV masks (agent centres, map classes)
    map_seg_weight: float = 2.0  # raster map head: BCE + Dice on the per-class map raster
    map_seg_pos_weight: float = 10.0  # raster map head: BCE weight of map cells (a few percent of the raster)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class PerceptionTrainConfig:
    """Optimisation. One step = `batch_size` keyframes."""

    epochs: int = 10  # full passes over the train split
    batch_size: int = 2
    lr: float = 1e-3  # AdamW peak learning rate (linear warm-up, then cosine decay to 0 at the last step)
    warmup_steps: int = 50  # optimizer steps of linear warm-up
    weight_decay: float = 1e-4
    grad_clip: float = 5.0  # max grad norm
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads (keep low on shared CPUs)
    log_every: int = 10  # steps between loss lines in the progress bar
    half_turn_probability: float = 0.0  # per keyframe: turn the BEV and the targets by 180 degrees (x and y flipped together;
    # perception/augment.py says why not single mirrors)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not 0.0 <= self.half_turn_probability <= 1.0:
            raise ValueError(f"half_turn_probability={self.half_turn_probability}: a probability in [0, 1]")


@dataclass
class InferenceConfig:
    """Thresholds that turn decoder outputs into tokens and tracks."""

    score_threshold: float = 0.3  # agents below this class score produce no token
    map_score_threshold: float = 0.3  # same for map elements
    map_raster_threshold: float = 0.4  # raster map head: a cell is on a map element when its probability is at least this
    map_raster_ridge: int = 3  # raster map head: keep only row/column maxima within +-this many cells (0: off; map_vectorise.py)
    map_raster_min_cells: int = 4  # raster map head: smaller pieces of a class mask are noise
    map_raster_close: int = 0  # raster map head: binary closing iterations that bridge gaps before vectorising
    map_raster_crest: bool = False  # raster map head: thin line masks to the crest of their distance transform first
    map_raster_peel: float = 1.5  # raster map head: cells near a traced line that belong to it (the rest is traced again)
    max_agents: int = 50  # cap on agent tokens per sample
    track_max_distance: float = 3.0  # m: a detection joins a track only if within this of its predicted position
    track_own_velocity: float = 0.0  # weight of a track's own displacement velocity vs the detector's (perception/tracking.py)
    track_max_missed: int = 1  # keyframes a track coasts on its velocity without a detection before it ends
    gt_match_distance: float = 2.0  # m: a kept agent reports the GT track id of the nearest GT centre within this


@dataclass
class OracleConfig:
    """Ground-truth tokens (no network): fixed seeded random projections of GT features."""

    seed: int = 1234  # seed of the fixed projection matrices (tokens are a deterministic function of GT)
    fourier_bands: int = 6  # sin/cos frequency bands per coordinate
    raster_cells: int = 48  # side of the GT BEV raster that scene tokens are pooled from


@dataclass
class PerceptionConfig:
    """Top level of `configs/perception/*.yaml`."""

    token_source: Literal["oracle", "model"] = "model"  # where the LLM stages get tokens from
    version: str = "v1.0-mini"  # nuScenes table folder under the dataroot
    grid: GridConfig = field(default_factory=GridConfig)
    model: BevModelConfig = field(default_factory=BevModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: PerceptionTrainConfig = field(default_factory=PerceptionTrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)

    @property
    def num_scene_tokens(self) -> int:
        rows, cols = self.model.scene_pool
        return len(CAMERAS) * rows * cols
