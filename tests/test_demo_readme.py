"""The README's results block is copied from an evaluation report, never typed in."""

from __future__ import annotations

import pytest

from tools import demo_readme

REPORT = """# Planning evaluation

- Split: `test` (3 samples before each convention's own filtering)
- Command: `python tools/eval_planning.py --split test`

## UniAD

| Method | L2 Avg |
|---|---:|
| A | 9.99 |

## ST-P3

| Method | L2 Avg |
|---|---:|
| A | 1.23 |

### ST-P3, per command

| x |
"""


def test_block_holds_provenance_and_the_stp3_table_only():
    block = demo_readme.results_block(REPORT)
    assert "- Split: `test`" in block and "--split test" in block
    assert "| A | 1.23 |" in block and "9.99" not in block and "per command" not in block


def test_rewrite_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{demo_readme.START}\nold table\n{demo_readme.END}\noutro\n")
    demo_readme.rewrite(readme, demo_readme.results_block(REPORT))
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old table" not in text
    assert text.count(demo_readme.START) == 1 and "| A | 1.23 |" in text


def test_missing_markers_or_section_are_clear_errors(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        demo_readme.rewrite(readme, "x")
    with pytest.raises(SystemExit, match="ST-P3"):
        demo_readme.results_block("# nothing\n")


TABLE = """| Method | L2 Avg (m) | Col. Avg (%) |
|---|---:|---:|
| Constant velocity | 1.50 | 2.00 |
| CTRA prior | 0.90 | 1.00 |
| Ego-MLP (3 seeds) | 0.55 ± 0.02 | 0.50 ± 0.10 |
| VLA-tiny (3 seeds) | 1.20 ± 0.30 | 1.50 ± 0.20 |
| GT (sanity) | 0.00 | 0.00 |"""


def test_verdict_names_the_rows_the_model_loses_to():
    sentence = demo_readme.verdict(TABLE)
    assert sentence.startswith("In this run VLA-tiny (3 seeds) has an L2 Avg of 1.20 m")
    assert "loses to Ego-MLP (3 seeds) (0.55 m), CTRA prior (0.90 m)" in sentence
    assert "beats Constant velocity (1.50 m)" in sentence and "GT" not in sentence


def test_verdict_calls_equal_printed_values_a_tie_and_speaks_of_every_learned_row():
    table = TABLE.replace("| CTRA prior | 0.90 |", "| CTRA prior | 1.20 |") + "\n| VLA-tiny + GRPO | 0.90 | 1.00 |"
    sentence = demo_readme.verdict(table)
    assert "VLA-tiny (3 seeds) has an L2 Avg of 1.20 m: it loses to Ego-MLP (3 seeds) (0.55 m), VLA-tiny + GRPO " \
           "(0.90 m), ties with CTRA prior (1.20 m) and beats Constant velocity (1.50 m)." in sentence
    assert "In this run VLA-tiny + GRPO has an L2 Avg of 0.90 m" in sentence


def test_verdict_without_a_learned_row_is_empty():
    assert demo_readme.verdict(TABLE.replace("VLA-tiny", "Other")) == ""
