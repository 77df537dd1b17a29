"""The "prior" answerer: one fixed answer per question group, chosen on the training split.

Why it exists: text metrics on templated answers are hard to read on their own. A model that
writes "It will go straight." to every prediction question already scores well on BLEU, and one
that always says "keep forward" already scores the majority-class accuracy. The prior row in
`tools/eval_qa.py` prints what such a scene-blind answerer gets, so a reader sees whether the
model's numbers come from looking at the scene or from the answer templates alone.

    table = fit_prior(build_stage_examples("instruct", train_records))   # {(kind, granularity): answer}
    answers = prior_answers(table, val_examples)                         # {example_id: answer}

The group of an example is `(kind, granularity)` (granularity is None for kinds without one).
Both are known from the question's wording alone, so the prior reads the question type, never
the scene. Its answer for a group is the consensus training answer: the one with the highest
mean word-level F1 against all training answers of that group, each weighted by how often it
occurs. Where one answer dominates (e.g. "It will go straight.") that is the most frequent
answer; where every answer is different (structured JSON with the scene's counts) it is the
most typical one instead of an arbitrary first. For the action kinds it carries the majority
action in practice; the report shows its action accuracy next to the model's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from vla_world.qa.stage_example import StageExample

Group = tuple[str, str | None]  # (kind, granularity)
MAX_CANDIDATES = 64  # distinct answers tried per group: fitting costs candidates x distinct answers


def group_of(example: StageExample) -> Group:
    return example.kind, example.meta.get("granularity")


def words(text: str) -> Counter:
    """Lower-case word counts; numbers like 12.5 and m/s stay one word."""
    return Counter(re.findall(r"[\w./]+", text.lower()))


def word_f1(a: Counter, b: Counter) -> float:
    """Word-level F1 of two bags of words (1.0 for two empty answers)."""
    if not a and not b:
        return 1.0
    overlap = sum((a & b).values())
    return 2 * overlap / (sum(a.values()) + sum(b.values()))


def consensus_answer(answers: Iterable[str]) -> str:
    """The answer with the highest frequency-weighted mean word F1 against all `answers`.

    Ties go to the more frequent answer, then to the one seen first, so the choice is deterministic.
    """
    counts = Counter(answers)
    if not counts:
        raise ValueError("consensus_answer: no answers to choose from")
    bags = {text: words(text) for text in counts}
    candidates = candidate_answers(counts)

    def score(text: str) -> tuple[float, int]:
        agreement = sum(n * word_f1(bags[text], bags[other]) for other, n in counts.items())
        return agreement, counts[text]

    return max(candidates, key=score)


def candidate_answers(counts: Counter) -> list[str]:
    """Up to MAX_CANDIDATES distinct answers: the most frequent half, then an even spread of the rest.

    The spread matters where nearly every answer is distinct: taking only the "most frequent"
    would then take the first answers seen, all from the first scenes.
    """
    ranked = [text for text, _ in counts.most_common()]  # ties keep first-seen order
    if len(ranked) <= MAX_CANDIDATES:
        return ranked
    top, rest = ranked[:MAX_CANDIDATES // 2], ranked[MAX_CANDIDATES // 2:]
    stride = len(rest) / (MAX_CANDIDATES - len(top))
    return top + [rest[int(i * stride)] for i in range(MAX_CANDIDATES - len(top))]


def fit_prior(train_examples: list[StageExample]) -> dict[Group, str]:
    """{(kind, granularity): consensus training answer} for every group present in `train_examples`."""
    by_group: dict[Group, list[str]] = {}
    for example in train_examples:
        by_group.setdefault(group_of(example), []).append(example.answer)
    return {group: consensus_answer(answers) for group, answers in by_group.items()}


def prior_answers(table: dict[Group, str], examples: list[StageExample]) -> dict[str, str]:
    """{example_id: the prior's answer}; a group unseen in training gets "" (scored as an empty answer)."""
    return {e.example_id: table.get(group_of(e), "") for e in examples}
