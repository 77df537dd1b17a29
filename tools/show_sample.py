"""Preview one sample of a dataset: its six cameras with GT boxes, next to the GT bird's-eye view.

Run with:
    python tools/show_sample.py --dataroot data/mini_world --out outputs/sample.png
    python tools/show_sample.py --dataroot data/nuscenes --version v1.0-mini --token <sample_token>

Used by `make demo` as the data preview. Cameras are laid out as on the car (front row:
FRONT_LEFT, FRONT, FRONT_RIGHT; back row: BACK_LEFT, BACK, BACK_RIGHT). GT boxes at t = 0 are
projected from the record's calibration (camera_sensor2lidar, intrinsics), not the devkit tables,
so the picture also checks that the records' calibration is right. The BEV is in the current
LiDAR_TOP frame (x right, y forward, metres). Without --token/--index the sample with the most
annotated agents is shown, so the preview has something to look at.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.figure import Figure

from planning.bev_plot import draw_scene, gt_trajectory, legend_handles, make_bev_axes
from planning.camera_plot import (
    draw_projected_boxes,
    draw_projected_map,
    draw_projected_trajectory,
    load_camera_image,
    show_image,
)
from vla_world.data import load_records
from vla_world.data.records import SampleRecord

# nuScenes' usual 2 x 3 arrangement, as seen from the car.
CAMERA_GRID = (("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="data/mini_world", help="nuScenes-format dataroot (default: the mini world)")
    p.add_argument("--version", default=None, help="table folder, e.g. v1.0-mini (default: the one found)")
    p.add_argument("--split", default="val", help="split to pick the sample from (default: val)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--token", default=None, help="sample token to show")
    which.add_argument("--index", type=int, default=None, help="position of the sample in scene/time order")
    p.add_argument("--out", default="outputs/sample.png", help="PNG to write (default: outputs/sample.png)")
    p.add_argument("--dpi", type=int, default=110, help="picture resolution (default: 110 -> 1870 x 704 px)")
    return p


def pick_record(records: list[SampleRecord], token: str | None, index: int | None) -> SampleRecord:
    """The sample asked for, or the one with the most agents (ties: earliest in scene/time order)."""
    ordered = sorted(records, key=lambda r: (r.scene_name, r.frame_index))
    if token is not None:
        found = [r for r in ordered if r.sample_token == token]
        if not found:
            raise SystemExit(f"--token {token!r} is not in this split; check --split or --version")
        return found[0]
    if index is not None:
        if not 0 <= index < len(ordered):
            raise SystemExit(f"--index {index} is out of range: this split has {len(ordered)} samples")
        return ordered[index]
    return max(ordered, key=lambda r: r.num_agents)


def sample_overview(record: SampleRecord, dataroot: Path, dpi: int = 110) -> Figure:
    """Six cameras (2 x 3, boxes and GT trajectory projected) and the GT BEV on the right."""
    fig = Figure(figsize=(17, 6.4), dpi=dpi, layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 0.95])
    for row, names in enumerate(CAMERA_GRID):
        for col, camera in enumerate(names):
            ax = fig.add_subplot(grid[row, col])
            show_image(ax, load_camera_image(dataroot, record, camera), title=camera)
            draw_projected_map(ax, record, camera)
            draw_projected_boxes(ax, record, camera)
            plan = gt_trajectory(record)
            draw_projected_trajectory(ax, record, camera, plan.xy, plan.style, mask=plan.mask)
    bev_ax = fig.add_subplot(grid[:, 3])
    make_bev_axes(ax=bev_ax)
    draw_scene(bev_ax, record, [gt_trajectory(record)])
    bev_ax.set_title("GT bird's-eye view", fontsize=9)
    fig.suptitle(f"{record.scene_name}  frame {record.frame_index}  ({record.sample_token})   {record.location}   "
                 f"command: {record.command_text}   speed {record.ego_speed:.1f} m/s   {record.num_agents} agents",
                 fontsize=11)
    fig.legend(handles=legend_handles(record, [gt_trajectory(record).style]), loc="outside lower center", ncol=8,
               fontsize=8, frameon=False)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    records = load_records(args.dataroot, version=args.version, split=args.split)
    if not records:
        raise SystemExit(f"{args.dataroot}: split {args.split!r} has no samples")
    record = pick_record(records, args.token, args.index)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure = sample_overview(record, Path(args.dataroot), args.dpi)
    except FileNotFoundError as exc:  # a camera image missing: say which, not a traceback
        raise SystemExit(f"error: {exc}") from exc
    figure.savefig(out)
    print(f"wrote {out} (sample {record.sample_token}, {record.scene_name} frame {record.frame_index})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
