"""Tests for the generated OpenDRIVE towns in ``envs/towns``."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

carla = pytest.importorskip("carla")
nx = pytest.importorskip("networkx")

from envs.towns import TOWNS_DIR, available_towns, town_path  # noqa: E402
from envs.towns.generate import TOWN_BUILDERS, generate  # noqa: E402

TOWNS = ["Curve01", "Grid01", "Grid02", "Multi01"]


@pytest.fixture(scope="module")
def maps() -> dict[str, Any]:
    """Load every shipped town once into CARLA's offline map."""
    return {name: carla.Map(name, town_path(name).read_text()) for name in TOWNS}


def _xml_roads(name: str) -> list[ET.Element]:
    return ET.parse(town_path(name)).getroot().findall("road")


def _junction_roads(cmap: Any) -> dict[int, set[int]]:
    """Map junction id -> ids of the ordinary roads entering or leaving it."""
    attached: dict[int, set[int]] = defaultdict(set)
    for a, b in cmap.get_topology():
        if b.is_junction and not a.is_junction:
            attached[b.get_junction().id].add(a.road_id)
        if a.is_junction and not b.is_junction:
            attached[a.get_junction().id].add(b.road_id)
    return attached


def _driving(cmap: Any, distance: float = 2.0) -> list[Any]:
    return [w for w in cmap.generate_waypoints(distance) if w.lane_type == carla.LaneType.Driving]


def test_available_towns() -> None:
    assert set(TOWNS) <= set(available_towns())
    assert available_towns() == sorted(available_towns())
    assert set(TOWN_BUILDERS) == set(TOWNS)


def test_town_path_known_and_unknown() -> None:
    assert town_path("Grid01") == TOWNS_DIR / "Grid01.xodr"
    with pytest.raises(ValueError, match="Nope") as info:
        town_path("Nope")
    for name in TOWNS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", TOWNS)
def test_loads_with_waypoints_on_every_road(maps: dict[str, Any], name: str) -> None:
    assert town_path(name).stat().st_size < 1_000_000
    roads = {int(r.get("id", "0")) for r in _xml_roads(name) if r.get("junction") == "-1"}
    covered = {w.road_id for w in maps[name].generate_waypoints(2.0)}
    assert roads and roads <= covered


@pytest.mark.parametrize(
    ("name", "min_junctions", "kinds"),
    [("Grid01", 9, {3, 4}), ("Multi01", 4, {3, 4}), ("Curve01", 5, {3}), ("Grid02", 11, {3, 4})],
)
def test_junction_kinds(
    maps: dict[str, Any], name: str, min_junctions: int, kinds: set[int]
) -> None:
    attached = _junction_roads(maps[name])
    sizes = [len(roads) for roads in attached.values()]
    assert len(sizes) >= min_junctions
    assert kinds <= set(sizes)
    assert min(sizes) >= 3  # no dead ends or plain pass-throughs


@pytest.mark.parametrize("name", TOWNS)
def test_every_road_has_sidewalks(maps: dict[str, Any], name: str) -> None:
    cmap = maps[name]
    for road in _xml_roads(name):
        if road.get("junction") != "-1":
            continue
        section = road.find("lanes/laneSection")
        assert section is not None
        ids = [int(lane.get("id", "0")) for lane in section.iter("lane")]
        s_mid = float(road.get("length", "0")) / 2.0
        for outer in (max(ids), min(ids)):
            wp = cmap.get_waypoint_xodr(int(road.get("id", "0")), outer, s_mid)
            assert wp is not None and wp.lane_type == carla.LaneType.Sidewalk
            assert 2.0 <= wp.lane_width <= 3.0
            found = cmap.get_waypoint(wp.transform.location, lane_type=carla.LaneType.Sidewalk)
            assert found is not None and found.road_id == wp.road_id


