"""The world stage's LLM side: visual code tokens (growth, resize on load, LoRA rows), constrained
visual decoding, the segment-weighted loss and the world examples.

Golden cases: new rows equal the mean of the old vocabulary's rows (noise off); a LoRA step moves
the new rows and leaves every frozen base row bit-identical; a constrained `<visual>` block has
exactly K code tokens for random models and prompts; the segment loss of a hand-made batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from vla_world.checkpoint import save_checkpoint
from vla_world.constrained import _Stepper
from vla_world.data.planner_input import planner_input
from vla_world.model.sequence import IGNORE_INDEX, WORLD_QUESTION
from vla_world.model.visual_tokens import (
    VISUAL_END,
    VISUAL_START,
    VisualSpec,
    add_visual_tokens,
    codes_text,
    visual_token_names,
)
from vla_world.model.vla import VLAModel, tied_copy
from vla_world.training.config import LossConfig
from vla_world.training.data import world_examples
from vla_world.training.losses import segment_weights, weighted_lm_loss
from vla_world.training.model_setup import set_trainable
from vla_world.training.stages import stage_spec
from vla_world.visual_decoding import decode_visual_block, imagine_codes_batch

torch.set_num_threads(1)
SPEC = VisualSpec(codebook_size=40, codes_per_frame=5)
LORA = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def records():
    return small_records()


def embedding(model: VLAModel) -> torch.Tensor:
    return model.base_llm.get_input_embeddings().weight.detach().clone()


def test_growth_adds_the_tokens_with_mean_rows(records):
    model = small_model(records)
    old_len, before = len(model.tokenizer), embedding(model)
    # <visual> / </visual> are also the structured answer's tags (vla_world.model.tokenizer): a tokenizer may have them
    names = [n for n in visual_token_names(SPEC.codebook_size) if n not in model.tokenizer.get_vocab()]
    new_ids = add_visual_tokens(model.llm, model.tokenizer, SPEC.codebook_size, noise=False)
    model.visual = SPEC
    after = embedding(model)
    assert len(new_ids) == len(names) >= SPEC.codebook_size and len(model.tokenizer) == old_len + len(names)
    assert after.shape[0] % 64 == 0 and after.shape[0] >= len(model.tokenizer)
    assert model.llm.config.vocab_size == after.shape[0]
    torch.testing.assert_close(after[:old_len], before[:old_len], rtol=0, atol=0)  # old rows untouched
    mean = before[:old_len].mean(dim=0)
    torch.testing.assert_close(after[new_ids], mean.expand(len(new_ids), -1))
    assert model.llm.get_output_embeddings().weight.data_ptr() == model.llm.get_input_embeddings().weight.data_ptr()
    assert model.tokenizer.convert_ids_to_tokens(new_ids[:3]) == names[:3]
    # the answer text of a frame is one token per code
    ids = model.tokenizer(codes_text([3, 0, 39]), add_special_tokens=False)["input_ids"]
    assert model.tokenizer.convert_ids_to_tokens(ids) == [VISUAL_START, "<vis_3>", "<vis_0>", "<vis_39>", VISUAL_END]


def test_noisy_growth_is_mean_plus_small_noise_and_idempotent(records):
    model = small_model(records)
    old_len, before = len(model.tokenizer), embedding(model)
    new_ids = model.grow_visual(SPEC)
    rows = embedding(model)[new_ids] - before[:old_len].mean(dim=0)
    hidden = rows.shape[1]
    assert 0.5 * hidden ** -0.5 < float(rows.std()) < 1.5 * hidden ** -0.5  # N(0, 1/sqrt(H)), LLaMA-Factory's
    assert model.grow_visual(SPEC) == []  # already there: nothing new
    with pytest.raises(ValueError, match="already writes"):
        model.grow_visual(VisualSpec(8, 5))


def save(model: VLAModel, folder) -> None:
    tied = model.base_llm.config.tie_word_embeddings
    state = {k: v for k, v in model.state_dict().items() if not tied_copy(k, tied)}  # as the runner saves
    save_checkpoint(folder, state, extra_files=model.save_files())


def test_an_older_checkpoint_is_resized_on_load_and_the_grown_one_round_trips(records, tmp_path):
    old = small_model(records)
    save(old, tmp_path / "old")
    grown = VLAModel.from_folder(tmp_path / "old", visual=SPEC)
    n = len(old.tokenizer)
    new = [t for t in visual_token_names(SPEC.codebook_size) if t not in old.tokenizer.get_vocab()]
    assert grown.visual == SPEC and len(grown.tokenizer) == n + len(new) and len(new) >= SPEC.codebook_size
    torch.testing.assert_close(embedding(grown)[:n], embedding(old)[:n], rtol=0, atol=0)
    save(grown, tmp_path / "grown")
    again = VLAModel.from_folder(tmp_path / "grown")  # vla.json and the tokenizer carry the grown vocabulary
    assert again.visual == SPEC and len(again.tokenizer) == len(grown.tokenizer)
    torch.testing.assert_close(embedding(again), embedding(grown), rtol=0, atol=0)
    assert VLAModel.from_folder(tmp_path / "grown", visual=SPEC).visual == SPEC
    with pytest.raises(ValueError, match="visual tokens are"):
        VLAModel.from_folder(tmp_path / "grown", visual=VisualSpec(8, 5))


def world_batch(model: VLAModel, records) -> dict:
    from vla_world.training.data import collate

    rng = np.random.default_rng(0)
    samples = [model.sequence_builder.encode(planner_input(r), fake_tokens(r), WORLD_QUESTION,
                                             codes_text(rng.integers(0, SPEC.codebook_size, SPEC.codes_per_frame)))
               for r in records]
    return collate(samples, model.pad_id)


@pytest.mark.parametrize("tied", [True, False])
def test_lora_trains_the_new_rows_and_leaves_frozen_rows(records, tied):
    model = small_model(records)
    if not tied:  # the Qwen2.5-3B/7B case: a separate output layer, whose new rows must learn too
        model = untie(model)
    model.grow_visual(SPEC)
    model.apply_lora(LORA)
    set_trainable(model, stage_spec("world"))
    names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert any("trainable_tokens_delta" in n for n in names) and not any("base_layer" in n for n in names)
    new_ids = model.visual_ids.all_ids
    base_in = embedding(model)
    base_out = model.base_llm.get_output_embeddings().weight.detach().clone() if not tied else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = world_batch(model, records)
    out = model(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"])
    out.loss.backward()
    optimizer.step()
    model.merge_lora()
    merged_in = embedding(model)
    old = torch.ones(merged_in.shape[0], dtype=torch.bool)
    old[new_ids] = False
    torch.testing.assert_close(merged_in[old], base_in[old], rtol=0, atol=0)  # frozen base rows
    assert (merged_in[new_ids] - base_in[new_ids]).abs().sum(dim=1).min() > 0  # every new row moved
    if not tied:
        merged_out = model.base_llm.get_output_embeddings().weight.detach()
        torch.testing.assert_close(merged_out[old], base_out[old], rtol=0, atol=0)
        assert (merged_out[new_ids] - base_out[new_ids]).abs().sum() > 0


def untie(model: VLAModel) -> VLAModel:
    from vla_world.model.llm import llm_from_config_dict

    config = {**model.llm.config.to_dict(), "tie_word_embeddings": False}
    llm = llm_from_config_dict(config)
    state = model.llm.state_dict()
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone() + 0.01
    llm.load_state_dict(state)
    return VLAModel(llm, model.projectors, model.tokenizer, model.prompt, model.preset)


def random_model(records, seed: int) -> VLAModel:
    torch.manual_seed(seed)
    model = small_model(records)
    model.grow_visual(VisualSpec(codebook_size=int(np.random.default_rng(seed).integers(2, 60)),
                                 codes_per_frame=int(np.random.default_rng(seed + 1).integers(1, 9))), seed=seed)
    with torch.no_grad():  # random everything, so the unconstrained argmax would often be no code at all
        for p in model.llm.parameters():
            p.normal_(0, 0.5)
    return model.eval()


def prompts_for(model: VLAModel, records, seed: int):
    rng = np.random.default_rng(seed)
    chosen = [records[i] for i in rng.integers(0, len(records), size=int(rng.integers(1, 4)))]
    return [model.sequence_builder.encode(planner_input(r), fake_tokens(r, scene=int(rng.integers(1, 5)),
                                                                      seed=int(rng.integers(1000))), WORLD_QUESTION)
            for r in chosen]


@pytest.mark.parametrize("seed", range(6))
def test_constrained_visual_decoding_writes_exactly_k_valid_codes(records, seed):
    model = random_model(records, seed)
    prompts = prompts_for(model, records, seed)
    codes = imagine_codes_batch(model, [p.input_ids for p in prompts], [p.features for p in prompts])
    assert codes.shape == (len(prompts), model.visual.codes_per_frame) and codes.dtype == np.int64
    assert codes.min() >= 0 and codes.max() < model.visual.codebook_size
    alone = [imagine_codes_batch(model, [p.input_ids], [p.features])[0] for p in prompts]
    np.testing.assert_array_equal(codes, np.stack(alone))  # a batch decodes as each prompt alone


def test_the_block_is_greedy_over_code_rows_and_leaves_the_stepper_after_the_end(records):
    model = random_model(records, 11)
    ids = model.visual_ids
    prompt = prompts_for(model, records, 11)[:1]
    codes = imagine_codes_batch(model, [prompt[0].input_ids], [prompt[0].features])[0]
    # reference: full forward passes over the teacher-forced block, argmax over the code columns only
    sequence = prompt[0].input_ids + [ids.start]
    for code in codes:
        embeds = model.embed(torch.tensor([sequence]), [prompt[0].features])
        logits = model.llm(inputs_embeds=embeds).logits[0, -1]
        assert int(torch.argmax(logits[ids.codes])) == int(code)
        sequence.append(int(ids.codes[code]))
    with torch.no_grad():
        stepper = _Stepper(model, [prompt[0].input_ids + [ids.start]], [prompt[0].features])
        again = decode_visual_block(model, stepper)
        expected = model.llm(inputs_embeds=model.embed(torch.tensor([sequence + [ids.end]]), [prompt[0].features]))
    np.testing.assert_array_equal(again[0].numpy(), codes)
    torch.testing.assert_close(stepper.last[0] @ model.llm.lm_head.weight.T, expected.logits[0, -1],
                               rtol=1e-4, atol=1e-4)  # the stepper stands after </visual>


def test_segment_weights_golden():
    codes = torch.tensor([7, 8, 9])
    # row 0: two text tokens then four codes; row 1: one text token (ignored positions are -100)
    labels = torch.tensor([[IGNORE_INDEX, 1, 2, 7, 8, 9, 7], [IGNORE_INDEX, IGNORE_INDEX, 3] + [IGNORE_INDEX] * 4])
    segment = segment_weights(labels, codes, LossConfig("segment", visual_weight=1.0, text_weight=3.0))
    # text: 3 tokens share 3/4; visual: 4 tokens share 1/4
    expected = torch.tensor([[0, 0.25, 0.25, 1 / 16, 1 / 16, 1 / 16, 1 / 16], [0, 0, 0.25, 0, 0, 0, 0]])
    torch.testing.assert_close(segment, expected)
    token = segment_weights(labels, codes, LossConfig("token", visual_weight=1.0, text_weight=3.0))
    torch.testing.assert_close(token, torch.tensor([[0, 3, 3, 1, 1, 1, 1], [0, 0, 3, 0, 0, 0, 0]]) / 13.0)
    # no code in the batch: both are the plain token mean
    text_only = torch.tensor([[IGNORE_INDEX, 1, 2, 3]])
    torch.testing.assert_close(segment_weights(text_only, codes, LossConfig()), torch.tensor([[0, 1, 1, 1]]) / 3.0)


def test_weighted_loss_matches_the_segment_means():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 10)
    labels = torch.tensor([[IGNORE_INDEX, 1, 7, 7, 8]])  # shifted targets: 1 (text), 7, 7, 8 (codes)
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], reduction="none")
    loss = weighted_lm_loss(logits, labels, torch.tensor([7, 8]), LossConfig("segment", 2.0, 1.0))
    torch.testing.assert_close(loss, (1.0 * ce[0] + 2.0 * ce[1:].mean()) / 3.0)
    plain = weighted_lm_loss(logits, labels, torch.tensor([7, 8]), LossConfig("token", 1.0, 1.0))
    torch.testing.assert_close(plain, ce.mean())  # equal weights, token mode: transformers' own loss


def test_world_examples_answer_the_next_frame_and_skip_scene_ends(records):
    chained = [dataclasses.replace(records[0], next_sample_token="tok1"),
               dataclasses.replace(records[1], next_sample_token="tok2"), records[2]]
    codes = {"tok1": np.array([1, 2]), "tok2": np.array([3, 4]), "tok0": np.array([9, 9])}
    examples, skipped = world_examples(chained, codes)
    assert skipped == 1 and [e.sample_token for e in examples] == ["tok0", "tok1"]
    assert examples[0].answer == "<visual><vis_1><vis_2></visual>"  # the NEXT frame's codes, not its own
    assert examples[0].question == WORLD_QUESTION
    with pytest.raises(KeyError, match="export_frame_codes"):
        world_examples(chained, {"tok1": np.array([1, 2])})
    shown, _ = world_examples(chained, codes, current_frame=True)  # the current frame is an input, the next a target
    assert shown[0].question == f"Front camera now: <visual><vis_9><vis_9></visual>\n{WORLD_QUESTION}"
    assert shown[0].answer == examples[0].answer


def test_a_model_without_visual_tokens_refuses_to_imagine(records):
    model = small_model(records)
    prompt = prompts_for(model, records, 0)[0]
    with pytest.raises(ValueError, match="world stage"):
        imagine_codes_batch(model, [prompt.input_ids], [prompt.features])



def test_a_lora_checkpoint_with_token_rows_reloads_and_plans(records, tmp_path):
    from vla_world.inference import Planner

    model = small_model(records)
    model.grow_visual(SPEC)
    model.apply_lora(LORA)
    with torch.no_grad():  # as if trained: the token deltas are no longer zero
        for name, param in model.llm.named_parameters():
            if "trainable_tokens_delta" in name:
                param.normal_(0, 0.1)
    save(model, tmp_path / "lora")
    again = VLAModel.from_folder(tmp_path / "lora")
    assert again.lora == LORA and again.visual == SPEC
    model.merge_lora()
    again.merge_lora()
    torch.testing.assert_close(embedding(again), embedding(model), rtol=0, atol=0)
    planner = Planner.from_checkpoint(tmp_path / "lora")  # constrained decoding reads a plain output layer
    result = planner.plan(planner_input(records[0]), fake_tokens(records[0]))
    assert result.parse_error is None
