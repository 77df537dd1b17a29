"""Rule-based reward verifiers for planning answers: pure functions of (answer text, reward target).

Why this module exists: GRPO (issue 11; VLA-World supplementary A.1) scores G sampled answers per
prompt with lightweight rules instead of a learned reward model, and the same rules must run inside
other trainers (EasyR1's reward worker, `planning/easyr1_reward.py`). So this is leaf code: numpy,
the trajectory codec and the metric core only (no torch, transformers, devkit, cv2, scipy or shapely).

Frame and units: the current LiDAR_TOP frame (x right, y forward), metres; six waypoints at
t = 0.5 .. 3.0 s, as everywhere in `planning/`.

The target (`RewardTarget`): what the verifiers score against, derived from `PlanningTargets` by
`planning.reward_targets.reward_target` (which needs the rasteriser) and stored as JSON (the
`ground_truth` of an EasyR1 dataset): the GT ego future at the codec's precision (2 decimals, so
the GT's own answer text scores exactly 1), its mask, the obstacle cells of the collision metric
(UniAD raster layout, run-length coded; drawn by `planning.occupancy` for one convention's content)
and the agents present now (class, centre) for grounding.

The terms (each in [0, 1]; `score_answer` returns them with their parts; docs/rewards.md):
  * format: the answer is exactly `<traj_start>[(x,y) x 6]<traj_end>` (plain), or the blocks
    `RewardConfig.blocks` each once, in order, with that trajectory inside `<answer>` (structured);
    the trajectory parses (`planning.codec.parse_trajectory`) to 6 finite points within
    `PLAUSIBLE_RANGE_M` of the ego. 1 or 0. Every other term is 0 when the format fails, so a
    broken answer is never scored as the ego standing still.
  * collision: the metric's ego-box test (`planning.metrics.box_collisions`: the same 4.084 m x
    1.85 m box, whole-cell shifts and grid orientation as the convention) on the target's cells;
    steps where the GT box itself collides, or that lie past the scene end, are not counted (the
    metric's rule). 1 without a counted collision, else k / 6 for a first counted collision at
    step k = 0 .. 5 (0 at 0.5 s, 5/6 at 3.0 s): an earlier collision scores less.
  * accuracy: exp(-L2 / s), L2 the mean over the GT's valid steps of the distance to the GT
    waypoint, s = `RewardConfig.accuracy_scale_m`.
  * grounding (structured only, else None): objects named in `<perception>` / `<think>` (a class
    word followed by an (x, y) position) against the agents present now: F1 of precision (named
    objects within `grounding_radius_m` of an agent of that class) and recall (of the
    `grounding_reference_agents` nearest agents within `grounding_range_m`), minus
    `hallucination_penalty` per named object that matches no agent, floored at 0.
  * consistency (structured only, else None): the mean of (a) the `<prediction>` point against
    the first waypoint, max(0, 1 - d / `prediction_radius_m`), and (b) 1 when the `<action>`
    names an action the trajectory's shape allows (`trajectory_actions`), else 0.
  * total: the weighted mean over the terms that apply (None terms drop out and their weight is
    shared by the others in proportion), so a plain answer and a structured one both reach 1.

Nothing here raises on model text: any string gives finite scores in [0, 1]. A malformed target
(a program error, not a model error) raises a ValueError naming the field.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np

from planning.codec import TRAJ_END, TRAJ_START, parse_trajectory
from planning.metrics import CONVENTIONS, GRID_CELLS, IGNORE_VALUE, box_collisions
from vla_world.data.records import (
    COMMAND_LATERAL_THRESHOLD_M,
    DETECTION_CLASSES,
    NUM_FUTURE,
    STEP_SECONDS,
)

# planning.evaluate.PLAUSIBLE_RANGE_M (that module needs cv2, so the value is repeated here;
# tests/test_rewards.py keeps the two equal): a waypoint farther than this from the ego is a failure.
PLAUSIBLE_RANGE_M = 100.0
# The meta-actions of vla_world.qa.vocab.ACTIONS (a layer above planning; a test keeps them equal).
KEEP_FORWARD, STOP, TURN_LEFT, TURN_RIGHT = "keep forward", "stop/slow down", "turn left", "turn right"
ACTIONS: tuple[str, ...] = (KEEP_FORWARD, STOP, TURN_LEFT, TURN_RIGHT)
# vla_world.qa.facts.MOVING_SPEED: below this end speed (m/s) a path has come to a stop (the labels' rule).
MOVING_SPEED_MPS = 0.5
# A plan with a half-second this much slower (m/s) than an earlier one slows down (as labels.SLOWER_MPS).
SLOW_DOWN_MPS = 1.0
# End-of-turn tokens a decoder may leave at the end of a response (EasyR1 with skip_special_tokens=false).
END_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")
TARGET_VERSION = 1
TERMS: tuple[str, ...] = ("format", "collision", "accuracy", "grounding", "consistency")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")
_PLAIN = re.compile(rf"\s*{re.escape(TRAJ_START)}\s*\[[^\[\]<>]*\]\s*{re.escape(TRAJ_END)}\s*")
_OTHER_BLOCKS = re.compile(r"(?:\s*<(\w+)>.*?</\1>)*\s*", re.DOTALL)


def _class_words() -> dict[str, str]:
    """Every spelling of a detection class in text (singular, plural, underscore or space) -> the class."""
    words = {}
    for cls in DETECTION_CLASSES:
        for name in {cls, cls.replace("_", " ")}:
            plural = name + ("es" if name.endswith("s") else "s")
            words.update({name: cls, plural: cls})
    return words


CLASS_WORDS = _class_words()
_CLASS_RE = re.compile(r"(?<![\w])(" + "|".join(re.escape(w) for w in sorted(CLASS_WORDS, key=len, reverse=True))
                       + r")(?![\w])", re.IGNORECASE)
_ACTION_RE = re.compile(r"(?<![\w])(" + "|".join(re.escape(a) for a in sorted(ACTIONS, key=len, reverse=True))
                        + r")(?![\w])", re.IGNORECASE)


@dataclass(frozen=True)
class RewardConfig:
    """How answers are scored: the expected form, the weights of the total and each term's scale."""

    structured: bool = False  # expect the structured blocks (issue 10) instead of the plain trajectory
    blocks: tuple[str, ...] = ("perception", "prediction", "think", "action", "answer")  # required, in order
    format_weight: float = 0.1  # format is also a gate: 0 here zeroes every other term
    collision_weight: float = 0.3  # the safety term: a collision at 0.5 s costs the whole term
    accuracy_weight: float = 0.4  # closeness to the logged trajectory: the largest, so standing still never pays
    grounding_weight: float = 0.1  # structured only: named objects exist where they are said to be
    consistency_weight: float = 0.1  # structured only: prediction and action agree with the trajectory
    accuracy_scale_m: float = 1.0  # s of exp(-L2 / s): L2 = 1 m scores e^-1 = 0.37
    grounding_radius_m: float = 2.0  # a named object matches an agent of its class this close (one of nuScenes' detection match distances 0.5, 1, 2, 4 m)
    grounding_range_m: float = 30.0  # agents within this distance of the ego may be missed (recall)
    grounding_reference_agents: int = 5  # recall counts only this many nearest agents within range
    hallucination_penalty: float = 0.1  # subtracted from the grounding F1 per named object with no agent
    prediction_radius_m: float = 1.0  # the <prediction> point scores 0 this far from the first waypoint

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_weight") and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"RewardConfig.{f.name}={value!r}: a weight must be a finite number >= 0")
            if f.name.endswith("_m") and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"RewardConfig.{f.name}={value!r}: a distance must be a finite number of metres > 0")
        if self.format_weight + self.collision_weight + self.accuracy_weight <= 0:
            raise ValueError("RewardConfig: format_weight + collision_weight + accuracy_weight must be > 0, "
                             "or a plain answer has no total")
        if not isinstance(self.grounding_reference_agents, int) or self.grounding_reference_agents < 1:
            raise ValueError(f"RewardConfig.grounding_reference_agents={self.grounding_reference_agents!r}: use an int >= 1")
        if not (isinstance(self.hallucination_penalty, (int, float)) and 0 <= self.hallucination_penalty <= 1):
            raise ValueError(f"RewardConfig.hallucination_penalty={self.hallucination_penalty!r}: use a number in [0, 1]")
        blocks = tuple(self.blocks)
        if not blocks or blocks[-1] != "answer" or len(set(blocks)) != len(blocks) or not all(
                isinstance(b, str) and re.fullmatch(r"\w+", b) for b in blocks):
            raise ValueError(f"RewardConfig.blocks={self.blocks!r}: distinct tag names (letters, digits, _), ending "
                             "with 'answer' (the trajectory's block)")
        object.__setattr__(self, "blocks", blocks)  # a list from YAML / EasyR1 kwargs becomes a tuple

    def weight(self, term: str) -> float:
        return float(getattr(self, f"{term}_weight"))


