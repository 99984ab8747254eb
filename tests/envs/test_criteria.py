"""Criteria on hand-built world states along a straight 70 m plan in Grid01.

The plan follows road 1, lane -1 of Grid01 (heading +x, y = 1.75, lane width 3.5 m) from
x = 130 to x = 200; lane 1 of the same road runs the other way at y = -1.75.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from envs.backends.base import Actors, EgoState, StopLine, TrafficLightInfo, WorldState
from envs.criteria import (
    CollisionFilter,
    CriteriaParams,
    CriteriaStatus,
    RouteCriteria,
    angle_between,
    segments_intersect,
)
from envs.routes import RoadOption, RoutePlan
from envs.sim.roadmap import RoadMap
from envs.sim.weather import Weather
from envs.types import ActorKind, CollisionEvent, TrafficLightState, Transform, VehicleControl

LANE_Y = 1.75
X0, X1 = 130.0, 200.0
DT = 0.05


@pytest.fixture(scope="module")
def grid() -> RoadMap:
    from envs.sim.world import load_town

    return load_town("Grid01")


@pytest.fixture(scope="module")
def plan(grid: RoadMap) -> RoutePlan:
    xs = np.arange(X0, X1 + 0.5, 1.0)
    n = len(xs)
    points = np.stack([xs, np.full(n, LANE_Y), np.zeros(n)], axis=1)
    seg = grid.key_to_seg[(1, 0, -1)]
    return RoutePlan(
        points=points,
        yaw=np.zeros(n),
        commands=np.full(n, int(RoadOption.LANEFOLLOW), dtype=np.int64),
        segments=np.full(n, seg, dtype=np.int64),
        distance=xs - X0,
    )


def make_state(
    frame: int,
    x: float,
    y: float = LANE_Y,
    yaw: float = 0.0,
    speed: float = 5.0,
    collisions: tuple[CollisionEvent, ...] = (),
    lights: tuple[tuple[TrafficLightInfo, TrafficLightState], ...] = (),
    time: float | None = None,
    vehicle_speeds: tuple[float, ...] = (),
    vehicle_offset: float = 10.0,
) -> WorldState:
    """A world state with the ego at (x, y, yaw [deg]) and nothing else unless given.

    Vehicles, if any, stand ``vehicle_offset`` metres ahead of the ego in x.
    """
    n = len(vehicle_speeds)
    vehicles = Actors(
        np.arange(n, dtype=np.int64),
        np.tile([x + vehicle_offset, y, 0.0], (n, 1)),
        np.zeros(n),
        np.array(vehicle_speeds, dtype=np.float64),
        np.ones((n, 2)),
    )
    return WorldState(
        frame=frame,
        time=frame * DT if time is None else time,
        ego=EgoState(Transform(x, y, 0.0, yaw), speed, 0.0, VehicleControl(), 4.6, 2.0),
        vehicles=vehicles,
        walkers=Actors.empty(),
        lights=tuple(light for light, _ in lights),
        light_states=np.array([int(s) for _, s in lights], dtype=np.int64),
        collisions=collisions,
        lane_invasions=(),
        cameras={},
        weather=Weather(),
    )


def hit(frame: int, other: int, kind: ActorKind = ActorKind.VEHICLE) -> CollisionEvent:
    types = {ActorKind.VEHICLE: "vehicle.npc", ActorKind.WALKER: "walker.pedestrian"}
    return CollisionEvent(frame, kind, other, types.get(kind, "static.pole"), 3.0, 4000.0, 0, 0)


def drive(
    criteria: RouteCriteria, xs: list[float], start: int = 0, **kwargs: object
) -> list[CriteriaStatus]:
    """Update ``criteria`` with the ego at each x in turn, one tick each from frame ``start``."""
    return [criteria.update(make_state(start + i, x, **kwargs)) for i, x in enumerate(xs)]  # type: ignore[arg-type]


def near_stop_line(criteria: RouteCriteria, lights: tuple) -> list[CriteriaStatus]:
    """Drive in lane from the plan start to x = 199.5 (the front bumper reaches 201.8)."""
    drive(criteria, [131.0 + i for i in range(65)], lights=lights)  # up to x = 195
    return drive(criteria, [195.5 + 0.5 * i for i in range(9)], start=65, lights=lights)


def keys(status: CriteriaStatus) -> list[str]:
    return [i.key for i in status.infractions]


# ------------------------------------------------------------------------------ pure helpers
def test_segments_intersect_and_angles() -> None:
    assert segments_intersect((0, 0), (2, 0), (1, -1), (1, 1))
    assert not segments_intersect((0, 0), (0.9, 0), (1, -1), (1, 1))
    assert segments_intersect((0, 0), (1, 0), (1, -1), (1, 1))  # touching counts
    assert not segments_intersect((0, 0), (2, 0), (0, 1), (2, 1))  # parallel
    assert angle_between(350.0, 10.0) == pytest.approx(20.0)
    assert angle_between(-90.0, 90.0) == pytest.approx(180.0)


def test_params_validation_and_versions() -> None:
    assert CriteriaParams().lane_allowance == 0.5
    assert CriteriaParams(version=1).lane_allowance == 1.3
    assert CriteriaParams().route_timeout(100.0) == pytest.approx(85.0)
    with pytest.raises(ValueError, match="version"):
        CriteriaParams(version=3)
    with pytest.raises(ValueError, match="blocked_time"):
        CriteriaParams(blocked_time=-1.0)


# -------------------------------------------------------------------------------- collisions
def test_collision_same_actor_within_5s_counts_once() -> None:
    f = CollisionFilter()
    ego = Transform(0.0, 0.0)
    assert len(f.filter((hit(0, 3),), ego, 5.0, 0.0)) == 1
    assert f.filter((hit(1, 3),), Transform(6.0, 0.0), 5.0, 2.0) == []  # same id within 5 s


def test_collision_new_actor_counts_twice() -> None:
    f = CollisionFilter()
    assert len(f.filter((hit(0, 3),), Transform(0.0, 0.0), 5.0, 0.0)) == 1
    assert len(f.filter((hit(1, 4),), Transform(6.0, 0.0), 5.0, 1.0)) == 1


def test_collision_new_actor_within_5m_is_the_same_collision() -> None:
    f = CollisionFilter()
    assert len(f.filter((hit(0, 3), hit(0, 4)), Transform(0.0, 0.0), 5.0, 0.0)) == 1
    assert f.filter((hit(1, 5),), Transform(3.0, 0.0), 5.0, 1.0) == []


def test_collision_same_actor_after_6s_and_6m_counts_twice() -> None:
    f = CollisionFilter()
    assert len(f.filter((hit(0, 3),), Transform(0.0, 0.0), 5.0, 0.0)) == 1
    assert len(f.filter((hit(120, 3),), Transform(6.0, 0.0), 5.0, 6.0)) == 1


def test_collision_below_min_speed_not_counted() -> None:
    f = CollisionFilter()
    assert f.filter((hit(0, 3),), Transform(0.0, 0.0), 0.05, 0.0) == []
    assert f.filter((hit(0, 3),), Transform(0.0, 0.0), -0.05, 0.0) == []


def test_collision_counted_when_the_contact_stopped_the_car(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    c.update(make_state(0, 140.0, speed=5.0))
    stopped = c.update(make_state(1, 140.2, speed=0.0, collisions=(hit(1, 3),)))
    assert [i.key for i in stopped.new_infractions] == ["collisions_vehicle"]
    standing = RouteCriteria(plan, grid)
    standing.update(make_state(0, 140.0, speed=0.0))
    assert not standing.update(make_state(1, 140.0, speed=0.0, collisions=(hit(1, 3),))).infractions


def test_collisions_by_kind_in_route_criteria(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    s0 = c.update(make_state(0, 140.0, collisions=(hit(0, 7, ActorKind.WALKER),)))
    assert [i.key for i in s0.new_infractions] == ["collisions_pedestrian"]
    c.update(make_state(200, 150.0, collisions=(hit(200, -1, ActorKind.STATIC),)))
    s2 = c.update(make_state(400, 160.0, collisions=(hit(400, 3),)))
    assert keys(s2) == ["collisions_pedestrian", "collisions_layout", "collisions_vehicle"]
    message = s2.infractions[-1].message
    assert message.startswith("Agent collided against object with type=vehicle.npc and id=3 at")
    assert "(x=160.0, y=1.75, z=0.0)" in message


# ------------------------------------------------------------------------------- red lights
def light_at_200(state: TrafficLightState, road: int = 1, lane: int = -1) -> tuple:
    line = StopLine((200.0, 0.0), (200.0, 3.5), road, lane)
    return ((TrafficLightInfo(9, (201.0, 5.0, 0.0), (line,)), state),)


def test_red_light_crossing_counted_once(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    lights = light_at_200(TrafficLightState.RED)
    statuses = near_stop_line(c, lights)
    assert [k for s in statuses for k in (i.key for i in s.new_infractions)] == ["red_light"]
    crossing = next(s for s in statuses if s.new_infractions).new_infractions[0]
    assert crossing.x + 2.3 >= 200.0 > crossing.x + 2.3 - 0.5  # the front bumper crossed
    assert statuses[-1].infractions[0].message.startswith("Agent ran a red light 9 at (x=201.0")


def test_red_light_not_counted_on_green(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    statuses = near_stop_line(c, light_at_200(TrafficLightState.GREEN))
    assert not statuses[-1].infractions


def test_red_light_of_another_lane_not_counted(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    statuses = near_stop_line(c, light_at_200(TrafficLightState.RED, road=1, lane=1))
    assert not statuses[-1].infractions


# ------------------------------------------------------------------------------ lanes, route
def test_off_road_percentage_on_straight_plan(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid, CriteriaParams(min_speed_checkpoints=0))
    on = drive(c, [130.5 + i for i in range(1, 21)])  # 20 m of progress in lane
    assert not on[-1].outside_lanes and on[-1].outside_lanes_percentage == 0.0
    # 5.5 m to the right of the lane centre: beyond 1.75 + 0.5
    off = [c.update(make_state(100 + i, 150.5 + i, y=LANE_Y + 5.5)) for i in range(1, 11)]
    assert off[0].outside_lanes and [i.key for i in off[0].new_infractions] == [
        "outside_route_lanes"
    ]
    assert off[-1].outside_lanes_percentage == pytest.approx(100.0 * 10 / 30)
    event = off[-1].infractions[-1]
    assert event.value == pytest.approx(100.0 * 10 / 30)
    assert event.message == (
        "Agent went outside its route lanes for about 10.0 meters (33.33% of the completed route)"
    )
    assert sum(i.key == "outside_route_lanes" for i in off[-1].infractions) == 1


def test_small_offset_within_allowance_is_not_off_road(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    status = c.update(make_state(0, 140.0, y=LANE_Y + 2.0))  # 2.0 < 1.75 + 0.5
    assert not status.outside_lanes
    c1 = RouteCriteria(plan, grid, CriteriaParams(version=1))
    assert not c1.update(make_state(0, 140.0, y=LANE_Y + 2.9)).outside_lanes  # 2.9 < 3.05


def test_wrong_lane_detected(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    statuses = drive(c, [131.0 + i for i in range(10)], y=-LANE_Y)
    assert all(s.outside_lanes for s in statuses)
    assert statuses[-1].outside_lanes_percentage == pytest.approx(100.0)
    # driving the other lane in its own direction is not a wrong-lane infraction
    back = RouteCriteria(plan, grid).update(make_state(0, 150.0, y=-LANE_Y, yaw=180.0))
    assert not back.outside_lanes


def test_deviation_at_30m(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    assert c.update(make_state(0, 140.0, y=LANE_Y + 29.0)).status == "running"
    status = c.update(make_state(1, 140.0, y=LANE_Y + 31.0))
    assert status.done and status.status == "route_dev"
    assert status.failure_message == "Agent deviated from the route"
    assert status.new_infractions[0].key == "route_dev"
    assert c.update(make_state(2, 150.0)).status == "route_dev"  # final from then on


def test_deviation_after_30_percent_driven_15m_away(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    statuses = drive(c, [130.0 + i for i in range(1, 40)], y=LANE_Y + 20.0)
    done = next(s for s in statuses if s.done)
    assert done.status == "route_dev"
    assert done.route_progress == pytest.approx(22.0)  # first progress beyond 30 % of 70 m


def test_blocked_after_180s(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid, CriteriaParams(timeout_per_meter=10.0))
    for t in range(0, 181, 10):
        assert c.update(make_state(t, 140.0, speed=0.0, time=float(t))).status == "running"
    status = c.update(make_state(181, 140.0, speed=0.05, time=180.5))
    assert status.status == "vehicle_blocked" and status.failure_message == "Agent got blocked"
    assert status.new_infractions[0].message == "Agent got blocked at (x=140.0, y=1.75, z=0.0)"


def test_moving_resets_blocked_timer(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid, CriteriaParams(timeout_per_meter=10.0))
    c.update(make_state(0, 140.0, speed=0.0, time=0.0))
    c.update(make_state(1, 140.0, speed=1.0, time=100.0))
    assert c.update(make_state(2, 140.0, speed=0.0, time=250.0)).status == "running"


def test_route_timeout(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    assert c.timeout == pytest.approx(0.8 * 70.0 + 5.0)
    assert c.update(make_state(0, 140.0, time=60.9)).status == "running"
    status = c.update(make_state(1, 140.0, time=61.1))
    assert status.status == "route_timeout" and status.failure_message == "Agent timed out"
    assert status.new_infractions[0].message == "Route timeout."


def test_route_completion_monotone_and_complete(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    xs = [130.0 + 0.7 * i for i in range(101)] + [180.0, 170.0, 175.0]  # back up a little
    xs += [175.0 + 0.7 * i for i in range(38)]
    statuses = drive(c, xs)
    rc = [s.route_completion for s in statuses]
    assert all(b >= a for a, b in itertools.pairwise(rc))
    end = next(k for k, s in enumerate(statuses) if s.done)
    last = statuses[end]
    assert last.status == "completed" and last.route_completion == 100.0
    assert last.failure_message == "" and not last.infractions
    assert xs[end] > X1 and all(not s.done for s in statuses[:end]) and statuses[-1] == last
    driven = sum(abs(b - a) for a, b in itertools.pairwise(xs[: end + 1]))
    assert last.distance_driven == pytest.approx(driven)


def test_progress_cannot_skip_ahead(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    c.update(make_state(0, 131.0))
    jumped = c.update(make_state(1, 190.0))  # teleport 59 m ahead: at most a window of points
    assert jumped.route_progress <= 1.0 + CriteriaParams().progress_window


def test_min_speed_checkpoint(grid: RoadMap, plan: RoutePlan) -> None:
    c = RouteCriteria(plan, grid)
    statuses = drive(
        c, [130.0 + 0.25 * i for i in range(1, 80)], speed=5.0, vehicle_speeds=(8.0, 12.0)
    )
    found = [i for s in statuses for i in s.new_infractions]
    assert [i.key for i in found] == ["min_speed_infractions"]
    assert found[0].value == pytest.approx(50.0)
    assert found[0].message == "Average speed is 50.0% of the surrounding traffic's one"


def test_min_speed_ignores_traffic_far_away(grid: RoadMap, plan: RoutePlan) -> None:
    """Only vehicles within 50 m of the ego set the pace (not cars across town)."""
    c = RouteCriteria(plan, grid)
    xs = [130.0 + 0.25 * i for i in range(1, 80)]
    statuses = drive(c, xs, speed=5.0, vehicle_speeds=(8.0, 12.0), vehicle_offset=80.0)
    assert not [i for s in statuses for i in s.new_infractions if i.key == "min_speed_infractions"]


def test_lane_offset_is_perpendicular(grid: RoadMap) -> None:
    from envs.criteria import lane_state

    state = lane_state(grid, Transform(140.3, LANE_Y + 1.0, 0.0, 0.0), 0.5, 90.0)
    assert state.offset == pytest.approx(1.0, abs=1e-6)
    assert (state.road_id, state.lane_id) == (1, -1)
    assert math.isclose(state.lane_yaw, 0.0, abs_tol=1e-6)


@pytest.mark.parametrize("distance", [15.0, 0.5, 40.0])
def test_lights_near_the_ego_are_those_within_the_check_distance(
    grid: RoadMap, plan: RoutePlan, distance: float
) -> None:
    """The grid that skips far lights finds exactly the lights the plain distance test finds,
    whatever the check distance (cells of at least a metre)."""
    rng = np.random.default_rng(0)
    lights = tuple(
        TrafficLightInfo(i, (x, y, 0.0), (StopLine((x, y - 1.0), (x, y + 1.0), 1, -1),))
        for i, (x, y) in enumerate(rng.uniform(-100.0, 100.0, (60, 2)).tolist())
    )
    c = RouteCriteria(plan, grid, CriteriaParams(red_light_distance=distance))
    centres = c._light_centres(lights)
    found = 0
    for x, y in rng.uniform(-110.0, 110.0, (3000, 2)).tolist():
        want = np.flatnonzero(np.hypot(centres[:, 0] - x, centres[:, 1] - y) <= distance)
        assert c._lights_near(lights, x, y) == want.tolist()
        found += len(want)
    assert found > 0
    x, y = centres[7]  # exactly at a centre, and exactly at the check distance from it
    assert 7 in c._lights_near(lights, x, y) and 7 in c._lights_near(lights, x + distance, y)
