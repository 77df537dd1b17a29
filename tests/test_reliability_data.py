"""Data identity and the inputs the tools read (issue 14, parts 1 and 3): wrong data is refused, not scored."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_WORLD
from tool_helpers import load_tool

from perception.frame_codes import FrameCodeMeta, frame_codes_for, save_frame_codes
from perception.tokens import load_tokens_for, save_token_cache
from planning.predictions import PredictionFileError, load_predictions, save_predictions
from vla_world.data import load_records, validate
from vla_world.data.nuscenes_db import RecordError, open_nuscenes
from vla_world.mini_world import generate
from vla_world.mini_world.generate import WorldSpec
from vla_world.training.data import oracle_token_map

VERSION = "v1.0-mini"


# New names are looked up when a test runs, not at import: on the code before issue 14 each test then
# fails on its own instead of the whole file failing to import.
def fingerprint():
    return importlib.import_module("vla_world.data.fingerprint")


def data_fingerprint(root: Path) -> str:
    return fingerprint().data_fingerprint(root)


def data_identity(root: Path) -> dict:
    return fingerprint().data_identity(root)


@pytest.fixture(scope="module")
def other_world(mini_world, tmp_path_factory) -> Path:
    """The tiny world's tables with one box moved 1 m: the same sample tokens, other labels."""
    root = tmp_path_factory.mktemp("other_world")
    shutil.copytree(mini_world / VERSION, root / VERSION)
    for name in ("samples", "maps"):
        (root / name).symlink_to(mini_world / name)
    path = root / VERSION / "sample_annotation.json"
    rows = json.loads(path.read_text())
    rows[0]["translation"][0] += 1.0
    path.write_text(json.dumps(rows))
    return root


def copy_tables(src: Path, root: Path) -> Path:
    shutil.copytree(src / VERSION, root / VERSION)
    return root


# --- part 1: tokens and fingerprints ------------------------------------------------------------------------------

def test_tokens_depend_on_every_content_option_but_keep_the_default_worlds():
    base = WorldSpec(Path("x"))
    assert generate.world_namespace(base) == "vla-world/seed0"  # the default world keeps its tokens (and every cache)
    others = [WorldSpec(Path("x"), num_scenes=12), WorldSpec(Path("x"), scene_seconds=10.0),
              WorldSpec(Path("x"), image_size=(96, 54)), WorldSpec(Path("x"), version="v1.0-trainval"),
              WorldSpec(Path("x"), seed=1)]
    spaces = {generate.world_namespace(s) for s in [base, *others]}
    assert len(spaces) == 6
    # more test scenes append scenes and change none (tests/test_test_split.py): same namespace, same tokens
    assert generate.world_namespace(WorldSpec(Path("x"), test_scenes=3)) == generate.world_namespace(base)


def test_the_generator_uses_the_namespace(mini_world):
    spec = WorldSpec(mini_world, **TINY_WORLD)
    scene = json.loads((mini_world / VERSION / "scene.json").read_text())[0]
    key = generate.plan_scenes(spec)[0].key  # tokens hang off the scene's index key, not its (official) name
    assert scene["token"] == hashlib.md5(f"{generate.world_namespace(spec)}/{key}/scene".encode()).hexdigest()
    assert generate.world_namespace(spec) != "vla-world/seed0"  # 4 scenes of 10 s: not the default world's tokens


def test_fingerprint_tells_the_worlds_apart(mini_world, other_world, tmp_path):
    assert data_fingerprint(mini_world) != data_fingerprint(other_world)
    assert data_fingerprint(copy_tables(mini_world, tmp_path)) == data_fingerprint(mini_world)  # bytes, not paths
    assert data_identity(mini_world)["version"] == VERSION


def test_token_cache_of_another_world_is_refused(mini_records, mini_world, other_world, tmp_path):
    records = mini_records["val"]
    path = tmp_path / "val.safetensors"
    save_token_cache(path, oracle_token_map(records), {"source": "oracle", **data_identity(other_world)})
    tokens = [r.sample_token for r in records]
    with pytest.raises(fingerprint().DataMismatchError, match=rf"val.safetensors: made from world {data_fingerprint(other_world)} "
                                                rf".*but {mini_world} is world {data_fingerprint(mini_world)}"):
        load_tokens_for(path, tokens, mini_world)
    assert len(load_tokens_for(path, tokens, other_world)) == len(records)
    save_token_cache(path, oracle_token_map(records), {"source": "oracle"})  # no fingerprint: older caches load
    assert len(load_tokens_for(path, tokens, mini_world)) == len(records)


def test_prediction_files_of_another_world_are_refused_by_the_evaluator(mini_records, mini_world, other_world, tmp_path):
    tokens = [r.sample_token for r in mini_records["val"]]
    ours = save_predictions(tmp_path / "ours.json", {t: np.zeros((6, 2)) for t in tokens}, meta=data_identity(other_world))
    with pytest.raises(SystemExit, match=f"ours.json: made from world {data_fingerprint(other_world)}"):
        load_tool("eval_planning").main(["--dataroot", str(mini_world), "--split", "val", "--pred", str(ours),
                                         "--out", str(tmp_path / "eval"), "--quiet"])
    foreign = save_predictions(tmp_path / "foreign.json", {t: np.zeros((6, 2)) for t in tokens})  # other tools: no meta
    assert load_tool("eval_planning").main(["--dataroot", str(mini_world), "--split", "val", "--pred", str(foreign),
                                            "--out", str(tmp_path / "eval"), "--quiet"]) == 0