@dataclass(frozen=True, eq=False)
class RewardTarget:
    """What one sample's answers are scored against (module doc); build it with planning.reward_targets."""

    sample_token: str
    convention: str  # whose obstacle content, grid orientation and GT-collision rule (planning.metrics)
    ego_future: np.ndarray  # (6, 2) metres, 2 decimals, zeros where masked
    ego_future_mask: np.ndarray  # (6,) bool, False past the scene end
    occupied_runs: tuple[tuple[int, ...], ...]  # per step: (start, length, ...) runs of flat cells row * 200 + col
    agent_class: tuple[str, ...]  # (K,) detection class of each agent present now
    agent_xy: np.ndarray  # (K, 2) their box centres now, metres

    def __post_init__(self):
        object.__setattr__(self, "ego_future", _float_array("ego_future", self.ego_future, (NUM_FUTURE, 2)))
        mask = np.asarray(self.ego_future_mask)
        if mask.shape != (NUM_FUTURE,) or not np.isin(mask, (0, 1)).all():
            raise ValueError(f"RewardTarget.ego_future_mask: expected {NUM_FUTURE} booleans, got {mask.tolist()}")
        if not mask.any():
            raise ValueError(f"RewardTarget {self.sample_token}: ego_future_mask has no valid step, so there is nothing "
                             "to score; leave such samples out (tools/export_data.py counts them)")
        object.__setattr__(self, "ego_future_mask", mask.astype(bool))
        if self.convention not in CONVENTIONS:
            raise ValueError(f"RewardTarget.convention={self.convention!r}: use one of {', '.join(CONVENTIONS)}")
        object.__setattr__(self, "occupied_runs", _check_runs(self.occupied_runs))
        classes = tuple(str(c) for c in self.agent_class)
        unknown = sorted(set(classes) - set(DETECTION_CLASSES))
        if unknown:
            raise ValueError(f"RewardTarget.agent_class: {unknown} are not detection classes ({', '.join(DETECTION_CLASSES)})")
        object.__setattr__(self, "agent_class", classes)
        object.__setattr__(self, "agent_xy", _float_array("agent_xy", self.agent_xy, (len(classes), 2)))

    @cached_property
    def occupancy(self) -> np.ndarray:
        """(1, 6, 200, 200) uint8 in UniAD's layout: 1 on the obstacle cells, 255 frames past the scene end."""
        grid = np.zeros((1, NUM_FUTURE, GRID_CELLS * GRID_CELLS), np.uint8)
        for step, runs in enumerate(self.occupied_runs):
            pairs = np.asarray(runs, np.int64).reshape(-1, 2)
            if len(pairs):
                grid[0, step, _expand_runs(pairs)] = 1
        grid[0, ~self.ego_future_mask] = IGNORE_VALUE
        return grid.reshape(1, NUM_FUTURE, GRID_CELLS, GRID_CELLS)

    @cached_property
    def gt_collides(self) -> np.ndarray:
        """(6,) bool: steps the metric does not count (the GT box touches an obstacle, or no annotation)."""
        return box_collisions(self.ego_future[None], self.occupancy, self.convention)[0]

    def to_dict(self) -> dict:
        return {
            "version": TARGET_VERSION,
            "sample_token": self.sample_token,
            "convention": self.convention,
            "ego_future": self.ego_future.tolist(),
            "ego_future_mask": self.ego_future_mask.tolist(),
            "occupied_runs": [list(r) for r in self.occupied_runs],
            "agent_class": list(self.agent_class),
            "agent_xy": self.agent_xy.tolist(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> RewardTarget:
        if not isinstance(data, dict):
            raise TypeError(f"a reward target is a JSON object, got {type(data).__name__}")
        if data.get("version") != TARGET_VERSION:
            raise ValueError(f"reward target version {data.get('version')!r}; this code reads version {TARGET_VERSION}: "
                             "re-export the data (tools/export_data.py)")
        expected = {f.name for f in fields(cls)} | {"version"}
        if set(data) != expected:
            raise ValueError(f"reward target keys {sorted(data)}; expected {sorted(expected)}")
        return cls(**{k: v for k, v in data.items() if k != "version"})

    @classmethod
    def from_json(cls, text: str | dict) -> RewardTarget:
        """From `to_json` text (or the dict it holds)."""
        if isinstance(text, dict):
            return cls.from_dict(text)
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"reward target is not JSON ({exc}); pass the `answer` field tools/export_data.py wrote") from exc
        return cls.from_dict(data)


def _float_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(shape) if np.size(value) == math.prod(shape) else None
    if array is None or not np.isfinite(array).all():
        raise ValueError(f"RewardTarget.{name}: expected finite numbers of shape {shape}, got {np.shape(value)}")
    return array


def _check_runs(runs) -> tuple[tuple[int, ...], ...]:
    cells = GRID_CELLS * GRID_CELLS
    if len(runs) != NUM_FUTURE:
        raise ValueError(f"RewardTarget.occupied_runs: expected {NUM_FUTURE} lists (one per step), got {len(runs)}")
    out = []
    for step, run in enumerate(runs):
        pairs = np.asarray(run, dtype=np.int64).reshape(-1, 2) if len(run) % 2 == 0 else None
        if pairs is None or (len(pairs) and ((pairs[:, 0] < 0) | (pairs[:, 1] < 1) | (pairs.sum(axis=1) > cells)).any()):
            raise ValueError(f"RewardTarget.occupied_runs[{step}]: expected (start, length) pairs inside 0..{cells - 1}")
        out.append(tuple(int(v) for v in run))
    return tuple(out)


def _expand_runs(pairs: np.ndarray) -> np.ndarray:
    """Flat cell indices of (start, length) runs."""
    lengths = pairs[:, 1]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(pairs[:, 0], lengths) + offsets


def encode_runs(flat_cells: np.ndarray) -> tuple[int, ...]:
    """Sorted unique flat cell indices -> (start, length, start, length, ...)."""
    cells = np.unique(np.asarray(flat_cells, dtype=np.int64))
    if cells.size == 0:
        return ()
    breaks = np.flatnonzero(np.diff(cells) != 1) + 1
    starts = cells[np.r_[0, breaks]]
    lengths = np.diff(np.r_[0, breaks, cells.size])
    return tuple(int(v) for v in np.column_stack([starts, lengths]).ravel())


# ---------------------------------------------------------------- reading an answer


@dataclass(frozen=True)
class Answer:
    """One response, read once: the trajectory (None when the format fails), why not, and the blocks."""

    waypoints: np.ndarray | None  # (6, 2) metres when the format holds
    error: str | None  # why the format failed
    blocks: dict[str, str] = field(default_factory=dict)  # structured: the inside of each required block


def strip_end_tokens(text: str) -> str:
    """The response without trailing end-of-turn tokens and whitespace (they are not part of the answer)."""
    text = text.rstrip()
    while text.endswith(END_TOKENS):
        text = text[: -len(next(t for t in END_TOKENS if text.endswith(t)))].rstrip()
    return text


def read_answer(text: str, config: RewardConfig = RewardConfig()) -> Answer:
    """Check the form of `text` and read its trajectory; never raises (module doc, "format")."""
    if not isinstance(text, str):
        return Answer(None, f"expected text, got {type(text).__name__}")
    text = strip_end_tokens(text)
    blocks: dict[str, str] = {}
    if config.structured:
        blocks, error = _structured_blocks(text, config.blocks)
        if error:
            return Answer(None, error)
        body = blocks["answer"]
    else:
        body = text
    if not _PLAIN.fullmatch(body):
        where = "the <answer> block" if config.structured else "the answer"
        return Answer(None, f"{where} is not exactly {TRAJ_START}[(x,y) x {NUM_FUTURE}]{TRAJ_END}", blocks)
    parsed = parse_trajectory(body)
    if not parsed.ok:
        return Answer(None, parsed.error, blocks)
    farthest = float(np.linalg.norm(parsed.waypoints, axis=1).max())
    if farthest > PLAUSIBLE_RANGE_M:
        return Answer(None, f"implausible waypoint: {farthest:.0f} m from the ego (bound {PLAUSIBLE_RANGE_M:.0f} m)", blocks)
    return Answer(parsed.waypoints, None, blocks)


def _structured_blocks(text: str, names: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
    """{name: inside} of each required block, present once and in order, with nothing but other blocks between."""
    spans = []
    for name in names:
        opening, closing = f"<{name}>", f"</{name}>"
        if text.count(opening) != 1 or text.count(closing) != 1:
            return {}, f"<{name}> must appear exactly once, closed (found {text.count(opening)} open, {text.count(closing)} close)"
        start, end = text.index(opening), text.index(closing)
        if end < start:
            return {}, f"</{name}> comes before <{name}>"
        spans.append((start, end + len(closing), text[start + len(opening): end]))
    if any(a[1] > b[0] for a, b in itertools.pairwise(spans)):
        return {}, f"blocks out of order; expected {' '.join(f'<{n}>' for n in names)}"
    gaps = [text[: spans[0][0]]] + [text[a[1]: b[0]] for a, b in itertools.pairwise(spans)] + [text[spans[-1][1]:]]
    if gaps[0].strip() or gaps[-1].strip():
        return {}, f"text outside the blocks; the answer starts with <{names[0]}> and ends with </{names[-1]}>"
    if not all(_OTHER_BLOCKS.fullmatch(gap) for gap in gaps[1:-1]):
        return {}, "between required blocks only whitespace or other complete <tag>...</tag> blocks may stand"
    return {name: inside for name, (_, _, inside) in zip(names, spans)}, None


# ---------------------------------------------------------------- the verifiers


@dataclass(frozen=True)
class Term:
    """One verifier's verdict: its score in [0, 1] (None: not applicable) and what it was computed from."""

    score: float | None
    parts: dict = field(default_factory=dict)


def _as_answer(answer: Answer | str, config: RewardConfig) -> Answer:
    return answer if isinstance(answer, Answer) else read_answer(answer, config)


def format_reward(answer: Answer | str, config: RewardConfig = RewardConfig()) -> Term:
    """1 when the answer has the required form and a usable trajectory, else 0 (module doc)."""
    answer = _as_answer(answer, config)
    return Term(float(answer.waypoints is not None), {"error": answer.error})


def collision_reward(answer: Answer | str, target: RewardTarget, config: RewardConfig = RewardConfig()) -> Term:
    """1 without a counted collision, k / 6 for a first one at step k (0-based), 0 when the format fails."""
    answer = _as_answer(answer, config)
    if answer.waypoints is None:
        return Term(0.0, {"error": answer.error})
    hits = box_collisions(answer.waypoints[None], target.occupancy, target.convention)[0] & ~target.gt_collides
    first = int(np.argmax(hits)) if hits.any() else None
    score = 1.0 if first is None else first / NUM_FUTURE
    return Term(score, {"first_collision_step": first, "colliding_steps": int(hits.sum()),
                        "uncounted_steps": int(target.gt_collides.sum())})


def accuracy_reward(answer: Answer | str, target: RewardTarget, config: RewardConfig = RewardConfig()) -> Term:
    """exp(-L2 / accuracy_scale_m), L2 the mean distance to the GT over its valid steps; 0 when the format fails."""
    answer = _as_answer(answer, config)
    if answer.waypoints is None:
        return Term(0.0, {"error": answer.error})
    valid = target.ego_future_mask
    l2 = float(np.linalg.norm(answer.waypoints[valid] - target.ego_future[valid], axis=1).mean())
    return Term(math.exp(-l2 / config.accuracy_scale_m), {"l2_m": l2})


def named_objects(text: str) -> list[tuple[str, float, float]]:
    """(class, x, y) of each object named in `text`: a class word followed by its (x, y) position.

    The position is the first `(number, number)` after the class word and before the next class
    word; a class word without one names nothing checkable and is skipped.
    """
    matches = list(_CLASS_RE.finditer(text))
    found = []
    for match, after in zip(matches, matches[1:] + [None]):
        pair = _PAIR.search(text, match.end(), after.start() if after else len(text))
        if pair:
            x, y = float(pair.group(1)), float(pair.group(2))
            found.append((CLASS_WORDS[match.group(1).lower()], x, y))
    return found


def grounding_reward(answer: Answer | str, target: RewardTarget, config: RewardConfig = RewardConfig()) -> Term:
    """Structured only (None for plain answers): F1 of named objects vs agents now, minus the hallucination penalty."""
    if not config.structured or not {"perception", "think"} & set(config.blocks):
        return Term(None, {"reason": "no <perception>/<think> block is asked for"})
    answer = _as_answer(answer, config)
    if answer.waypoints is None:
        return Term(0.0, {"error": answer.error})
    text = " ".join(answer.blocks.get(name, "") for name in ("perception", "think"))
    named = named_objects(text)
    near = _near_same_class(named, target, config.grounding_radius_m)  # (named, K) bool
    matched = near.any(axis=1)
    reference = _reference_agents(target, config)
    covered = near[:, reference].any(axis=0) if len(named) else np.zeros(len(reference), bool)
    precision = float(matched.mean()) if len(named) else 1.0
    recall = float(covered.mean()) if len(reference) else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    hallucinated = int((~matched).sum())
    score = min(1.0, max(0.0, f1 - config.hallucination_penalty * hallucinated))
    return Term(score, {"named": len(named), "precision": precision, "recall": recall, "f1": f1,
                        "hallucinated": hallucinated, "reference_agents": len(reference)})


def _near_same_class(named: list[tuple[str, float, float]], target: RewardTarget, radius: float) -> np.ndarray:
    """(len(named), K) bool: named object i lies within `radius` of agent k, and has its class."""
    if not named or not target.agent_class:
        return np.zeros((len(named), len(target.agent_class)), bool)
    xy = np.array([(x, y) for _, x, y in named], dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        distance = np.linalg.norm(xy[:, None, :] - target.agent_xy[None], axis=-1)
    same = np.array([[c == a for a in target.agent_class] for c, _, _ in named])
    return same & (distance <= radius)  # nan / inf distances compare False


def _reference_agents(target: RewardTarget, config: RewardConfig) -> np.ndarray:
    """Indices of the agents recall counts: the nearest `grounding_reference_agents` within `grounding_range_m`."""
    distance = np.linalg.norm(target.agent_xy, axis=1)
    order = np.argsort(distance, kind="stable")
    return order[distance[order] <= config.grounding_range_m][: config.grounding_reference_agents]


def trajectory_actions(waypoints: np.ndarray) -> frozenset[str]:
    """The meta-actions a (6, 2) plan's shape allows, by the label rules (vla_world.qa.labels.ego_action).

    stop/slow down: the plan stands still for a half-second (speed under MOVING_SPEED_MPS: it stops,
    or waits before moving off) or a later half-second is at least SLOW_DOWN_MPS slower than an
    earlier one; turn left / right: the last waypoint is at least COMMAND_LATERAL_THRESHOLD_M to
    that side; keep forward: not a turn, and not ending stopped. A plan may allow two (a stop
    while turning). The labels also say stop/slow down for causes in the scene the plan need not
    show (yielding while keeping speed): docs/rewards.md gives how often the GT's label is allowed.
    """
    path = np.vstack([np.zeros((1, 2)), np.asarray(waypoints, np.float64)])
    speeds = np.linalg.norm(np.diff(path, axis=0), axis=1) / STEP_SECONDS
    allowed = set()
    slowest_later = np.minimum.accumulate(speeds[::-1])[::-1]  # the slowest speed from each step on
    if speeds.min() < MOVING_SPEED_MPS or (speeds[:-1] - slowest_later[1:]).max() >= SLOW_DOWN_MPS:
        allowed.add(STOP)
    lateral = path[-1, 0]
    if abs(lateral) >= COMMAND_LATERAL_THRESHOLD_M:
        allowed.add(TURN_LEFT if lateral < 0 else TURN_RIGHT)
    elif speeds[-1] >= MOVING_SPEED_MPS:
        allowed.add(KEEP_FORWARD)
    return frozenset(allowed)


def consistency_reward(answer: Answer | str, config: RewardConfig = RewardConfig()) -> Term:
    """Structured only (None for plain answers): mean of the prediction-point and the action agreement."""
    if not config.structured or not {"prediction", "action"} & set(config.blocks):
        return Term(None, {"reason": "no <prediction>/<action> block is asked for"})
    answer = _as_answer(answer, config)
    if answer.waypoints is None:
        return Term(0.0, {"error": answer.error})
    parts: dict = {}
    point = 0.0
    if "prediction" in answer.blocks:
        pairs = _PAIR.findall(answer.blocks["prediction"])
        if len(pairs) == 1:
            d = float(np.hypot(float(pairs[0][0]) - answer.waypoints[0, 0], float(pairs[0][1]) - answer.waypoints[0, 1]))
            point = max(0.0, 1.0 - d / config.prediction_radius_m) if math.isfinite(d) else 0.0
            parts["prediction_distance_m"] = d
        parts["prediction_points"] = len(pairs)
    action = 0.0
    if "action" in answer.blocks:
        said = {m.lower() for m in _ACTION_RE.findall(answer.blocks["action"])}
        allowed = trajectory_actions(answer.waypoints)
        action = float(len(said) == 1 and next(iter(said)) in allowed)
        parts.update({"action": sorted(said), "allowed": sorted(allowed)})
    present = ["prediction" in answer.blocks, "action" in answer.blocks]
    scores = [s for s, p in zip((point, action), present) if p]
    parts.update({"prediction": point, "action_agrees": action})
    return Term(float(np.mean(scores)), parts)


# ---------------------------------------------------------------- the total


@dataclass(frozen=True)
class RewardScores:
    """All terms of one answer (None: not applicable) and their weighted total, each in [0, 1]."""

    total: float
    terms: dict[str, float | None]
    parts: dict[str, dict]

    def as_easyr1(self) -> dict[str, float]:
        """EasyR1's reward dict: `overall` plus one key per applicable term (it averages every key, so no None)."""
        return {"overall": self.total, **{k: v for k, v in self.terms.items() if v is not None}}


def score_answer(text: str, target: RewardTarget, config: RewardConfig = RewardConfig()) -> RewardScores:
    """Every verifier on one response; never raises on `text` (module doc)."""
    answer = read_answer(text, config)
    verdicts = {
        "format": format_reward(answer, config),
        "collision": collision_reward(answer, target, config),
        "accuracy": accuracy_reward(answer, target, config),
        "grounding": grounding_reward(answer, target, config),
        "consistency": consistency_reward(answer, config),
    }
    terms = {name: verdict.score for name, verdict in verdicts.items()}
    return RewardScores(weighted_total(terms, config), terms, {name: v.parts for name, v in verdicts.items()})


def weighted_total(terms: dict[str, float | None], config: RewardConfig) -> float:
    """Weighted mean of the applicable terms (weights renormalised over them)."""
    applicable = {name: score for name, score in terms.items() if score is not None}
    weights = {name: config.weight(name) for name in applicable}
    total_weight = sum(weights.values())
    return sum(weights[n] * s for n, s in applicable.items()) / total_weight if total_weight > 0 else 0.0
