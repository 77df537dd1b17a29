"""Score model answers to stage examples, per kind and overall, and render the report.

    report = evaluate_answers(examples, {example_id: answer}, meteor=True)
    Path("qa.md").write_text(report_markdown(report))

Text metrics for every kind; for kinds with an action label (qa_action, qa_structured) also
meta-action accuracy / macro-F1 and per-sample reason F1 (see `vla_world.qa.metrics`). Examples
without an answer are scored as an empty answer and counted as `missing`; answers whose action
cannot be read are listed under `failures` with the reason.
"""

from __future__ import annotations

from collections import defaultdict

from vla_world.qa.examples import StageExample
from vla_world.qa.metrics import (
    METEOR_OFF,
    action_metrics,
    meteor_scores,
    ngram_metrics,
    parse_answer,
    reason_f1,
    tokenize_pairs,
)

TEXT_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def evaluate_answers(examples: list[StageExample], answers: dict[str, str], meteor: bool = True) -> dict:
    """The full report (a JSON-ready dict) of `answers` keyed by `StageExample.example_id`."""
    if not examples:
        raise ValueError("evaluate_answers: no examples to score")
    by_id = {e.example_id: e for e in examples}
    hyps = {i: answers.get(i, "") for i in by_id}
    missing = {i for i in by_id if i not in answers}
    gts, res = tokenize_pairs({i: e.answer for i, e in by_id.items()}, hyps)
    meteor_overall, meteor_items = meteor_scores(gts, res) if meteor else (METEOR_OFF, {})
    groups: dict[str, list[str]] = defaultdict(list)
    for i, e in by_id.items():
        groups[e.kind].append(i)
    per_kind = {kind: _group_report(ids, by_id, hyps, missing, gts, res, meteor_items, meteor_overall) for kind, ids in sorted(groups.items())}
    overall = _group_report(list(by_id), by_id, hyps, missing, gts, res, meteor_items, meteor_overall)
    if isinstance(meteor_overall, float):
        overall["METEOR"] = meteor_overall  # the corpus score, not the mean of items
    return {"n_examples": len(by_id), "n_missing": len(missing),
            "unknown_ids": sorted(set(answers) - set(by_id)), "overall": overall, "per_kind": per_kind}


def _group_report(ids, by_id, hyps, missing, gts, res, meteor_items, meteor_overall) -> dict:
    report: dict = {"n": len(ids), "missing": sum(i in missing for i in ids)}
    report.update(ngram_metrics({i: gts[i] for i in ids}, {i: res[i] for i in ids}))
    report["METEOR"] = sum(meteor_items[i] for i in ids) / len(ids) if meteor_items else meteor_overall
    labelled = [i for i in ids if "action" in by_id[i].meta]
    if labelled:
        parsed = {i: parse_answer(by_id[i].kind, hyps[i]) for i in labelled}
        report["action"] = action_metrics([by_id[i].meta["action"] for i in labelled], [parsed[i].action for i in labelled])
        report["reason_f1"] = reason_f1([by_id[i].meta["reasons"] for i in labelled], [parsed[i].reasons for i in labelled])
        report["failures"] = [{"id": i, "error": p.error} for i, p in parsed.items() if p.error]
    return report


def report_markdown(report: dict, title: str = "QA evaluation") -> str:
    """Two tables: text metrics per kind, and action/reason metrics where labels exist."""
    rows = [("overall", report["overall"])] + list(report["per_kind"].items())
    summary = (f"{report['n_examples']} examples, {report['n_missing']} without an answer, "
               f"{len(report['unknown_ids'])} answers with unknown ids.")
    lines = [f"# {title}", "", summary, "",
             "| kind | n | " + " | ".join(TEXT_KEYS) + " |", "|---|---:|" + "---:|" * len(TEXT_KEYS)]
    lines += [f"| {name} | {r['n']} | " + " | ".join(_cell(r[k]) for k in TEXT_KEYS) + " |" for name, r in rows]
    labelled = [(name, r) for name, r in rows if "action" in r]
    if labelled:
        lines += ["", "| kind | n | action accuracy | action macro-F1 | reason F1 (per sample) | unreadable answers |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['action']['n']} | {r['action']['accuracy']:.3f} | {r['action']['macro_f1']:.3f} | "
                  f"{r['reason_f1']:.3f} | {len(r['failures'])} |" for name, r in labelled]
    if isinstance(report["overall"]["METEOR"], str):
        lines += ["", f"METEOR: {report['overall']['METEOR']}"]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