def test_grid01_two_lane_roads(maps: dict[str, Any]) -> None:
    for wp in _driving(maps["Grid01"]):
        if wp.is_junction:
            continue
        assert wp.lane_id in (-1, 1)
        assert math.isclose(wp.lane_width, 3.5)
        assert wp.left_lane_marking.type == carla.LaneMarkingType.Solid
        assert wp.left_lane_marking.color == carla.LaneMarkingColor.Yellow
        assert wp.right_lane_marking.type == carla.LaneMarkingType.Solid
        assert wp.right_lane_marking.color == carla.LaneMarkingColor.White


def test_grid02_looks_unlike_the_training_towns(maps: dict[str, Any]) -> None:
    """The held-out town of perception: broken white centre lines and a 2+2 avenue."""
    wps = [w for w in _driving(maps["Grid02"]) if not w.is_junction]
    centre = {(w.left_lane_marking.type, w.left_lane_marking.color) for w in wps}
    assert (carla.LaneMarkingType.Broken, carla.LaneMarkingColor.White) in centre
    assert (carla.LaneMarkingType.SolidSolid, carla.LaneMarkingColor.Yellow) in centre
    assert {abs(w.lane_id) for w in wps} == {1, 2}


def test_multi01_has_two_lanes_per_direction_with_lane_change(maps: dict[str, Any]) -> None:
    wps = [w for w in _driving(maps["Multi01"]) if not w.is_junction]
    inner = [
        w
        for w in wps
        if w.lane_id == -1 and w.right_lane_marking.type == carla.LaneMarkingType.Broken
    ]
    assert inner, "no road with two lanes in one direction"
    wp = inner[0]
    right = wp.get_right_lane()
    assert right is not None and right.lane_type == carla.LaneType.Driving
    assert right.lane_id == -2
    assert wp.lane_change in (carla.LaneChange.Right, carla.LaneChange.Both)
    assert right.lane_change in (carla.LaneChange.Left, carla.LaneChange.Both)
    assert wp.left_lane_marking.type == carla.LaneMarkingType.SolidSolid
    assert {abs(w.lane_id) for w in wps} == {1, 2}  # some roads have only one lane per side


def test_curve01_has_curved_roads(maps: dict[str, Any]) -> None:
    by_lane: dict[tuple[int, int], list[float]] = defaultdict(list)
    for wp in _driving(maps["Curve01"], 1.0):
        if not wp.is_junction:
            by_lane[(wp.road_id, wp.lane_id)].append(wp.transform.rotation.yaw)
    turns = [abs((max(y) - min(y) + 180.0) % 360.0 - 180.0) for y in by_lane.values()]
    assert sum(turn > 45.0 for turn in turns) >= 3


@pytest.mark.parametrize("name", TOWNS)
def test_driving_graph_strongly_connected(maps: dict[str, Any], name: str) -> None:
    cmap = maps[name]
    graph = nx.DiGraph()
    for a, b in cmap.get_topology():
        graph.add_edge((a.road_id, a.section_id, a.lane_id), (b.road_id, b.section_id, b.lane_id))
    assert nx.is_strongly_connected(graph)
    lanes = {(w.road_id, w.section_id, w.lane_id) for w in _driving(cmap)}
    assert lanes <= set(graph.nodes)


@pytest.mark.parametrize("name", TOWNS)
@pytest.mark.parametrize("forward", [True, False])
def test_random_walks_never_get_stuck(maps: dict[str, Any], name: str, forward: bool) -> None:
    rng = random.Random(7)
    starts = _driving(maps[name])
    for _ in range(10):
        wp = rng.choice(starts)
        for _ in range(800):
            nxt = wp.next(1.0) if forward else wp.previous(1.0)
            assert nxt, f"dead end at road {wp.road_id} lane {wp.lane_id}"
            step = rng.choice(nxt)
            assert step.transform.location.distance(wp.transform.location) < 1.5
            wp = step


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.xodr" for n in TOWNS)
    for path in written:
        assert path.read_bytes() == town_path(path.stem).read_bytes(), path.name
