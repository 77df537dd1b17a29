"""The world model's frame tokenizer: VQ round trip, checkpoints, the code cache, quality metrics, tools.

Golden cases: PSNR / SSIM of identical and of constant images (closed forms), the Frechet distance
of a shifted set, codebook usage / perplexity of a known histogram. The tools run end to end on
the tiny mini world of tests/conftest.py with a 2-step tokenizer (a few seconds).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from perception.frame_codes import (
    FrameCodeMeta,
    frame_codes_for,
    load_frame_codes,
    save_frame_codes,
)
from perception.frame_tokenizer import FrameTokenizer, FrameTokenizerConfig
from perception.frame_tokenizer_train import kmeans_init, restart_dead_codes
from perception.image_quality import codebook_stats, frechet_distance, psnr, ssim
from perception.world_eval import next_keyframes
from tests.tool_helpers import load_tool
from vla_world.config import ConfigError, config_from_dict

TINY = {"model": {"image_size": [24, 40], "block_out_channels": [8, 8, 8], "latent_channels": 4, "vq_embed_dim": 4,
                  "num_vq_embeddings": 32, "norm_num_groups": 4, "codes_per_frame": 60},
        "train": {"epochs": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "kmeans_iters": 2}}


def tiny_config(**model) -> FrameTokenizerConfig:
    data = {"model": {**TINY["model"], **model}, "train": dict(TINY["train"])}
    return config_from_dict(FrameTokenizerConfig, data, "test")


def tiny_tokenizer(seed: int = 0) -> FrameTokenizer:
    torch.manual_seed(seed)
    return FrameTokenizer.build(tiny_config())


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 40, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- tokenizer


def test_encode_decode_shapes_dtypes_and_determinism():
    tok = tiny_tokenizer()
    images = random_images(3)
    codes = tok.encode(images)
    assert codes.shape == (3, 60) and codes.dtype == np.int64 and tok.grid == (6, 10)
    assert codes.min() >= 0 and codes.max() < 32
    np.testing.assert_array_equal(codes, tok.encode(images))  # deterministic
    np.testing.assert_array_equal(codes[1:2], tok.encode(images[1:2]))  # batch-independent (eval mode)
    decoded = tok.decode(codes)
    assert decoded.shape == (3, 24, 40, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, tok.decode(codes))
    assert tiny_tokenizer().fingerprint() == tok.fingerprint() != tiny_tokenizer(seed=1).fingerprint()


def test_encode_and_decode_refuse_wrong_inputs():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="expected uint8 images"):
        tok.encode(np.zeros((1, 48, 80, 3), np.uint8))
    with pytest.raises(ValueError, match="expected uint8 images"):
        tok.encode(np.zeros((1, 24, 40, 3), np.float32))
    with pytest.raises(ValueError, match="expected int codes"):
        tok.decode(np.full((1, 60), 32))
    with pytest.raises(ValueError, match="expected int codes"):
        tok.decode(np.zeros((1, 59), np.int64))


def test_config_validates_codes_per_frame_and_groups():
    with pytest.raises(ConfigError, match="set codes_per_frame to that"):
        tiny_config(codes_per_frame=64)
    with pytest.raises(ConfigError, match="divisible by 4"):
        tiny_config(image_size=[26, 40])
    with pytest.raises(ConfigError, match="norm_num_groups"):
        tiny_config(norm_num_groups=3)


def test_save_load_keeps_fingerprint_and_outputs(tmp_path):
    tok = tiny_tokenizer()
    images = random_images(2)
    tok.save(tmp_path / "last")
    loaded = FrameTokenizer.load(tmp_path / "last")
    assert loaded.fingerprint() == tok.fingerprint()
    assert json.loads((tmp_path / "last" / "state.json").read_text())["fingerprint"] == tok.fingerprint()
    np.testing.assert_array_equal(loaded.encode(images), tok.encode(images))
    np.testing.assert_array_equal(loaded.decode(tok.encode(images)), tok.decode(tok.encode(images)))
    with torch.no_grad():
        loaded.model.quantize.embedding.weight[0, 0] += 1.0
    assert loaded.fingerprint() != tok.fingerprint()  # any weight change is a new tokenizer


def test_pretrained_folder_loads_without_download(tmp_path):
    tok = tiny_tokenizer()
    tok.model.save_pretrained(tmp_path / "vq")  # a diffusers VQModel folder, as FSDrive ships
    loaded = FrameTokenizer.from_pretrained_folder(tmp_path / "vq", tiny_config())
    assert loaded.fingerprint() == tok.fingerprint()
    with pytest.raises(ValueError, match="num_vq_embeddings"):
        FrameTokenizer.from_pretrained_folder(tmp_path / "vq", config_from_dict(
            FrameTokenizerConfig, {"model": {**TINY["model"], "num_vq_embeddings": 64}}, "test"))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        FrameTokenizer.from_pretrained_folder(tmp_path / "missing", tiny_config())


def test_kmeans_init_spreads_codes_and_restart_moves_only_dead_entries():
    tok = tiny_tokenizer()
    images = random_images(8)
    before = codebook_stats(tok.encode(images), 32)["entries_used"]
    kmeans_init(tok, images, iters=3)
    assert codebook_stats(tok.encode(images), 32)["entries_used"] >= before
    weights = tok.model.quantize.embedding.weight.detach().clone()
    usage = torch.ones(32, dtype=torch.int64)
    usage[[3, 7]] = 0
    assert restart_dead_codes(tok, usage, tok.to_pixels(images[:2])) == 2
    changed = (tok.model.quantize.embedding.weight != weights).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [3, 7]


# ----------------------------------------------------------------------------- cache


def test_frame_code_cache_round_trip_and_refusals(tmp_path):
    tok = tiny_tokenizer()
    meta = FrameCodeMeta(32, 60, (6, 10), tok.fingerprint(), (24, 40))
    codes = dict(zip(["a", "b"], tok.encode(random_images(2))))
    save_frame_codes(tmp_path / "val.safetensors", codes, meta)
    loaded, loaded_meta = load_frame_codes(tmp_path / "val.safetensors")
    assert loaded_meta == meta and set(loaded) == {"a", "b"}
    np.testing.assert_array_equal(loaded["b"], codes["b"])
    assert set(frame_codes_for(tmp_path / "val.safetensors", ["a"], fingerprint=tok.fingerprint())) == {"a", "b"}
    with pytest.raises(ValueError, match="made by frame tokenizer"):
        frame_codes_for(tmp_path / "val.safetensors", ["a"], fingerprint=tiny_tokenizer(seed=1).fingerprint())
    with pytest.raises(KeyError, match="no frame codes for 1 of 2"):
        frame_codes_for(tmp_path / "val.safetensors", ["a", "zz"])
    with pytest.raises(ValueError, match="do not fit"):
        save_frame_codes(tmp_path / "bad.safetensors", {"a": np.full(60, 32)}, meta)


# ----------------------------------------------------------------------------- metrics


def test_psnr_and_ssim_golden_cases():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(ssim(image, image), 1.0)
    assert np.isinf(psnr(image, image)).all()
    a, b = np.full((1, 16, 16, 3), 100, np.uint8), np.full((1, 16, 16, 3), 150, np.uint8)
    # constant images: MSE = 50^2; SSIM = luminance term only (both variances and the covariance are 0)
    np.testing.assert_allclose(psnr(a, b), 10 * math.log10(255**2 / 2500))
    c1 = (0.01 * 255) ** 2
    np.testing.assert_allclose(ssim(a, b), (2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    noise = rng.integers(-1, 2, image.shape)
    light, heavy = (np.clip(image.astype(int) + k * noise, 0, 255).astype(np.uint8) for k in (10, 60))
    assert (ssim(image, heavy) < ssim(image, light)).all() and (ssim(image, light) < 1).all()  # more noise, lower
    np.testing.assert_allclose(ssim(image, heavy), ssim(heavy, image))  # symmetric
    with pytest.raises(ValueError, match="smaller than the 11-pixel window"):
        ssim(image[:, :8, :8], image[:, :8, :8])


def test_codebook_stats_and_frechet_distance_golden_cases():
    stats = codebook_stats(np.array([[0, 0, 1, 1]]), 4)
    assert stats["usage"] == 0.5 and stats["entries_used"] == 2
    assert stats["perplexity"] == pytest.approx(2.0)
    a = np.random.default_rng(0).normal(size=(500, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + np.array([3.0, 0.0, 0.0])) == pytest.approx(9.0, abs=1e-6)  # mean shift only


# ----------------------------------------------------------------------------- tools


@pytest.fixture(scope="module")
def trained_tokenizer(mini_world, tmp_path_factory):
    """A frame tokenizer trained for 2 steps on the tiny world, via tools/train.py."""
    root = tmp_path_factory.mktemp("frame_tokenizer")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    train = load_tool("train")
    assert train.main(["--stage", "frame_tokenizer", "--config", str(config), "--dataroot", str(mini_world),
                       "--out", str(root / "run"), "--max-steps", "2"]) == 0
    return root


def test_train_stage_two_steps_then_resume(trained_tokenizer, mini_world):
    run = trained_tokenizer / "run"
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == 2 and state["stage"] == "frame_tokenizer"
    metrics = json.loads((run / "last" / "val_metrics.json").read_text())
    assert 0 < metrics["usage"] <= 1 and metrics["codes_per_frame"] == 60 and np.isfinite(metrics["psnr"])
    resumed = trained_tokenizer / "resumed"
    import shutil

    shutil.copytree(run, resumed)
    load_tool("train").main(["--stage", "frame_tokenizer", "--config", str(trained_tokenizer / "tiny.yaml"),
                             "--dataroot", str(mini_world), "--out", str(resumed), "--resume", "--max-steps", "3"])
    assert json.loads((resumed / "last" / "state.json").read_text())["step"] == 3
    assert len((resumed / "train_log.jsonl").read_text().splitlines()) == 3


def test_export_frame_codes_skips_when_up_to_date_and_rebuilds_for_another_tokenizer(trained_tokenizer, mini_world,
                                                                                   mini_records, capsys):
    export = load_tool("export_frame_codes")
    ck, out = str(trained_tokenizer / "run" / "last"), trained_tokenizer / "frames"
    args = ["--checkpoint", ck, "--dataroot", str(mini_world), "--split", "val", "--out", str(out)]
    assert export.main(args) == 0
    tok = FrameTokenizer.load(ck)
    codes = frame_codes_for(out / "val.safetensors", [r.sample_token for r in mini_records["val"]], tok.fingerprint())
    first = mini_records["val"][0]
    from perception.frame_tokenizer import load_image

    own = tok.encode(load_image(mini_world / str(first.camera_paths[0]), (24, 40))[None])[0]
    np.testing.assert_array_equal(codes[first.sample_token], own)  # the sample's OWN CAM_FRONT
    export.main(args)
    assert "up to date" in capsys.readouterr().out
    other = tiny_tokenizer(seed=5)
    other.save(trained_tokenizer / "other")
    export.main([*args[:1], str(trained_tokenizer / "other"), *args[2:]])
    assert load_frame_codes(out / "val.safetensors")[1].tokenizer_fingerprint == other.fingerprint()


def predicted_codes(tok: FrameTokenizer, records, dataroot, path, copy: bool = False) -> None:
    """A --codes file: each keyframe's NEXT frame codes (a perfect world model), or its own (copy)."""
    from perception.frame_tokenizer_train import front_images
    from perception.world_eval import encode_all

    own = dict(zip([r.sample_token for r in records], encode_all(tok, front_images(records, dataroot, tok.image_size))))
    nexts = next_keyframes(records)
    codes = {t: own[t] if copy else own[n.sample_token] for t, n in nexts.items()}
    save_frame_codes(path, codes, FrameCodeMeta(tok.codebook_size, 60, tok.grid, tok.fingerprint(), tok.image_size))


