"""Write the procedurally generated mini world (nuScenes v1.0 format) to a folder.

    python tools/make_mini_world.py --out data/mini_world
    python tools/make_mini_world.py --out /tmp/tiny --scenes 4 --seconds 10 --image-size 96 54 --test-scenes 3

`--scenes` train/val scenes are followed by `--test-scenes` held-out test scenes with the train
(behaviour, location) mix: choose settings on val, report on test.

The result loads with `nuscenes.nuscenes.NuScenes(version="v1.0-mini", dataroot=OUT)` and
`nuscenes.map_expansion.map_api.NuScenesMap(OUT, location)`; see docs/mini_world.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_world.data.validate import validate_nuscenes_tables
from vla_world.mini_world import make_mini_world
from vla_world.mini_world.generate import DEFAULT_TEST_SCENES
from vla_world.mini_world.summary import format_split_mix, summarize_world


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/mini_world"),
                        help="output dataroot (created; an old mini world there is replaced)")
    parser.add_argument("--scenes", type=int, default=10, help="number of train/val scenes (~30%% become val)")
    parser.add_argument("--test-scenes", type=int, default=DEFAULT_TEST_SCENES,
                        help="held-out test scenes added after the train/val ones, with the train mix of behaviours and "
                             "locations "
                             "(0 = no test split); the default gives >= 400 samples per planning convention "
                             "with the default --seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical tables")
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 144), metavar=("W", "H"),
                        help="camera image size in pixels; intrinsics are scaled from 1600x900")
    parser.add_argument("--seconds", type=float, default=20.0, help="scene length in seconds (keyframes at 2 Hz)")
    parser.add_argument("--version", default="v1.0-mini",
                        help="table folder name under --out; also picks the official nuScenes scene names: a *-mini "
                             "version names train/val scenes from mini_train/mini_val first, any other from the "
                             "official train/val lists; test scenes take official test names (docs/mini_world.md)")
    parser.add_argument("--no-validate", action="store_true", help="skip the table consistency check at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        out = make_mini_world(args.out, num_scenes=args.scenes, seed=args.seed, image_size=tuple(args.image_size),
                              scene_seconds=args.seconds, version=args.version, progress=True,
                              test_scenes=args.test_scenes)
    except (ValueError, FileExistsError) as err:
        print(f"make_mini_world: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.scenes} train/val + {args.test_scenes} test scenes, {args.seconds:g} s each) "
          f"in {time.perf_counter() - start:.1f} s")
    print("ego behaviour per scene (keyframes with a full 3 s future, by driving command):")
    scenes = summarize_world(out, args.version)
    for scene in scenes:
        print("  " + scene.line())
    print("mix per split:")
    print(format_split_mix(scenes))
    if not args.no_validate:
        problems = validate_nuscenes_tables(out, args.version)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            return 1
        print("tables validated: 0 problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
