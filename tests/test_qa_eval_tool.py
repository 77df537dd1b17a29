"""tools/eval_qa.py end to end on a predictions file; tools/show_examples.py prints examples."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import yaml
from tool_helpers import load_tool

from vla_world.data.synthetic import synthetic_record

eval_qa = load_tool("eval_qa")
show_examples = load_tool("show_examples")


def fake_records(dataroot, version=None, split="val", **_):
    braking = np.stack([np.zeros(6), [2.0, 3.5, 4.5, 5.0, 5.2, 5.3]], 1).astype(np.float32)
    return [synthetic_record(agents=[("car", 1.0, 15.0, 0.0, 4.0)], token=f"{split}0", scene=f"scene-{split}"),
            replace(synthetic_record(agents=[("pedestrian", 3.0, 8.0, -1.2, 0.0)], token=f"{split}1", scene=f"scene-{split}"),
                    ego_future=braking)]


@pytest.fixture
def synthetic_data(monkeypatch):
    monkeypatch.setattr("vla_world.data.load_records", fake_records)


def test_eval_qa_scores_a_predictions_file(synthetic_data, tmp_path):
    refs = tmp_path / "refs.json"
    assert eval_qa.main(["--write-references", str(refs)]) == 0
    answers = json.loads(refs.read_text())
    structured = sorted(k for k in answers if "/qa_structured/" in k)
    answers[structured[0]] = '{"description": "oops", "action": '  # malformed JSON: a failure, not a crash
    dropped = min(k for k in answers if "/qa_perception/" in k)
    del answers[dropped]
    answers["nonexistent/id"] = "hello"
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(answers))

    out = tmp_path / "report"
    assert eval_qa.main(["--predictions", str(predictions), "--no-meteor", "--out", str(out)]) == 0
    report = json.loads((out / "qa_metrics.json").read_text())
    assert report["n_missing"] == 1 and report["unknown_ids"] == ["nonexistent/id"]
    kinds = report["per_kind"]
    assert kinds["qa_action"]["action"]["accuracy"] == 1.0 and kinds["qa_action"]["reason_f1"] == 1.0
    assert kinds["qa_attention"]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    n_structured = kinds["qa_structured"]["n"]
    assert kinds["qa_structured"]["action"]["accuracy"] == pytest.approx((n_structured - 1) / n_structured)
    assert [f["id"] for f in kinds["qa_structured"]["failures"]] == [structured[0]]
    assert "invalid JSON" in kinds["qa_structured"]["failures"][0]["error"]
    assert kinds["qa_perception"]["missing"] == 1
    markdown = (out / "qa_metrics.md").read_text()
    assert "| qa_action | predictions |" in markdown and "METEOR: unavailable" in markdown
    assert "| overall | prior |" in markdown and "| concise | prior |" in markdown
    assert "| overall | command-copy |" in markdown and "| qa_action | command-copy |" in markdown
    assert report["command_copy"]["n_examples"] == report["n_examples"]
    run = report["run"]
    assert run["split"] == "val" and run["seed"] == 0 and run["answers_row"] == "predictions"
    assert run["tokens"] == f"n/a (answers read from {predictions})" and run["checkpoint"] is None
    assert run["command"].startswith("python tools/eval_qa.py --predictions ")
    assert "* split: `val`" in markdown and "* command: `python tools/eval_qa.py --predictions" in markdown
    assert set(report["per_granularity"]) == {"concise", "detailed"}
    assert sum(g["n"] for g in report["per_granularity"].values()) == report["n_examples"]


def test_eval_qa_scores_the_prior_next_to_the_answers(synthetic_data, tmp_path):
    from vla_world.data import load_records
    from vla_world.qa import build_stage_examples

    refs = tmp_path / "refs.json"
    assert eval_qa.main(["--write-references", str(refs)]) == 0
    out = tmp_path / "report"
    assert eval_qa.main(["--predictions", str(refs), "--no-meteor", "--out", str(out)]) == 0
    report = json.loads((out / "qa_metrics.json").read_text())
    # Two train samples, a cruising one and a braking one. Where each asks one question of a group,
    # the two answers tie and the prior takes the first (cruising) sample's answer, for both val samples.
    first = [e for e in build_stage_examples("instruct", load_records("x", split="train")) if e.sample_token == "train0"]
    expected = {f"{e.kind}/{e.meta['granularity']}": e.answer for e in first if e.kind != "qa_perception"}
    assert {k: v for k, v in report["prior_answers"].items() if not k.startswith("qa_perception")} == expected
    actions = {e.meta["action"] for e in first if "action" in e.meta}
    val = build_stage_examples("instruct", load_records("x", split="val"))
    val_actions = [e.meta["action"] for e in val if e.kind == "qa_action" and e.meta["granularity"] == "concise"]
    assert len(val_actions) == 2 and actions == {val_actions[0]} and val_actions[0] != val_actions[1]
    prior = report["prior"]["per_kind"]["qa_action"]["action"]
    assert prior["accuracy"] == 0.5 and report["per_kind"]["qa_action"]["action"]["accuracy"] == 1.0


def test_max_examples_spreads_over_the_split():
    assert eval_qa.spread_subset(list(range(10)), 4) == [0, 2, 5, 7]
    assert eval_qa.spread_subset(list(range(3)), 5) == [0, 1, 2]
    with pytest.raises(SystemExit, match="--max-examples must be >= 1"):
        eval_qa.spread_subset(list(range(3)), 0)


def test_eval_qa_rejects_a_bad_predictions_file(synthetic_data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"some/id": 3}))
    with pytest.raises(SystemExit, match="bad.json: answer of 'some/id'.*not a string"):
        eval_qa.main(["--predictions", str(bad), "--no-meteor", "--out", str(tmp_path / "o")])


def test_show_examples_prints_every_stage(synthetic_data, capsys):
    assert show_examples.main(["--sample", "1", "--per-kind", "1"]) == 0
    text = capsys.readouterr().out
    for head in ("[align/scene_caption]", "[instruct/qa_action detailed]", "[motion/agent_motion focus_track_id=0]", "[planning/planning]"):
        assert head in text
    with pytest.raises(SystemExit, match="out of range; the split has 2 samples"):
        show_examples.main(["--sample", "5"])


@pytest.mark.slow
def test_eval_qa_on_the_mini_world(request, tmp_path):
    root = str(request.getfixturevalue("mini_world"))
    refs = tmp_path / "refs.json"
    assert eval_qa.main(["--dataroot", root, "--write-references", str(refs)]) == 0
    out = tmp_path / "report"
    assert eval_qa.main(["--dataroot", root, "--predictions", str(refs), "--out", str(out)]) == 0
    report = json.loads((out / "qa_metrics.json").read_text())
    assert report["n_missing"] == 0 and report["overall"]["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert report["overall"]["action"]["accuracy"] == 1.0


def test_questions_about_undetected_agents_are_not_asked():
    from model_helpers import fake_tokens

    from vla_world.qa import build_stage_examples

    records = fake_records("x")
    examples = build_stage_examples("instruct", records)
    tokens = {r.sample_token: fake_tokens(r) for r in records}
    tokens["val1"] = replace(tokens["val1"], agent_track_ids=tokens["val1"].agent_track_ids + 100)  # val1's agent missed
    kept = eval_qa.askable(examples, tokens)
    lost = [e for e in examples if e not in kept]
    assert lost and all(e.sample_token == "val1" and e.focus_track_id is not None for e in lost)
    assert len(kept) + len(lost) == len(examples)
    with pytest.raises(SystemExit, match="no perception tokens for sample val0"):
        eval_qa.askable(examples, {})


def answer_with_references(monkeypatch) -> dict:
    """Stand in for the model: every askable question gets its reference answer; records the tokens used."""
    seen = {}

    def fake_generate(args, records, examples, tokens):
        seen["tokens"] = tokens
        return {e.example_id: e.answer for e in examples}

    monkeypatch.setattr(eval_qa, "generate_answers", fake_generate)
    return seen


def checkpoint(tmp_path, data: dict, train: dict | None = None):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": data, "train": train or {"seed": 0}}))
    return folder


def test_eval_qa_refuses_a_silent_oracle(synthetic_data, tmp_path):
    folder = checkpoint(tmp_path, {"token_source": "oracle"})
    with pytest.raises(SystemExit, match="trained on oracle .*--tokens oracle"):
        eval_qa.main(["--checkpoint", str(folder), "--no-meteor", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="--tokens chooses the perception tokens a --checkpoint answers from"):
        eval_qa.main(["--predictions", "p.json", "--tokens", "oracle"])


def test_oracle_tokens_only_by_name_and_the_row_says_so(synthetic_data, monkeypatch, tmp_path):
    answer_with_references(monkeypatch)
    folder = checkpoint(tmp_path, {"token_source": "oracle"})
    out = tmp_path / "report"
    assert eval_qa.main(["--checkpoint", str(folder), "--tokens", "oracle", "--no-meteor", "--out", str(out)]) == 0
    report = json.loads((out / "qa_metrics.json").read_text())
    assert report["run"]["answers_row"] == "model (oracle tokens)" and report["run"]["tokens"].startswith("oracle")
    assert report["run"]["checkpoint"] == str(folder)
    assert "| overall | model (oracle tokens) |" in (out / "qa_metrics.md").read_text()


def test_default_tokens_are_the_checkpoints_own_cache(synthetic_data, monkeypatch, tmp_path):
    from model_helpers import fake_tokens

    from perception.tokens import save_token_cache

    seen = answer_with_references(monkeypatch)
    records = fake_records("x", split="val")
    (tmp_path / "tokens").mkdir()
    save_token_cache(tmp_path / "tokens" / "val.safetensors", {r.sample_token: fake_tokens(r) for r in records})
    folder = checkpoint(tmp_path, {"token_source": "cache", "token_cache": str(tmp_path / "tokens")})
    out = tmp_path / "report"
    assert eval_qa.main(["--checkpoint", str(folder), "--no-meteor", "--out", str(out)]) == 0
    report = json.loads((out / "qa_metrics.json").read_text())
    assert report["run"]["tokens"] == f"token cache: {tmp_path / 'tokens' / 'val.safetensors'}"
    assert report["run"]["answers_row"] == "model" and set(seen["tokens"]) == {"val0", "val1"}
    assert report["overall"]["action"]["accuracy"] == 1.0


def test_eval_qa_rebuilds_examples_with_the_checkpoints_settings(synthetic_data, tmp_path):
    from vla_world.data import load_records
    from vla_world.qa import StageDataConfig, build_stage_examples

    folder = checkpoint(tmp_path, {"token_source": "oracle", "qa": {"max_range_m": 5.0, "max_prediction_questions": 0}},
                        {"seed": 4})
    args = eval_qa.build_parser().parse_args(["--checkpoint", str(folder)])
    settings = eval_qa.run_settings(args)
    assert settings.qa == StageDataConfig(max_range_m=5.0, max_prediction_questions=0) and settings.seed == 4
    examples = build_stage_examples("instruct", load_records("x", split="val"), seed=4, config=settings.qa)
    assert not any(e.kind == "qa_prediction" for e in examples)  # the saved settings took effect
    args = eval_qa.build_parser().parse_args(["--checkpoint", str(folder), "--max-range-m", "30", "--seed", "1"])
    assert eval_qa.run_settings(args).qa.max_range_m == 30.0 and eval_qa.run_settings(args).seed == 1
    defaults = eval_qa.run_settings(eval_qa.build_parser().parse_args(["--predictions", "p.json"]))
    assert defaults.qa == StageDataConfig() and defaults.seed == 0


def test_a_bad_saved_qa_setting_names_the_field(tmp_path):
    folder = checkpoint(tmp_path, {"qa": {"max_range_m": -1.0}})
    with pytest.raises(SystemExit, match="data.qa: max_range_m must be > 0"):
        eval_qa.run_settings(eval_qa.build_parser().parse_args(["--checkpoint", str(folder)]))
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"qa": {"range": 3}}}))
    with pytest.raises(SystemExit, match=r"unknown field\(s\) \['range'\]"):
        eval_qa.run_settings(eval_qa.build_parser().parse_args(["--checkpoint", str(folder)]))
