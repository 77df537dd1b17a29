"""Evaluation: prediction files, the failure policy, tables, and tools/eval_planning.py end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from planning.evaluate import (
    CONVENTIONS,
    GT_ROW_NAME,
    MissingPredictionsError,
    ScoreRow,
    assemble_trajectories,
    evaluate_methods,
)
from planning.predictions import (
    PredictionFileError,
    Predictions,
    load_predictions,
    save_predictions,
)
from planning.report import metrics_table
from vla_world.data.records import CMD_LEFT
from vla_world.data.synthetic import synthetic_record

GOOD_TEXT = "<traj_start>[(0.00,1.00),(0.00,2.00),(0.00,3.00),(0.00,4.00),(0.00,5.00),(0.00,6.00)]<traj_end>"


# ---------------------------------------------------------------------------- prediction files


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_prediction_file_round_trip(tmp_path, suffix):
    wp = np.arange(12.0).reshape(6, 2) / 3
    path = save_predictions(tmp_path / f"p{suffix}", {"a": wp}, texts={"a": "raw", "b": GOOD_TEXT, "c": "I refuse"})
    preds = load_predictions(path)
    np.testing.assert_allclose(preds.trajectories["a"], wp, atol=1e-4)
    np.testing.assert_allclose(preds.trajectories["b"][:, 1], [1, 2, 3, 4, 5, 6])
    assert preds.failures == {"c": "no trajectory found"}
    assert preds.texts["a"] == "raw"


def test_short_json_form_and_nonfinite_entries(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"a": [[0, 1]] * 6, "b": {"trajectory": [[0, 1]] * 5 + [[float("nan"), 1]]}}))
    preds = load_predictions(path)
    assert set(preds.trajectories) == {"a"} and preds.failures == {"b": "non-finite value"}


@pytest.mark.parametrize("content, message", [
    ({"a": [[0, 1]] * 5}, "shape (5, 2)"),
    ({"a": {"score": 1}}, "'trajectory' and/or 'text'"),
    ({"a": {"text": 3}}, "'text' must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_malformed_prediction_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PredictionFileError, match="bad.json") as info:
        load_predictions(path)
    assert message in str(info.value)


def test_duplicate_tokens_in_npz_are_an_error(tmp_path):
    path = tmp_path / "dup.npz"
    np.savez(path, tokens=np.array(["a", "a"]), trajectories=np.zeros((2, 6, 2)))
    with pytest.raises(PredictionFileError, match="dup.npz.*appears twice"):
        load_predictions(path)


# ---------------------------------------------------------------------------- failure policy


def _records(n: int = 3) -> list:
    return [synthetic_record(speed=5.0 + i, token=f"tok{i}") for i in range(n)]


def test_missing_predictions_error_lists_them():
    records = _records(8)
    preds = Predictions(trajectories={"tok0": np.zeros((6, 2))})
    with pytest.raises(MissingPredictionsError) as info:
        assemble_trajectories(records, preds, "cv")
    message = str(info.value)
    assert "7 of 8 samples" in message and "tok1, tok2, tok3, tok4, tok5" in message and "tok6" not in message
    assert "--allow-missing" in message


def test_allow_missing_scores_zero_trajectory_and_counts():
    records = _records(3)
    wp = np.ones((6, 2))
    preds = Predictions(trajectories={"tok0": wp}, failures={"tok1": "no trajectory found"})
    assembled = assemble_trajectories(records, preds, "cv", allow_missing=True)
    np.testing.assert_array_equal(assembled.failed, [False, True, True])
    np.testing.assert_array_equal(assembled.missing, [False, False, True])
    np.testing.assert_array_equal(assembled.trajectories[0], wp)
    np.testing.assert_array_equal(assembled.trajectories[1:], 0.0)


def test_golden_offset_gives_one_metre_l2_everywhere():
    # GT drives straight with no agents; a prediction shifted 1 m to the right is off by exactly
    # 1 m at every step, so L2 is 1.0 under every convention and there are no collisions.
    records = _records(3)
    shifted = Predictions(trajectories={r.sample_token: r.ego_future + np.array([1.0, 0.0]) for r in records})
    result = evaluate_methods(records, {"shifted": shifted}, with_gt=True, progress=False)
    for convention in CONVENTIONS:
        shifted_row, gt_row = result.select(convention)
        assert shifted_row.method == "shifted" and gt_row.method == GT_ROW_NAME
        for key in ("L2_1s", "L2_2s", "L2_3s", "L2_avg"):
            assert shifted_row.metrics[key] == pytest.approx(1.0, abs=1e-6)
            assert gt_row.metrics[key] == 0.0
        assert shifted_row.metrics["col_avg"] == 0.0 and shifted_row.num_samples == 3
    # No record has a left/right command: those breakdown rows are n/a, not zero.
    left = result.select("uniad", "left")[0]
    assert left.num_records == 0 and np.isnan(left.metrics["L2_avg"])
    assert "n/a" in metrics_table([left])


def test_failed_samples_score_exactly_like_standing_still():
    records = _records(3)
    failing = Predictions(failures={r.sample_token: "no trajectory found" for r in records})
    standing = Predictions(trajectories={r.sample_token: np.zeros((6, 2)) for r in records})
    result = evaluate_methods(records, {"failing": failing, "standing": standing}, progress=False)
    for convention in CONVENTIONS:
        failing_row, standing_row = result.select(convention)
        assert failing_row.metrics == standing_row.metrics
        assert (failing_row.num_failed, standing_row.num_failed) == (3, 0)
    assert result.failure_reasons["failing"] == {"no trajectory found": 3}


def test_stp3_original_needs_two_context_frames():
    # ST-P3's get_indices drops samples without the 2 past keyframes (t = -1.0, -0.5 s) in the
    # scene; the other conventions keep them. Record 0 has no past at all, record 1 only t = -0.5 s.
    records = _records(3)
    records[0].ego_past_mask[:] = False
    records[1].ego_past_mask[:] = [False, False, False, True]
    preds = Predictions(trajectories={r.sample_token: r.ego_future for r in records})
    result = evaluate_methods(records, {"gt": preds}, progress=False)
    counts = {c: result.select(c)[0].num_samples for c in CONVENTIONS}
    assert counts == {"uniad": 3, "stp3": 3, "stp3_original": 1, "vad": 3}


def test_per_command_rows_split_the_samples():
    records = _records(3)
    records[1].command = CMD_LEFT
    preds = Predictions(trajectories={r.sample_token: r.ego_future for r in records})
    result = evaluate_methods(records, {"gt": preds}, conventions=("uniad",), progress=False)
    counts = {r.command: r.num_samples for r in result.select("uniad", "forward") + result.select("uniad", "left")}
    assert counts == {"forward": 2, "left": 1}


def test_table_row_golden():
    metrics = {"L2_1s": 0.414, "L2_2s": 1.0, "L2_3s": 2.5, "L2_avg": 1.305, "col_1s": 0.0, "col_2s": 0.0125,
               "col_3s": 0.5, "col_avg": 0.170833}
    row = ScoreRow("Kinematic", "uniad", "left", metrics, num_samples=80, num_records=81, num_failed=2, num_missing=0)
    lines = metrics_table([row], label_command=True).splitlines()
    assert lines[0].startswith("| Method | L2 1s (m) |") and len(lines) == 3
    assert lines[2] == "| Kinematic (turn left) | 0.41 | 1.00 | 2.50 | 1.30 | 0.00 | 1.25 | 50.00 | 17.08 | 80 | 2 |"


# ---------------------------------------------------------------------------- tool end to end


@pytest.fixture(scope="module")
def val_predictions(mini_records, tmp_path_factory):
    """Constant-velocity predictions for the tiny world's val split, as JSON and NPZ."""
    from planning.baselines import constant_velocity

    folder = tmp_path_factory.mktemp("preds")
    cv = {r.sample_token: constant_velocity(r) for r in mini_records["val"]}
    save_predictions(folder / "cv.json", cv)
    save_predictions(folder / "cv_copy.npz", cv)
    return folder, cv


