"""A left-padded batch must give each sample exactly what it gets alone (issue #9, item 5).

Batched inference (`VLAModel.generate_ids`, used by `vla_world.inference.Planner`) pads prompts of
different lengths on the left. Three things must hold for a row to be unaffected by its neighbours:
the attention mask hides the padding, the position ids count from the row's first real token,
and each row receives its own perception tokens at its own placeholders. A greedy-output
comparison alone (test_model_vla.py) misses all three: with random weights the greedy ids of
these samples do not change under any of the faults below (measured).

So this file compares, at every real position (prompt and teacher-forced answer), the logits of
a left-padded batch with a reference built for each prompt alone, without the code under test:
its embeddings are spliced by hand and it runs through the bare LLM, unpadded. The samples have
different perception values and lengths. It also checks the rotary position ids the LLM uses:
RoPE attention only sees position differences, so a row shifted by its padding (`arange` instead
of counting real tokens) gives the same float32 logits and only the positions show the fault.
`test_mutation_breaks_the_comparison` applies each fault with monkeypatch and asserts that the
comparison then fails, and which half (logits or positions) sees it, so the suite itself shows
the check can fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import torch
from model_helpers import fake_tokens, small_model, small_records

from vla_world.data.planner_input import planner_input
from vla_world.model import vla
from vla_world.model.sequence import PLANNING_QUESTION, EncodedSample
from vla_world.model.vla import VLAModel
from vla_world.training.data import planning_examples

torch.set_num_threads(1)

ATOL = 1e-5  # float32; the correct batch is measured within ~2e-7 of the alone reference
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def model() -> VLAModel:
    return small_model(small_records()).eval()


@pytest.fixture(scope="module")
def samples(model: VLAModel) -> list[EncodedSample]:
    """Prompt + answer of three samples with different token counts and values; the last asks about an agent."""
    records = small_records()
    answers = [e.answer for e in planning_examples(records)]
    tokens = [fake_tokens(r, scene=2 + i, maps=1 + i, seed=i) for i, r in enumerate(records)]
    inputs = [planner_input(r) for r in records]
    builder = model.sequence_builder
    out = [builder.encode(inputs[i], tokens[i], PLANNING_QUESTION, answers[i]) for i in range(2)]
    out.append(builder.encode(inputs[2], tokens[2], "Which object is this?", "a car", focus_track_id=1))
    assert len({len(s.input_ids) for s in out}) == len(out), "lengths must differ, or there is no padding"
    return out


@contextmanager
def rotary_positions(model: VLAModel) -> Iterator[list[torch.Tensor]]:
    """Records the (B, T) position ids of every call of the LLM's rotary embedding."""
    calls: list[torch.Tensor] = []

    def hook(module, args, kwargs, output):
        positions = args[1] if len(args) > 1 else kwargs["position_ids"]
        calls.append(positions.detach().clone())

    handle = model.base_llm.model.rotary_emb.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def alone_logits(model: VLAModel, sample: EncodedSample) -> torch.Tensor:
    """(T, V) logits of one unpadded sample, its perception tokens spliced by hand (not by `embed`)."""
    ids = torch.tensor(sample.input_ids)
    embeds = model.llm.get_input_embeddings()(ids).clone()
    for kind, slot_id in model.placeholder_ids.items():
        slots = (ids == slot_id).nonzero().flatten()
        embeds[slots] = model.projectors.project(kind, sample.features[kind])
    return model.llm(inputs_embeds=embeds[None]).logits[0]


@dataclass
class Comparison:
    logit_gap: float  # max |batch - alone| over every real position of every row
    positions_ok: bool  # each row's real tokens sit at rotary positions 0..n-1, as alone

    @property
    def equal(self) -> bool:
        return self.logit_gap <= ATOL and self.positions_ok


@torch.no_grad()
def compare_batch_with_alone(model: VLAModel, samples: list[EncodedSample]) -> Comparison:
    """Teacher-forced forward of the left-padded batch vs each sample alone."""
    ids, mask = vla.left_pad([s.input_ids for s in samples], model.pad_id)
    with rotary_positions(model) as calls:
        batch = model(ids, mask, [s.features for s in samples]).logits
    positions = calls[0].expand_as(ids)
    gap, positions_ok = 0.0, True
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        gap = max(gap, (batch[row, -n:] - alone_logits(model, sample)).abs().max().item())
        positions_ok &= torch.equal(positions[row, -n:], torch.arange(n))
    return Comparison(gap, positions_ok)


def test_left_padded_batch_equals_each_sample_alone(model, samples):
    result = compare_batch_with_alone(model, samples)
    assert result.positions_ok, "left-padded rows do not count positions from their first real token"
    assert result.logit_gap <= ATOL, f"batch logits differ from the alone reference by {result.logit_gap:.2e}"


def test_batched_greedy_generation_equals_each_prompt_alone(model, samples):
    prompts = [s.input_ids[:s.prompt_length] for s in samples]
    features = [s.features for s in samples]
    with rotary_positions(model) as calls:
        batched = model.generate_ids(prompts, features, NEW_TOKENS)
    alone = [model.generate_ids([p], [f], NEW_TOKENS, use_cache=False)[0] for p, f in zip(prompts, features)]
    assert batched == alone
    assert any(batched), "nothing generated: the comparison would be empty"
    # the ids above did not move when the mask or positions were broken (measured); these positions do:
    # each step's newest token sits right after the row's real tokens (prefill: the last prompt token)
    lengths = torch.tensor([len(p) for p in prompts])
    for step, positions in enumerate(calls):
        assert torch.equal(positions.expand(len(prompts), -1)[:, -1], lengths - 1 + step)


def _mask_attends_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    real = vla.left_pad

    def attends_padding(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = real(prompts, pad_id)
        return ids, torch.ones_like(mask)

    monkeypatch.setattr(vla, "left_pad", attends_padding)


def _positions_ignore_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vla, "padded_positions", lambda mask: torch.arange(mask.shape[-1]).expand_as(mask))


def _features_not_spliced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(VLAModel, "embed", lambda self, ids, features: self.llm.get_input_embeddings()(ids))


@pytest.mark.parametrize(("mutate", "seen_in"), [(_mask_attends_padding, "logits"),
                                                 (_positions_ignore_padding, "positions"),  # RoPE: logits equal
                                                 (_features_not_spliced, "logits")],
                         ids=["mask-attends-padding", "positions-ignore-padding", "features-not-spliced"])
def test_mutation_breaks_the_comparison(model, samples, monkeypatch, mutate: Callable[[pytest.MonkeyPatch], None],
                                        seen_in: str):
    mutate(monkeypatch)
    result = compare_batch_with_alone(model, samples)
    assert not result.equal
    assert result.logit_gap > ATOL if seen_in == "logits" else not result.positions_ok
