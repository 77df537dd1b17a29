"""Scores for generated QA answers: caption metrics, meta-action accuracy/macro-F1, reason F1.

  * Text: BLEU-1..4, METEOR, ROUGE-L and CIDEr from pycocoevalcap (the COCO caption toolkit that
    OpenDriveVLA, DriveLM and nuCaption report), after its PTB tokenizer. METEOR and the
    tokenizer run on Java; without `java` METEOR is reported unavailable with the reason and the
    text is tokenized by a plain lower-case word split instead.
  * Actions (papers 001/003, BDD-OIA): accuracy, and macro-F1 = mean over action classes of the
    per-class F1; classes with neither ground truth nor predictions are left out of the mean.
    An answer whose action cannot be read is wrong (it predicts no class).
  * Reasons: per-sample F1 between the predicted and GT reason sets, averaged over samples
    (both empty counts 1.0); papers 001/003 call it F1_all.

Structured answers are parsed as JSON; a malformed one is a failure with a reason (never an
exception): its action counts as wrong and its reasons as empty.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass

from vla_world.qa import vocab

BLEU_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")


@dataclass(frozen=True)
class ParsedAnswer:
    """What the metrics read from an answer; `error` says why the action could not be read."""

    action: str | None
    reasons: list[str]
    error: str | None = None


def parse_answer(kind: str, text: str) -> ParsedAnswer:
    """Action and reasons of a `qa_structured` (JSON) or `qa_action` (labelled text) answer."""
    if kind == "qa_structured":
        return parse_structured(text)
    action = vocab.find_action(text)
    return ParsedAnswer(action, vocab.find_reasons(text), None if action else "no action phrase found")


def parse_structured(text: str) -> ParsedAnswer:
    """Read {"description", "action", "justification"}; text around one JSON object is forgiven."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return ParsedAnswer(None, [], "no JSON object")
    try:
        obj = json.loads(text[start:end + 1] if end > start else text[start:])
    except json.JSONDecodeError as err:
        return ParsedAnswer(None, [], f"invalid JSON: {err.msg}")
    if not isinstance(obj, dict) or not {"description", "action", "justification"} <= obj.keys():
        return ParsedAnswer(None, [], "missing keys (need description, action, justification)")
    action, reasons = obj["action"], obj["justification"]
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return ParsedAnswer(None, [], "justification is not a list of strings")
    if not isinstance(action, str) or action.strip().lower() not in vocab.ACTIONS:
        return ParsedAnswer(None, [r.strip().lower() for r in reasons], f"unknown action {action!r}")
    return ParsedAnswer(action.strip().lower(), [r.strip().lower() for r in reasons])


def action_metrics(gt: list[str], pred: list[str | None]) -> dict:
    """Accuracy, macro-F1 and per-class F1 of meta-actions (None = unreadable, always wrong)."""
    per_class = {}
    for cls in vocab.ACTIONS:
        tp = sum(g == cls and p == cls for g, p in zip(gt, pred))
        fp = sum(g != cls and p == cls for g, p in zip(gt, pred))
        fn = sum(g == cls and p != cls for g, p in zip(gt, pred))
        if tp + fp + fn:
            per_class[cls] = 2 * tp / (2 * tp + fp + fn)  # = 2PR / (P + R)
    return {"n": len(gt), "accuracy": sum(g == p for g, p in zip(gt, pred)) / max(len(gt), 1),
            "macro_f1": sum(per_class.values()) / max(len(per_class), 1), "per_class_f1": per_class}


def sample_f1(gt: set[str], pred: set[str]) -> float:
    if not gt and not pred:
        return 1.0
    tp = len(gt & pred)
    return 2 * tp / (len(gt) + len(pred))


def reason_f1(gt: list[list[str]], pred: list[list[str]]) -> float:
    """Mean over samples of the F1 between reason sets (F1_all of papers 001/003)."""
    scores = [sample_f1(set(g), set(p)) for g, p in zip(gt, pred)]
    return sum(scores) / max(len(scores), 1)


def text_metrics(refs: dict[str, str], hyps: dict[str, str], meteor: bool = True) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr of hyps against one reference each (same keys)."""
    gts, res = tokenize_pairs(refs, hyps)
    scores = ngram_metrics(gts, res)
    scores["METEOR"] = meteor_scores(gts, res)[0] if meteor else METEOR_OFF
    return scores


METEOR_OFF = "unavailable: disabled (--no-meteor)"


def tokenize_pairs(refs: dict[str, str], hyps: dict[str, str]) -> tuple[dict, dict]:
    """PTB-tokenized {key: [text]} for references and hypotheses (the pycocoevalcap input form)."""
    gts, res = tokenize_sets(refs, {"hyp": hyps})
    return gts, res["hyp"]


def tokenize_sets(refs: dict[str, str], hyp_sets: dict[str, dict[str, str]]) -> tuple[dict, dict[str, dict]]:
    """Tokenized references and, per name, tokenized hypotheses; every set must have the refs' keys."""
    for name, hyps in hyp_sets.items():
        if set(refs) != set(hyps) or not refs:
            raise ValueError(f"text metrics need the same non-empty keys, got {len(refs)} refs and "
                             f"{len(hyps)} answers in {name!r}")
    # One tokenizer call for everything: each call starts a Java VM (about 1 s).
    texts = {("ref", k): t for k, t in refs.items()}
    for name, hyps in hyp_sets.items():
        texts.update({(name, k): t for k, t in hyps.items()})
    both = _tokenize(texts)
    return ({k: both[("ref", k)] for k in refs},
            {name: {k: both[(name, k)] for k in refs} for name in hyp_sets})


def ngram_metrics(gts: dict, res: dict) -> dict[str, float]:
    """BLEU-1..4 (corpus level), ROUGE-L and CIDEr (means over items) of tokenized texts."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {k: float(v) for k, v in zip(BLEU_KEYS, bleu)}
    scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return scores


def _tokenize(texts: dict) -> dict:
    if shutil.which("java"):
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        return PTBTokenizer().tokenize({k: [{"caption": t}] for k, t in texts.items()})
    # No Java: a lower-case word split close to what PTB leaves after punctuation removal.
    return {k: [" ".join(re.findall(r"[\w./]+", t.lower()))] for k, t in texts.items()}


def meteor_scores(gts: dict, res: dict) -> tuple[float | str, dict[str, float]]:
    """Corpus METEOR and per-item scores, or (reason it is unavailable, {})."""
    return meteor_score_sets(gts, {"hyp": res})["hyp"]


def meteor_score_sets(gts: dict, res_sets: dict[str, dict]) -> dict[str, tuple[float | str, dict[str, float]]]:
    """Per name: corpus METEOR and per-item scores, all from one Java process (or why unavailable)."""
    if not shutil.which("java"):
        reason = "unavailable: java is not installed (METEOR runs meteor-1.5.jar)"
        return {name: (reason, {}) for name in res_sets}
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()  # starts Java and loads the paraphrase table: ~5-20 s, so one per run
    try:
        results = {}
        for name, res in res_sets.items():
            overall, items = scorer.compute_score(gts, res)
            results[name] = (float(overall), dict(zip(gts, map(float, items))))
    finally:
        del scorer  # its __del__ stops the Java process
    return results
