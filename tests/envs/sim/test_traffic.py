"""NPC vehicles and pedestrians: gap keeping, light compliance, yielding, sidewalks."""

from __future__ import annotations

import numpy as np

from envs.sim.raster import DRIVING, SIDEWALK
from envs.sim.roadmap import RoadMap
from envs.sim.walkers import WalkerParams
from envs.sim.world import World, WorldConfig
from envs.types import TrafficLightState, Transform, VehicleControl

PARKED = VehicleControl(brake=1.0)


def busy_world(grid_map: RoadMap, **changes: object) -> World:
    world = World(grid_map, WorldConfig(vehicles=50, walkers=30, **changes))  # type: ignore[arg-type]
    world.reset(seed=3)
    return world


def test_npcs_keep_a_gap_to_the_vehicle_ahead(grid_map: RoadMap) -> None:
    world = busy_world(grid_map)
    t = world.traffic
    smallest = np.inf
    for _ in range(800):  # 40 s
        world.tick(PARKED)
        order = np.lexsort((t.s, t.seg))
        same = t.seg[order][1:] == t.seg[order][:-1]
        bumper = (
            (t.s[order][1:] - t.s[order][:-1])
            - t.half_length[order][1:]
            - t.half_length[order][:-1]
        )
        if same.any():
            smallest = min(smallest, float(bumper[same].min()))
    assert smallest > 0.5
    assert (t.speed > 1.0).any()


def transitions(world: World, seconds: float) -> list[tuple[int, int]]:
    moves = []
    for _ in range(round(seconds / world.config.dt)):
        before = world.traffic.seg.copy()
        world.tick(PARKED)
        changed = np.flatnonzero(world.traffic.seg != before)
        moves += [(int(before[i]), int(world.traffic.seg[i])) for i in changed]
    return moves


def test_npcs_stop_at_red_lights_and_go_on_green(grid_map: RoadMap) -> None:
    world = busy_world(grid_map)
    seg_light = world.light_layout.seg_light
    world.lights.force(TrafficLightState.RED)
    through_red = [m for m in transitions(world, 30.0) if seg_light[m[0]] >= 0]
    assert through_red == []
    world.lights.force(TrafficLightState.GREEN)
    through_green = [m for m in transitions(world, 30.0) if seg_light[m[0]] >= 0]
    assert len(through_green) > 5


def place_ego_on_lane(world: World, seg: int, s: float) -> Transform:
    xyz, yaw = world.map.pose(np.array([seg]), np.array([s]))
    return Transform(
        float(xyz[0, 0]), float(xyz[0, 1]), float(xyz[0, 2]), float(np.degrees(yaw[0]))
    )


def test_npc_stops_behind_the_ego(grid_map: RoadMap) -> None:
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    seg = int(np.argmax(np.where(grid_map.seg_junction < 0, grid_map.seg_length, 0)))
    world.reset(seed=0, ego=place_ego_on_lane(world, seg, 60.0), vehicles=0)
    t = world.traffic
    t.place(np.array([seg]), np.array([5.0]), np.array([10.0]))  # a sedan
    collisions = []
    for _ in range(400):
        collisions += world.tick(PARKED).collisions
    gap = 60.0 - t.s[0] - t.half_length[0] - world.config.ego.length / 2
    assert collisions == []
    assert t.speed[0] < 0.05
    assert 0.5 < gap < 6.0


def test_pedestrians_keep_to_sidewalks_unless_jaywalking(grid_map: RoadMap) -> None:
    def on_road_share(params: WalkerParams) -> float:
        world = World(grid_map, WorldConfig(vehicles=0, walkers=40, walker=params))
        world.reset(seed=5)
        classes = []
        for _ in range(1200):
            world.tick(PARKED)
            classes.append(world.raster.classify(world.walkers.xyz[:, :2]))
        cells = np.concatenate(classes)
        assert ((cells == SIDEWALK) | (cells == DRIVING)).mean() > 0.97
        return float((cells == DRIVING).mean())

    careful = on_road_share(WalkerParams(jaywalk_fraction=0.0))
    reckless = on_road_share(WalkerParams(jaywalk_fraction=1.0, jaywalk_rate=0.3))
    assert careful < 0.15  # only crossing at junctions
    assert reckless > careful + 0.05
