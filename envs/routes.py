"""Routes: leaderboard route files, random routes, and the dense plan the criteria follow.

A route is a list of keypoints in a town. The global planner turns it into the *dense plan*: the
shortest lane-graph path between consecutive keypoints at ``resolution`` (1 m) spacing, each
point with its high-level command (``RoadOption``), as CARLA's ``GlobalRoutePlanner`` does:
``LANEFOLLOW`` on lanes, ``LEFT`` / ``RIGHT`` / ``STRAIGHT`` through junctions by the heading
change, ``CHANGELANELEFT`` / ``CHANGELANERIGHT`` where the path switches lanes. The agent sees the
plan thinned (every 50 m and at each command change); criteria use it dense.

Route files (``shared/DESIGN.md`` §5): leaderboard 1.0 ``<route id town><weather/>?<waypoint
x y z .../>...`` and leaderboard 2.0 ``<route id town><weathers><weather route_percentage .../>
</weathers><waypoints><position x y z/></waypoints><scenarios>...</scenarios>``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from envs.sim.weather import DEFAULT_ROUTE_WEATHER, Weather

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SNAP_WARN_DISTANCE = 2.0  # [m] keypoints farther than this from a lane centre are reported
SNAP_MAX_DISTANCE = 30.0  # [m] keypoints farther than this are an error
TURN_THRESHOLD_DEG = 35.0  # heading change through a junction below which it is STRAIGHT
LANE_CHANGE_LENGTH = 10.0  # [m] distance over which the plan moves to the next lane


class RoadOption(IntEnum):
    """High-level commands, with the values of CARLA's ``agents.navigation.local_planner``."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6


class RouteFileError(ValueError):
    """A route file that cannot be used; the message names the file, the route and the fix."""


@dataclass(frozen=True)
class RouteSpec:
    """One route of a route file (or a random route).

    Attributes:
        route_id: The ``id`` attribute.
        town: The ``town`` attribute (a shipped town name or a CARLA map name).
        keypoints: (K, 3) waypoints in CARLA's frame [m].
        weathers: ``(route_percentage, Weather)`` keypoints, sorted; empty = the default.
        skipped_scenarios: Scenario types in the file that this project does not run.
    """

    route_id: str
    town: str
    keypoints: FloatArray
    weathers: tuple[tuple[float, Weather], ...] = ()
    skipped_scenarios: tuple[str, ...] = ()

    def weather_at(self, percentage: float) -> Weather:
        """Weather at ``percentage`` of the route driven, interpolated linearly (LB 2.0)."""
        if not self.weathers:
            return DEFAULT_ROUTE_WEATHER
        points = self.weathers
        if percentage <= points[0][0]:
            return points[0][1]
        for (p0, w0), (p1, w1) in itertools.pairwise(points):
            if percentage <= p1:
                t = (percentage - p0) / max(p1 - p0, 1e-9)
                values = {
                    f.name: (1 - t) * getattr(w0, f.name) + t * getattr(w1, f.name)
                    for f in dataclasses.fields(Weather)
                }
                return Weather(**values)
        return points[-1][1]


@dataclass(frozen=True)
class RoutePlan:
    """The dense plan of a route.

    Attributes:
        points: (N, 3) positions at ``resolution`` spacing [m].
        yaw: (N,) headings [rad].
        commands: (N,) ``RoadOption`` values.
        segments: (N,) lane segment of each point (the target lane during a lane change).
        distance: (N,) distance along the plan from the start [m].
    """

    points: FloatArray
    yaw: FloatArray
    commands: IntArray
    segments: IntArray
    distance: FloatArray

    @property
    def length(self) -> float:
        """Total length [m]."""
        return float(self.distance[-1])

    def advance(self, index: int, x: float, y: float, window: int = 40) -> int:
        """The plan point nearest ``(x, y)`` among the next ``window`` from ``index`` onwards.

        Never moves backwards, so a route that crosses itself is followed in order.
        """
        ahead = self.points[index : index + window, :2]
        d2 = (ahead[:, 0] - x) ** 2 + (ahead[:, 1] - y) ** 2
        return index + int(np.argmin(d2))

    def thinned(self, spacing: float = 50.0) -> IntArray:
        """Indices of the plan the agent sees: every ``spacing`` m and at each command change."""
        change = np.flatnonzero(np.diff(self.commands) != 0) + 1
        regular = np.searchsorted(self.distance, np.arange(0.0, self.length, spacing))
        return np.unique(np.concatenate([[0], regular, change, [len(self.points) - 1]]))


