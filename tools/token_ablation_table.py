"""The oracle-vs-perception token ablation's table (issue 16): read the evaluations, write markdown.

tools/ablate_tokens.py runs the trainings and evaluations; this module only turns their outputs
(eval_planning.py's metrics.json, eval_qa.py's qa_metrics.json per run) into one markdown block, and
puts that block between its markers in the docs, so a re-run after better perception rewrites the
numbers and leaves the hand-written text around them alone.

    block = ablation_markdown(planning_metrics, qa_runs, note)
    replace_block(Path("docs/results.md"), block)
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

START, END = "<!-- ablation-tokens:start -->", "<!-- ablation-tokens:end -->"
CONVENTIONS = (("stp3", "ST-P3"), ("uniad", "UniAD"))  # (metrics.json key, heading), the two
QA_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
QA_HEADING = ("**QA** (instruct stage, same split; a question about an agent the tokens do not contain cannot be "
              "asked and is left out, so each source is scored on its own askable questions, beside the scene-blind "
              "prior on those same questions):")


@dataclass(frozen=True)
class PlanningRow:
    """One row of the planning table: a method of the combined evaluation and the tokens it read."""

    method: str  # the eval_planning.py row name
    label: str  # what the table calls it
    tokens: str  # "—" for planners that read no perception tokens


@dataclass(frozen=True)
class QaRun:
    """One instruct run's QA report (eval_qa.py's qa_metrics.json, loaded) and the tokens it used."""

    tokens: str  # "perception" | "oracle"
    seed: int
    report: dict


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'m ± s' over runs (sample std), or 'm' for one run."""
    values = [v * scale for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def planning_cells(metrics: dict, method: str) -> tuple[list[str], int, int]:
    """(L2 avg, col avg per convention), number of runs and failed answers per run of `method` (all commands)."""
    runs = [r for r in metrics["rows"] if r["method"] == method and r["command"] == "all"]
    if not runs:
        raise KeyError(f"metrics.json has no rows for {method!r}; its methods are {metrics['methods']}")
    cells, num_runs, failed = [], 0, 0
    for key, _ in CONVENTIONS:
        mine = [r for r in runs if r["convention"] == key]
        num_runs, failed = len(mine), max(r["num_failed"] for r in mine)
        cells += [mean_std([r["metrics"]["L2_avg"] for r in mine]),
                  mean_std([r["metrics"]["col_avg"] for r in mine], scale=100.0)]
    return cells, num_runs, failed


def planning_table(metrics: dict, rows: list[PlanningRow]) -> str:
    head = ["Planner", "Tokens"] + [f"{name} {what}" for _, name in CONVENTIONS
                                    for what in ("L2 Avg (m)", "Col. Avg (%)")] + ["Runs", "Failed"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in rows:
        cells, runs, failed = planning_cells(metrics, row.method)
        lines.append(f"| {row.label} | {row.tokens} | " + " | ".join(cells) + f" | {runs} | {failed} |")
    return "\n".join(lines)


def qa_cells(reports: list[dict]) -> list[str]:
    """Caption metrics, action accuracy and reason F1 of the 'overall' block, mean ± std over reports."""
    overall = [r["overall"] for r in reports]
    # a metric a run could not compute (METEOR without Java: a string saying why) is a dash, not a number
    cells = [mean_std([o[m] for o in overall]) if all(isinstance(o.get(m), (int, float)) for o in overall) else "—"
             for m in QA_METRICS]
    cells.append(mean_std([o["action"]["accuracy"] for o in overall], scale=100.0, digits=1)
                 if all("action" in o for o in overall) else "—")
    cells.append(mean_std([o["reason_f1"] for o in overall]) if all("reason_f1" in o for o in overall) else "—")
    return cells


def qa_table(runs: list[QaRun]) -> str:
    head = ["Answerer", "Tokens", *QA_METRICS, "Action acc. (%)", "Reason F1", "Questions", "Unaskable", "Seeds"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for tokens in sorted({r.tokens for r in runs}, key=["perception", "oracle"].index):
        mine = [r for r in runs if r.tokens == tokens]
        prior = [r.report["prior"] for r in mine if "prior" in r.report]
        if prior:  # the scene-blind answerer, scored on the same (askable) questions as the model beside it
            lines.append(f"| prior (no scene) | {tokens} questions | " + " | ".join(qa_cells(prior)) +
                         f" | {mine[0].report['n_examples']} | — | — |")
        seeds = " ".join(str(r.seed) for r in mine)
        lines.append(f"| VLA-tiny instruct | {tokens} | " + " | ".join(qa_cells([r.report for r in mine])) +
                     f" | {mine[0].report['n_examples']} | {mine[0].report.get('n_unaskable', 0)} | {seeds} |")
    return "\n".join(lines)


def seed_mean(metrics: dict, method: str, convention: str, field: str) -> float:
    """Mean of one metric over a method's runs (all commands) in one convention."""
    return statistics.mean(r["metrics"][field] for r in metrics["rows"]
                           if r["method"] == method and r["command"] == "all" and r["convention"] == convention)


def gap_line(metrics: dict, perception: str, oracle: str) -> str:
    """One sentence of numbers: perception minus oracle, per convention (mean over seeds)."""
    parts = []
    for key, name in CONVENTIONS:
        l2 = seed_mean(metrics, perception, key, "L2_avg") - seed_mean(metrics, oracle, key, "L2_avg")
        col = 100.0 * (seed_mean(metrics, perception, key, "col_avg") - seed_mean(metrics, oracle, key, "col_avg"))
        parts.append(f"{name} L2 {l2:+.2f} m, collision {col:+.2f} pp")
    return "Gap, perception minus oracle tokens (mean over seeds): " + "; ".join(parts) + "."


def ablation_markdown(metrics: dict, rows: list[PlanningRow], qa_runs: list[QaRun], note: str,
                      gap: tuple[str, str] | None = None) -> str:
    """The whole block: provenance note, planning table, gap line, QA table (when there are QA runs)."""
    heading = (f"**Planning**, `{metrics['split']}` split, {metrics['num_records']} samples before each "
               "convention's filtering; learned rows mean ± sample std over their seeds:")
    parts = [note, heading, planning_table(metrics, rows)]
    if gap is not None:
        parts.append(gap_line(metrics, *gap))
    if qa_runs:
        parts += [QA_HEADING, qa_table(qa_runs)]
    return "\n\n".join(parts)


def replace_block(path: Path, block: str) -> None:
    """Put `block` between the START/END markers of `path` (both must be there: they say where it goes)."""
    text = path.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(f"{path}: no '{START}' ... '{END}' markers; add both lines where the table goes")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{START}\n{block}\n{END}{tail}")
