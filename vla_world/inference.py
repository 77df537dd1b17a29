"""The planner API: a trained VLA checkpoint -> ego trajectories (and answers to questions).

    planner = Planner.from_checkpoint("checkpoints/planning/last")
    result = planner.plan(planner_input(record), tokens)  # PlanResult(trajectory (6, 2) | None, text, parse_error)
    source = resolve_token_source("checkpoints/planning/last", split="val")   # where perception tokens come from
    texts = predict_split(checkpoint, records, source=source, dataroot="data/mini_world")  # {token: text}
    answers = answer_questions(checkpoint, records, tokens, examples)  # [str], for eval_qa

The planner sees `PlannerInput`s (no labels) and perception tokens; records are taken only to
make those inputs. Tokens come from a `TokenSource`: by default the one the checkpoint was
trained with (its config.yaml `data` section: the fine-tuned perception of an online planner, or
the token cache of the split), never ground-truth (oracle) tokens unless asked for by name.

A checkpoint whose planning stage fitted a plan head (`vla_world.model.plan_head`) answers from it
by default (`decoding="auto"`): one forward pass over the prompt, the head's 12 numbers, and the
codec writes them as the answer text (`head_text`), so downstream readers see an ordinary answer.
Otherwise planning answers are decoded template-constrained (`vla_world.constrained`: the
structure is forced, the model chooses only the numbers, so every answer parses to 6 waypoints
within the plausibility bound); a checkpoint trained with the structured answer
(`PromptOptions.answer_blocks`, from its `data.answer` config) is decoded block by block
(`vla_world.constrained_structured`), so its blocks parse too; `decoding="greedy"` keeps free greedy decoding with the KV cache
(`generate` from `inputs_embeds` returns only the new tokens), as do answers to questions. Trajectories are in the current LiDAR frame (x right, y forward), metres, t = 0.5..3 s.
A malformed answer never raises: `PlanResult.parse_error` says what was wrong.

Every decoded plan then passes the collision guard (`planning.collision_guard`, on by default, `guard=False`
to skip): a plan that runs into a perceived agent (its decoded box moved at its decoded velocity) is
replaced by the prompt's CTRA prior, or by the same path driven slower, whichever perception finds free
first. The guard reads only the perception output the planner is handed, never labels;
`PlanResult.guard_choice` and `predict_split(..., guard_choices=)` say which plans it replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from perception.tokens import PerceptionTokens, load_tokens_for
from planning.codec import ANSWER_END, ANSWER_START, format_trajectory, parse_trajectory
from planning.collision_guard import PerceivedAgents, guard_plan
from planning.kinematic import ctra_prior
from planning.structured import parse_answer
from vla_world.checkpoint import check_stage, read_state
from vla_world.config import config_from_dict
from vla_world.constrained import constrained_generate_ids
from vla_world.constrained_structured import structured_generate_ids
from vla_world.data.planner_input import PlannerInput, planner_input
from vla_world.data.records import SampleRecord
from vla_world.model.plan_head import ego_state_rows
from vla_world.model.sequence import PLANNING_QUESTION, EncodedSample, FocusNotDetected
from vla_world.model.vla import VLAModel, read_vla_meta
from vla_world.training.config import DataConfig
from vla_world.training.stages import STAGES

PLAN_MAX_NEW_TOKENS = 112  # a 6-waypoint answer is ~90 tokens with digit-level numbers
STRUCTURED_MAX_NEW_TOKENS = 448  # greedy, structured answer: the trajectory + the free-text caps + the short blocks
LIVE_FEATURES_BELOW = 16  # online-trained planners: fewer records than this skip the frozen-feature cache
ANSWER_MAX_NEW_TOKENS = 320  # detailed QA answers reach ~600 characters (qa engineer, measured)
AUTO, HEAD, CONSTRAINED, GREEDY = "auto", "head", "constrained", "greedy"
# how planning answers are decoded; the first is the default: the plan head where the checkpoint has one, else constrained
DECODINGS = (AUTO, HEAD, CONSTRAINED, GREEDY)


@dataclass
class PlanResult:
    trajectory: np.ndarray | None  # (6, 2) metres, LiDAR frame; None when the text did not parse
    text: str  # the model's raw answer
    parse_error: str | None  # why `trajectory` is None
    guard_choice: int = 0  # 0: the model's own plan; k > 0: the collision guard's candidate k replaced it


def resolve_decoding(decoding: str, has_plan_head: bool) -> str:
    """The decoding `auto` stands for (head when the checkpoint has a plan head, else constrained); `head` on a
    checkpoint without one is a ValueError with the fix."""
    if decoding == AUTO:
        return HEAD if has_plan_head else CONSTRAINED
    if decoding == HEAD and not has_plan_head:
        raise ValueError("decoding 'head': this checkpoint has no plan head (its planning stage ran with "
                         "model.plan_head.enabled: false); use --decoding constrained or auto")
    return decoding


def checkpoint_decoding(checkpoint: str | Path, decoding: str = AUTO) -> str:
    """`resolve_decoding` for a checkpoint folder, read from its vla.json (no weights loaded): for reports."""
    return resolve_decoding(check_decoding(decoding), bool(read_vla_meta(checkpoint).get("plan_head")))


def check_decoding(decoding: str, use_cache: bool = True) -> str:
    """`decoding` if it is one of DECODINGS and works with `use_cache`, else a ValueError with the fix."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding {decoding!r}: expected one of {list(DECODINGS)}")
    if decoding == CONSTRAINED and not use_cache:
        raise ValueError("constrained decoding always uses the KV cache; decode without it only with decoding='greedy' "
                         "(tools: --decoding greedy --no-cache)")
    return decoding


