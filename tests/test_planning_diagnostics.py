"""tools/diagnostics/copy_stats.py: counts answers that copy the CTRA prior (golden: prior = all copies)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tool_helpers import load_tool

from planning.codec import format_points
from planning.kinematic import ctra_prior
from vla_world.data.planner_input import planner_input

copy_stats = load_tool("diagnostics/copy_stats")


def _write(path: Path, records: list, shift: float) -> Path:
    preds = {r.sample_token: {"text": "<traj_start>" + format_points(ctra_prior(planner_input(r)) + shift)
                              + "<traj_end>"} for r in records}
    path.write_text(json.dumps({"__meta__": {"seed": 0}, **preds}))
    return path


def test_prior_answers_all_count_as_copies(tmp_path, mini_world, mini_records):
    records = mini_records["val"]
    line = copy_stats.summarise(_write(tmp_path / "p.json", records, 0.0), {r.sample_token: r for r in records})
    assert f"copies prior {len(records)} of {len(records)}" in line


def test_shifted_answers_are_not_copies(tmp_path, mini_world, mini_records, capsys):
    records = mini_records["val"]
    path = _write(tmp_path / "s.json", records, 0.5)
    assert copy_stats.main(["val", str(path), "--dataroot", str(mini_world)]) == 0
    out = capsys.readouterr().out
    assert f"copies prior 0 of {len(records)}" in out
    assert np.isfinite(float(out.split("answer ")[1].split(" m")[0]))
