"""Labels derived from ground truth: the ego's meta-action and its reasons, agents' intents, and
which agents deserve attention.

These are the *answers* of the instruct stage and the labels its metrics score, so each rule is
simple enough to state in one line and is stated in docs/stage_data.md:

  * ego action, from the GT future (LiDAR frame, x right, y forward): stop/slow down when the
    speed over the last valid half-second is below 0.5 m/s; else a turn when the lateral offset
    of the last valid waypoint is >= 2 m (left if x < 0); else stop/slow down when that end speed
    fell by > 1 m/s and > 20 % from the current speed; else keep forward.
  * "road is clear": nothing in the straight corridor and no vehicle ahead in the ego's lane
    within 50 m (a moving one there gives "follow traffic" instead).
  * "in the ego's path": an agent's box (now or at a valid future step) overlaps a corridor
    1.75 m either side of the path (the GT future path for attention and turns; straight ahead
    for stop and forward reasons, since a stopping ego's own path ends before the obstacle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon

from vla_world.data.records import CMD_LEFT, CMD_RIGHT, SampleRecord
from vla_world.qa import vocab
from vla_world.qa.facts import (
    MOVING_SPEED,
    TURN_LATERAL_M,
    VEHICLES,
    AgentFact,
    MapFacts,
    end_speed,
    footprints,
    own_frame_future,
    valid_prefix,
    wrap_angle,
)

CORRIDOR_HALF_WIDTH_M = 1.75  # half a nuScenes lane: ego half-width (~1 m) plus a margin
SLOWDOWN_DROP_MPS = 1.0  # smaller speed changes are cruise-control noise, not a decision
SLOWDOWN_RATIO = 0.8
ROAD_TURN_DEG = 30.0  # heading change that separates a turn from a lane change
CROSSING_SIN = 0.7  # |sin(relative heading)| above this: moving across the ego's direction (> ~45 deg)
LOOKAHEAD_S = 3.0
MIN_LOOKAHEAD_M = 10.0  # even a stopped ego looks this far ahead for its causes
CROSSWALK_HORIZON_S = 4.0  # a crosswalk the ego reaches within ~4 s at its speed explains slowing now
PED_ATTENTION_AHEAD_M = 30.0  # crossing pedestrians farther than this ahead, or farther aside than
PED_ATTENTION_SIDE_M = 8.0  # the road's width, are on other streets and not the ego's concern

INTENTS = ("go straight", "turn left", "turn right", "stop", "stay stopped", "cross the road")


@dataclass(frozen=True)
class Attention:
    """An agent that matters for the ego's next 3 s, and why (phrases, most important first)."""

    fact: AgentFact
    why: tuple[str, ...]


def ego_action(record: SampleRecord) -> str | None:
    """The meta-action the GT future shows, or None with fewer than 2 annotated future steps."""
    n = valid_prefix(record.ego_future_mask)
    if n < 2:
        return None
    future = record.ego_future[:n].astype(np.float64)
    v_end, v_now = end_speed(future), float(record.ego_speed)
    if v_end < MOVING_SPEED:
        return vocab.STOP
    if abs(future[-1, 0]) >= TURN_LATERAL_M:
        return vocab.TURN_LEFT if future[-1, 0] < 0 else vocab.TURN_RIGHT
    if v_now - v_end > SLOWDOWN_DROP_MPS and v_end < SLOWDOWN_RATIO * v_now:
        return vocab.STOP
    return vocab.KEEP_FORWARD


def ego_reasons(record: SampleRecord, action: str, agents: list[AgentFact], layout: MapFacts) -> list[str]:
    """The vocabulary reasons that justify `action` in this record, in vocabulary order."""
    if action in (vocab.TURN_LEFT, vocab.TURN_RIGHT):
        found = _turn_reasons(record, action, agents)
    else:
        found = _straight_reasons(record, action, agents, layout)
    return [r for r in vocab.REASONS_BY_ACTION[action] if r in found]


def _straight_reasons(record: SampleRecord, action: str, agents: list[AgentFact], layout: MapFacts) -> set[str]:
    corridor = straight_corridor(record)
    blocking = [a for a in agents if a.y > 0 and in_corridor(record, a, corridor)]
    lead = lead_vehicle(record, agents)
    if action == vocab.KEEP_FORWARD:
        found = {"road is clear"} if not blocking and lead is None else set()
        if lead is not None and lead.moving:
            found.add("follow traffic")
        if record.ego_speed < 1.0 and end_speed(record.ego_future[: valid_prefix(record.ego_future_mask)]) > record.ego_speed + 1.0:
            found.add("starting from a stop")
        return found
    found = {vocab.OBSTACLE_REASON[a.cls] for a in blocking}
    if lead is not None and lead in blocking:
        lead_future_stops = agent_intent(record, lead) in ("stop", "stay stopped")
        if lead.speed < MOVING_SPEED or lead_future_stops:
            found.add("front car is stopping")
        elif lead.speed < record.ego_speed - SLOWDOWN_DROP_MPS:
            found.add("front car is slower")
    if any(a.cls == "pedestrian" and is_crossing(a) for a in blocking):
        found.add("pedestrian is crossing")
    reach = max(MIN_LOOKAHEAD_M, float(record.ego_speed) * CROSSWALK_HORIZON_S)
    if layout.crossing_ahead_m is not None and layout.crossing_ahead_m <= reach:
        found.add("crosswalk ahead")
    return found or {"unseen cause"}


