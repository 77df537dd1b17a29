"""Stages as data: which parts learn in each stage, LoRA, the learning-rate schedule, configs."""

from __future__ import annotations

import pytest
import torch
from model_helpers import small_model, small_records

from vla_world.config import ConfigError, config_from_dict, load_config
from vla_world.training.config import StageConfig
from vla_world.training.data import epoch_order, global_batches
from vla_world.training.model_setup import parameter_counts, set_trainable
from vla_world.training.runner import learning_rate
from vla_world.training.stages import STAGES, stage_spec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return small_model(small_records())


@pytest.mark.parametrize("stage,projectors,llm", [("align", True, False), ("instruct", True, True),
                                                  ("motion", True, True), ("world", True, True), ("planning", True, True)])
def test_freeze_set_per_stage(model, stage, projectors, llm):
    counts = set_trainable(model, stage_spec(stage))
    assert all(p.requires_grad == projectors for p in model.projectors.parameters())
    assert all(p.requires_grad == llm for p in model.llm.parameters())
    total_llm = sum(p.numel() for p in model.llm.parameters())
    assert counts["llm"] == ((total_llm, 0) if llm else (0, total_llm))


def test_lora_trains_only_adapters(model):
    model.apply_lora({"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj"]})
    try:
        counts = set_trainable(model, stage_spec("planning"))
        names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
        assert names and all("lora_" in n for n in names)
        hidden, layers, r = 32, 2, 2  # q_proj: A (r x hidden) + B (hidden x r) per layer
        assert counts["llm"][0] == layers * 2 * r * hidden
    finally:
        model.merge_lora()
    assert model.lora is None and not any("lora_" in n for n, _ in model.llm.named_parameters())
    assert sum(parameter_counts(model)["llm"]) == sum(p.numel() for p in model.llm.parameters())


def test_only_planning_trains_perception_and_only_online():
    assert [s for s, spec in STAGES.items() if "perception" in spec.trainable] == ["planning"]
    cfg = config_from_dict(StageConfig, {"stage": "planning", "data": {"token_source": "online"},
                                         "train": {"lr": 1e-3}})
    assert cfg.train.perception_peak_lr() == 1e-3  # null: the LLM's lr, as in paper 002 Table 1
    with pytest.raises(ConfigError, match="does not train perception"):
        config_from_dict(StageConfig, {"stage": "motion", "data": {"token_source": "online"}}, "x.yaml")
    with pytest.raises(ConfigError, match="nothing to pack"):
        config_from_dict(StageConfig, {"stage": "planning", "data": {"pack_questions": True}}, "x.yaml")
    with pytest.raises(ConfigError, match="perception_lr"):
        config_from_dict(StageConfig, {"stage": "planning", "train": {"perception_lr": -1.0}}, "x.yaml")


def test_stage_chain_starts_from_previous():
    order = ("align", "instruct", "motion", "world", "planning", "grpo")
    assert [STAGES[s].previous for s in order] == [None, "align", "instruct", "motion", "world", "planning"]
    assert tuple(STAGES) == order  # the one training order (tools/train.py, the demo)


def test_learning_rate_warmup_then_cosine():
    assert learning_rate(0, 100, 1.0, 0.1) == pytest.approx(0.1)  # warm-up: 10 steps, step 0 -> 1/10
    assert learning_rate(9, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert learning_rate(55, 100, 1.0, 0.1) == pytest.approx(0.5)  # half-way through the cosine
    assert learning_rate(100, 100, 1.0, 0.1) == pytest.approx(0.0)


def test_data_order_is_a_function_of_seed_and_epoch():
    assert (epoch_order(10, 0, 1) == epoch_order(10, 0, 1)).all()
    assert not (epoch_order(10, 0, 1) == epoch_order(10, 0, 2)).all()
    batches = global_batches(10, 4, 0, 0)
    assert [len(b) for b in batches] == [4, 4, 2] and sorted(int(i) for b in batches for i in b) == list(range(10))


@pytest.mark.parametrize("stage", ["align", "instruct", "motion", "world", "planning"])
def test_shipped_configs_load(stage):
    for size in ("tiny", "qwen2.5-0.5b", "qwen2.5-3b", "qwen2.5-7b"):
        cfg = load_config(f"configs/{stage}/{size}.yaml", StageConfig)
        assert cfg.stage == stage and cfg.model.preset == size


def test_bad_config_names_the_field():
    with pytest.raises(ConfigError, match=r"finetune.*mode 'qlora'"):
        config_from_dict(StageConfig, {"stage": "planning", "finetune": {"mode": "qlora"}}, "x.yaml")
    with pytest.raises(ConfigError, match="token_source"):
        config_from_dict(StageConfig, {"stage": "planning", "data": {"token_source": "disk"}}, "x.yaml")


def test_qwen_presets_need_a_local_folder(tmp_path):
    from vla_world.model.llm import load_pretrained_llm

    with pytest.raises(FileNotFoundError, match="--llm PATH"):
        load_pretrained_llm("qwen2.5-0.5b", None)
    with pytest.raises(FileNotFoundError, match="config.json: not a Hugging Face model folder"):
        load_pretrained_llm("qwen2.5-3b", tmp_path)


def test_qwen_preset_loads_a_local_folder_and_adds_our_tokens(tmp_path):
    # A one-layer Qwen2 with the 0.5B preset's hidden size stands in for a downloaded Qwen2.5
    # folder: the same from_pretrained path, no network, a few MB.
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from vla_world.model.llm import load_pretrained_llm
    from vla_world.model.tokenizer import SPECIAL_TOKENS, train_tokenizer

    tokenizer = train_tokenizer(["the car ahead slows down", "turn left at (1.25,3.50)"] * 20, vocab_size=300)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=896, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=256)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, loaded = load_pretrained_llm("qwen2.5-0.5b", tmp_path)
    assert all(loaded.convert_tokens_to_ids(t) != loaded.unk_token_id for t in SPECIAL_TOKENS)
    assert model.get_input_embeddings().num_embeddings >= len(loaded)
    ids = loaded("turn left <traj_start>", return_tensors="pt").input_ids
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], model.get_input_embeddings().num_embeddings)
    with pytest.raises(ValueError, match="does not match preset 'qwen2.5-3b'"):
        load_pretrained_llm("qwen2.5-3b", tmp_path)