class MeanFeatures(torch.nn.Module):
    """A stand-in Inception: per-channel means and standard deviations as 6 features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def test_eval_world_on_codes_end_to_end(trained_tokenizer, mini_world, mini_records, tmp_path):
    ck = trained_tokenizer / "run" / "last"
    tok = FrameTokenizer.load(ck)
    val = mini_records["val"]
    predicted_codes(tok, val, mini_world, tmp_path / "perfect.safetensors")
    predicted_codes(tok, val, mini_world, tmp_path / "copy.safetensors", copy=True)
    torch.jit.script(MeanFeatures()).save(str(tmp_path / "inception.pt"))
    tool = load_tool("eval_world")
    base = ["--tokenizer", str(ck), "--dataroot", str(mini_world), "--split", "val"]
    assert tool.main([*base, "--codes", str(tmp_path / "perfect.safetensors"), "--out", str(tmp_path / "perfect"),
                      "--fid-weights", str(tmp_path / "inception.pt")]) == 0
    result = json.loads((tmp_path / "perfect" / "world_metrics.json").read_text())
    rows, counts = result["rows"], result["counts"]
    scenes = len({r.scene_token for r in val})
    assert counts["evaluated"] == counts["with_next"] == len(val) - scenes  # the last keyframe of a scene has no next
    assert rows["imagined"]["code_accuracy"] == 1.0  # a perfect world model reaches the tokenizer's ceiling
    assert rows["imagined"]["psnr"] == pytest.approx(rows["true_codes"]["psnr"])
    assert rows["imagined"]["fid"] == pytest.approx(rows["true_codes"]["fid"])
    assert "| World model (imagined next frame) | 1.000 |" in (tmp_path / "perfect" / "report.md").read_text()
    assert tool.main([*base, "--codes", str(tmp_path / "copy.safetensors"), "--out", str(tmp_path / "copy")]) == 0
    rows = json.loads((tmp_path / "copy" / "world_metrics.json").read_text())["rows"]
    assert rows["imagined"]["code_accuracy"] == rows["copy_frame"]["code_accuracy"] < 1.0
    assert rows["imagined"]["psnr"] == pytest.approx(rows["copy_codes"]["psnr"]) and "fid" not in rows["imagined"]
    assert tool.main([*base, "--reconstruction", "--out", str(tmp_path / "recon")]) == 0
    recon = json.loads((tmp_path / "recon" / "reconstruction_val.json").read_text())
    assert recon["images"] == len(val) and recon["entries_used"] <= 32
    tiny_tokenizer(seed=3).save(tmp_path / "other")
    with pytest.raises(SystemExit, match="score them with the tokenizer that made them"):
        tool.main([*base[2:], "--tokenizer", str(tmp_path / "other"), "--codes", str(tmp_path / "copy.safetensors")])
    # world pictures from the scored codes: current | imagined | true next, and a GIF per scene
    from tools import (
        visualize,  # its dataclasses need a registered module (load_tool's is not)
    )

    assert visualize.main(["--dataroot", str(mini_world), "--split", "val", "--world-codes",
                     str(tmp_path / "copy" / "imagined_codes.safetensors"), "--tokenizer", str(ck),
                     "--samples", "2", "--gif", "--out", str(tmp_path / "pictures")]) == 0
    assert len(list((tmp_path / "pictures").rglob("*_world.png"))) == 2
    assert len(list((tmp_path / "pictures").glob("*_world.gif"))) == 1
