"""Labels derived from ground truth: the ego's meta-action and its reasons, agents' intents, and
which agents deserve attention.

These are the *answers* of the instruct stage and the labels its metrics score. Each rule is
simple enough to state in one line, and docs/stage_data.md states it.

Why stop/slow down is read from the scene: every prompt shows the route command, and the command
is the ego's lateral offset at 3 s beyond `records.COMMAND_LATERAL_THRESHOLD_M`. If every label
followed the ego's own future, "turn" and "keep forward" would be the command again, and a
slow-down would be a number in the future that nothing in the prompt explains. So the action is:

  1. **stop/slow down** when the scene gives a cause the ego must yield to:
     * an agent ahead in the ego's lane (its box, now or at an annotated future step, overlaps
       the driving corridor below) that is a pedestrian, is stopped, moves across the ego's
       direction, or moves along it more than 1 m/s slower than the ego (a slow or stopped lead
       vehicle, cross traffic, a person in the lane);
     * a pedestrian on the first crosswalk ahead in the ego's lane, now or at an annotated future
       step, when the ego reaches that crosswalk within 4 s (at least 10 m ahead);
     * else, with none of these in view, when the GT future comes to a stop (< 0.5 m/s over its
       last valid half-second) or brakes hard enough to stop before the first crosswalk ahead
       (constant deceleration from the speed now to the end speed): the reason is "unseen cause".
       In the mini world that is a red light: nuScenes annotates no light state, so records carry
       none and no rule can read it; the stop line sits just before the crosswalk.
  2. **turn left/right** when the last valid future waypoint is at least
     COMMAND_LATERAL_THRESHOLD_M to the side: the route, by the command's own rule. How much of
     the action task the command alone explains is what the command-copy row of
     tools/eval_qa.py measures.
  3. **keep forward**.

Corridors: "in the ego's path" is an agent's box (now or at a valid future step) overlapping a
lane 1.75 m either side of a path. For the action and its reasons (the driving corridor) the
path is the ego's valid GT path continued along its final heading until it is as long as 3 s at
the current speed (at least 10 m): continued, because a stopping ego's own path ends before
whatever stops it; along the path, because a turning ego does not meet what waits straight
ahead. Attention uses the GT path alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, Polygon, box

from vla_world.data.geometry import wrap_angle
from vla_world.data.records import (
    CMD_LEFT,
    CMD_RIGHT,
    COMMAND_LATERAL_THRESHOLD_M,
    STEP_SECONDS,
    SampleRecord,
)
from vla_world.qa import vocab
from vla_world.qa.facts import (
    MOVING_SPEED,
    VEHICLES,
    AgentFact,
    crosswalk_areas,
    end_speed,
    footprints,
    own_frame_future,
    valid_prefix,
)

CORRIDOR_HALF_WIDTH_M = 1.75  # half a nuScenes lane: ego half-width (~1 m) plus a margin
SLOWER_MPS = 1.0  # a lead this much slower than the ego closes in; smaller differences are noise
ROAD_TURN_DEG = 30.0  # heading change that separates a turn from a lane change
CROSSING_SIN = 0.7  # |sin(relative heading)| above this: moving across the ego's direction (> ~45 deg)
LOOKAHEAD_S = 3.0
MIN_LOOKAHEAD_M = 10.0  # even a stopped ego looks this far ahead for its causes
CROSSWALK_HORIZON_S = 4.0  # a crosswalk the ego reaches within ~4 s at its speed explains slowing now
BRAKING_MPS2 = 0.5  # mean deceleration below this is easing off, not braking for a stop
STOP_LINE_MARGIN_M = 1.0  # a stop this far past the crosswalk's near edge still counts as before it
LEAD_RANGE_M = 50.0  # the lead vehicle is looked for this far ahead in the ego's lane
PED_ATTENTION_AHEAD_M = 30.0  # crossing pedestrians farther than this ahead, or farther aside than
PED_ATTENTION_SIDE_M = 8.0  # the road's width, are on other streets and not the ego's concern

INTENTS = ("go straight", "turn left", "turn right", "stop", "stay stopped", "cross the road")


@dataclass(frozen=True)
class Attention:
    """An agent that matters for the ego's next 3 s, and why (phrases, most important first)."""

    fact: AgentFact
    why: tuple[str, ...]


