"""Pictures of planned trajectories: per sample a BEV + CAM_FRONT PNG, per scene an animated GIF.

Run with:
    python tools/visualize.py --dataroot data/mini_world --split val \\
        --pred outputs/baselines/kinematic.json --out outputs/vis --samples 8
    python tools/visualize.py --dataroot data/mini_world --out outputs/vis --gif    # GT only, all val

Each PNG shows, in the current LiDAR_TOP frame (x right, y forward, metres): map polylines, GT
agent boxes with their GT futures, the GT ego future and every prediction with the ego footprint
at each 0.5 s step, red crosses where the collision metric's box test (planning/metrics.py, on
this sample's GT occupancy, --convention) fires at that step, and the map, GT boxes and the same
trajectories projected onto CAM_FRONT on the road surface.
The title carries the command, the speed and, per prediction, L2 at 1/2/3 s (UniAD, "at t").
Files: <out>/<scene>/<frame>_<token>.png and, with --gif, <out>/<scene>.gif (2 frames per s).

World mode (issue 10): with --world-codes (imagined next-frame codes keyed by the current sample,
e.g. outputs/world/imagined_codes.safetensors from tools/eval_world.py) each PNG shows the current
CAM_FRONT | the imagined next frame (decoded by --tokenizer) | the true next CAM_FRONT, all at the
tokenizer's input size, titled with the code accuracy and PSNR of the imagined frame:
    python tools/visualize.py --split test --world-codes outputs/world/imagined_codes.safetensors \
        --tokenizer checkpoints/frame_tokenizer/last --samples 8 --gif --out outputs/world/pictures
Files: <out>/<scene>/<frame>_<token>_world.png and, with --gif, <out>/<scene>_world.gif over the
drawn frames of each scene.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from tqdm import tqdm

from planning.bev_plot import (
    PRED2_STYLE,
    PRED_STYLE,
    PlannedTrajectory,
    TrajectoryStyle,
    draw_scene,
    gt_trajectory,
    l2_at_seconds,
    legend_handles,
    make_bev_axes,
)
from planning.camera_plot import (
    draw_projected_boxes,
    draw_projected_map,
    draw_projected_trajectory,
    load_camera_image,
    show_image,
)
from planning.metrics import CONVENTIONS
from planning.predictions import PredictionFileError, Predictions, load_predictions
from vla_world.data import load_records
from vla_world.data.records import CAMERAS, STEP_SECONDS, SampleRecord
from vla_world.data.targets import PlanningTargets, planning_targets

GIF_FRAME_MS = int(STEP_SECONDS * 1000)  # keyframes are 0.5 s apart: play in real time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-trainval (default: the one found)")
    p.add_argument("--split", default="val", help="which split's samples to draw (default: val)")
    p.add_argument("--pred", default=None, help="predictions file (JSON/NPZ, planning/predictions.py); omit for GT only")
    p.add_argument("--pred2", "--pred-vla", dest="pred2", default=None,
                   help="a second predictions file, drawn dashed, to compare two planners (e.g. the VLA's)")
    p.add_argument("--out", default="outputs/vis", help="output folder (default: outputs/vis)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--samples", type=int, default=None, help="draw only the first N samples in scene/time order")
    which.add_argument("--tokens", nargs="+", default=None, help="draw only these sample tokens")
    p.add_argument("--gif", action="store_true", help="also write one animated GIF per scene from its frames")
    p.add_argument("--camera", default="CAM_FRONT", choices=CAMERAS, metavar="CAMERA",
                   help=f"camera shown next to the BEV, one of {', '.join(CAMERAS)} (default: CAM_FRONT)")
    p.add_argument("--dpi", type=int, default=FigureOptions.dpi, help="picture resolution (default: 110)")
    p.add_argument("--convention", default="uniad", choices=CONVENTIONS,
                   help="whose occupancy and box test mark collisions (default: uniad; docs/metrics.md)")
    world = p.add_argument_group("world mode (current | imagined | true next frame)")
    world.add_argument("--world-codes", default=None,
                       help="frame-code cache of imagined next-frame codes keyed by the current sample token")
    world.add_argument("--tokenizer", default="checkpoints/frame_tokenizer/last",
                       help="frame tokenizer that decodes them (default checkpoints/frame_tokenizer/last)")
    return p


# ----------------------------------------------------------------------------- inputs


def select_records(records: list[SampleRecord], samples: int | None, tokens: list[str] | None) -> list[SampleRecord]:
    """Records in scene/time order, cut to the first `samples` or to `tokens` (all must exist)."""
    ordered = sorted(records, key=lambda r: (r.scene_name, r.frame_index))
    if samples is not None and samples < 1:
        raise SystemExit(f"--samples {samples}: give a positive number of samples to draw")
    if tokens is not None:
        by_token = {r.sample_token: r for r in ordered}
        missing = [t for t in tokens if t not in by_token]
        if missing:
            raise SystemExit(f"--tokens: {len(missing)} token(s) not in this split, e.g. {missing[0]!r}; "
                             f"check --split (tokens of the first samples: {[r.sample_token for r in ordered[:3]]})")
        return [by_token[t] for t in tokens]
    return ordered if samples is None else ordered[:samples]


@dataclass
class PredictionLayer:
    """One predictions file to draw: its trajectory style (labelled with the file name) and contents.

    Not a planner (that is `vla_world.inference.Planner`): a layer of saved answers on the picture.
    """

    style: TrajectoryStyle
    predictions: Predictions


@dataclass(frozen=True)
class FigureOptions:
    """What each sample picture shows besides the BEV."""

    camera: str = "CAM_FRONT"  # the camera image next to the BEV
    convention: str = "uniad"  # whose occupancy and box test mark the collisions (planning/metrics.py)
    dpi: int = 110  # 110 -> a 1375 x 638 px picture


def load_layer(path: str | None, style: TrajectoryStyle) -> PredictionLayer | None:
    """The predictions in `path` drawn with `style` (label gets the file name), or None without a file."""
    if path is None:
        return None
    return PredictionLayer(replace(style, label=f"{style.label}: {Path(path).stem}"), load_predictions(path))


# ----------------------------------------------------------------------------- one sample


def sample_figure(record: SampleRecord, image: np.ndarray, layers: list[PredictionLayer],
                  options: FigureOptions = FigureOptions()) -> Figure:
    """BEV (left) and the camera with projected trajectories (right) of one sample, titled."""
    fig = Figure(figsize=(12.5, 5.8), dpi=options.dpi, layout="constrained")
    bev_ax, cam_ax = fig.subplots(1, 2, width_ratios=[1.0, 1.75])
    make_bev_axes(ax=bev_ax)
    plans = [gt_trajectory(record)] + [p for p in (_planned(record, layer) for layer in layers) if p]
    collided = draw_scene(bev_ax, record, plans, options.convention)
    _draw_camera_panel(cam_ax, record, image, plans, options.camera)
    targets = planning_targets(record)  # the titles' L2 is scored from labels, as in the tables
    summary = [_plan_summary(targets, plan, collided[plan.style.label]) for plan in plans]
    bev_ax.set_title("\n".join(summary + _missing_summary(record, layers)), fontsize=8, loc="left")
    fig.suptitle(f"{record.scene_name}  frame {record.frame_index}  ({record.sample_token})   "
                 f"command: {record.command_text}   speed {record.ego_speed:.1f} m/s", fontsize=11)
    fig.legend(handles=legend_handles(record, [p.style for p in plans], options.convention),
               loc="outside lower center", ncol=6, fontsize=8, frameon=False)
    return fig


def _draw_camera_panel(ax, record: SampleRecord, image: np.ndarray, plans: list[PlannedTrajectory], camera: str) -> None:
    show_image(ax, image, title=f"{camera} — map and trajectories on the ground plane, GT boxes at t = 0")
    draw_projected_map(ax, record, camera)
    draw_projected_boxes(ax, record, camera)
    for plan in plans:
        draw_projected_trajectory(ax, record, camera, plan.xy, plan.style, mask=plan.mask)


def _planned(record: SampleRecord, layer: PredictionLayer) -> PlannedTrajectory | None:
    xy = layer.predictions.trajectories.get(record.sample_token)
    return None if xy is None else PlannedTrajectory(np.asarray(xy, dtype=float), layer.style)


def _plan_summary(targets: PlanningTargets, plan: PlannedTrajectory, collided: np.ndarray) -> str:
    hits = ", ".join(f"{STEP_SECONDS * (t + 1):.1f}" for t in np.flatnonzero(collided))
    collisions = f"collision at {hits} s" if hits else "no collision"
    if plan.ground_truth:  # no L2 against itself; say how much of the future exists instead
        return f"{plan.style.label} ({int(np.sum(plan.mask))}/6 steps): {collisions}"
    l2 = l2_at_seconds(plan.xy, targets.ego_future, targets.ego_future_mask)
    values = "/".join("n/a" if np.isnan(v) else f"{v:.2f}" for v in l2.values())  # n/a: no GT that far
    return f"{plan.style.label}: L2@1/2/3 s = {values} m, {collisions}"


def _missing_summary(record: SampleRecord, layers: list[PredictionLayer]) -> list[str]:
    """Lines for layers with no trajectory here (parse failure or absent), so it is never silent."""
    lines = []
    for layer in layers:
        token, label = record.sample_token, layer.style.label
        if token in layer.predictions.failures:
            lines.append(f"{label}: no trajectory ({layer.predictions.failures[token]})")
        elif token not in layer.predictions.trajectories:
            lines.append(f"{label}: sample missing from the file")
    return lines


# ----------------------------------------------------------------------------- outputs


def frame_path(out: Path, record: SampleRecord) -> Path:
    """<out>/<scene>/<frame>_<token>.png: frames sort in time order within a scene folder."""
    return out / record.scene_name / f"{record.frame_index:03d}_{record.sample_token}.png"


def write_gif(frames: list[Path], path: Path) -> Path:
    """Animated GIF of PNG frames (already in time order), looping, at the keyframe rate."""
    # Fast octree keeps the saturated trajectory/class hues (median cut shifted them by up to 52
    # levels on our frames) and is ~5x faster; the photo regions lose a little instead.
    images = [Image.open(f).convert("RGB").quantize(colors=255, method=Image.Quantize.FASTOCTREE) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=GIF_FRAME_MS, loop=0, optimize=True)
    return path


def render(records: list[SampleRecord], dataroot: Path, layers: list[PredictionLayer], out: Path, gif: bool = False,
           options: FigureOptions = FigureOptions(), progress: bool = True) -> list[Path]:
    """Write one PNG per record (and one GIF per scene with `gif`); returns the written paths."""
    written, frames_by_scene = [], defaultdict(list)
    for record in tqdm(records, desc="drawing samples", unit="sample", disable=not progress):
        image = load_camera_image(dataroot, record, options.camera)
        path = frame_path(out, record)
        path.parent.mkdir(parents=True, exist_ok=True)
        sample_figure(record, image, layers, options).savefig(path)
        written.append(path)
        frames_by_scene[record.scene_name].append(path)
    if gif:
        written += [write_gif(frames, out / f"{scene}.gif") for scene, frames in frames_by_scene.items()]
    return written


# ----------------------------------------------------------------------------- world mode


def world_figure(record: SampleRecord, panels: list[np.ndarray], accuracy: float, psnr_db: float, dpi: int) -> Figure:
    """Current | imagined | true next CAM_FRONT of one keyframe, titled with the imagined frame's scores."""
    fig = Figure(figsize=(11.0, 2.9), dpi=dpi, layout="constrained")
    titles = ["current (t)", f"imagined (t + 0.5 s): codes {accuracy:.0%} right, PSNR {psnr_db:.1f} dB", "true next (t + 0.5 s)"]
    for ax, image, title in zip(fig.subplots(1, 3), panels, titles):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{record.scene_name}  frame {record.frame_index}  ({record.sample_token})", fontsize=10)
    return fig


