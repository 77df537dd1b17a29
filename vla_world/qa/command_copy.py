"""The "command-copy" answerer: the prior's answers, with the action the route command implies.

Why it exists: every QA prompt shows the driving command ("Mission goal: turn left"), and the
command is the ego's lateral offset at 3 s beyond `records.COMMAND_LATERAL_THRESHOLD_M`, the same
rule that makes a turn label. A model that copies the command into its action answer scores the
share of the labels that the command alone explains, without looking at the scene. The
command-copy row of `tools/eval_qa.py` prints that share, so a model's action accuracy above the
prior's is not read as scene understanding when it is the command.

What it answers (it reads the question's kind and granularity, and the sample's command; never
the scene):

  * action kinds (qa_action, qa_structured): the prior's answer for the group with its action and
    reasons replaced by the command's: turn left -> "turn left", reason "route turns left";
    keep forward -> "keep forward", reason "road is clear" (the vocabulary has no route reason for
    going straight; "road is clear" is what a keep-forward label says when nothing is in the
    way, so this is the strongest answer the command alone supports);
  * every other kind: the prior's answer (the command says nothing about it).

So the command-copy row differs from the prior row only by what the command says, on every metric.

    table = fit_prior(train_examples)
    answers = command_copy_answers(val_examples, {inp.sample_token: inp.command for inp in inputs}, table)
"""

from __future__ import annotations

import json
import re

from vla_world.data.records import CMD_FORWARD, CMD_LEFT, CMD_RIGHT, COMMANDS
from vla_world.qa import vocab
from vla_world.qa.prior import Group, group_of
from vla_world.qa.stage_example import StageExample

# What each command says about the meta-action, and the one reason it gives.
COMMAND_ACTION: dict[int, tuple[str, tuple[str, ...]]] = {
    CMD_LEFT: (vocab.TURN_LEFT, ("route turns left",)),
    CMD_RIGHT: (vocab.TURN_RIGHT, ("route turns right",)),
    CMD_FORWARD: (vocab.KEEP_FORWARD, ("road is clear",)),
}
ACTION_KINDS = ("qa_action", "qa_structured")
_ACTION_HEAD = re.compile(r"^Action: [^.]*\. Reasons: [^.]*\.")  # vocab.action_sentence's output


def command_answer(kind: str, command: int, prior: str | None) -> str:
    """The command-copy answer to one question of `kind`; `prior` is the prior's answer (or None)."""
    if kind not in ACTION_KINDS:
        return prior or ""
    action, reasons = COMMAND_ACTION[command]
    if kind == "qa_action":
        head = vocab.action_sentence(action, reasons)
        return _ACTION_HEAD.sub(head, prior, count=1) if prior and _ACTION_HEAD.match(prior) else head
    return vocab.structured_answer(_prior_description(prior, command), action, reasons)


def _prior_description(prior: str | None, command: int) -> str:
    """The description of the prior's JSON answer; without one, the command in words."""
    try:
        description = json.loads(prior)["description"] if prior else None
    except (json.JSONDecodeError, KeyError, TypeError):
        description = None
    return description if isinstance(description, str) else f"The route command is {COMMANDS[command]}."


def command_copy_answers(examples: list[StageExample], commands: dict[str, int],
                         prior_table: dict[Group, str]) -> dict[str, str]:
    """{example_id: command-copy answer}; `commands` maps each sample token to its command index."""
    missing = sorted({e.sample_token for e in examples} - set(commands))
    if missing:
        raise KeyError(f"command_copy_answers: no command for {len(missing)} samples (e.g. {missing[0]}); "
                       "pass the commands of the records the examples were built from")
    return {e.example_id: command_answer(e.kind, commands[e.sample_token], prior_table.get(group_of(e)))
            for e in examples}
