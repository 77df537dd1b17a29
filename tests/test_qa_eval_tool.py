"""tools/eval_qa.py end to end on a predictions file; tools/show_examples.py prints examples."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vla_world.data.synthetic import synthetic_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import eval_qa
import show_examples


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
    assert "| qa_action |" in markdown and "METEOR: unavailable" in markdown


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
