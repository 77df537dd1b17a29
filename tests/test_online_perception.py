"""Planning with perception in the graph (`data.token_source: online`) on the tiny mini world.

A small random perception with low score thresholds (so every keyframe yields agent and map
tokens whose embeddings reach the BEV encoder) is fine-tuned for two steps through tools/train.py
with a fresh one-layer LLM; the tests check the split at the backbone, the feature cache, what
trains, exact resume and that evaluation uses the checkpoint's own perception.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tool_helpers import ROOT, load_tool

from perception.config import PerceptionConfig
from perception.feature_cache import (
    FeatureStore,
    LiveFeatures,
    features_key,
    load_or_build_features,
)
from perception.inference import outputs_to_tokens, per_keyframe, run_model
from perception.inputs import ImageCache, load_camera_batch
from perception.model import BevPerception
from perception.tail import PerceptionTail, frozen_features
from perception.train import build_optimizer, load_perception_model, save_state
from vla_world.config import config_from_dict
from vla_world.training.online_perception import OnlinePerception

torch.set_num_threads(1)
SMALL_PERCEPTION = {
    "grid": {"cells": 16},
    "model": {"image_size": [64, 36], "backbone_channels": [8, 16, 16], "fpn_channels": 16, "token_dim": 16,
              "bev_encoder_blocks": 1, "scene_pool": [1, 1], "num_agent_queries": 6, "num_map_queries": 4,
              "decoder_layers": 1, "decoder_heads": 2, "ffn_dim": 32, "map_points": 4},
    # untrained heads score ~0.01 (focal-loss prior); a lower threshold turns their peaks into tokens
    "inference": {"score_threshold": 0.001, "map_score_threshold": 0.001, "max_agents": 3},
}
SMALL_LLM = ["--set", "data.max_examples=6", "--set", "train.batch_size=2", "--set", "model.hidden_size=32",
             "--set", "model.intermediate_size=64", "--set", "model.num_layers=1", "--set", "model.vocab_size=600",
             "--set", "train.log_every=1", "--init", "none"]




def small_perception() -> tuple[BevPerception, PerceptionConfig]:
    cfg = config_from_dict(PerceptionConfig, SMALL_PERCEPTION)
    torch.manual_seed(0)
    return BevPerception(cfg).eval(), cfg


def train_planning(world: Path, out: Path, perception: Path, *extra: str) -> dict:
    argv = ["--stage", "planning", "--config", str(ROOT / "configs/planning/tiny.yaml"), "--dataroot", str(world),
            "--out", str(out), "--set", "data.token_source=online", "--set", f"data.perception_checkpoint={perception}",
            "--set", f"data.feature_cache={out.parent / 'features'}", *SMALL_LLM, *extra]
    assert load_tool("train").main(argv) == 0
    return json.loads((out / "last" / "state.json").read_text())


@pytest.fixture(scope="module")
def online_run(mini_world, tmp_path_factory):
    """A saved small perception checkpoint and a two-step online planning run from it."""
    root = tmp_path_factory.mktemp("online")
    model, cfg = small_perception()
    perception = save_state(root / "perception", model, build_optimizer(model, cfg), cfg, 0, 0, {})
    state = train_planning(mini_world, root / "planning", perception, "--max-steps", "2")
    return mini_world, root, perception, state


def test_tail_on_frozen_features_equals_the_whole_model(mini_records, mini_world):
    model, cfg = small_perception()
    batch = load_camera_batch(mini_records["val"][:2], ImageCache(mini_world, cfg.model.image_size))
    with torch.no_grad():
        whole = model(batch)
        tail = PerceptionTail(model)(frozen_features(model, batch))
    for key in ("bev", "scene"):
        torch.testing.assert_close(tail[key], whole[key])
    for part in ("agents", "map"):
        for key, value in whole[part].items():
            torch.testing.assert_close(tail[part][key], value)


def test_feature_cache_is_reused_and_keyed_by_the_backbone(mini_records, mini_world, tmp_path):
    model, cfg = small_perception()
    records = mini_records["val"][:3]
    store = load_or_build_features(model, cfg, records, mini_world, tmp_path, progress=False)
    assert store.path.is_file() and store.path.name.startswith("features_val_")
    again = load_or_build_features(model, cfg, records, mini_world, tmp_path, progress=False)
    assert again.path == store.path
    torch.testing.assert_close(again.get([records[1].sample_token]).bev, store.get([records[1].sample_token]).bev)
    key = features_key(model, cfg, records)
    with torch.no_grad():
        model.map_decoder.cls_head.bias.add_(1.0)  # a tail weight: same frozen features
        assert features_key(model, cfg, records) == key
        model.backbone.stem[0].weight.mul_(0.5)  # a backbone weight: new features
    assert features_key(model, cfg, records) != key


def test_live_features_equal_the_cached_ones_up_to_float16(mini_records, mini_world, tmp_path):
    model, cfg = small_perception()
    records = mini_records["val"][:2]
    tokens = [r.sample_token for r in records]
    cached = load_or_build_features(model, cfg, records, mini_world, tmp_path, progress=False).get(tokens)
    live = LiveFeatures(model, cfg, records, mini_world).get(tokens)
    torch.testing.assert_close(live.bev, cached.bev, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(live.coarse, cached.coarse, atol=1e-2, rtol=1e-2)
    assert live.bev.dtype == cached.bev.dtype == torch.float32


def test_tokens_from_cached_features_match_the_image_path(mini_records, mini_world, tmp_path):
    model, cfg = small_perception()
    records = mini_records["val"][:3]
    reference = outputs_to_tokens(run_model(model, records, ImageCache(mini_world, cfg.model.image_size),
                                            progress=False), records, cfg)
    store = load_or_build_features(model, cfg, records, mini_world, tmp_path, progress=False)
    with torch.no_grad():
        cached = outputs_to_tokens(per_keyframe(PerceptionTail(model)(store.get([r.sample_token for r in records]))),
                                   records, cfg)
    for record in records:
        want, got = reference[record.sample_token], cached[record.sample_token]
        torch.testing.assert_close(got.scene, want.scene, atol=2e-2, rtol=0)  # float16 storage
        assert got.counts() == want.counts()


def test_planning_freezes_the_backbone_and_trains_the_tail(online_run):
    _, root, perception, _ = online_run
    model, cfg = load_perception_model(perception)
    online = OnlinePerception(PerceptionTail(model), cfg, FeatureStore({}, {}), perception, loss_weight=1.0)
    counts = online.set_trainable()
    backbone = sum(p.numel() for p in online.tail.perception.backbone.parameters())
    assert counts["perception.backbone"] == (0, backbone)
    assert counts["perception.bev_encoder"][1] == 0 and counts["perception.bev_encoder"][0] > 0
    assert counts["perception.aux_heads"][1] == 0  # tiny.yaml adds the perception loss, which reaches it
    log = (root / "planning" / "train.log").read_text()
    assert re.search(rf"perception\.backbone:\s+trainable\s+0\s+frozen\s+{backbone}\b", log)
    assert "perception: fine-tuned online from" in log
    assert re.search(r"step 2/\d+ loss [\d.]+ .* perception loss [\d.]+", log)


def test_two_online_steps_change_the_tail_but_not_the_backbone(online_run):
    _, root, perception, state = online_run
    assert state["progress"]["step"] == 2
    before = load_file(str(perception / "model.safetensors"))
    after = load_file(str(root / "planning" / "last" / "perception" / "model.safetensors"))
    assert before.keys() == after.keys()
    for name in (n for n in before if n.startswith("backbone.")):
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)
    assert not torch.equal(after["bev_encoder.input.weight"], before["bev_encoder.input.weight"])


def test_saved_perception_loads_as_a_perception_checkpoint(online_run):
    _, root, _, _ = online_run
    model, cfg = load_perception_model(root / "planning" / "last" / "perception")
    assert cfg.model.token_dim == 16 and isinstance(model, BevPerception)


def test_online_resume_gives_the_same_next_loss(online_run, tmp_path):
    world, root, perception, state = online_run
    straight = train_planning(world, tmp_path / "straight", perception, "--max-steps", "3")
    resumed = train_planning(world, root / "planning", perception, "--resume", "--max-steps", "3")
    assert straight["progress"]["losses"][:2] == state["progress"]["losses"]
    assert resumed["progress"]["losses"] == straight["progress"]["losses"]  # step 3 included, bit for bit


def test_eval_of_an_online_checkpoint_uses_its_own_perception(online_run, mini_records):
    from vla_world.inference import (
        load_source_tokens,
        predict_split,
        resolve_token_source,
    )

    world, root, perception, _ = online_run
    records = mini_records["val"][:2]
    checkpoint = root / "planning" / "last"
    source = resolve_token_source(checkpoint, "val")
    assert source.kind == "online" and source.detail.endswith("perception")
    own = load_source_tokens(source, checkpoint, records, world)
    original = OnlinePerception.load(perception, records, world, root / "features", progress=False).all_tokens(records)
    token = records[0].sample_token
    assert own[token].scene.shape == original[token].scene.shape
    assert not torch.allclose(own[token].scene, original[token].scene)  # the fine-tuned tail, not the original
    with pytest.raises(ValueError, match="dataroot"):
        load_source_tokens(source, checkpoint, records)
    texts = predict_split(checkpoint, records, progress=False, dataroot=world)
    assert set(texts) == {r.sample_token for r in records}


def test_without_the_perception_loss_the_heads_it_alone_reaches_stay_frozen(online_run, tmp_path):
    world, _, perception, _ = online_run
    train_planning(world, tmp_path / "planning_only", perception, "--max-steps", "1",
                   "--set", "train.perception_loss_weight=0")
    log = (tmp_path / "planning_only" / "train.log").read_text()
    assert re.search(r"perception\.aux_heads:\s+trainable\s+0\s+frozen\s+68\b", log)  # 1x1 conv, 16 -> 1 + 3 maps
    assert "perception loss" not in log
    before = load_file(str(perception / "model.safetensors"))
    after = load_file(str(tmp_path / "planning_only" / "last" / "perception" / "model.safetensors"))
    torch.testing.assert_close(after["map_decoder.cls_head.weight"], before["map_decoder.cls_head.weight"], rtol=0, atol=0)
    assert not torch.equal(after["bev_encoder.input.weight"], before["bev_encoder.input.weight"])
