"""The structured planning answer (VLA-World, paper 004 Fig. 1b): reasoning blocks before the trajectory.

Why this module exists: issue 10 asks the planner to write what it sees, where it expects to be,
what it imagines, what could go wrong and what it will do, before the trajectory; the training
targets (`vla_world.training.data`), the constrained decoder (`vla_world.constrained_structured`),
the evaluation and the reward verifiers (`planning.rewards`) must all agree on one format. It is
leaf code (numpy and the trajectory codec only), so EasyR1's reward worker can read it too.

The answer, blocks in this order, each one optional by `AnswerConfig` except `<answer>`:

    <perception>car (3.5,1.5) heading with us; pedestrian (-3.6,-2.2) heading left</perception>
    <prediction>(0.01,2.50)</prediction>
    <visual>...the next frame's codes, as the world stage writes them...</visual>
    <think>Medium risk: the car at (3.5,1.5) passes 2.4 m from the path. Stay alert.</think>
    <action>keep forward</action>
    <answer><traj_start>[(x1,y1),...,(x6,y6)]<traj_end></answer>

(no whitespace between blocks). What each block holds and where it comes from:
  * perception: the `perception_agents` nearest agents within `perception_range_m` of the
    PERCEPTION output the model is given (the decoded boxes and classes its tokens carry,
    `perception.tokens.PerceptionTokens`), not the ground truth: the block teaches what the model
    can see. Each is a class word, its box centre `(x,y)` (1 decimal) and its heading relative to
    the ego read from the box yaw ("heading with us / towards us / left / right", "static" for
    cones and barriers). The perception output holds no velocity, so motion is the heading only.
    The form "class (x,y)" is what the grounding verifier reads (`planning.rewards.named_objects`).
  * prediction: the ego's kinematic short-term prediction at +0.5 s, the first point of the CTRA
    rollout of the PlannerInput's ego state (`planning.kinematic.ctra_prior`: no fitted constants,
    so it is a function of the input alone), one `(x,y)` in the codec's number format.
  * visual: the next keyframe's CAM_FRONT codes as the world stage writes them (`<vis_i>` tokens,
    exactly K of them); a TARGET (the future frame), never an input. The caller passes the block's
    inside text (`vla_world.training.data` reads the frame-code cache); off by default.
  * think: a risk assessment over the perceived agents near the planned path (the answer's own
    trajectory: the block may use labels, as every answer does): each agent's distance to the
    path polyline (the origin and the six waypoints) gives high (< `high_risk_m`) or medium
    (< `path_radius_m`) risk; at most `think_agents` are named, nearest first. The wording is
    drawn from templates by a chooser seeded by (seed, sample token), so a sample's text never
    depends on the other samples.
  * action: the meta-action, one of ACTIONS (the labels' `vla_world.qa.labels.ego_action` already
    writes exactly these four; the caller passes it in, since the labels live above this layer).
  * answer: the trajectory exactly as `planning.codec.format_trajectory` writes it.

Reading: `parse_answer(text)` never raises; it returns every block in order (or why the text is
not a well-formed sequence of blocks) and the trajectory as the codec reads it (inside
`<answer>` when there is one, else the plain answer).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

import numpy as np

from planning.codec import (
    ParsedTrajectory,
    format_number,
    format_trajectory,
    parse_trajectory,
)
from vla_world.data.records import DETECTION_CLASSES

# The one list of answer blocks, in their order. Their tags are special tokens of the tiny
# tokenizer (vla_world.model.tokenizer.STRUCTURE_TOKENS reads TAG_TOKENS from here).
BLOCKS: tuple[str, ...] = ("perception", "prediction", "visual", "think", "action", "answer")
OPTIONAL_BLOCKS: tuple[str, ...] = BLOCKS[:-1]
TAG_TOKENS: tuple[str, ...] = tuple(tag for name in BLOCKS for tag in (f"<{name}>", f"</{name}>"))
# The meta-actions (vla_world.qa.vocab.ACTIONS; planning.rewards.ACTIONS; a test keeps the three equal).
ACTIONS: tuple[str, ...] = ("keep forward", "stop/slow down", "turn left", "turn right")
STATIC_CLASSES = frozenset({"traffic_cone", "barrier"})  # objects that do not drive: no heading words
END_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")  # a decoder may leave these at the end

_OPEN = re.compile(r"<(\w+)>")


@dataclass
class AnswerConfig:
    """The planning answer's form: the plain trajectory (default) or the structured blocks, each on or off."""

    structured: bool = False  # false: `<traj_start>[...]<traj_end>` alone (the default until the ablation decides)
    perception: bool = True  # structured: the key perceived agents
    prediction: bool = True  # structured: the ego's CTRA position at +0.5 s
    visual: bool = False  # structured: the next frame's codes (needs data.frame_codes; a world-stage init decodes them)
    think: bool = True  # structured: the risk assessment over agents near the path
    action: bool = True  # structured: the meta-action
    perception_agents: int = 5  # agents named in <perception> (the grounding reward's recall counts 5 too)
    perception_range_m: float = 30.0  # only agents this close are named (the grounding reward's range)
    think_agents: int = 3  # at most this many agents assessed in <think>
    path_radius_m: float = 4.0  # an agent this close to the planned path is assessed (about a lane either side)
    high_risk_m: float = 2.0  # closer than this to the path: high risk (the ego is 1.85 m wide)

    def validate(self) -> None:
        if self.perception_agents < 1 or self.think_agents < 1:
            raise ValueError("answer.perception_agents and answer.think_agents must be >= 1")
        if not 0 < self.high_risk_m <= self.path_radius_m or self.perception_range_m <= 0:
            raise ValueError("answer: need 0 < high_risk_m <= path_radius_m and perception_range_m > 0")

    def blocks(self) -> tuple[str, ...]:
        """The blocks an answer holds, in order; () for the plain answer."""
        if not self.structured:
            return ()
        return tuple(name for name in OPTIONAL_BLOCKS if getattr(self, name)) + ("answer",)


