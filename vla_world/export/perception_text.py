"""Perception output written as text, for models that read no perception tokens (LLaMA-Factory export).

Our LLM gets perception as projected tokens in `<agent>`/`<map>` blocks; a plain Qwen fine-tuned
with LLaMA-Factory gets the same output as words instead. Everything here reads `PerceptionTokens`
only, i.e. what a perception checkpoint decoded (or, with `--tokens oracle`, ground truth, which the
export's metadata then says), never a record: a label cannot enter the text.

    lines = perception_lines(tokens, max_agents=30)
    # ["Detected agents (position x right, y forward, m; velocity m/s): 3", "- car at (1.20,8.40), velocity (0.00,4.10)", ...,
    #  "Map elements: 4 lane_divider, 2 road_boundary; nearest lane_divider at (-1.75,0.40), ..."]
    line = object_line(tokens, focus_track_id)   # "Object: the car at (1.20,8.40), velocity (0.00,4.10)"

Frame and numbers as the prompt's: current LiDAR frame, x right, y forward, metres, 2 decimals
(`planning.codec.format_number`). Agents are listed nearest first; scene tokens (pooled BEV
features) have no text form and are left out.
"""

from __future__ import annotations

import numpy as np

from perception.tokens import PerceptionTokens
from planning.codec import format_number
from vla_world.data.records import DETECTION_CLASSES, MAP_CLASSES
from vla_world.model.sequence import FocusNotDetected

AGENTS_HEADER = "Detected agents (position x right, y forward, m{}): {}"


def point_text(xy) -> str:
    return f"({format_number(float(xy[0]))},{format_number(float(xy[1]))})"


def agent_text(tokens: PerceptionTokens, row: int) -> str:
    """`car at (x,y), velocity (vx,vy)` of one detected agent (velocity left out when the source has none)."""
    name = DETECTION_CLASSES[int(tokens.agent_classes[row])]
    text = f"{name} at {point_text(tokens.agent_boxes[row, :2].tolist())}"
    if tokens.agent_velocities is not None:
        text += f", velocity {point_text(tokens.agent_velocities[row].tolist())}"
    return text


def agent_lines(tokens: PerceptionTokens, max_agents: int) -> list[str]:
    """Header with the count, then one line per agent, nearest first, at most `max_agents`."""
    centres = tokens.agent_boxes[:, :2].numpy() if len(tokens.agent_boxes) else np.zeros((0, 2))
    order = np.argsort(np.linalg.norm(centres, axis=1), kind="stable")[:max_agents]
    count = len(centres)
    units = "; velocity m/s" if tokens.agent_velocities is not None else "; no velocities in this token source"
    header = AGENTS_HEADER.format(units, count)
    if len(order) < count:
        header += f", the nearest {len(order)} listed"
    return [header] + [f"- {agent_text(tokens, int(row))}" for row in order]


def map_line(tokens: PerceptionTokens) -> str:
    """Counts per map class, and the nearest point of the nearest element of each class."""
    if len(tokens.map_types) == 0:
        return "Map elements: none detected"
    counts, nearest = [], []
    for index, name in enumerate(MAP_CLASSES):
        rows = (tokens.map_types == index).nonzero().flatten()
        if rows.numel() == 0:
            continue
        counts.append(f"{rows.numel()} {name}")
        points = tokens.map_points[rows].reshape(-1, 2).numpy()
        nearest.append(f"nearest {name} at {point_text(points[np.argmin(np.linalg.norm(points, axis=1))])}")
    return f"Map elements: {', '.join(counts)}; {', '.join(nearest)}"


def perception_lines(tokens: PerceptionTokens, max_agents: int = 30) -> list[str]:
    """The text that stands for the scene / agent / map token blocks of our prompt."""
    return [*agent_lines(tokens, max_agents), map_line(tokens)]


def object_line(tokens: PerceptionTokens, focus_track_id: int | None) -> str | None:
    """The `Object:` line naming the focus agent by its detected box, None for no focus; raises FocusNotDetected."""
    if focus_track_id is None:
        return None
    rows = (tokens.agent_track_ids == int(focus_track_id)).nonzero().flatten()
    if rows.numel() == 0:
        raise FocusNotDetected(f"track {focus_track_id} has no detected agent")
    return f"Object: the {agent_text(tokens, int(rows[0]))}"