def test_frame_codes_of_another_world_are_refused(mini_world, other_world, tmp_path):
    meta = FrameCodeMeta(8, 4, (2, 2), "tok", (36, 64), data_fingerprint(other_world))
    save_frame_codes(tmp_path / "f.safetensors", {"s0": np.arange(4)}, meta)
    with pytest.raises(fingerprint().DataMismatchError, match="made from world"):
        frame_codes_for(tmp_path / "f.safetensors", ["s0"], dataroot=mini_world)
    assert frame_codes_for(tmp_path / "f.safetensors", ["s0"], dataroot=other_world)["s0"].tolist() == [0, 1, 2, 3]


def test_record_cache_carries_the_fingerprint_and_a_corrupt_one_is_rebuilt(mini_world, tmp_path):
    records = load_records(mini_world, split="val", cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("records_*_val_*.npz")
    with np.load(path) as data:
        assert json.loads(bytes(data["__header__"]).decode())["data_fingerprint"] == data_fingerprint(mini_world)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated: a BadZipFile before
    with pytest.warns(UserWarning, match="unreadable record cache .*rebuilding it"):
        again = load_records(mini_world, split="val", cache_dir=tmp_path, progress=False)
    assert [r.sample_token for r in again] == [r.sample_token for r in records]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file reads cleanly
        load_records(mini_world, split="val", cache_dir=tmp_path, progress=False)


# --- part 3: prediction files -------------------------------------------------------------------------------------

TRAJ = "[[0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6]]"


def test_a_token_given_twice_in_json_is_an_error(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(f'{{"a": {TRAJ}, "a": {TRAJ}}}')
    with pytest.raises(PredictionFileError, match="p.json: key 'a' appears twice"):
        load_predictions(path)


@pytest.mark.parametrize("bad", ['[["0", "1"], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6]]',
                                 '[[true, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6]]',
                                 '[[null, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 6]]'])
def test_strings_and_booleans_are_not_numbers(tmp_path, bad):
    path = tmp_path / "p.json"
    path.write_text(f'{{"a": {bad}}}')
    with pytest.raises(PredictionFileError, match="p.json: entry 'a': trajectory must hold numbers only"):
        load_predictions(path)


def test_the_plausibility_bound_applies_to_files(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(f'{{"far": [[0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [0, 500]], "ok": {TRAJ}}}')
    preds = load_predictions(path)
    assert set(preds.trajectories) == {"ok"}
    assert preds.failures["far"].startswith("implausible waypoint: 500 m")


def test_a_corrupt_npz_prediction_file_gets_the_clean_error(tmp_path):
    path = save_predictions(tmp_path / "p.npz", {"a": np.zeros((6, 2))})
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(PredictionFileError, match="p.npz: not a readable NPZ file"):
        load_predictions(path)


# --- part 3: tables, validation, the world builder, the demo --------------------------------------------------------

def test_an_unreadable_json_table_is_named(mini_world, tmp_path):
    root = copy_tables(mini_world, tmp_path)
    (root / "maps").symlink_to(mini_world / "maps")
    (root / VERSION / "instance.json").write_text('[{"token": "x",')
    with pytest.raises(RecordError, match=r"v1.0-mini/instance.json: not valid JSON"):
        open_nuscenes(root, VERSION)


def test_validate_reports_missing_map_basemap_and_image_files(mini_world, tmp_path, capsys):
    root = copy_tables(mini_world, tmp_path)
    problems = validate.validate_files(root, VERSION)
    assert any("map expansion" in p and "expansion/" in p for p in problems)
    assert any(p.startswith("map.json:") and "basemap" in p for p in problems)
    assert any(p.startswith("sample_data.json:") and "keyframe image/lidar file(s) missing" in p for p in problems)
    assert validate.main([str(root), "--version", VERSION]) == 1
    assert validate.validate_files(mini_world, VERSION) == []


@pytest.mark.parametrize("flags, message", [(["--scenes", "1"], "leaves no val scene"),
                                            (["--version", "mini"], "v1.0-\\* table folder")])
def test_the_world_builder_refuses_options_no_reader_accepts(tmp_path, capsys, flags, message):
    small = ["--seconds", "4", "--image-size", "32", "18", "--test-scenes", "0", "--no-validate"]  # fast if built
    assert load_tool("make_mini_world").main(["--out", str(tmp_path / "w"), *small, *flags]) == 2
    assert message.replace("\\", "") in capsys.readouterr().err
    assert not (tmp_path / "w" / "v1.0-mini").exists()


def test_demo_until_refuses_unknown_steps(tmp_path, capsys):
    from tools import demo

    with pytest.raises(SystemExit):
        demo.main(["--until", "evaluation", "--data", str(tmp_path / "none"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--until 'evaluation': no step of that name" in err and "evaluate" in err


def test_export_tokens_writes_the_fingerprint(mini_world, tmp_path):
    from perception.tokens import token_cache_meta

    out = tmp_path / "val.safetensors"
    assert load_tool("export_tokens").main(["--oracle", "--dataroot", str(mini_world), "--split", "val",
                                            "--out", str(out)]) == 0
    assert token_cache_meta(out)["data_fingerprint"] == data_fingerprint(mini_world)
