"""Evaluation: prediction files, the failure policy, tables, and tools/eval_planning.py end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planning.evaluate import (
    FAILURE_POLICY,
    GT_ROW_NAME,
    PLAUSIBLE_RANGE_M,
    MissingPredictionsError,
    RunLabelError,
    ScoreRow,
    assemble_trajectories,
    evaluate_methods,
    summarise_runs,
)
from planning.metrics import CONVENTIONS
from planning.predictions import (
    META_KEY,
    PredictionFileError,
    Predictions,
    load_predictions,
    save_predictions,
)
from planning.report import evaluation_markdown, metrics_table
from vla_world.data.planner_input import planner_input
from vla_world.data.records import CMD_LEFT
from vla_world.data.synthetic import synthetic_record
from vla_world.data.targets import planning_targets_of

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


def _targets(n: int = 3) -> list:
    return planning_targets_of(_records(n))


def test_missing_predictions_error_lists_them():
    preds = Predictions(trajectories={"tok0": np.zeros((6, 2))})
    with pytest.raises(MissingPredictionsError) as info:
        assemble_trajectories(_targets(8), preds, "cv")
    message = str(info.value)
    assert "7 of 8 samples" in message and "tok1, tok2, tok3, tok4, tok5" in message and "tok6" not in message
    assert "--allow-missing" in message


def test_allow_missing_scores_zero_trajectory_and_counts():
    wp = np.ones((6, 2))
    preds = Predictions(trajectories={"tok0": wp}, failures={"tok1": "no trajectory found"})
    assembled = assemble_trajectories(_targets(3), preds, "cv", allow_missing=True)
    np.testing.assert_array_equal(assembled.failed, [False, True, True])
    np.testing.assert_array_equal(assembled.missing, [False, False, True])
    np.testing.assert_array_equal(assembled.trajectories[0], wp)
    np.testing.assert_array_equal(assembled.trajectories[1:], 0.0)
    assert assembled.reasons == {"no trajectory found": 1, "missing from the file": 1}


def test_a_waypoint_beyond_the_plausibility_bound_fails():
    near, far = np.zeros((6, 2)), np.zeros((6, 2))
    near[-1] = (0.0, PLAUSIBLE_RANGE_M)  # exactly on the bound: still an answer
    far[-1] = (60.0, 80.0 + 1e-6)  # 100.0000008 m away
    preds = Predictions(trajectories={"tok0": near, "tok1": far, "tok2": np.ones((6, 2))})
    assembled = assemble_trajectories(_targets(3), preds, "cv")
    np.testing.assert_array_equal(assembled.failed, [False, True, False])
    np.testing.assert_array_equal(assembled.trajectories[1], 0.0)
    assert assembled.reasons == {"implausible waypoint": 1}


def test_golden_offset_gives_one_metre_l2_everywhere():
    # GT drives straight with no agents; a prediction shifted 1 m to the right is off by exactly
    # 1 m at every step, so L2 is 1.0 under every convention and there are no collisions.
    targets = _targets(3)
    shifted = Predictions(trajectories={t.sample_token: t.ego_future + np.array([1.0, 0.0]) for t in targets})
    result = evaluate_methods(targets, {"shifted": shifted}, with_gt=True, progress=False)
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


def test_failed_samples_keep_the_stand_still_l2_and_collide_at_every_counted_step():
    # a parked car 9 m ahead of an ego that stands still: standing still never touches it, so the
    # old policy (fail = stand still) scored a failure 0 % collisions
    records = [synthetic_record(speed=0.0, agents=[("car", 0.0, 9.0, 0.0, 0.0)], token=f"tok{i}") for i in range(2)]
    records[0].ego_future[:] = np.array([0.0, 1.0])  # a GT that creeps 1 m (L2 of standing still: 1 m)
    targets = planning_targets_of(records)
    failing = Predictions(failures={t.sample_token: "no trajectory found" for t in targets})
    standing = Predictions(trajectories={t.sample_token: np.zeros((6, 2)) for t in targets})
    result = evaluate_methods(targets, {"failing": failing, "standing": standing}, progress=False)
    for convention in CONVENTIONS:
        failing_row, standing_row = result.select(convention)
        for key in ("L2_1s", "L2_2s", "L2_3s", "L2_avg"):
            assert failing_row.metrics[key] == standing_row.metrics[key]
        assert standing_row.metrics["col_avg"] == 0.0
        assert failing_row.metrics["col_avg"] == 1.0  # no GT collision: every step counts
        assert (failing_row.num_failed, standing_row.num_failed) == (2, 0)
    assert result.failure_reasons == {"failing": {"no trajectory found": 2}}


def test_records_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"planning_targets\(record\)"):
        evaluate_methods(_records(2), {"x": Predictions()}, progress=False)


def test_stp3_original_needs_two_context_frames():
    # ST-P3's get_indices drops samples without the 2 past keyframes (t = -1.0, -0.5 s) in the
    # scene; the other conventions keep them. Record 0 has no past at all, record 1 only t = -0.5 s.
    records = _records(3)
    records[0].ego_past_mask[:] = False
    records[1].ego_past_mask[:] = [False, False, False, True]
    preds = Predictions(trajectories={r.sample_token: r.ego_future for r in records})
    result = evaluate_methods(planning_targets_of(records), {"gt": preds}, progress=False)
    counts = {c: result.select(c)[0].num_samples for c in CONVENTIONS}
    assert counts == {"uniad": 3, "stp3": 3, "stp3_original": 1, "vad": 3}


def test_per_command_rows_split_the_samples():
    records = _records(3)
    records[1].command = CMD_LEFT
    preds = Predictions(trajectories={r.sample_token: r.ego_future for r in records})
    result = evaluate_methods(planning_targets_of(records), {"gt": preds}, conventions=("uniad",), progress=False)
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
    cv = {r.sample_token: constant_velocity(planner_input(r)) for r in mini_records["val"]}
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


class _Source:
    """Stands in for vla_world.inference.TokenSource (only `label` is read by the tool)."""

    def __init__(self, label: str):
        self.label = label


def _fake_inference(monkeypatch, tmp_path, mini_world, seen: list):
    """Replace vla_world.inference by a stub: each checkpoint answers its GT shifted by its seed, one refusal."""
    import sys
    import types

    from planning.codec import format_trajectory

    def resolve_token_source(checkpoint, split, requested=None):
        if requested is None and checkpoint.endswith("oracle_trained"):
            raise ValueError(f"{checkpoint} was trained on oracle (ground-truth) tokens; pass --tokens oracle")
        return _Source("oracle (ground truth): defaults" if requested == "oracle" else f"token cache: {checkpoint}/{split}")

    def predict_split(checkpoint, records, source, dataroot, decoding, batch_size=8, guard=True, guard_choices=None):
        assert dataroot == str(mini_world)  # an online-trained planner reads its perception's images there
        seen.append((checkpoint, source.label, decoding, guard))
        if guard:  # the stub's guard replaces the second plan
            guard_choices.update({r.sample_token: int(i == 1) for i, r in enumerate(records)})
        digits = [c for c in checkpoint if c.isdigit()]  # run<k>/last answers with a k-metre offset
        shift = float(digits[-1]) if digits and "run" in checkpoint else 0.0
        texts = {r.sample_token: format_trajectory(r.ego_future + np.array([shift, 0.0])) for r in records}
        texts[records[0].sample_token] = "I would rather not drive."
        return texts

    def checkpoint_decoding(checkpoint, decoding):  # what "auto" means for a checkpoint without a plan head
        return "constrained" if decoding == "auto" else decoding

    stub = types.SimpleNamespace(predict_split=predict_split, resolve_token_source=resolve_token_source,
                                 checkpoint_decoding=checkpoint_decoding,
                                 check_planner_checkpoint=lambda checkpoint, tool: None)  # a stub has no state.json
    monkeypatch.setitem(sys.modules, "vla_world.inference", stub)


def test_eval_tool_checkpoint_hook(mini_world, tmp_path, monkeypatch):
    seen = []
    _fake_inference(monkeypatch, tmp_path, mini_world, seen)
    out = tmp_path / "e"
    assert _run("--dataroot", mini_world, "--checkpoint", tmp_path / "vla_tiny", "--checkpoint-name", "VLA-tiny",
                "--out", out, "--conventions", "uniad", "--results-md", tmp_path / "results.md") == 0
    data = json.loads((out / "metrics.json").read_text())
    row = next(r for r in data["rows"] if r["command"] == "all")
    assert row["method"] == "VLA-tiny" and row["num_failed"] == 1
    saved = load_predictions(out / "vla_tiny.json")  # raw answers kept for re-scoring, with their provenance
    assert len(saved.failures) == 1
    assert saved.meta["checkpoint"] == str(tmp_path / "vla_tiny") and saved.meta["token_source"] == seen[0][1]
    assert data["runs"][0]["token_source"] == f"token cache: {tmp_path / 'vla_tiny'}/val"  # the checkpoint's own source
    assert seen[0][2] == "auto"  # the default: the plan head where the checkpoint has one, else constrained
    guarded = f"constrained + collision guard (1 of {len(saved.tokens)} plans replaced)"  # the guard is on by default
    assert seen[0][3] and saved.meta["decoding"] == data["runs"][0]["decoding"] == guarded  # what auto resolved to
    for page in ((out / "report.md").read_text(), (tmp_path / "results.md").read_text()):
        assert f"`{tmp_path / 'vla_tiny'}`" in page and "token cache: " in page and "Split: `val`" in page
        assert f"decoding: {guarded}" in page
    # a hand-written ablation section after the marker survives the page's regeneration; the tables do not pile up
    from planning.report import ABLATIONS_MARKER

    results = tmp_path / "results.md"
    results.write_text(results.read_text() + f"\n{ABLATIONS_MARKER}\n\n## GRPO ablation\nhand-written\n")
    assert _run("--dataroot", mini_world, "--checkpoint", tmp_path / "vla_tiny", "--checkpoint-name", "VLA-tiny",
                "--out", out, "--conventions", "uniad", "--results-md", results) == 0
    page = results.read_text()
    assert page.endswith("## GRPO ablation\nhand-written\n") and page.count("## UniAD") == 1


def test_eval_tool_decoding_flag(mini_world, tmp_path, monkeypatch):
    seen = []
    _fake_inference(monkeypatch, tmp_path, mini_world, seen)
    assert _run("--dataroot", mini_world, "--checkpoint", tmp_path / "vla_tiny", "--decoding", "greedy", "--no-guard",
                "--out", tmp_path / "e", "--conventions", "uniad") == 0
    assert seen[-1][2:] == ("greedy", False) and "decoding: greedy\n" in (tmp_path / "e" / "report.md").read_text()
    with pytest.raises(SystemExit, match="give --checkpoint"):
        _run("--dataroot", mini_world, "--pred", "x.json", "--decoding", "greedy", "--out", tmp_path / "e2")
    with pytest.raises(SystemExit, match="give --checkpoint"):
        _run("--dataroot", mini_world, "--pred", "x.json", "--no-guard", "--out", tmp_path / "e2")


def test_eval_tool_oracle_tokens_only_by_name(mini_world, tmp_path, monkeypatch):
    seen = []
    _fake_inference(monkeypatch, tmp_path, mini_world, seen)
    checkpoint = tmp_path / "oracle_trained"
    with pytest.raises(SystemExit, match="--tokens oracle"):
        _run("--dataroot", mini_world, "--checkpoint", checkpoint, "--out", tmp_path / "e1", "--conventions", "uniad")
    assert _run("--dataroot", mini_world, "--checkpoint", checkpoint, "--checkpoint-name", "VLA-tiny", "--tokens",
                "oracle", "--out", tmp_path / "e2", "--conventions", "uniad") == 0
    data = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert data["methods"] == ["VLA-tiny (oracle tokens)"]
    assert data["runs"][0]["token_source"].startswith("oracle") and seen[-1][1].startswith("oracle")
    with pytest.raises(SystemExit, match="give --checkpoint"):
        _run("--dataroot", mini_world, "--pred", "x.json", "--tokens", "oracle", "--out", tmp_path / "e3")


def test_eval_tool_checkpoint_seeds_are_one_row(mini_world, tmp_path, monkeypatch):
    # three "seeds" answer GT + (0, 1, 2) m in x: L2 = 0, 1, 2 m at every answered step
    seen = []
    _fake_inference(monkeypatch, tmp_path, mini_world, seen)
    folders = [tmp_path / f"run{k}" / "last" for k in range(3)]
    (folders[2]).mkdir(parents=True)
    (folders[2] / "config.yaml").write_text("train:\n  seed: 5\n")
    out = tmp_path / "e"
    assert _run("--dataroot", mini_world, "--checkpoint", *folders, "--checkpoint-name", "VLA-tiny", "--out", out,
                "--conventions", "uniad") == 0
    data = json.loads((out / "metrics.json").read_text())
    assert [r["run"] for r in data["runs"]] == ["run 1", "run 2", "seed 5"]  # the seed from config.yaml where it exists
    assert [r["checkpoint"] for r in data["runs"]] == [str(f) for f in folders]
    # one file each: the first keeps <folder>.json (as for a single checkpoint), later ones add their parent
    assert [r["source"] for r in data["runs"]] == [str(out / name) for name in ("last.json", "run1_last.json", "run2_last.json")]
    agg = next(a for a in data["aggregates"] if a["command"] == "all")
    assert agg["num_runs"] == 3 and agg["failed_total"] == 3 and agg["failed_mean"] == 1.0
    # runs differ only in the offset (k m) of their answered samples, so the std is not 0 and equals
    # the sample std of the per-run values
    per_run = [r["metrics"]["L2_1s"] for r in data["rows"] if r["command"] == "all"]
    assert np.std(per_run, ddof=1) == pytest.approx(agg["std"]["L2_1s"]) and agg["std"]["L2_1s"] > 0.5
    assert "VLA-tiny (3 seeds)" in (out / "report.md").read_text()


# ---------------------------------------------------------------------------- seeds: mean ± std


def test_two_seeds_golden_mean_and_sample_std():
    # seed 0 answers GT + 1 m, seed 1 GT + 3 m (x): L2 = 1 and 3 at every step, so the row shows
    # mean 2 and sample std sqrt(((1-2)^2 + (3-2)^2) / (2 - 1)) = sqrt(2) = 1.41 (population std: 1)
    targets = _targets(3)
    seeds = [Predictions(trajectories={t.sample_token: t.ego_future + np.array([dx, 0.0]) for t in targets},
                         meta={"seed": seed}) for seed, dx in ((0, 1.0), (1, 3.0))]
    result = evaluate_methods(targets, {"Ego-MLP": seeds}, conventions=("uniad", "vad"), progress=False)
    assert [r.run for r in result.select("uniad")] == ["seed 0", "seed 1"]
    for convention in ("uniad", "vad"):
        (row,) = result.method_rows(convention)
        assert row.num_runs == 2 and row.num_samples == 3
        for key in ("L2_1s", "L2_2s", "L2_3s", "L2_avg"):
            assert row.mean[key] == pytest.approx(2.0) and row.std[key] == pytest.approx(np.sqrt(2.0))
        assert row.mean["col_avg"] == 0.0 and row.std["col_avg"] == 0.0
    line = metrics_table(result.method_rows("uniad")).splitlines()[2]
    assert line == ("| Ego-MLP (2 seeds) | 2.00 ± 1.41 | 2.00 ± 1.41 | 2.00 ± 1.41 | 2.00 ± 1.41 | 0.00 ± 0.00 "
                    "| 0.00 ± 0.00 | 0.00 ± 0.00 | 0.00 ± 0.00 | 3 | 0 |")


def test_failed_column_of_seeds_is_the_mean_per_run():
    targets = _targets(3)
    good = {t.sample_token: t.ego_future for t in targets}
    runs = [Predictions(trajectories=dict(good), meta={"seed": 0}),
            Predictions(trajectories={k: v for k, v in good.items() if k != "tok0"}, failures={"tok0": "no trajectory found"},
                        meta={"seed": 1})]
    result = evaluate_methods(targets, {"m": runs}, conventions=("uniad",), progress=False)
    (row,) = result.method_rows("uniad")
    assert (row.failed_mean, row.failed_total) == (0.5, 1)
    assert metrics_table([row]).splitlines()[2].endswith("| 3 | 0.5 |")
    assert result.failure_reasons == {"m [seed 1]": {"no trajectory found": 1}}


def test_a_seed_given_twice_is_refused():
    targets = _targets(2)
    same = Predictions(trajectories={t.sample_token: t.ego_future for t in targets}, meta={"seed": 0}, source="a.json")
    with pytest.raises(RunLabelError, match="a.json: seed 0"):
        evaluate_methods(targets, {"m": [same, same]}, progress=False)


def test_summarise_one_run_is_that_run():
    row = ScoreRow("cv", "uniad", "all", {k: 0.5 for k in ("L2_1s", "L2_2s", "L2_3s", "L2_avg", "col_1s", "col_2s",
                                                          "col_3s", "col_avg")}, 10, 10, 2, 0)
    summary = summarise_runs([row])
    assert summary.std is None and summary.mean == row.metrics and summary.failed_total == 2


# ---------------------------------------------------------------------------- provenance and metadata


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_metadata_round_trip_and_files_without_it(tmp_path, suffix):
    wp = np.zeros((6, 2))
    path = save_predictions(tmp_path / f"p{suffix}", {"a": wp}, meta={"seed": 2, "checkpoint": "ck/last"})
    preds = load_predictions(path)
    assert preds.meta == {"seed": 2, "checkpoint": "ck/last"} and set(preds.trajectories) == {"a"}
    assert preds.source == str(path)
    assert load_predictions(save_predictions(tmp_path / f"q{suffix}", {"a": wp})).meta == {}


def test_bad_metadata_names_the_file(tmp_path):
    path = tmp_path / "bad_meta.json"
    path.write_text(json.dumps({META_KEY: [1, 2], "a": [[0, 1]] * 6}))
    with pytest.raises(PredictionFileError, match="bad_meta.json.*__meta__"):
        load_predictions(path)


def test_report_records_provenance_and_policy():
    targets = _targets(2)
    preds = Predictions(trajectories={t.sample_token: t.ego_future for t in targets},
                        meta={"seed": 7, "checkpoint": "checkpoints/planning/last", "token_source": "token cache: x",
                              "decoding": "constrained"},
                        source="outputs/eval/last.json")
    result = evaluate_methods(targets, {"VLA": preds}, conventions=("uniad",), split="val", progress=False)
    page = evaluation_markdown(result, command="python tools/eval_planning.py --x")
    assert "Split: `val`" in page and "Command: `python tools/eval_planning.py --x`" in page
    assert ("- Run `VLA`: predictions `outputs/eval/last.json`, checkpoint `checkpoints/planning/last`, seed 7, "
            "token source: token cache: x, decoding: constrained\n") in page
    assert FAILURE_POLICY in page and "100 m" in FAILURE_POLICY


# ---------------------------------------------------------------------------- failing never helps, end to end


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_turning_predictions_into_failures_never_helps(mini_records, data):
    from planning.baselines import constant_velocity

    targets = planning_targets_of(mini_records["val"])
    failing = data.draw(st.sets(st.sampled_from([t.sample_token for t in targets]), min_size=1))
    answer_sets = {
        "cv": {r.sample_token: constant_velocity(planner_input(r)) for r in mini_records["val"]},  # any real answers
        # the GT pulled 30 % towards the origin: answers at least as close as standing still at every step
        "shrunk": {t.sample_token: 0.7 * t.ego_future for t in targets},
    }
    methods = {}
    for name, answers in answer_sets.items():
        methods[name] = Predictions(trajectories=dict(answers))
        methods[f"{name} broken"] = Predictions(trajectories={k: v for k, v in answers.items() if k not in failing},
                                                failures={k: "wrong number of points: 5 instead of 6" for k in failing})
    result = evaluate_methods(targets, methods, progress=False)
    for convention in CONVENTIONS:
        for command in ("all", "forward", "left", "right"):
            rows = {r.method: r.metrics for r in result.select(convention, command)}
            for name in answer_sets:
                keys = ("col_1s", "col_2s", "col_3s", "col_avg") + (("L2_1s", "L2_2s", "L2_3s", "L2_avg")
                                                                   if name == "shrunk" else ())
                for key in keys:
                    real, broken = rows[name][key], rows[f"{name} broken"][key]
                    assert np.isnan(real) or broken >= real - 1e-9, (name, convention, command, key)
