"""Hazards ahead on the route: stop lines and their lights."""

from __future__ import annotations

import numpy as np

from envs.backends.embedded import EmbeddedBackend
from envs.hazards import RouteHazards
from envs.planner import RoutePlanner


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
    hazards = RouteHazards(plan, roadmap, backend._lights)
    passes = hazards.stop_index[hazards.stop_light == 0]
    assert len(passes) == 2
    assert plan.distance[passes[0]] < 25.0 < plan.distance[passes[1]]
    backend.close()
