"""Rewards, as named terms; the scalar is their sum (weights are part of each term).

``shaped`` (after Toromanoff et al. 2020 and Roach, Zhang et al. 2021): a speed term that asks
for ``target_speed`` but drops to a stop before a red light, a vehicle or a pedestrian ahead;
penalties for lateral and heading deviation from the route; -1 when the episode fails.
``simple`` (after CaRL, Jaeger et al. 2025): route progress, discounted by the soft penalties
of the infractions so far, and -1 when the episode fails.
Either can add ``standstill``: a cost per second of standing while the way is clear.
"""

from __future__ import annotations

import math

from envs.hazards import Hazards
from envs.types import TrafficLightState

COMFORT_DECEL = 2.5  # [m/s^2] deceleration the target speed profile assumes before a hazard
LIGHT_STOP_GAP = 5.5
"""[m] Between the car's front and the stop line where a car stops for a light. The lamp hangs
over the lane about a metre before the line, 4.3 m up, above the top of the front camera's
160x96 image once the bumper is within ~3.5 m of the line (session 16: by 3.5 m only the bottom
of the housing is left, and the light head reads green there). A driver that sees only its
camera must stop where it still sees the light: at 1.6 m (session 6) a clone never started
again; at 4.0 m (sessions 7-15) a clone that crept a metre past where the teacher stops lost
the light and drove off on a false green (26 of 72 held-out runs ran a red light); at 5.5 m
it keeps ~2 m of slack (docs/experiments.md, session 17)."""
STOP_MARGIN = {"light": LIGHT_STOP_GAP + 1.0, "vehicle": 5.0, "walker": 6.0}
"""[m] Distance to the hazard at which the speed profile reaches 0."""
FOLLOW_HEADWAY = 1.0  # [s] time gap kept behind a moving car, on top of its stop margin
MAX_LATERAL = 2.0  # [m] lateral error at which the lateral term bottoms out
MAX_HEADING = math.pi / 2  # [rad] heading error at which the heading term bottoms out
STANDING_SPEED = 1.0  # [m/s] below this the ego counts as standing for ``standstill_cost``
CLEAR_SPEED = 4.0
"""[m/s] The way counts as clear while the speed profile allows at least this, i.e. for a car
standing more than 3.2 m behind where it should stop for a hazard (``STOP_MARGIN``): nearer,
the stop counts as one for the hazard."""


def stops_for_light(hazards: Hazards, speed: float, margin: float = 0.0) -> bool:
    """Whether the light ahead says stop: red, or yellow while a comfortable stop still fits
    in the distance to the stop line less ``margin`` [m]."""
    if hazards.light_state == TrafficLightState.RED:
        return True
    room = max(hazards.light_distance - margin, 0.0)
    return (
        hazards.light_state == TrafficLightState.YELLOW and speed * speed < 2 * COMFORT_DECEL * room
    )


def desired_speed(
    target_speed: float,
    hazards: Hazards,
    speed: float,
    vehicle_margin: float = STOP_MARGIN["vehicle"],
    headway: float = FOLLOW_HEADWAY,
) -> float:
    """Target speed, lowered so the car can stop before what is ahead [m/s].

    ``vehicle_margin`` [m] is the gap it stops at behind a car and ``headway`` [s] the time
    gap it keeps behind a moving one (the reward's and the autopilot's defaults; data
    collection lowers them to record close following).
    """
    limit = target_speed
    stop_for_light = stops_for_light(hazards, speed)
    # (gap, margin, speed of what is there). A car ahead that moves needs room to stop too, so
    # the ego may go as fast as lets it stop behind where that car would stop, keeping
    # ``headway`` seconds of that car's travel as extra distance.
    ahead = hazards.vehicle_speed
    gaps = [
        (hazards.vehicle_gap, vehicle_margin + headway * ahead, ahead),
        (hazards.walker_gap, STOP_MARGIN["walker"], 0.0),
    ]
    if stop_for_light:
        gaps.append((hazards.light_distance, STOP_MARGIN["light"], 0.0))
    for gap, margin, moving in gaps:
        if math.isfinite(gap):
            room = 2 * COMFORT_DECEL * (gap - margin) + moving * moving
            limit = min(limit, math.sqrt(max(room, 0.0)))
    return limit


def shaped_reward(
    speed: float,
    lateral: float,
    heading: float,
    hazards: Hazards,
    target_speed: float,
    failed: bool,
) -> dict[str, float]:
    """Named terms of the shaped reward.

    Args:
        speed: Ego speed [m/s].
        lateral: Distance from the route [m].
        heading: Heading error to the route [rad].
        hazards: What lies ahead.
        target_speed: Cruise speed [m/s].
        failed: The episode just ended in failure (collision, red light, deviation, blocked).
    """
    wanted = desired_speed(target_speed, hazards, speed)
    return {
        "speed": 1.0 - abs(speed - wanted) / target_speed,
        "lateral": -min(abs(lateral), MAX_LATERAL) / MAX_LATERAL,
        "heading": -min(abs(float(heading)), MAX_HEADING) / MAX_HEADING,
        "terminal": -1.0 if failed else 0.0,
    }


def simple_reward(
    progress: float, route_length: float, penalty: float, failed: bool
) -> dict[str, float]:
    """Named terms of the progress reward.

    Args:
        progress: Metres of route completed this step.
        route_length: Route length [m]; the progress term sums to about 100 over a route.
        penalty: Product of the soft penalties of the infractions so far, in (0, 1].
        failed: The episode just ended in failure.
    """
    return {
        "progress": 100.0 * progress / max(route_length, 1.0) * penalty,
        "terminal": -1.0 if failed else 0.0,
    }


def standstill_cost(
    speed: float, hazards: Hazards, target_speed: float, penalty: float, dt: float
) -> float:
    """Reward taken away for one decision of ``dt`` seconds spent standing though the way is
    clear (``penalty`` per second), 0 otherwise.

    A stop for a red light, a vehicle or a pedestrian ahead is free: the speed profile of
    ``desired_speed`` is below ``CLEAR_SPEED`` there.
    """
    if penalty <= 0.0 or abs(speed) >= STANDING_SPEED:
        return 0.0
    if desired_speed(target_speed, hazards, speed) < CLEAR_SPEED:
        return 0.0
    return -penalty * dt
