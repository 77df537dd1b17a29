"""The VLA model: splicing equals a hand-built reference, checkpoints round-trip, the planner never crashes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import WIDTH, fake_tokens, small_model, small_records

from vla_world.checkpoint import save_checkpoint
from vla_world.data.planner_input import planner_input
from vla_world.inference import Planner, predict_split
from vla_world.model.projectors import Projectors
from vla_world.model.sequence import PLANNING_QUESTION
from vla_world.model.vla import VLAModel
from vla_world.training.data import collate, planning_examples

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    records = small_records()
    model = small_model(records).eval()
    tokens = {r.sample_token: fake_tokens(r, seed=i) for i, r in enumerate(records)}
    return records, model, tokens


def test_projectors_are_two_layer_gelu_mlps():
    proj = Projectors(256, 896)
    params = sum(p.numel() for p in proj.parameters())
    assert params == 3 * ((256 * 896 + 896) + (896 * 896 + 896))  # OpenDriveVLA's 3.1 M at 0.5B
    assert isinstance(proj.map[1], torch.nn.GELU)


def test_forward_equals_manually_spliced_embeddings(setup):
    records, model, tokens = setup
    examples = planning_examples(records)
    samples = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], e.question, e.answer)
               for r, e in zip(records, examples)]
    samples.append(model.sequence_builder.encode(planner_input(records[0]), tokens["tok0"], "Which object?", "car", focus_track_id=1))
    batch = collate(samples, model.pad_id)
    table = model.llm.get_input_embeddings().weight
    reference = table[batch["input_ids"]].clone()
    for b, sample in enumerate(samples):
        for kind in ("scene", "agent", "map", "object"):
            positions = [i for i, t in enumerate(sample.input_ids) if t == model.placeholder_ids[kind]]
            for pos, row in zip(positions, sample.features[kind]):
                reference[b, pos] = model.projectors.project(kind, row[None])[0]
    with torch.no_grad():
        spliced = model.embed(batch["input_ids"], batch["features"])
        torch.testing.assert_close(spliced, reference)
        out = model(batch["input_ids"], batch["attention_mask"], batch["features"], batch["labels"])
        ref = model.llm(inputs_embeds=reference, attention_mask=batch["attention_mask"], labels=batch["labels"])
    torch.testing.assert_close(out.logits, ref.logits)
    torch.testing.assert_close(out.loss, ref.loss)


def test_count_mismatch_is_an_error(setup):
    records, model, tokens = setup
    sample = model.sequence_builder.encode(planner_input(records[0]), tokens["tok0"], PLANNING_QUESTION)
    features = dict(sample.features, scene=sample.features["scene"][:1])
    with pytest.raises(ValueError, match="scene: 3 placeholders"):
        model.embed(torch.tensor([sample.input_ids]), [features])


def test_untrained_planner_reports_parse_error_when_greedy(setup):
    records, model, tokens = setup
    result = Planner(model, decoding="greedy").plan(planner_input(records[0]), tokens["tok0"])
    assert isinstance(result.text, str)
    assert result.trajectory is None and result.parse_error  # random weights do not write 6 waypoints


def test_untrained_planner_answers_in_the_template_by_default(setup):
    records, model, tokens = setup
    result = Planner(model).plan(planner_input(records[0]), tokens["tok0"])  # constrained decoding
    assert result.parse_error is None and result.trajectory.shape == (6, 2)


def test_kv_cache_and_batching_do_not_change_greedy_output(setup):
    records, model, tokens = setup
    prompts = [model.sequence_builder.encode(planner_input(r), tokens[r.sample_token], PLANNING_QUESTION) for r in records]
    cached = Planner(model, batch_size=3).generate(prompts, 12)
    single = Planner(model, batch_size=1, use_cache=False, decoding="greedy").generate(prompts, 12)
    assert cached == single


def test_checkpoint_round_trip_with_tokenizer(setup, tmp_path):
    records, model, tokens = setup
    model.apply_lora({"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)  # non-zero adapters, so a lost adapter would show
    tied = model.base_llm.config.tie_word_embeddings
    state = {k: v for k, v in model.state_dict().items() if not (tied and k.endswith("lm_head.weight"))}
    save_checkpoint(tmp_path / "ck", state, None, {}, model.save_files())
    loaded = VLAModel.from_folder(tmp_path / "ck").eval()
    sample = model.sequence_builder.encode(planner_input(records[2]), tokens["tok2"], PLANNING_QUESTION, "<traj_start>[(0.00,1.00)]")
    again = loaded.sequence_builder.encode(planner_input(records[2]), tokens["tok2"], PLANNING_QUESTION, "<traj_start>[(0.00,1.00)]")
    assert again.input_ids == sample.input_ids
    batch = collate([sample], model.pad_id)
    with torch.no_grad():
        a = model(batch["input_ids"], batch["attention_mask"], batch["features"]).logits
        b = loaded(batch["input_ids"], batch["attention_mask"], batch["features"]).logits
    torch.testing.assert_close(a, b)
    texts = predict_split(tmp_path / "ck", records, tokens=tokens, progress=False)
    assert set(texts) == {r.sample_token for r in records}
    model.merge_lora()
    assert model.lora is None and np.isfinite(a.numpy()).all() and loaded.projectors.token_width == WIDTH
