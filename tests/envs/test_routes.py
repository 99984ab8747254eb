"""Route files (leaderboard 1.0 and 2.0), the dense planner, and random routes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from envs.planner import RoutePlanner
from envs.routes import RoadOption, RouteFileError, RouteSpec, load_routes, write_routes
from envs.sim.roadmap import RoadMap
from envs.sim.weather import DEFAULT_ROUTE_WEATHER, Weather
from envs.sim.world import load_town


@pytest.fixture(scope="module")
def grid() -> RoadMap:
    return load_town("Grid01")


@pytest.fixture(scope="module")
def planner(grid: RoadMap) -> RoutePlanner:
    return RoutePlanner(grid)


def lane_point(grid: RoadMap, seg: int, s: float) -> tuple[float, float, float]:
    xyz, _ = grid.pose(np.array([seg]), np.array([s]))
    return tuple(float(v) for v in xyz[0])  # type: ignore[return-value]


LB1 = """<routes>
  <route id="0" town="Grid01">
    <weather cloudiness="80" precipitation="40" sun_altitude_angle="20"/>
    <waypoint x="{x0}" y="{y0}" z="0.0" pitch="0" roll="0" yaw="0"/>
    <waypoint x="{x1}" y="{y1}" z="0.0" pitch="0" roll="0" yaw="0"/>
  </route>
  <route id="1" town="Grid01">
    <waypoint x="{x0}" y="{y0}" z="0.0"/>
    <waypoint x="{x1}" y="{y1}" z="0.0"/>
  </route>
</routes>"""

LB2 = """<routes>
  <route id="7" town="Grid01">
    <weathers>
      <weather route_percentage="0" cloudiness="0" sun_altitude_angle="60"/>
      <weather route_percentage="100" cloudiness="100" sun_altitude_angle="10"/>
    </weathers>
    <waypoints>
      <position x="{x0}" y="{y0}" z="0.0"/>
      <position x="{x1}" y="{y1}" z="0.0"/>
    </waypoints>
    <scenarios>
      <scenario name="ParkingExit_1" type="ParkingExit">
        <trigger_point x="0" y="0" z="0"/>
      </scenario>
    </scenarios>
  </route>
