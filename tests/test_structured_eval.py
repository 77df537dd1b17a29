"""End to end: a tiny planning checkpoint trained with the structured answer is evaluated in the same table as a plain one."""

from __future__ import annotations

import json

import pytest
import torch
from tool_helpers import ROOT, load_tool

from planning.predictions import META_KEY
from planning.structured import parse_answer
from vla_world.model.vla import VLAModel

torch.set_num_threads(1)
SMALL = ["--set", "data.token_source=oracle", "--set", "data.max_examples=4", "--set", "train.batch_size=2",
         "--set", "model.hidden_size=32", "--set", "model.intermediate_size=64", "--set", "model.num_layers=1",
         "--set", "model.vocab_size=600", "--max-steps", "2",
         # both answer forms decoded template-constrained (the plan head is for plain answers only; issue 12)
         "--set", "model.plan_head.enabled=false"]


def train_planning(world, out, *extra: str) -> None:
    argv = ["--stage", "planning", "--config", str(ROOT / "configs/planning/tiny.yaml"), "--dataroot", str(world),
            "--out", str(out), *SMALL, *extra]
    assert load_tool("train").main(argv) == 0


@pytest.mark.slow  # ~70 s; the fast suite decodes and parses structured answers in test_structured_answer.py
def test_structured_and_plain_checkpoints_share_one_table(mini_world, tmp_path):
    train_planning(mini_world, tmp_path / "plain", "--init", "none")
    # from the plain checkpoint: the answer form is the planning config's, whatever the start point wrote
    train_planning(mini_world, tmp_path / "structured", "--init", str(tmp_path / "plain" / "last"),
                   "--set", "data.answer.structured=true")
    structured = VLAModel.from_folder(tmp_path / "structured" / "last")
    assert structured.prompt.answer_blocks == ("perception", "prediction", "think", "action", "answer")
    assert VLAModel.from_folder(tmp_path / "plain" / "last").prompt.answer_blocks == ()
    eval_planning = load_tool("eval_planning").main
    common = ["--dataroot", str(mini_world), "--tokens", "oracle", "--conventions", "uniad", "--quiet"]
    assert eval_planning(["--checkpoint", str(tmp_path / "plain" / "last"), "--checkpoint-name", "plain",
                          "--out", str(tmp_path / "e1"), *common]) == 0
    out = tmp_path / "e2"
    assert eval_planning(["--pred", str(tmp_path / "e1" / "last.json"), "--names", "plain",
                          "--checkpoint", str(tmp_path / "structured" / "last"), "--checkpoint-name", "structured",
                          "--out", str(out), *common]) == 0
    data = json.loads((out / "metrics.json").read_text())
    rows = {r["method"]: r for r in data["rows"] if r["command"] == "all"}
    assert set(rows) == {"plain", "structured (oracle tokens)"}
    assert all(r["num_failed"] == 0 for r in rows.values())  # constrained decoding: every answer parses
    answers = json.loads((out / "last.json").read_text())
    texts = [entry["text"] for key, entry in answers.items() if key != META_KEY]
    assert texts and all(parse_answer(t, structured.prompt.answer_blocks).error is None for t in texts)
    assert "structured answers: 0 of" in (out / "report.md").read_text()