def render_world(records: list[SampleRecord], split: list[SampleRecord], dataroot: Path, codes_path: Path,
                 tokenizer_path: Path, out: Path, gif: bool, dpi: int) -> list[Path]:
    """One world PNG per record that has a next keyframe and imagined codes (+ a GIF per scene)."""
    from perception.frame_codes import load_frame_codes
    from perception.frame_tokenizer import FrameTokenizer
    from perception.world_eval import gather_frames

    tokenizer = FrameTokenizer.load(tokenizer_path)
    codes, meta = load_frame_codes(codes_path)
    if meta.tokenizer_fingerprint != tokenizer.fingerprint():
        raise ValueError(f"{codes_path}: codes of frame tokenizer {meta.tokenizer_fingerprint}, not {tokenizer_path}'s "
                         f"{tokenizer.fingerprint()}; pass the tokenizer that made them")
    frames, _ = gather_frames(tokenizer, records, dataroot, codes, pool=split)
    imagined = frames.decoded(tokenizer, "imagined")
    by_token = {r.sample_token: r for r in records}
    written, by_scene = [], defaultdict(list)
    for i, token in enumerate(tqdm(frames.tokens, desc="drawing imagined frames", unit="sample")):
        record = by_token[token]
        accuracy = float((frames.imagined_codes[i] == frames.next_codes[i]).mean())
        error = float(np.mean((imagined[i].astype(float) - frames.next[i].astype(float)) ** 2))
        psnr_db = 10 * np.log10(255.0**2 / max(error, 1e-12))
        path = frame_path(out, record).with_name(f"{record.frame_index:03d}_{token}_world.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        world_figure(record, [frames.current[i], imagined[i], frames.next[i]], accuracy, psnr_db, dpi).savefig(path)
        written.append(path)
        by_scene[record.scene_name].append(path)
    if gif:
        written += [write_gif(paths, out / f"{scene}_world.gif") for scene, paths in by_scene.items()]
    return written


def warn_missing(layers: list[PredictionLayer], records: list[SampleRecord]) -> None:
    """Say how many drawn samples a layer had no trajectory for (they are drawn GT-only, titled)."""
    for layer in layers:
        missing = sum(r.sample_token not in layer.predictions.trajectories for r in records)
        if missing:
            print(f"warning: {layer.style.label}: {missing}/{len(records)} drawn samples have no trajectory "
                  f"(parse failures or tokens absent from the file; see the picture titles)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    split = load_records(args.dataroot, version=args.version, split=args.split)
    records = select_records(split, args.samples, args.tokens)
    if not records:
        raise SystemExit(f"{args.dataroot}: split {args.split!r} has no samples to draw")
    if args.world_codes:
        try:
            written = render_world(records, split, Path(args.dataroot), Path(args.world_codes), Path(args.tokenizer),
                                   Path(args.out), args.gif, args.dpi)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from exc
        print(f"wrote {len(written)} files under {args.out} (e.g. {written[0]})")
        return 0
    options = FigureOptions(camera=args.camera, convention=args.convention, dpi=args.dpi)
    try:  # input problems end with the message that names the file and the fix, not a traceback
        layers = [p for p in (load_layer(args.pred, PRED_STYLE), load_layer(args.pred2, PRED2_STYLE)) if p]
        written = render(records, Path(args.dataroot), layers, Path(args.out), args.gif, options)
    except (PredictionFileError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    warn_missing(layers, records)
    print(f"wrote {len(written)} files under {args.out} (e.g. {written[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