@dataclass(frozen=True)
class StopCauses:
    """What in the scene makes the ego stop or slow down (empty: nothing in view)."""

    yield_to: tuple[AgentFact, ...]  # agents ahead in the driving corridor the ego must not close in on
    on_crosswalk: tuple[AgentFact, ...]  # pedestrians on the first crosswalk ahead, now or within their future

    def __bool__(self) -> bool:
        return bool(self.yield_to or self.on_crosswalk)


def ego_action(record: SampleRecord, agents: list[AgentFact]) -> str | None:
    """The meta-action (module doc, rules 1-3), or None with fewer than 2 annotated future steps."""
    n = valid_prefix(record.ego_future_mask)
    if n < 2:
        return None
    future = record.ego_future[:n].astype(np.float64)
    if stop_causes(record, agents) or comes_to_a_stop(record, future):
        return vocab.STOP
    if abs(future[-1, 0]) >= COMMAND_LATERAL_THRESHOLD_M:
        return vocab.TURN_LEFT if future[-1, 0] < 0 else vocab.TURN_RIGHT
    return vocab.KEEP_FORWARD


def stop_causes(record: SampleRecord, agents: list[AgentFact]) -> StopCauses:
    """The agents the ego must yield to now (module doc, rule 1), read from the scene, not the command."""
    corridor = driving_corridor(record)
    ego_speed = float(record.ego_speed)
    yield_to = tuple(a for a in agents if a.y > 0 and must_yield_to(a, ego_speed) and in_corridor(record, a, corridor))
    crosswalk = first_crosswalk_ahead(record)
    on_crosswalk = () if crosswalk is None else tuple(
        a for a in agents if a.cls == "pedestrian" and touches(record, a, crosswalk))
    return StopCauses(yield_to, on_crosswalk)


def comes_to_a_stop(record: SampleRecord, future: np.ndarray) -> bool:
    """The valid GT future (n, 2) stops, or brakes hard enough to stop before the first crosswalk ahead."""
    v_now, v_end = float(record.ego_speed), end_speed(future)
    if v_end < MOVING_SPEED:
        return True
    deceleration = (v_now - v_end) / (len(future) * STEP_SECONDS)
    crosswalk = first_crosswalk_ahead(record)
    if not deceleration >= BRAKING_MPS2 or crosswalk is None:  # "not >=": a nan future brakes for nothing
        return False
    stopping_distance = v_now ** 2 / (2 * deceleration)
    return stopping_distance <= distance_ahead(crosswalk) + STOP_LINE_MARGIN_M


def must_yield_to(agent: AgentFact, ego_speed: float) -> bool:
    """A person, a stopped agent, cross traffic, or one the ego closes in on (> 1 m/s slower along its heading)."""
    return (agent.cls == "pedestrian" or not agent.moving or is_crossing(agent)
            or agent.along < ego_speed - SLOWER_MPS)


def first_crosswalk_ahead(record: SampleRecord) -> Polygon | None:
    """The nearest crosswalk overlapping the ego's lane within 4 s at its speed (at least 10 m), or None."""
    reach = max(MIN_LOOKAHEAD_M, float(record.ego_speed) * CROSSWALK_HORIZON_S)
    lane = box(-CORRIDOR_HALF_WIDTH_M, 0.0, CORRIDOR_HALF_WIDTH_M, reach)
    ahead = [area for area in crosswalk_areas(record) if area.intersects(lane)]
    return min(ahead, key=distance_ahead, default=None)


def distance_ahead(area: Polygon) -> float:
    """How far ahead (m, along +y) the area starts within the ego's lane; 0 when the ego is on it."""
    lane = box(-CORRIDOR_HALF_WIDTH_M, 0.0, CORRIDOR_HALF_WIDTH_M, 1e6)
    return float(area.intersection(lane).bounds[1])


def ego_reasons(record: SampleRecord, action: str, agents: list[AgentFact]) -> list[str]:
    """The vocabulary reasons that justify `action` in this record, in vocabulary order."""
    if action in (vocab.TURN_LEFT, vocab.TURN_RIGHT):
        found = _turn_reasons(record, action, agents)
    elif action == vocab.STOP:
        found = _stop_reasons(record, agents)
    else:
        found = _forward_reasons(record, agents)
    return [r for r in vocab.REASONS_BY_ACTION[action] if r in found]