class Planner:
    """Planning with a trained VLA model: plan head (default where fitted), template-constrained (default
    otherwise) or greedy; batched, with the KV cache."""

    def __init__(self, model: VLAModel, batch_size: int = 8, use_cache: bool = True, decoding: str = AUTO,
                 guard: bool = True):
        self.model = model.eval()
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.guard = guard  # the collision guard on every decoded plan (module doc)
        self.decoding = check_decoding(resolve_decoding(decoding, model.plan_head is not None), use_cache)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> Planner:
        model = VLAModel.from_folder(path)
        model.merge_lora()  # constrained decoding reads a plain output layer (peft wraps it for new token rows)
        return cls(model, **kwargs)

    def plan(self, inp: PlannerInput, tokens: PerceptionTokens) -> PlanResult:
        prior = self.answer_prior(inp)
        text = self.plan_texts([self.model.sequence_builder.encode(inp, tokens, PLANNING_QUESTION)], priors=[prior],
                               inputs=[inp])[0]
        result = to_plan_result(text, prior)
        if not self.guard or result.trajectory is None:
            return result
        ctra = prior if prior is not None else ctra_prior(inp)  # a residual answer's prior is the CTRA rollout
        plan, chosen = guard_plan(result.trajectory, ctra, perceived_agents(tokens))
        if chosen == 0:
            return result
        return dataclasses.replace(to_plan_result(with_trajectory(text, plan, prior), prior), guard_choice=chosen)

    def answer_prior(self, inp: PlannerInput) -> np.ndarray | None:
        """The prior a residual answer corrects (the prompt's CTRA rollout), or None for absolute answers."""
        return ctra_prior(inp) if self.model.prompt.residual_answer else None

    def plan_texts(self, prompts: list[EncodedSample], progress: bool = False,
                   priors: list[np.ndarray | None] | None = None, inputs: list[PlannerInput] | None = None) -> list[str]:
        """Planning answer texts for prompt-only samples, in order, decoded as `self.decoding` says
        (`priors`: each prompt's `answer_prior`, needed by residual answers; `inputs`: each prompt's planner
        input, needed by a plan head that reads the ego state)."""
        if self.decoding == HEAD:
            return self.head_texts(prompts, progress, priors, inputs)
        structured = bool(self.model.prompt.answer_blocks)  # the checkpoint's answer form decides
        if self.decoding == GREEDY:
            return self.generate(prompts, STRUCTURED_MAX_NEW_TOKENS if structured else PLAN_MAX_NEW_TOKENS, progress)
        decode = structured_generate_ids if structured else constrained_generate_ids
        texts = []
        for start, chunk in zip(range(0, len(prompts), self.batch_size), self._chunks(prompts, progress, "plan")):
            inputs = ([s.input_ids for s in chunk], [s.features for s in chunk])
            ids = decode(self.model, *inputs, priors=None if priors is None else priors[start:start + len(chunk)])
            texts += [self.model.decode(i) for i in ids]
        return texts

    def head_texts(self, prompts: list[EncodedSample], progress: bool = False,
                   priors: list[np.ndarray | None] | None = None, inputs: list[PlannerInput] | None = None) -> list[str]:
        """Answers written by the codec from the plan head's output: one forward pass per batch, no decoding."""
        if self.model.prompt.residual_answer and (priors is None or any(p is None for p in priors)):
            raise ValueError("plan head of a residual planner: pass each prompt's prior (Planner.answer_prior)")
        reads_ego = bool(self.model.plan_head is not None and self.model.plan_head.spec.ego_inputs)
        if reads_ego and (inputs is None or len(inputs) != len(prompts)):
            raise ValueError("plan head that reads the ego state (model.plan_head.ego_state): pass each prompt's "
                             "planner input (inputs=)")
        texts = []
        for start, chunk in zip(range(0, len(prompts), self.batch_size), self._chunks(prompts, progress, "plan head")):
            ego = ego_state_rows(inputs[start:start + len(chunk)]) if reads_ego else None
            plans = self.model.plan_from_head([s.input_ids for s in chunk], [s.features for s in chunk], ego)
            rows = [None] * len(chunk) if priors is None else priors[start:start + len(chunk)]
            texts += [head_text(plan, prior) for plan, prior in zip(plans.cpu().numpy(), rows)]
        return texts

    def generate(self, prompts: list[EncodedSample], max_new_tokens: int, progress: bool = False) -> list[str]:
        """Answer texts for prompt-only samples, in order, `batch_size` at a time."""
        texts = []
        for chunk in self._chunks(prompts, progress, "generate"):
            ids = self.model.generate_ids([s.input_ids for s in chunk], [s.features for s in chunk],
                                          max_new_tokens, self.use_cache)
            texts += [self.model.decode(i) for i in ids]
        return texts

    def _chunks(self, prompts: list[EncodedSample], progress: bool, desc: str) -> Iterator[list[EncodedSample]]:
        for start in tqdm(range(0, len(prompts), self.batch_size), desc=desc, disable=not progress):
            yield prompts[start:start + self.batch_size]


