"""Stop / slow-down labels come from the scene (vla_world/qa/labels.py), with the command held at keep forward.

Every record here has the command "keep forward", so an answer copied from the command would say
keep forward every time; each stop below is read from what is in the scene (a lead agent, a
pedestrian on a crosswalk, the ego braking for a stop line) and each keep-forward from its absence.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vla_world.data.records import CMD_FORWARD, MAP_CLASSES, NUM_FUTURE, STEP_SECONDS
from vla_world.data.synthetic import synthetic_record
from vla_world.qa.facts import agent_facts
from vla_world.qa.labels import ego_action, ego_reasons

T = STEP_SECONDS * np.arange(1, NUM_FUTURE + 1)


def with_crosswalk(record, near: float, far: float, half_length: float = 7.0):
    """Add a crosswalk across the road from y = near to y = far (m ahead), x in +-half_length: a closed outline."""
    outline = np.array([[-half_length, near], [half_length, near], [half_length, far], [-half_length, far],
                        [-half_length, near]], np.float32)
    return replace(record, map_type=np.append(record.map_type, MAP_CLASSES.index("ped_crossing")).astype(np.int8),
                   map_polylines=[*record.map_polylines, outline])


def braking(record, speed: float, deceleration: float):
    """The ego brakes at a constant rate from `speed` (m/s), straight ahead, never reversing."""
    t_stop = speed / deceleration
    t = np.minimum(T, t_stop)
    y = speed * t - deceleration * t**2 / 2
    return replace(record, ego_future=np.stack([np.zeros(NUM_FUTURE), y], 1).astype(np.float32))


def labels_of(record):
    assert record.command == CMD_FORWARD  # the command never says stop
    agents = agent_facts(record, 50.0)
    action = ego_action(record, agents)
    return action, ego_reasons(record, action, agents)


def test_a_stopped_lead_car_means_stop_though_the_future_keeps_going():
    # The GT future cruises at 5 m/s: the old future-speed rule said keep forward; the scene says stop.
    record = synthetic_record(speed=5.0, agents=[("car", 0.0, 12.0, 0.0, 0.0)])
    assert labels_of(record) == ("stop/slow down", ["obstacle: car", "front car is stopping"])


def test_a_slower_lead_car_means_slow_down():
    record = synthetic_record(speed=5.0, agents=[("car", 0.0, 12.0, 0.0, 2.0)])  # 3 m/s slower than the ego
    assert labels_of(record) == ("stop/slow down", ["obstacle: car", "front car is slower"])


def test_a_lead_car_at_the_egos_speed_is_followed():
    record = synthetic_record(speed=5.0, agents=[("car", 0.0, 12.0, 0.0, 4.5)])  # 0.5 m/s slower: noise
    assert labels_of(record) == ("keep forward", ["follow traffic"])


def test_a_pedestrian_on_the_crosswalk_ahead_means_stop():
    # The crosswalk is 12-15.5 m ahead, within the 20 m the ego covers in 4 s. The pedestrian walks left
    # at 1.2 m/s from x = 6.5 m: at 3 s it is at x = 2.9 m, never in the ego's 1.75 m corridor.
    record = with_crosswalk(synthetic_record(speed=5.0, agents=[("pedestrian", 6.5, 13.0, -1.2, 0.0)]), 12.0, 15.5)
    assert labels_of(record) == ("stop/slow down", ["pedestrian is crossing", "crosswalk ahead"])


def test_a_pedestrian_beside_the_crosswalk_or_on_a_far_one_is_not_a_cause():
    # On the pavement 2 m before the crosswalk, walking away from it: its box never touches the crosswalk.
    pavement = with_crosswalk(synthetic_record(speed=5.0, agents=[("pedestrian", 6.5, 10.0, 0.0, -1.2)]), 12.0, 15.5)
    assert labels_of(pavement) == ("keep forward", ["road is clear"])
    # On a crosswalk 30 m ahead: beyond the 20 m the ego covers in 4 s.
    far = with_crosswalk(synthetic_record(speed=5.0, agents=[("pedestrian", 6.5, 31.0, -1.2, 0.0)]), 30.0, 33.5)
    assert labels_of(far) == ("keep forward", ["road is clear"])


def test_braking_to_stop_before_the_crosswalk_is_an_unseen_cause():
    # Records carry no light state. 8 m/s braking at 2 m/s^2: the end speed (mean of the last half
    # second) is 8 - 2 * 2.75 = 2.5 m/s, so the mean deceleration is 5.5 / 3 = 1.83 m/s^2 and the ego
    # would stop after 8^2 / (2 * 1.83) = 17.5 m: before a crosswalk at 18 m (a stop line, a red light)...
    red = braking(with_crosswalk(synthetic_record(speed=8.0), 18.0, 21.5), 8.0, 2.0)
    assert labels_of(red) == ("stop/slow down", ["unseen cause"])
    # ... but not before one at 12 m: it would cross it still moving (slowing for the turn after it,
    # say), and nothing is in view, so keep forward.
    easing = braking(with_crosswalk(synthetic_record(speed=8.0), 12.0, 15.5), 8.0, 2.0)
    assert labels_of(easing) == ("keep forward", ["road is clear"])


def test_coming_to_a_stop_with_nothing_in_view_is_an_unseen_cause():
    record = braking(synthetic_record(speed=5.0), 5.0, 2.5)  # stands still after 2 s
    assert labels_of(record) == ("stop/slow down", ["unseen cause"])


def test_cross_traffic_in_the_egos_lane_means_stop():
    # A car crossing from the right at 6 m/s, 14 m ahead: it is in the ego's corridor within 3 s.
    record = synthetic_record(speed=5.0, agents=[("car", 8.0, 14.0, -6.0, 0.0)])
    assert labels_of(record) == ("stop/slow down", ["obstacle: car"])
