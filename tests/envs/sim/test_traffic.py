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


def dense_leaders(
    t: object, path: np.ndarray, obstacles: np.ndarray, speeds: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The leader search written plainly over all N x M pairs (what ``_leaders`` computes)."""
    xyz, yaw, half = t.xyz, t.yaw, t.half_length  # type: ignore[attr-defined]
    count, p = len(xyz), t.params  # type: ignore[attr-defined]
    others = np.concatenate([xyz[:, :2], obstacles])
    other_half = np.concatenate([half, radii])
    dx = others[None, :, 0] - xyz[:, None, 0]
    dy = others[None, :, 1] - xyz[:, None, 1]
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    ahead = dx * cos + dy * sin
    reach = p.lookahead[-1] + p.corridor + 3.0
    near = (
        (ahead > -3.0) & (ahead < reach) & (np.abs(dx * sin - dy * cos) < 3.0 + 0.7 * np.abs(ahead))
    )
    near[:, :count] &= ~np.eye(count, dtype=bool)
    near[t._ghost, :count] = False  # type: ignore[attr-defined]
    rel = path[:, None, :, :2] - others[None, :, None, :]
    limit = (p.corridor + np.minimum(other_half, 1.2)) ** 2
    hit = near & ((rel * rel).sum(axis=-1) < limit[None, :, None]).any(axis=2)
    npc = hit[:, :count]
    npc &= ~(npc & npc.T & np.triu(np.ones((count, count), dtype=bool), 1))
    pair_gap = np.where(hit, np.hypot(dx, dy) - half[:, None] - other_half[None, :], np.inf)
    leader = pair_gap.argmin(axis=1)
    gap = pair_gap[np.arange(count), leader]
    speed = np.concatenate([t.speed, speeds])[leader]  # type: ignore[attr-defined]
    return gap, np.where(gap < np.inf, speed, 0.0)


def test_leader_search_matches_the_search_over_all_pairs(grid_map: RoadMap) -> None:
    """The sparse leader search (only nearby pairs) finds the same leader, gap and speed as
    the plain search over every pair, junction crossings and gridlock breakers included."""
    world = busy_world(grid_map)
    t, rng = world.traffic, np.random.default_rng(0)
    checked = 0
    for tick in range(600):
        world.tick(VehicleControl(throttle=0.5, steer=float(rng.uniform(-0.3, 0.3))))
        if tick % 20:
            continue
        t._ghost = rng.random(len(t.s)) < 0.1
        path, _ = t._corridor()
        obstacles = world.walkers.xyz[:8, :2]
        speeds, radii = rng.uniform(0.0, 2.0, 8), np.full(8, 0.3)
        gap, speed = t._leaders(path, obstacles, speeds, radii)
        want_gap, want_speed = dense_leaders(t, path, obstacles, speeds, radii)
        np.testing.assert_allclose(gap, want_gap, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(speed, want_speed)
        checked += int(np.isfinite(gap).sum())
    assert checked > 100  # plenty of vehicles had a leader
    # A crowd packed into 40 x 40 m with random headings: many pairs face each other.
    mutual = 0
    for _ in range(20):
        count = len(t.s)
        t.xyz = np.column_stack([rng.uniform(0, 40, (count, 2)), np.zeros(count)])
        t.yaw = rng.uniform(-np.pi, np.pi, count)
        t._ghost = rng.random(count) < 0.1
        heading = np.stack([np.cos(t.yaw), np.sin(t.yaw), np.zeros(count)], axis=1)
        path = t.xyz[:, None, :] + heading[:, None, :] * np.asarray(t.params.lookahead)[:, None]
        obstacles = rng.uniform(0, 40, (5, 2))
        speeds, radii = rng.uniform(0.0, 2.0, 5), np.full(5, 0.3)
        gap, speed = t._leaders(path, obstacles, speeds, radii)
        want_gap, want_speed = dense_leaders(t, path, obstacles, speeds, radii)
        np.testing.assert_allclose(gap, want_gap, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(speed, want_speed)
        rel = path[:, None, :, :2] - t.xyz[None, :, None, :2]
        sees = ((rel**2).sum(axis=-1) < (t.params.corridor + 1.2) ** 2).any(axis=2)
        mutual += int((sees & sees.T & ~np.eye(count, dtype=bool)).sum())
    assert mutual > 0  # the lower-index-goes rule was exercised
