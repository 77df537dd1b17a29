"""Writers for evaluation results: paper-style markdown tables, JSON, CSV and docs/results.md.

Tables follow the layout planning papers use: one row per method, L2 (m) at 1/2/3 s and their
average, then collision rate (%) at 1/2/3 s and average, plus the number of samples counted and
the number of failed predictions (see the failure policy in planning.evaluate). A method with
several runs (seeds) shows `mean ± std` (sample std over its n runs, n in the row name) and the
mean failures per run. Every document starts with its provenance: split, date, command and, per
run, the predictions file, seed, checkpoint folder and token source, so a number can always be
traced to what produced it.

    write_outputs(result, "outputs/eval", command="python tools/eval_planning.py ...")
    write_results_md(result, "docs/results.md", command=...)
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from planning.evaluate import (
    COMMAND_GROUPS,
    CONVENTION_TITLES,
    FAILURE_POLICY,
    GT_ROW_NAME,
    METRIC_KEYS,
    PLAUSIBLE_RANGE_M,
    SEEDS_NOTE,
    STD_DDOF,
    EvaluationResult,
    MethodRow,
    RunInfo,
    ScoreRow,
    summarise_runs,
)

HEADER = ("| Method | L2 1s (m) | L2 2s (m) | L2 3s (m) | L2 Avg (m) | Col. 1s (%) | Col. 2s (%) | Col. 3s (%) "
          "| Col. Avg (%) | Samples | Failed |")
ALIGN = "|---|" + "---:|" * 10
COMMAND_TITLES = {"all": "all", "forward": "keep forward", "left": "turn left", "right": "turn right"}
PLUS_MINUS = " ± "


def metrics_table(rows: Sequence[MethodRow | ScoreRow], label_command: bool = False) -> str:
    """A markdown table, one line per row; `label_command` appends the command to the method name.

    A `ScoreRow` (one run) is shown as is; a `MethodRow` over several runs as mean ± std.
    """
    lines = [HEADER, ALIGN]
    for row in rows:
        summary = row if isinstance(row, MethodRow) else summarise_runs([row])
        lines.append(_table_line(summary, label_command))
    return "\n".join(lines)


def _table_line(row: MethodRow, label_command: bool) -> str:
    name = row.method if row.num_runs == 1 else f"{row.method} ({row.num_runs} seeds)"
    if label_command:
        name = f"{name} ({COMMAND_TITLES[row.command]})"
    cells = [_cell(row, key, 1.0) for key in METRIC_KEYS[:4]] + [_cell(row, key, 100.0) for key in METRIC_KEYS[4:]]
    return f"| {name} | " + " | ".join(cells) + f" | {row.num_samples} | {_count(row.failed_mean)} |"


def _cell(row: MethodRow, key: str, scale: float) -> str:
    mean = _number(scale * row.mean[key], 2)
    if row.std is None or mean == "n/a":
        return mean
    return mean + PLUS_MINUS + _number(scale * row.std[key], 2)


def _number(value: float, decimals: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{decimals}f}"


def _count(value: float) -> str:
    """A failure count: an integer as such, a per-run mean with one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def evaluation_markdown(result: EvaluationResult, command: str | None = None, title: str = "Planning evaluation") -> str:
    """The full report: provenance, a table per convention, a per-command breakdown, per-run tables, notes."""
    parts = [f"# {title}", "", provenance_markdown(result, command), ""]
    for convention in result.conventions:
        parts += [f"## {CONVENTION_TITLES[convention]}", "", metrics_table(result.method_rows(convention)), ""]
        breakdown = [r for cmd in COMMAND_GROUPS if cmd != "all" for r in result.method_rows(convention, cmd)]
        parts += [f"### {CONVENTION_TITLES[convention]}, per command", "", metrics_table(breakdown, label_command=True), ""]
        if _has_seeds(result):
            per_run = [_run_row(r) for r in result.select(convention) if r.run]
            parts += [f"### {CONVENTION_TITLES[convention]}, per run", "", metrics_table(per_run), ""]
    parts += _notes(result)
    return "\n".join(parts)


def _run_row(row: ScoreRow) -> ScoreRow:
    """A run's own row, named "<method> [<run>]" so the per-run table tells the runs apart."""
    return ScoreRow(f"{row.method} [{row.run}]", row.convention, row.command, row.metrics, row.num_samples,
                    row.num_records, row.num_failed, row.num_missing)


def results_markdown(result: EvaluationResult, command: str | None = None, note: str | None = None) -> str:
    """docs/results.md: headline tables per convention (per-command detail stays in outputs/eval).

    `note`: a paragraph from the caller (what produced the runs, e.g. `make results`), set under the title.
    """
    intro = "Open-loop planning on the evaluated split; regenerate with the command below."
    parts = ["# Results", "", *([note, ""] if note else []), intro, "", provenance_markdown(result, command), ""]
    for convention in result.conventions:
        parts += [f"## {CONVENTION_TITLES[convention]}", "", metrics_table(result.method_rows(convention)), ""]
    parts += _notes(result)
    return "\n".join(parts)