@dataclass(frozen=True)
class SeenAgent:
    """One agent of the perception output: class, box centre (m) and yaw (rad, CCW from +x), LiDAR frame."""

    cls: str
    x: float
    y: float
    yaw: float

    @property
    def distance(self) -> float:
        return math.hypot(self.x, self.y)


def seen_agents(classes: np.ndarray, boxes: np.ndarray) -> list[SeenAgent]:
    """Agents of a perception output (class indices (A,), boxes (A, 7)), nearest first; unknown classes dropped."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
    out = [SeenAgent(DETECTION_CLASSES[int(c)], float(b[0]), float(b[1]), float(b[6]))
           for c, b in zip(np.asarray(classes).reshape(-1), boxes)
           if 0 <= int(c) < len(DETECTION_CLASSES) and np.isfinite(b[[0, 1, 6]]).all()]
    return sorted(out, key=lambda a: a.distance)


# ---------------------------------------------------------------- writing the blocks


def class_word(cls: str) -> str:
    return cls.replace("_", " ")


def position(x: float, y: float) -> str:
    """`(x,y)` with 1 decimal (enough for the grounding reward's 2 m radius), never `-0.0`."""
    def one(v: float) -> str:
        text = f"{v:.1f}"
        return "0.0" if text == "-0.0" else text
    return f"({one(x)},{one(y)})"


def heading_words(agent: SeenAgent) -> str:
    """The box's heading relative to the ego's (+y): with us, towards us, left or right; static objects say so."""
    if agent.cls in STATIC_CLASSES:
        return "static"
    relative = math.degrees(math.remainder(agent.yaw - math.pi / 2, 2 * math.pi))
    if abs(relative) <= 30:
        return "heading with us"
    if abs(relative) >= 150:
        return "heading towards us"
    return "heading left" if relative > 0 else "heading right"


def perception_text(agents: list[SeenAgent], config: AnswerConfig) -> str:
    near = [a for a in agents if a.distance <= config.perception_range_m][: config.perception_agents]
    if not near:
        return "no agents nearby"
    return "; ".join(f"{class_word(a.cls)} {position(a.x, a.y)} {heading_words(a)}" for a in near)


def prediction_text(point: np.ndarray) -> str:
    x, y = np.asarray(point, np.float64).reshape(2)
    return f"({format_number(x)},{format_number(y)})"


def path_distance(x: float, y: float, trajectory: np.ndarray) -> float:
    """Distance (m) from a point to the polyline origin -> waypoint 1 -> ... -> waypoint 6."""
    path = np.vstack([np.zeros((1, 2)), np.asarray(trajectory, np.float64)])
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((np.array([x, y]) - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0.0, 1.0)
    return float(np.linalg.norm(a + t[:, None] * ab - np.array([x, y]), axis=1).min())


_CLEAR = ("The planned path is clear: low risk.", "No agent comes near the planned path: low risk.",
          "Nothing is close to the path ahead, so the risk is low.")
_RISK = ("{risk} risk: the {cls} at {pos} is {d} m from the path.", "The {cls} at {pos} passes {d} m from the path: {risk} risk.",
         "{risk} risk from the {cls} at {pos}, {d} m from the path.")
_ADVICE = {"high": ("Slow down and keep a gap.", "Be ready to brake.", "Keep a safe gap."),
           "medium": ("Stay alert.", "Keep watching it.", "Keep an eye on it.")}


def think_text(agents: list[SeenAgent], trajectory: np.ndarray, config: AnswerConfig, chooser: random.Random) -> str:
    """The risk assessment (module doc): agents near the path, nearest to it first, from varied templates."""
    near = sorted((path_distance(a.x, a.y, trajectory), i) for i, a in enumerate(agents))
    near = [(d, agents[i]) for d, i in near if d < config.path_radius_m][: config.think_agents]
    if not near:
        return chooser.choice(_CLEAR)
    sentences = []
    for d, agent in near:
        risk = "high" if d < config.high_risk_m else "medium"
        template = chooser.choice(_RISK)
        sentences.append(template.format(risk=risk, cls=class_word(agent.cls), pos=position(agent.x, agent.y),
                                         d=f"{d:.1f}").capitalize())
    worst = "high" if near[0][0] < config.high_risk_m else "medium"
    return " ".join(sentences + [chooser.choice(_ADVICE[worst])])


def phrase_chooser(seed: int, sample_token: str) -> random.Random:
    """Deterministic wording per (seed, sample), as vla_world.qa.phrasing.Chooser (a layer above) does."""
    return random.Random(f"{seed}|{sample_token}|structured-think")


def structured_answer(config: AnswerConfig, trajectory: np.ndarray, *, agents: list[SeenAgent] = (),
                      prediction: np.ndarray | None = None, action: str | None = None, visual: str | None = None,
                      sample_token: str = "", seed: int = 0, prior: np.ndarray | None = None) -> str:
    """The planning answer of `config` (the plain trajectory when not structured); see the module doc.

    `prior`: the prompt's kinematic prior, for a residual answer (the `<answer>` block then holds the
    correction in centimetres, as the plain residual answer does; `<think>` still reads the metres)."""
    trajectory = np.asarray(trajectory, np.float64)
    contents = {"answer": format_trajectory(trajectory, prior=prior)}
    blocks = config.blocks()
    if not blocks:
        return contents["answer"]
    needs = {"prediction": prediction, "action": action, "visual": visual}
    missing = [name for name, value in needs.items() if name in blocks and value is None]
    if missing:
        raise ValueError(f"structured_answer: blocks {missing} are on (AnswerConfig) but no value was given")
    if action is not None and action not in ACTIONS:
        raise ValueError(f"structured_answer: action {action!r} is not one of {ACTIONS}")
    agents = sorted(agents, key=lambda a: a.distance)
    contents.update(perception=perception_text(agents, config),
                    think=think_text(agents, trajectory, config, phrase_chooser(seed, sample_token)),
                    prediction=None if prediction is None else prediction_text(prediction),
                    action=action, visual=visual)
    return "".join(f"<{name}>{contents[name]}</{name}>" for name in blocks)


def system_prompt_format(blocks: tuple[str, ...], residual: bool = False) -> str:
    """The sentence of the system prompt that describes the answer's form (blocks () = the plain one;
    `residual`: the trajectory is written as centimetre corrections to the kinematic prior)."""
    trajectory = "<traj_start>[(x1,y1),(x2,y2),(x3,y3),(x4,y4),(x5,y5),(x6,y6)]<traj_end>"
    if residual:
        trajectory = ("corrections to the kinematic prior in whole centimetres: "
                      "<traj_start>[(dx1,dy1),(dx2,dy2),(dx3,dy3),(dx4,dy4),(dx5,dy5),(dx6,dy6)]<traj_end>")
    if not blocks:
        return f"Plan 3 seconds as 6 waypoints, one every 0.5 s: {trajectory}."
    meaning = {"perception": "the key agents you see (class (x,y) heading)",
               "prediction": "your kinematic position at +0.5 s (x,y)", "visual": "the next front-camera frame's codes",
               "think": "the risks near your path", "action": f"one of: {', '.join(ACTIONS)}",
               "answer": f"3 seconds as 6 waypoints, one every 0.5 s: {trajectory}"}
    parts = "; ".join(f"<{name}> {meaning[name]}" for name in blocks)
    return f"Plan in blocks, in this order, each closed by its end tag: {parts}."


# ---------------------------------------------------------------- reading an answer


@dataclass(frozen=True)
class ParsedAnswer:
    """What `parse_answer` read: the blocks in order (empty for a plain answer), why not, and the trajectory."""

    blocks: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # why the block structure is malformed (None: well formed, or a plain answer)
    trajectory: ParsedTrajectory = field(default_factory=lambda: ParsedTrajectory(None, "not parsed"))

    @property
    def structured(self) -> bool:
        return bool(self.blocks) or self.error is not None


def strip_end(text: str) -> str:
    text = text.strip()
    while text.endswith(END_TOKENS):
        text = text[: -len(next(t for t in END_TOKENS if text.endswith(t)))].rstrip()
    return text


def parse_blocks(text: str, expected: tuple[str, ...] | None = None) -> tuple[dict[str, str], str | None]:
    """({name: inside} in order, None) when `text` is nothing but known blocks, each once, in BLOCKS order
    (and exactly `expected` when given), else (what was read so far, why not). Never raises."""
    if not isinstance(text, str):
        return {}, f"expected text, got {type(text).__name__}"
    text, blocks, pos = strip_end(text), {}, 0
    while pos < len(text):
        match = _OPEN.match(text, pos)
        if not match or match.group(1) not in BLOCKS:
            return blocks, f"text at character {pos} is not a block: {text[pos:pos + 24]!r}"
        name = match.group(1)
        if name in blocks:
            return blocks, f"<{name}> appears twice"
        end = text.find(f"</{name}>", match.end())
        if end < 0:
            return blocks, f"<{name}> is not closed"
        blocks[name] = text[match.end():end]
        pos = len(text) - len(text[end + len(name) + 3:].lstrip())
    order = [BLOCKS.index(name) for name in blocks]
    if order != sorted(order):
        return blocks, f"blocks out of order: {' '.join(blocks)}; expected the order {' '.join(BLOCKS)}"
    if expected is not None and tuple(blocks) != tuple(expected):
        return blocks, f"blocks {' '.join(blocks) or 'none'}; expected {' '.join(expected)}"
    return blocks, None


def parse_answer(text: str, expected: tuple[str, ...] | None = None) -> ParsedAnswer:
    """Blocks and trajectory of a planner's answer, structured or plain; never raises.

    A text starting with a block tag is read as structured (`parse_blocks`); any other text is a
    plain answer (no blocks, no block error). The trajectory is always the codec's reading
    (`planning.codec.parse_trajectory`, which reads only inside `<answer>` when there is one), so
    a structured and a plain answer are scored by the same rule, and a block error is reported
    beside the trajectory, not instead of it (the evaluator's failure policy is the codec's).
    """
    trajectory = parse_trajectory(text)
    if not isinstance(text, str):
        return ParsedAnswer(error=f"expected text, got {type(text).__name__}", trajectory=trajectory)
    opening = _OPEN.match(text.lstrip())
    if not opening or opening.group(1) not in BLOCKS:
        return ParsedAnswer(trajectory=trajectory)
    blocks, error = parse_blocks(text, expected)
    if error is None and "answer" not in blocks:
        error = "no <answer> block"
    return ParsedAnswer(blocks, error, trajectory)
