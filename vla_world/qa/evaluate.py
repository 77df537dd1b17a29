"""Score answers to stage examples, overall, per granularity and per kind, and render the report.

    report = evaluate_answers(examples, {example_id: answer}, meteor=True)
    reports = evaluate_answer_sets(examples, {"model": answers, "prior": prior, "command-copy": copy}, meteor=True)
    Path("qa.md").write_text(report_markdown(reports, run={"split": "val", ...}))

Several answer sets (the model's, the no-model prior of `vla_world.qa.prior` and the command-copy
answers of `vla_world.qa.command_copy`) are scored against the same examples so they can stand in
one table. Text metrics for every group; for kinds with an action label (qa_action, qa_structured) also
meta-action accuracy / macro-F1 and per-sample reason F1 (see `vla_world.qa.metrics`). Examples
without an answer are scored as an empty answer and counted as `missing`; answers whose action
cannot be read are listed under `failures` with the reason.
"""

from __future__ import annotations

from collections import defaultdict

from vla_world.qa.metrics import (
    METEOR_OFF,
    action_metrics,
    meteor_score_sets,
    ngram_metrics,
    parse_answer,
    reason_f1,
    tokenize_sets,
)
from vla_world.qa.stage_example import StageExample

TEXT_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def evaluate_answers(examples: list[StageExample], answers: dict[str, str], meteor: bool = True) -> dict:
    """The full report (a JSON-ready dict) of `answers` keyed by `StageExample.example_id`."""
    return evaluate_answer_sets(examples, {"answers": answers}, meteor)["answers"]


def evaluate_answer_sets(examples: list[StageExample], answer_sets: dict[str, dict[str, str]],
                         meteor: bool = True) -> dict[str, dict]:
    """One report per named answer set (e.g. "model" and "prior"), scored against the same examples.

    All sets share one tokenizer run and one METEOR process: each Java start costs seconds.
    """
    if not examples:
        raise ValueError("evaluate_answers: no examples to score")
    by_id = {e.example_id: e for e in examples}
    hyp_sets = {name: {i: answers.get(i, "") for i in by_id} for name, answers in answer_sets.items()}
    gts, res_sets = tokenize_sets({i: e.answer for i, e in by_id.items()}, hyp_sets)
    meteor_sets = meteor_score_sets(gts, res_sets) if meteor else {name: (METEOR_OFF, {}) for name in hyp_sets}
    return {name: _set_report(by_id, answer_sets[name], hyp_sets[name], gts, res_sets[name], meteor_sets[name])
            for name in answer_sets}


def _set_report(by_id, answers, hyps, gts, res, meteor) -> dict:
    meteor_overall, meteor_items = meteor
    missing = {i for i in by_id if i not in answers}

    def score(ids: list[str]) -> dict:
        return _group_report(ids, by_id, hyps, missing, gts, res, meteor_items, meteor_overall)

    overall = score(list(by_id))
    if isinstance(meteor_overall, float):
        overall["METEOR"] = meteor_overall  # the corpus score, not the mean of items
    return {"n_examples": len(by_id), "n_missing": len(missing), "unknown_ids": sorted(set(answers) - set(by_id)),
            "overall": overall,
            "per_kind": {kind: score(ids) for kind, ids in sorted(_ids_by(by_id, _kind).items())},
            "per_granularity": {g: score(ids) for g, ids in sorted(_ids_by(by_id, _granularity).items())}}


def _kind(example: StageExample) -> str:
    return example.kind


def _granularity(example: StageExample) -> str | None:
    return example.meta.get("granularity")  # None outside instruct: no per-granularity rows


def _ids_by(by_id: dict[str, StageExample], key) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for i, e in by_id.items():
        if key(e) is not None:
            groups[key(e)].append(i)
    return groups


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


RUN_KEYS = ("split", "tokens", "checkpoint", "predictions", "seed", "command")  # shown in the markdown, in order


def report_markdown(reports: dict[str, dict], title: str = "QA evaluation", note: str = "",
                    run: dict | None = None) -> str:
    """Text metrics and action/reason metrics, one row per (group, answer set): overall, per
    granularity, per kind. `reports` is {answer set name: report}, e.g. {"model": ..., "prior": ...};
    `run` (split, token source, checkpoint, seed, command, ...) is listed first, so a table never
    travels without what it was measured on."""
    first = next(iter(reports.values()))
    summary = "; ".join(f"{name}: {r['n_missing']} without an answer, {len(r['unknown_ids'])} with unknown ids"
                        for name, r in reports.items())
    lines = [f"# {title}", ""]
    if run:
        lines += [f"* {key}: `{run[key]}`" for key in RUN_KEYS if run.get(key) is not None] + [""]
    lines += [f"{first['n_examples']} examples ({summary}).", ""]
    lines += [note, ""] if note else []
    rows = _rows(reports)
    lines += ["| group | answers | n | " + " | ".join(TEXT_KEYS) + " |", "|---|---|---:|" + "---:|" * len(TEXT_KEYS)]
    lines += [f"| {group} | {name} | {r['n']} | " + " | ".join(_cell(r[k]) for k in TEXT_KEYS) + " |"
              for group, name, r in rows]
    labelled = [(group, name, r) for group, name, r in rows if "action" in r]
    if labelled:
        header = ("| group | answers | n | action accuracy | action macro-F1 | reason F1 (per sample) "
                  "| unreadable answers |")
        lines += ["", header, "|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {group} | {name} | {r['action']['n']} | {r['action']['accuracy']:.3f} | "
                  f"{r['action']['macro_f1']:.3f} | {r['reason_f1']:.3f} | {len(r['failures'])} |"
                  for group, name, r in labelled]
    if isinstance(first["overall"]["METEOR"], str):
        lines += ["", f"METEOR: {first['overall']['METEOR']}"]
    return "\n".join(lines) + "\n"


def _rows(reports: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """(group, answer set, scores) with the answer sets of one group next to each other."""
    first = next(iter(reports.values()))
    groups = [("overall", lambda r: r["overall"])]
    groups += [(g, lambda r, g=g: r["per_granularity"][g]) for g in first["per_granularity"]]
    groups += [(k, lambda r, k=k: r["per_kind"][k]) for k in first["per_kind"]]
    return [(group, name, pick(r)) for group, pick in groups for name, r in reports.items()]


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
