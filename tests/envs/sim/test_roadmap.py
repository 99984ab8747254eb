"""Maps: loading, lane arrays, the lane graph, and bad input."""

from __future__ import annotations

import itertools
from pathlib import Path

import carla
import networkx as nx
import numpy as np
import pytest

from envs.sim.roadmap import LaneTracker, RoadMap, fix_degenerate_spirals
from envs.sim.world import load_town
from envs.towns import available_towns


@pytest.mark.parametrize("name", ["Grid01", "Multi01", "Curve01"])
def test_shipped_town_loads_with_lanes_and_sidewalks(name: str) -> None:
    town = load_town(name)
    assert len(town.seg_length) > 20
    assert np.isfinite(town.points).all()
    assert len(town.sidewalks) > 5
    assert nx.is_strongly_connected(town.graph)


def test_built_town_loads(tiny_map: RoadMap) -> None:
    assert (tiny_map.seg_junction >= 0).any() and (tiny_map.seg_junction < 0).any()
    assert nx.is_strongly_connected(tiny_map.graph)


def test_available_towns_lists_the_shipped_ones() -> None:
    assert {"Grid01", "Multi01", "Curve01"} <= set(available_towns())


def test_successors_start_where_segments_end(grid_map: RoadMap) -> None:
    for seg, nxt in enumerate(grid_map.successors):
        end = grid_map.points[grid_map.seg_start[seg] + grid_map.seg_count[seg] - 1]
        for other in nxt:
            start = grid_map.points[grid_map.seg_start[other]]
            assert np.hypot(*(end[:2] - start[:2])) < 0.5


def test_pose_interpolates_along_the_lane(grid_map: RoadMap) -> None:
    seg = int(np.argmax(grid_map.seg_length))
    a = grid_map.seg_start[seg]
    xyz, _ = grid_map.pose(np.array([seg, seg]), np.array([0.0, grid_map.seg_length[seg]]))
    assert np.allclose(xyz[0], grid_map.points[a])
    assert np.allclose(xyz[1], grid_map.points[a + grid_map.seg_count[seg] - 1])
    mid, _ = grid_map.pose(np.array([seg]), np.array([grid_map.seg_length[seg] / 2]))
    travelled = np.hypot(*(mid[0, :2] - grid_map.points[a, :2]))
    assert travelled == pytest.approx(grid_map.seg_length[seg] / 2, rel=0.02)  # straight road


def test_pose_and_index_together_equal_each_alone(grid_map: RoadMap) -> None:
    rng = np.random.default_rng(0)
    seg = rng.integers(len(grid_map.seg_length), size=(40, 6))
    s = rng.uniform(-1.0, 1.1, seg.shape) * grid_map.seg_length[seg]  # ends and beyond too
    xyz, index = grid_map.pose_and_index(seg, s)
    np.testing.assert_array_equal(xyz, grid_map.pose(seg, s)[0])
    np.testing.assert_array_equal(index, grid_map.point_index(seg, s))


def test_coordinates_are_carlas(grid_map: RoadMap) -> None:
    """A carla waypoint's location maps back onto its own lane with no conversion."""
    for wp in grid_map.carla_map.generate_waypoints(25.0)[::7]:
        around = [wp, *wp.next(1.0), *wp.previous(1.0)]
        if any(w.is_junction for w in around):  # junction lanes overlap: any is right
            continue
        loc = wp.transform.location
        hit = grid_map.locate(loc.x, loc.y, loc.z)
        assert hit is not None
        seg, _, lateral, _ = hit
        assert grid_map.keys[seg] == (wp.road_id, wp.section_id, wp.lane_id)
        assert lateral < 0.6


def test_shortest_route_is_a_connected_lane_sequence(grid_map: RoadMap) -> None:
    path = nx.shortest_path(grid_map.graph, 0, len(grid_map.seg_length) - 1, weight="length")
    for a, b in itertools.pairwise(path):
        assert b in grid_map.successors[a]


def test_degenerate_spiral_becomes_an_arc() -> None:
    text = '<geometry><spiral curvStart="-0.05" curvEnd="-0.05"/></geometry>'
    assert fix_degenerate_spirals(text) == '<geometry><arc curvature="-0.05"/></geometry>'
    keep = '<spiral curvStart="0.0" curvEnd="-0.05"/>'
    assert fix_degenerate_spirals(keep) == keep


def test_not_opendrive_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xodr"
    bad.write_text("<html><body>not a map</body></html>")
    with pytest.raises(ValueError, match="not OpenDRIVE"):
        RoadMap.from_file(bad)


def test_unknown_town_names_the_choices() -> None:
    with pytest.raises(ValueError, match="Grid01"):
        load_town("Town99")


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_town("/nonexistent/Town01.xodr")


def test_sidewalks_are_carla_sidewalk_lanes(grid_map: RoadMap) -> None:
    walk = grid_map.sidewalks[0]
    x, y, z = walk.points[len(walk.points) // 2]
    wp = grid_map.carla_map.get_waypoint(
        carla.Location(x=float(x), y=float(y), z=float(z)),
        project_to_road=False,
        lane_type=carla.LaneType.Sidewalk,
    )
    assert wp is not None and wp.lane_type == carla.LaneType.Sidewalk


@pytest.mark.parametrize("name", ["Grid01", "Multi01"])
def test_lane_tracker_answers_as_locate_does(name: str) -> None:
    """Along routes with lateral wander (lane changes, junctions, off-road moments) and a jump,
    the tracker's shortcut gives locate's segment, s, distance and height at every point outside
    junctions; inside them (overlapping lanes) it keeps a lane that contains the point."""
    roadmap = load_town(name)
    rng = np.random.default_rng(3)
    tracker = LaneTracker(roadmap)
    shortcuts = 0
    graph = roadmap.graph
    nodes = list(graph.nodes)
    for _ in range(4):
        a, b = (int(v) for v in rng.choice(nodes, 2, replace=False))
        if not nx.has_path(graph, a, b):
            continue
        path = nx.shortest_path(graph, a, b)
        for seg in path:
            for s in np.arange(0.0, float(roadmap.seg_length[seg]), 0.7):
                xyz, yaw = roadmap.pose(np.array([seg]), np.array([s]))
                side = rng.normal(0.0, 1.2)
                x = float(xyz[0, 0] - np.sin(yaw[0]) * side)
                y = float(xyz[0, 1] + np.cos(yaw[0]) * side)
                expected = roadmap.locate(x, y, float(xyz[0, 2]))
                before = tracker._seg
                got = tracker.locate(x, y, float(xyz[0, 2]))
                shortcuts += int(before >= 0 and got is not None and got[0] == before)
                if expected is None:
                    assert got is None
                    continue
                assert got is not None
                if roadmap.seg_junction[got[0]] >= 0 and got[0] != expected[0]:
                    assert roadmap.seg_junction[expected[0]] >= 0
                    assert got[2] < float(roadmap.seg_width[got[0]]) / 2.0
                    continue
                assert got[:2] == pytest.approx(expected[:2])
                assert got[2:] == pytest.approx(expected[2:], abs=1e-9)
        tracker.locate(1e4, 1e4)  # far off the map: must fall back, not stick to the lane
    assert shortcuts > 100  # the fast path was taken