def head_text(plan: np.ndarray, prior: np.ndarray | None) -> str:
    """The answer text of one plan-head output ((6, 2) m): the residual answer (cm) to `prior`, or the absolute
    one; a non-finite output is the empty answer, so it fails to parse and is counted, never silently kept."""
    if not np.isfinite(plan).all():
        return ""
    if prior is None:
        return format_trajectory(plan)
    return format_trajectory(np.asarray(prior, np.float64) + plan, prior=prior)


def to_plan_result(text: str, prior: np.ndarray | None = None) -> PlanResult:
    # absolute answers, structured or plain: the trajectory inside <answer>; residual ones need their prior
    parsed = parse_answer(text).trajectory if prior is None else parse_trajectory(text, prior)
    return PlanResult(trajectory=parsed.waypoints, text=text, parse_error=parsed.error)


def absolute_text(text: str, prior: np.ndarray | None) -> str:
    """A residual answer rewritten as the absolute answer it means (`format_trajectory` of its waypoints; in a
    structured answer, the inside of `<answer>`), so a predictions file parses without the prompt; absolute
    answers and unparsable ones unchanged."""
    if prior is None:
        return text
    parsed = parse_trajectory(text, prior)
    if not parsed.ok:
        return text
    return with_trajectory(text, parsed.waypoints)


def with_trajectory(text: str, waypoints: np.ndarray, prior: np.ndarray | None = None) -> str:
    """`text` with its trajectory replaced by `waypoints` ((6, 2) m): the codec's answer (residual to `prior`
    when given, else absolute); a structured answer keeps its blocks, only the inside of `<answer>` changes."""
    answer = format_trajectory(waypoints) if prior is None else format_trajectory(waypoints, prior=prior)
    if ANSWER_START not in text:
        return answer
    head, _, rest = text.partition(ANSWER_START)
    _, end, tail = rest.partition(ANSWER_END)
    return f"{head}{ANSWER_START}{answer}{end}{tail}"


def perceived_agents(tokens: PerceptionTokens) -> PerceivedAgents:
    """The collision guard's view of one keyframe's perception output: decoded boxes, classes and velocities
    (a token cache written before velocities were stored gives none: its agents count as standing still)."""
    boxes = tokens.agent_boxes.detach().cpu().double().numpy()
    velocities = (np.zeros((len(boxes), 2)) if tokens.agent_velocities is None
                  else tokens.agent_velocities.detach().cpu().double().numpy())
    return PerceivedAgents(boxes, velocities, tokens.agent_classes.detach().cpu().numpy())


def guard_text(text: str, inp: PlannerInput, tokens: PerceptionTokens) -> tuple[str, int]:
    """An absolute answer after the collision guard, and the guard's choice (0: kept). An answer that does
    not parse is returned as it is: it fails the same way, the guard never repairs a failure."""
    parsed = parse_answer(text).trajectory
    if not parsed.ok:
        return text, 0
    plan, chosen = guard_plan(parsed.waypoints, ctra_prior(inp), perceived_agents(tokens))
    return (text, 0) if chosen == 0 else (with_trajectory(text, plan), chosen)