# ------------------------------------------------------------------------------- route files
def _parse_weather(element: ET.Element, where: str) -> Weather:
    names = {f.name for f in dataclasses.fields(Weather)}
    values: dict[str, float] = {}
    for key, text in element.attrib.items():
        if key in ("route_percentage", "id"):
            continue
        if key not in names:
            logger.warning("%s: ignoring unknown weather attribute %r", where, key)
            continue
        try:
            values[key] = float(text)
        except ValueError:
            raise RouteFileError(
                f"{where}: weather attribute {key}={text!r} is not a number"
            ) from None
    return Weather(**values)


def _float_attr(element: ET.Element, key: str, where: str) -> float:
    text = element.get(key)
    if text is None:
        raise RouteFileError(f"{where}: <{element.tag}> lacks the {key!r} attribute")
    try:
        return float(text)
    except ValueError:
        raise RouteFileError(f"{where}: {key}={text!r} is not a number") from None


def _parse_route(route: ET.Element, path: Path) -> RouteSpec:
    route_id = route.get("id")
    town = route.get("town")
    where = f"{path}: route id={route_id!r}"
    if route_id is None or town is None:
        raise RouteFileError(f"{where}: every <route> needs 'id' and 'town' attributes")
    positions = route.findall("waypoint") or route.findall("./waypoints/position")
    keypoints = np.array(
        [[_float_attr(p, k, where) for k in ("x", "y", "z")] for p in positions], dtype=np.float64
    ).reshape(-1, 3)
    if len(keypoints) < 2:
        raise RouteFileError(
            f"{where}: a route needs at least two waypoints, found {len(keypoints)}; add "
            "<waypoint x y z/> (leaderboard 1.0) or <waypoints><position x y z/> (2.0) elements"
        )
    weathers: list[tuple[float, Weather]] = []
    for element in route.findall("./weathers/weather"):
        pct = _float_attr(element, "route_percentage", where)
        weathers.append((pct, _parse_weather(element, where)))
    single = route.find("weather")
    if single is not None and not weathers:
        weathers.append((0.0, _parse_weather(single, where)))
    skipped = tuple(
        s.get("type") or s.get("name") or "unnamed" for s in route.findall("./scenarios/scenario")
    )
    if skipped:
        logger.warning("%s: skipping scenarios not implemented here: %s", where, ", ".join(skipped))
    return RouteSpec(
        route_id, town, keypoints, tuple(sorted(weathers, key=lambda w: w[0])), skipped
    )


def load_routes(path: str | Path, route_ids: list[str] | None = None) -> list[RouteSpec]:
    """Parse a leaderboard 1.0 or 2.0 route file.

    Args:
        path: The XML file.
        route_ids: Keep only these ids (in file order); ``None`` keeps all.

    Raises:
        RouteFileError: malformed XML, missing attributes, too few waypoints, unknown ids.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise RouteFileError(f"route file {path} does not exist") from None
    except ET.ParseError as err:
        raise RouteFileError(
            f"{path}: malformed XML ({err}); fix the file or regenerate it"
        ) from None
    elements = [root] if root.tag == "route" else root.findall("route")
    if not elements:
        raise RouteFileError(f"{path}: no <route> elements under <{root.tag}>")
    routes = [_parse_route(e, path) for e in elements]
    return routes if route_ids is None else select_routes(routes, route_ids, path)


def select_routes(
    routes: list[RouteSpec], route_ids: list[str], path: str | Path
) -> list[RouteSpec]:
    """The routes with these ids, in the order given.

    Raises:
        RouteFileError: an id that ``path`` (the file the routes came from) does not have.
    """
    by_id = {r.route_id: r for r in routes}
    missing = [i for i in route_ids if i not in by_id]
    if missing:
        raise RouteFileError(f"{path}: no route with id {missing}; the file has {sorted(by_id)}")
    return [by_id[i] for i in route_ids]


def write_routes(path: str | Path, routes: list[RouteSpec]) -> None:
    """Write routes in the leaderboard 1.0 format (``<waypoint x y z pitch roll yaw/>``)."""
    root = ET.Element("routes")
    for spec in routes:
        route = ET.SubElement(root, "route", id=spec.route_id, town=spec.town)
        if spec.weathers:
            weather = spec.weathers[0][1]
            attrs = {f.name: f"{getattr(weather, f.name):g}" for f in dataclasses.fields(Weather)}
            ET.SubElement(route, "weather", attrs)
        for x, y, z in spec.keypoints:
            ET.SubElement(
                route,
                "waypoint",
                x=f"{x:.2f}",
                y=f"{y:.2f}",
                z=f"{z:.2f}",
                pitch="0.0",
                roll="0.0",
                yaw="0.0",
            )
    ET.indent(root)
    Path(path).write_text(ET.tostring(root, encoding="unicode") + "\n", encoding="utf-8")