def _run(*argv) -> int:
    from tools.eval_planning import main

    return main([*map(str, argv), "--quiet"])


def test_eval_tool_two_files_gt_row_and_outputs(mini_world, val_predictions, tmp_path):
    folder, _ = val_predictions
    out, results = tmp_path / "eval", tmp_path / "results.md"
    assert _run("--dataroot", mini_world, "--pred", folder / "cv.json", folder / "cv_copy.npz", "--names", "Constant velocity",
                "CV copy", "--with-gt", "--out", out, "--results-md", results) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["methods"] == ["Constant velocity", "CV copy", GT_ROW_NAME]
    rows = {(r["convention"], r["command"], r["method"]): r for r in data["rows"]}
    for convention in CONVENTIONS:
        first, second = rows[(convention, "all", "Constant velocity")], rows[(convention, "all", "CV copy")]
        gt = rows[(convention, "all", GT_ROW_NAME)]
        assert first["metrics"] == pytest.approx(second["metrics"], abs=1e-3)  # JSON and NPZ agree
        assert gt["metrics"]["L2_avg"] == 0.0 and gt["metrics"]["col_avg"] == 0.0
        assert first["num_failed"] == 0
    with (out / "metrics.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(data["rows"]) == 4 * 4 * 3
    report = (out / "report.md").read_text()
    assert "## ST-P3 (original)" in report and "| CV copy |" in report and "per command" in report
    headline = results.read_text()
    for heading in ("## UniAD", "## ST-P3", "## ST-P3 (original)", "## VAD", "Split: `val`", "Command: `"):
        assert heading in headline


def test_eval_tool_missing_and_unparseable(mini_world, val_predictions, tmp_path):
    _, cv = val_predictions
    tokens = sorted(cv)
    partial = save_predictions(tmp_path / "partial.json", {t: cv[t] for t in tokens[2:]},
                               texts={tokens[2]: "raw", tokens[3]: "I cannot see the road."})
    with pytest.raises(SystemExit, match=f"2 of {len(tokens)} samples have no prediction"):
        _run("--dataroot", mini_world, "--pred", partial, "--out", tmp_path / "e1")
    assert _run("--dataroot", mini_world, "--pred", partial, "--allow-missing", "--out", tmp_path / "e2",
                "--conventions", "uniad") == 0
    data = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    row = next(r for r in data["rows"] if r["command"] == "all")
    # tokens[3] has a trajectory AND text: the trajectory wins, so only the 2 missing ones fail.
    assert row["num_failed"] == 2 and row["num_missing"] == 2
    text_only = save_predictions(tmp_path / "texts.json", {t: cv[t] for t in tokens[1:]}, texts={tokens[0]: "no idea"})
    assert _run("--dataroot", mini_world, "--pred", text_only, "--out", tmp_path / "e3", "--conventions", "uniad") == 0
    data = json.loads((tmp_path / "e3" / "metrics.json").read_text())
    assert next(r for r in data["rows"] if r["command"] == "all")["num_failed"] == 1
    assert data["failure_reasons"] == {"texts": {"no trajectory found": 1}}
    assert "no trajectory found: 1" in (tmp_path / "e3" / "report.md").read_text()


def test_eval_tool_checkpoint_hook(mini_world, tmp_path, monkeypatch):
    import sys
    import types

    from planning.codec import format_trajectory

    def predict_split(checkpoint, records, dataroot):  # stands in for vla_world.inference.predict_split
        assert checkpoint == str(tmp_path / "vla_tiny")
        assert dataroot == str(mini_world)  # an online-trained planner reads its perception's images there
        texts = {r.sample_token: format_trajectory(r.ego_future) for r in records}
        texts[records[0].sample_token] = "I would rather not drive."
        return texts

    monkeypatch.setitem(sys.modules, "vla_world.inference", types.SimpleNamespace(predict_split=predict_split))
    out = tmp_path / "e"
    assert _run("--dataroot", mini_world, "--checkpoint", tmp_path / "vla_tiny", "--checkpoint-name", "VLA-tiny",
                "--out", out, "--conventions", "uniad") == 0
    row = next(r for r in json.loads((out / "metrics.json").read_text())["rows"] if r["command"] == "all")
    assert row["method"] == "VLA-tiny" and row["num_failed"] == 1
    assert len(load_predictions(out / "vla_tiny.json").failures) == 1  # raw answers kept for re-scoring