def _tokens_for(record: SampleRecord, tokens: dict[str, PerceptionTokens]) -> PerceptionTokens:
    if record.sample_token not in tokens:
        raise KeyError(f"no perception tokens for sample {record.sample_token}; export tokens for this split "
                       "(tools/export_tokens.py) or use oracle tokens")
    return tokens[record.sample_token]


ORACLE = "oracle"


@dataclass(frozen=True)
class TokenSource:
    """Where a run's perception tokens come from; its `label` goes into every report."""

    kind: str  # "online": the checkpoint's fine-tuned perception | "cache": a token file | "oracle": from GT
    detail: str  # the perception folder, the cache file, or the perception config of oracle tokens

    @property
    def label(self) -> str:
        names = {"online": "perception checkpoint", "cache": "token cache", ORACLE: "oracle (ground truth)"}
        return f"{names[self.kind]}: {self.detail}"

    @property
    def is_oracle(self) -> bool:
        return self.kind == ORACLE


def check_planner_checkpoint(checkpoint: str | Path, tool: str = "this tool") -> None:
    """Refuse, in one line, a folder that is not a readable checkpoint of a stage that writes trajectories."""
    folder = Path(checkpoint)
    state = read_state(folder)  # missing / corrupt state.json -> CheckpointError naming it
    # the stages that write trajectories: planning, and grpo (planning prompts, sampled answers)
    planners = tuple(name for name, spec in STAGES.items() if spec.examples in ("planning", "rewards"))
    if state.get("stage") == "perception" or state.get("stage") in set(STAGES) - set(planners):
        check_stage(folder, state, planners, tool)
    read_vla_meta(folder)


def saved_data_config(checkpoint: str | Path) -> DataConfig:
    """The `data` section the checkpoint was trained with (its config.yaml)."""
    config_file = Path(checkpoint) / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing, so the token source is unknown; pass --tokens FILE or "
                                "--tokens oracle")
    saved = yaml.safe_load(config_file.read_text()).get("data", {})
    known = {k: v for k, v in saved.items() if k in DataConfig.__dataclass_fields__}  # older checkpoints: extra keys
    return config_from_dict(DataConfig, known, source=str(config_file))


def resolve_token_source(checkpoint: str | Path, split: str, requested: str | None = None) -> TokenSource:
    """`requested`: None = as the checkpoint was trained; "oracle" = tokens from GT; else a token cache file.

    A checkpoint trained on oracle tokens is evaluated on them only when asked by name: a number
    measured on ground truth must say so, so the default refuses with the fix.
    """
    if requested == ORACLE:
        return TokenSource(ORACLE, saved_data_config(checkpoint).perception_config or "perception defaults")
    if requested is not None:
        if not Path(requested).is_file():
            raise FileNotFoundError(f"{requested}: token cache not found; export it with tools/export_tokens.py "
                                    "or pass --tokens oracle")
        return TokenSource("cache", str(requested))
    data = saved_data_config(checkpoint)
    if data.token_source == ORACLE:
        raise ValueError(f"{checkpoint} was trained on oracle (ground-truth) tokens; evaluate it on them only "
                         "explicitly (--tokens oracle, and the row is named so), or pass a token cache --tokens FILE")
    if data.token_source == "online":
        from vla_world.training.online_perception import perception_folder

        folder = perception_folder(checkpoint)
        if folder is None:
            raise FileNotFoundError(f"{checkpoint}/perception: missing, but {checkpoint}/config.yaml says the planner "
                                    "was trained with online perception; the checkpoint is incomplete")
        return TokenSource("online", str(folder))
    return TokenSource("cache", f"{data.token_cache}/{split}.safetensors")


def load_source_tokens(source: TokenSource, checkpoint: str | Path, records: list[SampleRecord],
                       dataroot: str | Path | None = None) -> dict[str, PerceptionTokens]:
    """Tokens of `records` from `source` ({sample_token: PerceptionTokens})."""
    if source.is_oracle:
        from vla_world.training.data import oracle_token_map

        return oracle_token_map(records, saved_data_config(checkpoint).perception_config)
    if source.kind == "cache":
        return load_tokens_for(source.detail, [r.sample_token for r in records], dataroot)
    return fine_tuned_tokens(checkpoint, Path(source.detail), records, dataroot, saved_data_config(checkpoint))


