"""Ego collisions with vehicles, pedestrians and the static layout; lane invasions."""

from __future__ import annotations

import numpy as np

from envs.sim.roadmap import RoadMap
from envs.sim.world import World, WorldConfig
from envs.types import ActorKind, CollisionEvent, LaneInvasionEvent, Transform, VehicleControl


def long_lane(grid_map: RoadMap) -> int:
    return int(np.argmax(np.where(grid_map.seg_junction < 0, grid_map.seg_length, 0)))


def ego_on(world: World, seg: int, s: float) -> None:
    xyz, yaw = world.map.pose(np.array([seg]), np.array([s]))
    ego = Transform(float(xyz[0, 0]), float(xyz[0, 1]), float(xyz[0, 2]), float(np.degrees(yaw[0])))
    world.reset(seed=0, ego=ego, vehicles=0, walkers=0)


def drive(world: World, control: VehicleControl, seconds: float) -> list[CollisionEvent]:
    events: list[CollisionEvent] = []
    for _ in range(round(seconds / world.config.dt)):
        events += world.tick(control).collisions
    return events


def test_rear_ending_a_stopped_car(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    seg = long_lane(grid_map)
    ego_on(world, seg, 10.0)
    t = world.traffic
    t.place(np.array([seg]), np.array([40.0]), np.array([1e-3]))  # a sedan
    events = drive(world, VehicleControl(throttle=1.0), 6.0)
    assert events, "the ego should have hit the parked car"
    first = events[0]
    assert (first.other_kind, first.other_id, first.other_type) == (
        ActorKind.VEHICLE,
        0,
        "vehicle.npc",
    )
    assert first.relative_speed > 3.0 and first.impulse > 0.0
    assert world.ego.speed == 0.0  # a solid contact stops the car


def test_hitting_a_pedestrian(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    seg = long_lane(grid_map)
    ego_on(world, seg, 10.0)
    w = world.walkers
    w.resize(1)
    w.xyz[0] = grid_map.pose(np.array([seg]), np.array([30.0]))[0][0]
    w.target[0] = 0
    w.walk_speed[0] = 0.0
    w.xyz[0] = grid_map.pose(np.array([seg]), np.array([30.0]))[0][0]
    events = drive(world, VehicleControl(throttle=0.7), 6.0)
    kinds = [e.other_kind for e in events]
    assert kinds == [ActorKind.WALKER]  # reported once: the pedestrian is knocked down
    assert not w.active[0]


def test_leaving_the_road_hits_the_layout(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    ego_on(world, long_lane(grid_map), 20.0)
    events = drive(world, VehicleControl(throttle=0.6, steer=0.6), 8.0)
    assert any(e.other_type == "static.building" for e in events)


def test_crossing_the_centre_line_is_a_lane_invasion(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    ego_on(world, long_lane(grid_map), 10.0)
    invasions: list[LaneInvasionEvent] = []
    for i in range(100):  # speed up, drift left for a second, straighten
        steer = -0.3 if 40 <= i < 60 else (0.3 if 60 <= i < 80 else 0.0)
        invasions += world.tick(VehicleControl(throttle=0.8, steer=steer)).lane_invasions
    # Over the centre line into the oncoming lane, and back.
    assert [(e.marking_type, e.marking_color) for e in invasions] == [("Solid", "Yellow")] * 2


def test_no_collision_driving_an_empty_lane(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    ego_on(world, long_lane(grid_map), 5.0)
    assert drive(world, VehicleControl(throttle=0.4), 4.0) == []


def test_regression_ego_stuck_in_contact_can_back_away(grid_map: RoadMap) -> None:
    """Once touching a car, every move used to be undone, freezing the ego for good."""
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    seg = long_lane(grid_map)
    ego_on(world, seg, 10.0)
    t = world.traffic
    t.place(np.array([seg]), np.array([14.5]), np.array([1e-3]))  # a sedan
    assert world.tick(VehicleControl(throttle=0.3)).collisions  # bumpers overlap
    start = world.ego_center().copy()
    drive(world, VehicleControl(throttle=0.5, reverse=True), 2.0)
    assert np.hypot(*(world.ego_center() - start)) > 1.0


def test_regression_npc_grazing_the_ego_drives_clear(grid_map: RoadMap) -> None:
    """NPCs used to be frozen on every contact tick, so a graze left both cars stuck."""
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    seg = long_lane(grid_map)
    ego_on(world, seg, 30.0)
    t = world.traffic
    t.place(np.array([seg]), np.array([30.0]), np.array([8.0]))  # a sedan
    # The ego's nose rests against the NPC's rear quarter, at an angle (a roundabout merge).
    heading = np.array([np.cos(t.yaw[0]), np.sin(t.yaw[0])])
    left = np.array([np.sin(t.yaw[0]), -np.cos(t.yaw[0])])
    center = t.xyz[0, :2] - 3.0 * heading + 1.6 * left
    yaw = float(t.yaw[0]) + np.radians(25.0)
    back = world.config.ego.center_offset
    world.ego.x, world.ego.y = center - back * np.array([np.cos(yaw), np.sin(yaw)])
    world.ego.yaw = yaw
    events = drive(world, VehicleControl(brake=1.0), 4.0)
    assert events  # they touched
    assert t.s[0] > 40.0  # and the NPC went on its way