def _turn_reasons(record: SampleRecord, action: str, agents: list[AgentFact]) -> set[str]:
    side = "left" if action == vocab.TURN_LEFT else "right"
    found = set()
    if record.command == (CMD_LEFT if side == "left" else CMD_RIGHT):
        found.add(f"route turns {side}")
    n = valid_prefix(record.ego_future_mask)
    heading_change = np.degrees(abs(wrap_angle(float(record.ego_future_yaw[n - 1]) - np.pi / 2)))
    found.add(f"road turns {side}" if heading_change >= ROAD_TURN_DEG else f"changing to the {side} lane")
    lead = lead_vehicle(record, agents)
    if lead is not None and agent_intent(record, lead) == f"turn {side}":
        found.add(f"front car turning {side}")
    return found


def agent_intent(record: SampleRecord, agent: AgentFact) -> str | None:
    """What the agent's GT future does (one of INTENTS), or None without an annotated future."""
    own, mask = own_frame_future(record, agent.index)
    n = valid_prefix(mask)
    if n == 0:
        return None
    moved = float(np.linalg.norm(own[n - 1]))
    if not agent.moving and moved < 1.0:
        return "stay stopped"
    if end_speed(own[:n]) < MOVING_SPEED:
        return "stop"
    if agent.cls == "pedestrian" and is_crossing(agent):
        return "cross the road"
    if abs(own[n - 1, 0]) >= TURN_LATERAL_M:
        return "turn right" if own[n - 1, 0] > 0 else "turn left"
    return "go straight"


def is_crossing(agent: AgentFact) -> bool:
    """Moving across the ego's direction of travel (not along it)."""
    return agent.moving and abs(np.sin(np.radians(agent.heading_rel_deg))) > CROSSING_SIN


def straight_corridor(record: SampleRecord) -> Polygon:
    """The lane straight ahead that the ego would cover in 3 s at its current speed (>= 10 m)."""
    length = max(MIN_LOOKAHEAD_M, float(record.ego_speed) * LOOKAHEAD_S)
    return LineString([(0.0, 0.0), (0.0, length)]).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")


def future_corridor(record: SampleRecord) -> Polygon | None:
    """The GT future path of the ego, widened to a lane; None without an annotated future."""
    n = valid_prefix(record.ego_future_mask)
    if n == 0:
        return None
    path = np.vstack([[0.0, 0.0], record.ego_future[:n].astype(np.float64)])
    if np.linalg.norm(path[-1]) < 0.5:  # standing still: the path is a point
        return None
    return LineString(path).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")


def in_corridor(record: SampleRecord, agent: AgentFact, corridor: Polygon | None) -> bool:
    """Whether the agent's box overlaps the corridor now or at any annotated future step."""
    if corridor is None:
        return False
    mask = record.agent_future_mask[agent.index]
    centres = np.vstack([[agent.x, agent.y], record.agent_future[agent.index][mask]])
    yaws = np.concatenate([[agent.yaw], record.agent_future_yaw[agent.index][mask]])
    return bool(shapely.intersects(corridor, footprints(centres, yaws, agent.width, agent.length)).any())


def lead_vehicle(record: SampleRecord, agents: list[AgentFact]) -> AgentFact | None:
    """The nearest vehicle ahead in the ego's lane (its box overlaps the straight corridor now)."""
    lane = LineString([(0.0, 0.0), (0.0, 50.0)]).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")
    ahead = [a for a in agents if a.cls in VEHICLES and a.y > 0
             and lane.intersects(footprints(np.array([[a.x, a.y]]), np.array([a.yaw]), a.width, a.length)[0])]
    return min(ahead, key=lambda a: a.y, default=None)


def attention(record: SampleRecord, agents: list[AgentFact]) -> list[Attention]:
    """Agents that matter: the lead vehicle, agents in the ego's 3 s path, crossing pedestrians."""
    lead = lead_vehicle(record, agents)
    path = future_corridor(record)
    result = []
    for agent in agents:
        why = []
        if agent is lead:
            why.append("it is the lead vehicle in the ego's lane")
        if agent.y > 0 and in_corridor(record, agent, path):
            why.append("it is in the ego's path within 3 s")
        if (agent.cls == "pedestrian" and 0 < agent.y <= PED_ATTENTION_AHEAD_M and abs(agent.x) <= PED_ATTENTION_SIDE_M
                and is_crossing(agent)):
            why.append("it is a pedestrian crossing ahead")
        if why:
            result.append(Attention(agent, tuple(why)))
    return result