def provenance_markdown(result: EvaluationResult, command: str | None) -> str:
    """Bullet lines: split, date, command, and one per run (file, checkpoint folder, seed, token source, decoding).

    Bullets, not a table, so tools that copy a report's "- " header lines (tools/demo_readme.py)
    carry every run's provenance along.
    """
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- Split: `{result.split}` ({result.num_records} samples before each convention's own filtering)",
             f"- Date: {today}"]
    if command:
        lines.append(f"- Command: `{command}`")
    return "\n".join(lines + [_run_line(run) for run in result.runs])


def _run_line(run: RunInfo) -> str:
    if run.method == GT_ROW_NAME and not run.source:
        return f"- Run `{run.name}`: the split's ground-truth ego future"
    parts = [f"predictions `{run.source}`" if run.source else "predictions in memory"]
    if run.checkpoint:
        parts.append(f"checkpoint `{run.checkpoint}`")
    if run.seed is not None:
        parts.append(f"seed {run.seed}")
    if run.token_source:
        parts.append(f"token source: {run.token_source}")
    if run.decoding:
        parts.append(f"decoding: {run.decoding}")
    return f"- Run `{run.name}`: " + ", ".join(parts)


def _has_seeds(result: EvaluationResult) -> bool:
    return any(run.run for run in result.runs)


def _notes(result: EvaluationResult) -> list[str]:
    notes = ["Notes:", "", f"- {FAILURE_POLICY}"]
    if _has_seeds(result):
        notes.append(f"- {SEEDS_NOTE}")
    notes.append("- L2 in metres, collision rate in % (ego-box test); conventions as in docs/metrics.md.")
    for name, reasons in result.failure_reasons.items():
        listed = ", ".join(f"{kind}: {n}" for kind, n in sorted(reasons.items()))
        notes.append(f"- {name}: failed predictions by reason: {listed}.")
    for name, extra in result.extra_tokens.items():
        if extra:
            notes.append(f"- {name}: {extra} predictions for samples outside this split were ignored.")
    return notes + [""]


def result_dict(result: EvaluationResult, command: str | None = None) -> dict:
    """Everything in JSON-friendly form (NaN written as null): per-run rows and per-method aggregates."""
    rows = [{**asdict(r), "metrics": _finite(r.metrics)} for r in result.rows]
    aggregates = [_aggregate_dict(row) for convention in result.conventions for command in COMMAND_GROUPS
                  for row in result.method_rows(convention, command)]
    return {"split": result.split, "num_records": result.num_records, "methods": result.methods,
            "conventions": result.conventions, "command": command, "failure_policy": FAILURE_POLICY,
            "plausible_range_m": PLAUSIBLE_RANGE_M,
            "aggregate": {"std": "sample standard deviation over a method's runs", "ddof": STD_DDOF,
                          "failed": "failed_mean = failures per run, failed_total = over all runs"},
            "runs": [{**asdict(run), "name": run.name} for run in result.runs],
            "failure_reasons": result.failure_reasons, "extra_tokens": result.extra_tokens,
            "rows": rows, "aggregates": aggregates}


def _aggregate_dict(row: MethodRow) -> dict:
    out = asdict(row)
    out["mean"] = _finite(row.mean)
    out["std"] = None if row.std is None else _finite(row.std)
    return out


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: None if math.isnan(v) else v for k, v in metrics.items()}


def write_csv(result: EvaluationResult, path: Path) -> None:
    """One line per run x convention x command; methods with several runs add a "mean" and a "std" line."""
    fields = ["convention", "command", "method", "run", *METRIC_KEYS, "num_samples", "num_records", "num_failed",
              "num_missing"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in result.rows:
            writer.writerow({"convention": r.convention, "command": r.command, "method": r.method, "run": r.run,
                             **r.metrics, "num_samples": r.num_samples, "num_records": r.num_records,
                             "num_failed": r.num_failed, "num_missing": r.num_missing})
        for convention in result.conventions:
            for command in COMMAND_GROUPS:
                for row in result.method_rows(convention, command):
                    if row.std is not None:
                        base = {"convention": convention, "command": command, "method": row.method,
                                "num_samples": row.num_samples, "num_records": row.num_records}
                        writer.writerow({**base, "run": "mean", **row.mean, "num_failed": row.failed_mean})
                        writer.writerow({**base, "run": f"std (ddof {STD_DDOF})", **row.std})


def write_outputs(result: EvaluationResult, out_dir: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write report.md, metrics.json and metrics.csv under `out_dir`; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "metrics.json", "csv": out / "metrics.csv"}
    paths["markdown"].write_text(evaluation_markdown(result, command))
    paths["json"].write_text(json.dumps(result_dict(result, command), indent=1))
    write_csv(result, paths["csv"])
    return paths


# Hand-written ablation sections (e.g. the GRPO one) follow this line in docs/results.md; rewriting the
# generated tables keeps them, so `make results` does not delete numbers it did not produce.
ABLATIONS_MARKER = "<!-- ablations: written by hand below this line, kept when the tables are regenerated -->"


def write_results_md(result: EvaluationResult, path: str | Path, command: str | None = None,
                     note: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else ""
    kept = "\n" + old[old.index(ABLATIONS_MARKER):] if ABLATIONS_MARKER in old else ""
    path.write_text(results_markdown(result, command, note) + kept)
    return path