</routes>"""


def write(tmp_path: Path, text: str, grid: RoadMap) -> Path:
    seg = int(np.argmax(np.where(grid.seg_junction < 0, grid.seg_length, 0)))
    x0, y0, _ = lane_point(grid, seg, 10.0)
    x1, y1, _ = lane_point(grid, seg, 150.0)
    path = tmp_path / "routes.xml"
    path.write_text(text.format(x0=x0, y0=y0, x1=x1, y1=y1))
    return path


def test_leaderboard_1_file(tmp_path: Path, grid: RoadMap, planner: RoutePlanner) -> None:
    routes = load_routes(write(tmp_path, LB1, grid))
    assert [r.route_id for r in routes] == ["0", "1"]
    assert routes[0].weather_at(50.0).cloudiness == 80
    assert routes[1].weather_at(0.0) == DEFAULT_ROUTE_WEATHER
    plan = planner.plan(routes[0].keypoints)
    assert plan.length == pytest.approx(140.0, abs=1.5)
    assert set(plan.commands.tolist()) == {RoadOption.LANEFOLLOW}


def test_leaderboard_2_file_with_weather_keypoints_and_skipped_scenarios(
    tmp_path: Path, grid: RoadMap, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        (route,) = load_routes(write(tmp_path, LB2, grid))
    assert route.skipped_scenarios == ("ParkingExit",)
    assert "ParkingExit" in caplog.text
    halfway = route.weather_at(50.0)
    assert halfway.cloudiness == pytest.approx(50.0)
    assert halfway.sun_altitude_angle == pytest.approx(35.0)
    assert route.weather_at(100.0).cloudiness == 100.0


def test_selecting_route_ids(tmp_path: Path, grid: RoadMap) -> None:
    path = write(tmp_path, LB1, grid)
    assert [r.route_id for r in load_routes(path, ["1"])] == ["1"]
    with pytest.raises(RouteFileError, match=r"no route with id \['9'\]"):
        load_routes(path, ["9"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("<routes><route id='0' town='Grid01'>", "malformed XML"),
        (
            "<routes><route id='0' town='Grid01'><waypoint x='1' y='2' z='0'/></route></routes>",
            "at least two",
        ),
        ("<routes><route town='Grid01'/></routes>", "'id' and 'town'"),
        (
            "<routes><route id='0' town='G'><waypoint x='a' y='0' z='0'/></route></routes>",
            "not a number",
        ),
        ("<other/>", "no <route>"),
    ],
)
def test_bad_route_files_name_the_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text)
    with pytest.raises(RouteFileError, match=match) as err:
        load_routes(path)
    assert "bad.xml" in str(err.value)


def test_off_road_waypoint_is_snapped_with_a_warning_or_rejected(
    grid: RoadMap, planner: RoutePlanner, caplog: pytest.LogCaptureFixture
) -> None:
    seg = int(np.argmax(np.where(grid.seg_junction < 0, grid.seg_length, 0)))
    a = np.array(lane_point(grid, seg, 10.0))
    b = np.array(lane_point(grid, seg, 60.0))
    yaw = grid.yaw[grid.seg_start[seg]]
    side = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    with caplog.at_level(logging.WARNING):
        planner.plan(np.stack([a, b + 3.0 * side]))
    assert "snapped" in caplog.text
    with pytest.raises(ValueError, match="off the road"):
        planner.plan(np.stack([a, b + 500.0 * side]))


def test_dense_plan_is_continuous_with_turn_commands(planner: RoutePlanner) -> None:
    rng = np.random.default_rng(3)
    commands: set[int] = set()
    for _ in range(5):
        plan = planner.plan(planner.random_keypoints(rng, 300.0, 1000.0))
        steps = np.linalg.norm(np.diff(plan.points[:, :2], axis=0), axis=1)
        assert steps.max() < 1.3
        assert 250.0 < plan.length < 1100.0
        commands |= set(plan.commands.tolist())
        thin = plan.thinned()
        assert thin[0] == 0 and thin[-1] == len(plan.points) - 1
        assert np.diff(plan.distance[thin]).max() <= 50.5
    assert {RoadOption.LANEFOLLOW, RoadOption.LEFT, RoadOption.RIGHT} <= commands


def test_turn_direction_matches_the_heading_change(planner: RoutePlanner, grid: RoadMap) -> None:
    for seg in np.flatnonzero(grid.seg_junction >= 0):
        a = grid.seg_start[seg]
        b = a + grid.seg_count[seg] - 1
        turn = (grid.yaw[b] - grid.yaw[a] + np.pi) % (2 * np.pi) - np.pi
        command = planner._command(int(seg))
        if abs(np.degrees(turn)) < 35:
            assert command == RoadOption.STRAIGHT
        else:  # CARLA's yaw grows clockwise seen from above: positive is a right turn
            assert command == (RoadOption.RIGHT if turn > 0 else RoadOption.LEFT)


def test_lane_changes_in_the_multi_lane_town() -> None:
    multi = RoutePlanner(load_town("Multi01"))
    rng = np.random.default_rng(0)
    changes = set()
    for _ in range(20):
        plan = multi.plan(multi.random_keypoints(rng, 300.0, 1000.0))
        changes |= set(plan.commands.tolist()) & {
            RoadOption.CHANGELANELEFT,
            RoadOption.CHANGELANERIGHT,
        }
    assert changes


def test_random_routes_change_lanes_as_often_as_asked() -> None:
    multi = RoutePlanner(load_town("Multi01"))
    changing = {RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT}

    def share_with_changes(share: float) -> float:
        rng = np.random.default_rng(0)
        plans = [multi.plan(multi.random_keypoints(rng, 150.0, 400.0, share)) for _ in range(40)]
        for plan in plans:
            assert 140.0 < plan.length < 450.0
            assert np.linalg.norm(np.diff(plan.points[:, :2], axis=0), axis=1).max() < 2.5
        return float(np.mean([bool(set(p.commands.tolist()) & changing) for p in plans]))

    rarely, often = share_with_changes(0.0), share_with_changes(1.0)
    assert rarely < 0.2 and often >= 0.3 and often > 2 * rarely


def test_written_routes_read_back(tmp_path: Path, planner: RoutePlanner) -> None:
    keypoints = planner.random_keypoints(np.random.default_rng(1), 300.0, 500.0)
    spec = RouteSpec("3", "Grid01", keypoints, ((0.0, Weather.preset("WetNoon")),))
    write_routes(tmp_path / "out.xml", [spec])
    (back,) = load_routes(tmp_path / "out.xml")
    assert back.route_id == "3" and back.town == "Grid01"
    assert np.allclose(back.keypoints, keypoints, atol=0.01)
    assert back.weather_at(0.0).precipitation_deposits == 50.0
