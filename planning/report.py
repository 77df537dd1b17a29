"""Writers for evaluation results: paper-style markdown tables, JSON, CSV and docs/results.md.

Tables follow the layout planning papers use: one row per method, L2 (m) at 1/2/3 s and their
average, then collision rate (%) at 1/2/3 s and average, plus the number of samples counted and
the number of failed predictions (scored as the zero trajectory, see planning.evaluate).

    write_outputs(result, "outputs/eval", command="python tools/eval_planning.py ...")
    write_results_md(result, "docs/results.md", command=...)
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from dataclasses import asdict
from pathlib import Path

from planning.evaluate import (
    COMMAND_GROUPS,
    CONVENTION_TITLES,
    FAILURE_POLICY,
    METRIC_KEYS,
    EvaluationResult,
    ScoreRow,
)

HEADER = ("| Method | L2 1s (m) | L2 2s (m) | L2 3s (m) | L2 Avg (m) | Col. 1s (%) | Col. 2s (%) | Col. 3s (%) "
          "| Col. Avg (%) | Samples | Failed |")
ALIGN = "|---|" + "---:|" * 10
COMMAND_TITLES = {"all": "all", "forward": "keep forward", "left": "turn left", "right": "turn right"}


def metrics_table(rows: list[ScoreRow], label_command: bool = False) -> str:
    """A markdown table, one line per row; `label_command` appends the command to the method name."""
    lines = [HEADER, ALIGN]
    for row in rows:
        name = f"{row.method} ({COMMAND_TITLES[row.command]})" if label_command else row.method
        cells = [_number(row.metrics[k], 2) for k in METRIC_KEYS[:4]]
        cells += [_number(100.0 * row.metrics[k], 2) for k in METRIC_KEYS[4:]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row.num_samples} | {row.num_failed} |")
    return "\n".join(lines)


def _number(value: float, decimals: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{decimals}f}"


def evaluation_markdown(result: EvaluationResult, command: str | None = None, title: str = "Planning evaluation") -> str:
    """The full report: a table per convention, a per-command breakdown, notes and provenance."""
    parts = [f"# {title}", "", _provenance(result, command), ""]
    for convention in result.conventions:
        parts += [f"## {CONVENTION_TITLES[convention]}", "", metrics_table(result.select(convention)), ""]
        breakdown = [r for cmd in COMMAND_GROUPS if cmd != "all" for r in result.select(convention, cmd)]
        parts += [f"### {CONVENTION_TITLES[convention]}, per command", "", metrics_table(breakdown, label_command=True), ""]
    parts += _notes(result)
    return "\n".join(parts)


def results_markdown(result: EvaluationResult, command: str | None = None) -> str:
    """docs/results.md: headline tables per convention (per-command detail stays in outputs/eval)."""
    parts = ["# Results", "", "Open-loop planning on the evaluated split; regenerate with the command below.", "",
             _provenance(result, command), ""]
    for convention in result.conventions:
        parts += [f"## {CONVENTION_TITLES[convention]}", "", metrics_table(result.select(convention)), ""]
    parts += _notes(result)
    return "\n".join(parts)


def _provenance(result: EvaluationResult, command: str | None) -> str:
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- Split: `{result.split}` ({result.num_records} samples before each convention's own filtering)",
             f"- Date: {today}"]
    if command:
        lines.append(f"- Command: `{command}`")
    return "\n".join(lines)


def _notes(result: EvaluationResult) -> list[str]:
    notes = ["Notes:", "", f"- {FAILURE_POLICY}",
             "- L2 in metres, collision rate in % (ego-box test); conventions as in docs/metrics.md."]
    for method, reasons in result.failure_reasons.items():
        if reasons:
            listed = ", ".join(f"{kind}: {n}" for kind, n in sorted(reasons.items()))
            notes.append(f"- {method}: unparseable outputs by reason: {listed}.")
    for method, extra in result.extra_tokens.items():
        if extra:
            notes.append(f"- {method}: {extra} predictions for samples outside this split were ignored.")
    return notes + [""]


def result_dict(result: EvaluationResult, command: str | None = None) -> dict:
    """Everything in JSON-friendly form (NaN written as null)."""
    rows = [{**asdict(r), "metrics": {k: _finite_or_none(v) for k, v in r.metrics.items()}} for r in result.rows]
    return {"split": result.split, "num_records": result.num_records, "methods": result.methods,
            "conventions": result.conventions, "failure_policy": FAILURE_POLICY, "command": command,
            "failure_reasons": result.failure_reasons, "extra_tokens": result.extra_tokens, "rows": rows}


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def write_csv(result: EvaluationResult, path: Path) -> None:
    fields = ["convention", "command", "method", *METRIC_KEYS, "num_samples", "num_records", "num_failed", "num_missing"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in result.rows:
            writer.writerow({"convention": r.convention, "command": r.command, "method": r.method, **r.metrics,
                             "num_samples": r.num_samples, "num_records": r.num_records,
                             "num_failed": r.num_failed, "num_missing": r.num_missing})


def write_outputs(result: EvaluationResult, out_dir: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write report.md, metrics.json and metrics.csv under `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "metrics.json", "csv": out / "metrics.csv"}
    paths["markdown"].write_text(evaluation_markdown(result, command))
    paths["json"].write_text(json.dumps(result_dict(result, command), indent=1))
    write_csv(result, paths["csv"])
    return paths


def write_results_md(result: EvaluationResult, path: str | Path, command: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_markdown(result, command))
    return path
