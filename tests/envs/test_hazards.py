"""Hazards ahead on the route: stop lines and their lights, cars, and the speed they allow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.backends.base import Actors
from envs.backends.embedded import EmbeddedBackend
from envs.hazards import Hazards, RouteHazards, _Corridor
from envs.planner import RoutePlanner
from envs.reward import COMFORT_DECEL, FOLLOW_HEADWAY, STOP_MARGIN, desired_speed
from envs.routes import RoutePlan


def test_regression_a_looping_route_meets_the_same_stop_line_twice() -> None:
    """Only the first pass used to be found, so the autopilot ran the light on the second."""
    backend = EmbeddedBackend("Grid01")
    roadmap = backend.road_map
    layout = backend.world.light_layout
    lane = layout.lanes[0][0]
    length = roadmap.seg_length[lane]
    after = int(roadmap.successors[lane][0])
    beyond = int(roadmap.successors[after][0])
    segs = np.array([lane, lane, beyond])
    keypoints, _ = roadmap.pose(segs, np.array([length - 20.0, length - 30.0, 5.0]))
    plan = RoutePlanner(roadmap).plan(keypoints)
    hazards = RouteHazards(plan, roadmap, backend.lights)
    passes = hazards.stop_index[hazards.stop_light == 0]
    assert len(passes) == 2
    assert plan.distance[passes[0]] < 25.0 < plan.distance[passes[1]]
    backend.close()


def _straight_plan(length: int = 60) -> RoutePlan:
    x = np.arange(length + 1, dtype=np.float64)
    zeros = np.zeros_like(x)
    points = np.stack([x, zeros, zeros], axis=1)
    ints = np.zeros(len(x), dtype=np.int64)
    return RoutePlan(points, zeros.copy(), ints, ints.copy(), x.copy())


def _car_at(x: float, y: float, yaw: float, speed: float) -> Actors:
    return Actors(
        np.array([1]),
        np.array([[x, y, 0.0]]),
        np.array([yaw]),
        np.array([speed]),
        np.array([[4.5, 2.0]]),
    )


def test_a_car_ahead_counts_with_its_speed_along_the_route_only() -> None:
    plan = _straight_plan()
    samples = np.arange(0, 41, 2)
    gap, speed = _Corridor(plan, samples, 2.0).nearest(_car_at(20.0, 0.0, 0.0, 8.0), (0.0,))
    assert 10.0 < gap < 20.0 - 2.0 - 2.25  # measured from the corridor sample that first touches it
    assert speed == pytest.approx(8.0)
    # A car crossing the route is no faster along it than a parked one, and neither is an
    # oncoming one.
    for yaw in (90.0, 180.0):
        _, speed = _Corridor(plan, samples, 2.0).nearest(_car_at(20.0, 0.0, yaw, 8.0), (0.0,))
        assert speed == pytest.approx(0.0, abs=1e-9)


def test_the_target_speed_behind_a_moving_car_allows_for_its_own_stop() -> None:
    parked = Hazards(vehicle_gap=20.0, vehicle_speed=0.0)
    moving = Hazards(vehicle_gap=20.0, vehicle_speed=8.0)
    room = 2 * COMFORT_DECEL * (20.0 - STOP_MARGIN["vehicle"])
    assert desired_speed(30.0, parked, 5.0) == pytest.approx(math.sqrt(room))
    # The moving car's stop lies ahead of it; the headway is kept on top of the margin.
    room = 2 * COMFORT_DECEL * (20.0 - STOP_MARGIN["vehicle"] - FOLLOW_HEADWAY * 8.0)
    assert desired_speed(30.0, moving, 5.0) == pytest.approx(math.sqrt(room + 64.0))
    assert desired_speed(30.0, moving, 5.0) > desired_speed(30.0, parked, 5.0)
    # Closer than the headway behind a moving car: slower than it, so the gap opens again,
    # and no sudden stop (the target is continuous in the gap).
    close = Hazards(vehicle_gap=STOP_MARGIN["vehicle"] + 2.0, vehicle_speed=8.0)
    assert 0.0 < desired_speed(30.0, close, 5.0) < 8.0
    slightly = Hazards(vehicle_gap=STOP_MARGIN["vehicle"] + 2.1, vehicle_speed=8.0)
    assert desired_speed(30.0, slightly, 5.0) - desired_speed(30.0, close, 5.0) < 0.1
    # A standing car inside the margin: stop.
    parked_close = Hazards(vehicle_gap=STOP_MARGIN["vehicle"] - 1.0, vehicle_speed=0.0)
    assert desired_speed(30.0, parked_close, 5.0) == 0.0


def test_a_smaller_margin_and_headway_let_the_car_close_up() -> None:
    """Close following for data collection: the same closed form with the given margin and
    headway instead of the defaults."""
    parked = Hazards(vehicle_gap=3.0, vehicle_speed=0.0)
    assert desired_speed(30.0, parked, 0.0) == 0.0  # inside the default 5 m margin
    assert desired_speed(30.0, parked, 0.0, vehicle_margin=1.0) == pytest.approx(
        math.sqrt(2 * COMFORT_DECEL * 2.0)
    )
    moving = Hazards(vehicle_gap=10.0, vehicle_speed=4.0)
    room = 2 * COMFORT_DECEL * (10.0 - 1.0 - 0.2 * 4.0) + 16.0
    assert desired_speed(30.0, moving, 4.0, vehicle_margin=1.0, headway=0.2) == pytest.approx(
        math.sqrt(room)
    )
