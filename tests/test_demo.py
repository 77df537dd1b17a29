"""The whole `make demo` path at the smallest size: every tool, in order, on a fresh 2-scene world.

About 2.5 minutes on the 2-core CPU: the one test that proves the demo a new user runs works end to end.
"""

from __future__ import annotations

import json

from tools import demo

EXPECTED_STEPS = ["world", "summary", "preview", "baselines", "perception", "tokens-train", "tokens-val",
                  "tokens-test", "frame_tokenizer", "frame-codes-train", "frame-codes-val", "frame-codes-test",
                  "align", "instruct", "motion", "world-stage", "planning", "planning-seed1", "grpo", "grpo-answers",
                  "evaluate", "world-eval", "world-pictures", "readme", "qa", "pictures"]


def test_demo_smoke_runs_every_step_and_writes_every_product(tmp_path):
    out, results, readme = tmp_path / "out", tmp_path / "results.md", tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\n<!-- results:end -->\n")
    assert demo.main(["--smoke", "--data", str(tmp_path / "world"), "--out", str(out),
                      "--checkpoints", str(tmp_path / "ck"), "--cache", str(tmp_path / "cache"),
                      "--seeds", "0", "1", "--results-md", str(results), "--readme", str(readme)]) == 0
    assert list(json.loads((out / "demo_timings.json").read_text())) == [*EXPECTED_STEPS, "wall"]
    table = results.read_text()
    assert "`test`" in table and "held-out" in table  # reported on the held-out split, and says so
    for heading in ("## UniAD", "## ST-P3", "## ST-P3 (original)", "## VAD"):
        assert heading in table
    for row in ("| Constant velocity |", "| Kinematic |", "| CTRA prior |", "| Ego-MLP", "| VLA-tiny + GRPO"):
        assert table.count(row) == 4, row
    assert table.count("| VLA-tiny") == 8  # the planning seeds' row and the GRPO row, per convention
    assert "| VLA-tiny" in readme.read_text() and "`test`" in readme.read_text()
    qa = json.loads((out / "qa" / "qa_metrics.json").read_text())
    assert qa["n_examples"] == 4 and qa["n_missing"] == 0
    assert (out / "sample_preview.png").stat().st_size > 10_000
    assert len(list((out / "bev").glob("*.gif"))) == 1 and len(list((out / "bev").rglob("*.png"))) == 1
    assert {p.name for p in (tmp_path / "cache" / "frames").glob("*.safetensors")} == \
        {"train.safetensors", "val.safetensors", "test.safetensors"}
    for stage in ("perception", "frame_tokenizer", "align", "instruct", "motion", "planning", "grpo"):
        assert (tmp_path / "ck" / stage / "last" / "model.safetensors").is_file()
    # planning fine-tuned the demo's perception (online) on the train split's cached frozen features
    assert (tmp_path / "ck" / "planning" / "last" / "perception" / "model.safetensors").is_file()
    assert list((tmp_path / "world" / ".vla_world_cache").glob("features_train_*.safetensors"))