def fine_tuned_tokens(checkpoint: str | Path, folder: Path, records: list[SampleRecord],
                      dataroot: str | Path | None, data: DataConfig) -> dict[str, PerceptionTokens]:
    """Tokens from the perception a planning checkpoint fine-tuned online (`folder`, found by
    `resolve_token_source`)."""
    from vla_world.training.online_perception import OnlinePerception

    if dataroot is None:
        raise ValueError(f"{checkpoint} was trained with online perception: its tokens come from camera images, "
                         "so pass dataroot= (tools: --dataroot)")
    # a few samples (tools/plan.py): features straight from the images, no cache file per subset
    cache = data.cache_features and len(records) > LIVE_FEATURES_BELOW
    online = OnlinePerception.load(folder, records, dataroot, data.feature_cache, cache=cache)
    return online.all_tokens(records)


def split_of(records: list[SampleRecord]) -> str:
    splits = sorted({r.split for r in records})
    if len(splits) != 1:
        raise ValueError(f"records mix splits {splits}; evaluate one split at a time")
    return splits[0]


@torch.no_grad()
def predict_split(checkpoint: str | Path, records: list[SampleRecord], source: TokenSource | None = None,
                  batch_size: int = 8, progress: bool = True, dataroot: str | Path | None = None,
                  tokens: dict[str, PerceptionTokens] | None = None, decoding: str = AUTO, guard: bool = True,
                  guard_choices: dict[str, int] | None = None) -> dict[str, str]:
    """{sample_token: planner text} for every record (parse with planning.codec.parse_trajectory).

    A planner with residual answers answers in centimetres relative to its prompt's prior; its texts
    come back as the absolute answers they mean (`absolute_text`; one that does not parse comes back
    raw and fails the same way), so prediction files stay self-contained.

    `decoding`: "auto" (default: the plan head where the checkpoint has one, else "constrained"), "head",
    "constrained" (every answer is a 6-point template answer) or "greedy".

    `guard`: the collision guard on every parsed plan (module doc); `guard_choices`, when given, is filled with
    {sample_token: the guard's choice} (0: the model's plan kept).

    Tokens: `tokens` when given (the caller names their source), else from `source`, else the ones
    the checkpoint was trained with (`resolve_token_source`); `dataroot` is needed when that is online
    perception (tokens from the camera images).
    """
    if tokens is None:
        source = source or resolve_token_source(checkpoint, split_of(records))
        tokens = load_source_tokens(source, checkpoint, records, dataroot)
    planner = Planner.from_checkpoint(checkpoint, batch_size=batch_size, decoding=check_decoding(decoding))
    builder = planner.model.sequence_builder
    inputs = [planner_input(r) for r in records]
    prompts = [builder.encode(inp, _tokens_for(r, tokens), PLANNING_QUESTION) for inp, r in zip(inputs, records)]
    priors = [planner.answer_prior(inp) for inp in inputs]
    texts = [absolute_text(t, p) for t, p in zip(planner.plan_texts(prompts, progress, priors, inputs), priors)]
    if guard:
        guarded = [guard_text(t, inp, _tokens_for(r, tokens)) for t, inp, r in zip(texts, inputs, records)]
        texts = [t for t, _ in guarded]
        if guard_choices is not None:
            guard_choices.update({r.sample_token: c for r, (_, c) in zip(records, guarded)})
    return {r.sample_token: t for r, t in zip(records, texts)}


@torch.no_grad()
def answer_questions(checkpoint: str | Path, records: list[SampleRecord], tokens: dict[str, PerceptionTokens],
                     examples: list, batch_size: int = 8, progress: bool = True) -> list[str]:
    """One answer per example (anything with sample_token, question, focus_track_id), in order.

    An example whose focus agent has no perception token gets the answer "" (it cannot be asked).
    """
    planner = Planner.from_checkpoint(checkpoint, batch_size=batch_size)
    builder = planner.model.sequence_builder
    by_token = {r.sample_token: r for r in records}
    prompts, slots = [], []
    for i, ex in enumerate(examples):
        record = by_token[ex.sample_token]
        try:
            prompts.append(builder.encode(planner_input(record), _tokens_for(record, tokens), ex.question,
                                          focus_track_id=getattr(ex, "focus_track_id", None)))
            slots.append(i)
        except FocusNotDetected:
            continue
    answers = [""] * len(examples)
    for i, text in zip(slots, planner.generate(prompts, ANSWER_MAX_NEW_TOKENS, progress)):
        answers[i] = text
    return answers
