"""Traffic lights: placement, CARLA's cycle, forcing and freezing, and the lane query."""

from __future__ import annotations

import numpy as np
import pytest

from envs.sim.lights import GREEN, RED, YELLOW, LightLayout, LightTiming, TrafficLights
from envs.sim.roadmap import RoadMap
from envs.types import TrafficLightState


def test_one_light_per_incoming_road_at_junctions_with_three_or_more(grid_map: RoadMap) -> None:
    layout = LightLayout(grid_map)
    # Grid01: four 4-way junctions and eight T junctions; the corner bends get none.
    assert sorted(layout.group_size.tolist()) == [3] * 8 + [4] * 4
    assert len(layout) == 40
    keys = set(zip(layout.junction.tolist(), layout.road.tolist(), strict=True))
    assert len(keys) == len(layout)
    for light, lanes in enumerate(layout.lanes):
        assert (layout.seg_light[lanes] == light).all()
        assert (grid_map.seg_junction[lanes] < 0).all()


def test_stop_line_spans_the_lane_at_its_end(grid_map: RoadMap) -> None:
    layout = LightLayout(grid_map)
    width = np.linalg.norm(layout.stop_line[:, 1] - layout.stop_line[:, 0], axis=1)
    assert np.allclose(width, 3.5, atol=0.05)  # one 3.5 m lane per incoming road
    lane_end = grid_map.seg_start[layout.lanes[0]] + grid_map.seg_count[layout.lanes[0]] - 1
    assert np.allclose(layout.stop_center[0], grid_map.points[lane_end].mean(axis=0))


def states_over(lights: TrafficLights, seconds: float, dt: float = 0.05) -> np.ndarray:
    out = []
    for _ in range(round(seconds / dt)):
        out.append(lights.state.copy())
        lights.tick(dt)
    return np.array(out)


def test_group_cycles_controllers_in_turn_with_carla_defaults(grid_map: RoadMap) -> None:
    layout = LightLayout(grid_map)
    lights = TrafficLights(layout)
    lights.reset(np.random.default_rng(0))
    lights.offset[:] = 0.0
    lights.time = 0.0
    lights.tick(0.0)
    group = int(np.argmax(layout.group_size))  # a 4-way junction
    members = np.flatnonzero(layout.group == group)
    history = states_over(lights, 60.0)[:, members]
    slot = layout.slot[members]
    # Controller k: green for 10 s, yellow 3 s, red 2 s, starting at k * 15 s; red otherwise.
    for k in range(4):
        column = history[:, np.flatnonzero(slot == k)[0]]
        start = k * 300
        assert (column[start : start + 200] == GREEN).all()
        assert (column[start + 200 : start + 260] == YELLOW).all()
        assert (column[start + 260 : start + 300] == RED).all()
    # Never two controllers of a group away from red at once.
    assert ((history != RED).sum(axis=1) <= 1).all()


def test_force_and_freeze(grid_map: RoadMap) -> None:
    lights = TrafficLights(LightLayout(grid_map))
    lights.reset(np.random.default_rng(1))
    lights.force(TrafficLightState.GREEN)
    assert (states_over(lights, 30.0) == GREEN).all()
    lights.force(None)
    before = lights.state.copy()
    lights.freeze()
    assert (states_over(lights, 30.0) == before).all()
    lights.freeze(False)
    assert not (states_over(lights, 30.0) == before).all()


def test_light_ahead_finds_the_governing_light(grid_map: RoadMap) -> None:
    layout = LightLayout(grid_map)
    lights = TrafficLights(layout)
    lane = layout.lanes[0][0]
    length = grid_map.seg_length[lane]
    light, distance = lights.light_ahead(grid_map, lane, length - 20.0)
    assert light == 0 and distance == pytest.approx(20.0)
    assert lights.light_ahead(grid_map, lane, 0.0, max_distance=length - 1.0) == (-1, float("inf"))
    junction_seg = int(grid_map.successors[lane][0])
    assert lights.light_ahead(grid_map, junction_seg, 1.0)[0] == -1


def test_bad_timing_is_rejected() -> None:
    with pytest.raises(ValueError, match="timings"):
        LightTiming(green=-1.0)