def _stop_reasons(record: SampleRecord, agents: list[AgentFact]) -> set[str]:
    causes = stop_causes(record, agents)
    if not causes:
        return {"unseen cause"}
    found = {vocab.OBSTACLE_REASON[a.cls] for a in causes.yield_to}
    lead = lead_vehicle(record, agents)
    if lead is not None and lead in causes.yield_to:
        if not lead.moving or agent_intent(record, lead) in ("stop", "stay stopped"):
            found.add("front car is stopping")
        elif lead.along < record.ego_speed - SLOWER_MPS:
            found.add("front car is slower")
    if any(a.cls == "pedestrian" and is_crossing(a) for a in causes.yield_to + causes.on_crosswalk):
        found.add("pedestrian is crossing")
    if causes.on_crosswalk:
        found.add("crosswalk ahead")
    return found


def _forward_reasons(record: SampleRecord, agents: list[AgentFact]) -> set[str]:
    corridor = driving_corridor(record)
    ahead = [a for a in agents if a.y > 0 and in_corridor(record, a, corridor)]
    lead = lead_vehicle(record, agents)
    found = {"road is clear"} if not ahead and lead is None else set()
    if (lead is not None and lead.moving) or any(a.moving for a in ahead):
        found.add("follow traffic")
    n = valid_prefix(record.ego_future_mask)
    if record.ego_speed < 1.0 and end_speed(record.ego_future[:n]) > record.ego_speed + 1.0:
        found.add("starting from a stop")
    return found


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
    if abs(own[n - 1, 0]) >= COMMAND_LATERAL_THRESHOLD_M:  # the ego's turn rule, in the agent's own frame
        return "turn right" if own[n - 1, 0] > 0 else "turn left"
    return "go straight"


def is_crossing(agent: AgentFact) -> bool:
    """Moving across the ego's direction of travel (not along it)."""
    return agent.moving and abs(np.sin(np.radians(agent.heading_rel_deg))) > CROSSING_SIN


def driving_corridor(record: SampleRecord) -> Polygon:
    """The lane the ego drives (module doc): its valid GT path continued along its final heading to
    3 s at the current speed (at least 10 m), 1.75 m either side; straight ahead without a path."""
    length = max(MIN_LOOKAHEAD_M, float(record.ego_speed) * LOOKAHEAD_S)
    n = valid_prefix(record.ego_future_mask)
    path = np.vstack([[0.0, 0.0], record.ego_future[:n].astype(np.float64)])
    heading = float(record.ego_future_yaw[n - 1]) if n else np.pi / 2
    if not (np.isfinite(path).all() and np.isfinite(heading)):
        path, heading = np.zeros((1, 2)), np.pi / 2
    covered = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
    end = path[-1] + max(length - covered, 0.0) * np.array([np.cos(heading), np.sin(heading)])
    line = LineString(np.vstack([path, end]))
    return shapely.ops.substring(line, 0.0, length).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")


def future_corridor(record: SampleRecord) -> Polygon | None:
    """The GT future path of the ego, widened to a lane; None without an annotated future."""
    n = valid_prefix(record.ego_future_mask)
    if n == 0:
        return None
    path = np.vstack([[0.0, 0.0], record.ego_future[:n].astype(np.float64)])
    if not np.isfinite(path).all() or np.linalg.norm(path[-1]) < 0.5:  # standing still: the path is a point
        return None
    return LineString(path).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")


def touches(record: SampleRecord, agent: AgentFact, area: Polygon) -> bool:
    """Whether the agent's box overlaps `area` now or at any annotated future step."""
    mask = record.agent_future_mask[agent.index]
    centres = np.vstack([[agent.x, agent.y], record.agent_future[agent.index][mask]])
    yaws = np.concatenate([[agent.yaw], record.agent_future_yaw[agent.index][mask]])
    keep = np.isfinite(centres).all(axis=1) & np.isfinite(yaws)  # a nan box overlaps nothing
    return bool(shapely.intersects(area, footprints(centres[keep], yaws[keep], agent.width, agent.length)).any())


def in_corridor(record: SampleRecord, agent: AgentFact, corridor: Polygon | None) -> bool:
    """Whether the agent's box overlaps the corridor now or at any annotated future step."""
    return corridor is not None and touches(record, agent, corridor)


def lead_vehicle(record: SampleRecord, agents: list[AgentFact]) -> AgentFact | None:
    """The nearest vehicle ahead in the ego's lane (its box overlaps the lane now, within 50 m)."""
    lane = LineString([(0.0, 0.0), (0.0, LEAD_RANGE_M)]).buffer(CORRIDOR_HALF_WIDTH_M, cap_style="flat")
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
