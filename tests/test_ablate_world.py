"""tools/ablate_world.py (issue 10 part 5): the two arms differ only where the claim says, and the tool runs end to end."""

from __future__ import annotations

import json

import pytest
import torch
from tool_helpers import ROOT, load_tool
from world_helpers import random_frame_codes

torch.set_num_threads(1)
SMALL = ["--set", "data.max_examples=4", "--set", "train.batch_size=2", "--set", "model.hidden_size=32",
         "--set", "model.intermediate_size=64", "--set", "model.num_layers=1", "--set", "model.vocab_size=600"]


def _value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def _sets(cmd: list[str]) -> set[str]:
    return {cmd[i + 1] for i, item in enumerate(cmd) if item == "--set"}


def test_the_arms_differ_only_in_init_and_answer_form():
    tool = load_tool("ablate_world")
    args = tool.parse_args(["--world-init", "W", "--motion-init", "M", "--token-cache", "T", "--frame-codes", "F"])
    assert args.seeds == [0, 1, 2] and args.split == "test"
    world, plain = (tool.train_command(args, arm, 1) for arm in tool.ARMS)
    assert _value(world, "--init") == "W" and _value(plain, "--init") == "M"
    assert _value(world, "--config") == _value(plain, "--config") == "configs/planning/tiny.yaml"
    common = {"train.seed=1", "data.token_source=cache", "data.token_cache=T", "data.frame_codes=F"}
    assert _sets(world) - _sets(plain) == {"data.answer.structured=true", "data.answer.visual=true"}
    assert _sets(plain) - _sets(world) == {"data.answer.structured=false"}
    assert common <= _sets(world) & _sets(plain)
    assert _value(tool.eval_command(args, tool.ARMS[0], 1), "--split") == "test"


def test_a_run_is_reused_only_when_finished(tmp_path):
    tool = load_tool("ablate_world")
    folder = tmp_path / "run"
    assert not tool.finished(folder, None)
    (folder / "last").mkdir(parents=True)
    state = {"progress": {"step": 60}, "total_steps": 120}
    (folder / "last" / "state.json").write_text(json.dumps(state))
    assert not tool.finished(folder, None) and tool.finished(folder, 2)
    state["progress"]["step"] = 120
    (folder / "last" / "state.json").write_text(json.dumps(state))
    assert tool.finished(folder, None)
    tool.wait_for_live_run(folder)  # no lock: returns at once
    (folder / ".lock").write_text(json.dumps({"pid": 2 ** 22 + 7}))  # a holder that is not running
    tool.wait_for_live_run(folder, poll_s=0.01)


def test_a_score_is_reused_only_when_newer_than_the_run(tmp_path):
    import os

    tool = load_tool("ablate_world")
    run, preds = tmp_path / "run", tmp_path / "eval" / "last.json"
    (run / "last").mkdir(parents=True)
    (run / "last" / "state.json").write_text("{}")
    assert not tool.scored(preds, run)
    preds.parent.mkdir()
    preds.write_text("{}")
    os.utime(run / "last" / "state.json", (1_000, 1_000))
    assert tool.scored(preds, run)
    os.utime(preds, (500, 500))  # the run was trained again after it was scored
    assert not tool.scored(preds, run)


def test_inspect_reads_prior_copies_actions_and_visual_codes(mini_world, tmp_path, capsys):
    """Two answers: one the CTRA prior itself with the next frame's codes, one off the prior with wrong codes."""
    from perception.frame_codes import load_frame_codes
    from planning.codec import format_trajectory
    from planning.kinematic import ctra_prior
    from planning.predictions import META_KEY
    from vla_world.data import load_records
    from vla_world.data.planner_input import planner_input

    frames = random_frame_codes(mini_world, tmp_path / "frames", splits=("val",))
    records = [r for r in load_records(mini_world, split="val", progress=False) if r.has_next_frame][:2]
    codes, _ = load_frame_codes(frames / "val.safetensors")

    def answer(record, offset: float, right: bool) -> str:
        visual = codes[record.next_sample_token] if right else (codes[record.next_sample_token] + 1) % 32
        trajectory = format_trajectory(ctra_prior(planner_input(record)) + offset)
        return (f"<visual>{''.join(f'<vis_{c}>' for c in visual)}</visual><action>turn left</action>"
                f"<answer>{trajectory}</answer>")
    preds = {META_KEY: {}, records[0].sample_token: {"text": answer(records[0], 0.0, True)},
             records[1].sample_token: {"text": answer(records[1], 0.5, False)}}
    (tmp_path / "p.json").write_text(json.dumps(preds))
    argv = ["--split", "val", "--dataroot", str(mini_world), "--frame-codes", str(frames), "--inspect",
            str(tmp_path / "p.json")]
    assert load_tool("ablate_world").main(argv) == 0
    out = capsys.readouterr().out
    assert "equal to the CTRA prior: 0.500" in out and "{'turn left': 2}" in out
    assert "code accuracy vs the next keyframe: 0.500 over 2 samples" in out


@pytest.mark.slow  # minutes: a world stage, two planning runs, three evaluations; the fast tests above check the commands
def test_ablation_runs_end_to_end_at_smoke_size(mini_world, tmp_path):
    frames = random_frame_codes(mini_world, tmp_path / "frames")
    world = ["--stage", "world", "--config", str(ROOT / "configs/world/tiny.yaml"), "--dataroot", str(mini_world),
             "--out", str(tmp_path / "world"), "--init", "none", "--max-steps", "2", "--set", "data.token_source=oracle",
             "--set", f"data.frame_codes={frames}", *SMALL]
    assert load_tool("train").main(world) == 0
    out = tmp_path / "ablation"
    argv = ["--seeds", "0", "--split", "val", "--dataroot", str(mini_world), "--world-init", str(tmp_path / "world" / "last"),
            # smoke: one start for both arms (a fresh one would train a tokenizer first)
            "--motion-init", str(tmp_path / "world" / "last"), "--token-cache", "oracle", "--frame-codes", str(frames),
            "--checkpoints", str(tmp_path / "runs"), "--out", str(out), "--max-steps", "2", "--jobs", "1", "--quiet", *SMALL]
    assert load_tool("ablate_world").main(argv) == 0
    metrics = json.loads((out / "summary" / "metrics.json").read_text())
    rows = {r["method"]: r for r in metrics["rows"] if r["command"] == "all"}
    assert set(rows) == {arm.name for arm in load_tool("ablate_world").ARMS}
    assert all(r["num_failed"] == 0 for r in rows.values())  # constrained decoding: every answer parses
    answers = json.loads((out / "eval-world-structured-seed0" / "last.json").read_text())
    texts = [v["text"] for k, v in answers.items() if k != "__meta__"]
    assert texts and all("<visual>" in t and t.count("<vis_") == 6 for t in texts)  # world_helpers: 6 codes per frame
    # the finished runs are reused: a second call trains nothing (the training logs are not rewritten)
    logs = {p: p.read_text() for p in (out / "logs").glob("train-*.log")}
    (out / "logs" / "train-plain-seed0.log").write_text("kept")
    assert load_tool("ablate_world").main(argv) == 0
    assert len(logs) == 2 and (out / "logs" / "train-plain-seed0.log").read_text() == "kept"
