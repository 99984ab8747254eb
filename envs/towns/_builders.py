"""Building blocks for the procedurally generated OpenDRIVE towns.

The towns are assembled from *roads* whose start pose is fixed in absolute
coordinates and *junctions* built with scenariogeneration's
``CommonJunctionCreator``. Every junction port is the exact end pose of an
attached road, so the connecting roads (clothoids solved between the ports)
always meet the roads they join, even in networks with cycles.

Each road carries sidewalks as its outermost lane on both sides; junction
connecting roads carry a single driving lane each (one per allowed lane-to-lane
movement), which keeps the lane links unambiguous in both travel directions.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyclothoids as pcloth
from scenariogeneration import xodr

logger = logging.getLogger(__name__)

LANE_WIDTH = 3.5
SIDEWALK_WIDTH = 2.5
MARK_WIDTH = 0.15
FIXED_HEADER_DATE = "2024-01-01T00:00:00"
JUNCTION_ID_BASE = 1000
CONNECTING_ID_BASE = 10000
CONNECTING_IDS_PER_JUNCTION = 100
CURVATURE_EPS = 1e-6

Pose = tuple[float, float, float]
"""An ``(x, y, heading)`` triple in OpenDRIVE coordinates (radians)."""
RoadEnd = Literal["start", "end"]


@dataclass(frozen=True)
class Mark:
    """A road-mark style for one lane border.

    Attributes:
        kind: The OpenDRIVE road-mark type.
        color: The road-mark colour.
        lane_change: Which lane changes the mark allows.
    """

    kind: Any = xodr.RoadMarkType.solid
    color: Any = xodr.RoadMarkColor.white
    lane_change: Any = xodr.LaneChange.none

    def build(self) -> xodr.RoadMark:
        """Create the scenariogeneration road mark.

        Returns:
            A fresh ``xodr.RoadMark`` instance.
        """
        width = None if self.kind == xodr.RoadMarkType.none else MARK_WIDTH
        return xodr.RoadMark(self.kind, width, color=self.color, laneChange=self.lane_change)


SOLID_WHITE = Mark()
SOLID_YELLOW = Mark(color=xodr.RoadMarkColor.yellow)
DOUBLE_YELLOW = Mark(xodr.RoadMarkType.solid_solid, xodr.RoadMarkColor.yellow)
BROKEN_WHITE = Mark(xodr.RoadMarkType.broken, lane_change=xodr.LaneChange.both)
NO_MARK = Mark(xodr.RoadMarkType.none, xodr.RoadMarkColor.standard)


@dataclass(frozen=True)
class RoadSpec:
    """Cross-section of a road: driving lanes per side plus sidewalks.

    Attributes:
        left: Number of driving lanes left of the reference line (driving
            against the road direction).
        right: Number of driving lanes right of the reference line (driving
            along the road direction).
        centre: Mark on the reference line.
    """

    left: int = 1
    right: int = 1
    centre: Mark = SOLID_YELLOW


def _driving_lane(outermost: bool) -> xodr.Lane:
    """Create a 3.5 m driving lane with the right outer-border mark."""
    lane = xodr.Lane(xodr.LaneType.driving, a=LANE_WIDTH)
    lane.add_roadmark((SOLID_WHITE if outermost else BROKEN_WHITE).build())
    return lane


def _sidewalk_lane() -> xodr.Lane:
    """Create a sidewalk lane without road marks."""
    lane = xodr.Lane(xodr.LaneType.sidewalk, a=SIDEWALK_WIDTH)
    lane.add_roadmark(NO_MARK.build())
    return lane


def build_lanes(spec: RoadSpec) -> xodr.Lanes:
    """Create the lane layout of an ordinary road.

    Args:
        spec: The cross-section to build.

    Returns:
        One lane section with driving lanes and an outer sidewalk per side.
    """
    centre = xodr.Lane(xodr.LaneType.none)
    centre.add_roadmark(spec.centre.build())
    section = xodr.LaneSection(0, centre)
    for n in range(1, spec.left + 1):
        section.add_left_lane(_driving_lane(n == spec.left))
    for n in range(1, spec.right + 1):
        section.add_right_lane(_driving_lane(n == spec.right))
    section.add_left_lane(_sidewalk_lane())
    section.add_right_lane(_sidewalk_lane())
    lanes = xodr.Lanes()
    lanes.add_lanesection(section)
    return lanes


def wrap_angle(angle: float) -> float:
    """Wrap an angle to ``[-pi, pi)``.

    Args:
        angle: Angle in radians.

    Returns:
        The equivalent angle in ``[-pi, pi)``.
    """
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def clothoid_geometries(start: Pose, end: Pose) -> list[Any]:
    """Solve a G2 clothoid curve (three spirals) between two poses.

    Args:
        start: Start pose of the road.
        end: End pose of the road (heading along the road direction).

    Returns:
        ``xodr.Spiral`` geometries, or one ``xodr.Line`` if the poses are
        collinear.
    """
    dx, dy = end[0] - start[0], end[1] - start[1]
    aligned = abs(wrap_angle(end[2] - start[2])) < 1e-9
    if aligned and abs(wrap_angle(math.atan2(dy, dx) - start[2])) < 1e-9:
        return [xodr.Line(math.hypot(dx, dy))]
    curves = pcloth.SolveG2(*start[:2], start[2], 1e-9, *end[:2], end[2], 1e-9)
    return [_curve_geometry(c.KappaStart, c.KappaEnd, c.length) for c in curves]


def _curve_geometry(kappa_start: float, kappa_end: float, length: float) -> Any:
    """Create a spiral, or an arc/line when the curvature barely changes.

    CARLA evaluates spirals with (almost) constant curvature badly, so those
    become ``Arc`` (or ``Line``) geometries of the same length.
    """
    if abs(kappa_end - kappa_start) > CURVATURE_EPS:
        return xodr.Spiral(kappa_start, kappa_end, length=length)
    kappa = 0.5 * (kappa_start + kappa_end)
    if abs(kappa) > CURVATURE_EPS:
        return xodr.Arc(kappa, length=length)
    return xodr.Line(length)


def _simplify_spirals(road: xodr.Road) -> None:
    """Replace near-constant-curvature spirals of a connecting road in place."""
    geometries = road.planview._raw_geometries  # not yet adjusted at this point
    for n, geometry in enumerate(geometries):
        if isinstance(geometry, xodr.Spiral):
            geometries[n] = _curve_geometry(geometry.curvstart, geometry.curvend, geometry.length)


@dataclass
class _Port:
    """A road end attached to a junction."""

    road: xodr.Road
    spec: RoadSpec
    end: RoadEnd
    pose: Pose  # heading points into the junction

    @property
    def connection(self) -> str:
        """The scenariogeneration link name of this road end."""
        return "successor" if self.end == "end" else "predecessor"

    def lane_ids(self, inbound: bool) -> list[int]:
        """Signed ids of the driving lanes entering or leaving the junction."""
        if (self.end == "end") == inbound:
            return [-n for n in range(1, self.spec.right + 1)]
        return list(range(1, self.spec.left + 1))


@dataclass
class TownBuilder:
    """Collects roads and junctions and turns them into an ``OpenDrive``.

    Attributes:
        name: Name written into the OpenDRIVE header.
        roads: All ordinary (non-junction) roads, in creation order.
        junctions: Ports of every junction, keyed by junction name.
    """

    name: str
    roads: list[xodr.Road] = field(default_factory=list)
    junctions: dict[str, list[_Port]] = field(default_factory=dict)
    specs: dict[int, RoadSpec] = field(default_factory=dict)

    def add_road(self, start: Pose, geometries: Sequence[Any], spec: RoadSpec) -> xodr.Road:
        """Add an ordinary road with a fixed start pose.

        Args:
            start: Absolute start pose of the reference line.
            geometries: Plan-view geometries (``Line``, ``Arc``, ``Spiral``).
            spec: Lane layout of the road.

        Returns:
            The created road (its geometry is already adjusted).
        """
        planview = xodr.PlanView(*start)
        for geometry in geometries:
            planview.add_geometry(geometry)
        road = xodr.Road(len(self.roads) + 1, planview, build_lanes(spec))
        road.planview.adjust_geometries()
        self.specs[road.id] = spec
        self.roads.append(road)
        return road

    def connect(self, junction: str, road: xodr.Road, end: RoadEnd) -> None:
        """Attach one end of a road to a junction.

        Args:
            junction: Name of the junction (created on first use).
            road: A road returned by :meth:`add_road`.
            end: Which end of the road touches the junction.
        """
        if end == "end":
            pose = road.planview.get_end_point()
        else:
            x, y, h = road.planview.get_start_point()
            pose = (x, y, wrap_angle(h + math.pi))
        port = _Port(
            road, self.specs[road.id], end, (float(pose[0]), float(pose[1]), float(pose[2]))
        )
        self.junctions.setdefault(junction, []).append(port)

    def build(self) -> xodr.OpenDrive:
        """Create all junctions and link every lane.

        Returns:
            The finished, adjusted ``OpenDrive`` object.
        """
        odr = xodr.OpenDrive(self.name)
        for road in self.roads:
            odr.add_road(road)
        for index, (name, ports) in enumerate(self.junctions.items()):
            creator = _build_junction(index, name, ports)
            odr.add_junction_creator(creator)
        odr.adjust_roads_and_lanes()
        logger.info(
            "built %s: %d roads, %d junctions",
            self.name,
            len(odr.roads),
            len(odr.junctions),
        )
        return odr


def _turn_angle(src: _Port, dst: _Port) -> float:
    """Signed heading change (left positive) when driving from src into dst."""
    return wrap_angle(dst.pose[2] + math.pi - src.pose[2])


def _pair_lanes(sources: list[int], targets: list[int], inner: bool) -> list[tuple[int, int]]:
    """Pair lanes side by side, aligned on the inner (or outer) edge."""
    if not inner:
        sources, targets = sources[::-1], targets[::-1]
    count = max(len(sources), len(targets))
    return [
        (sources[min(k, len(sources) - 1)], targets[min(k, len(targets) - 1)]) for k in range(count)
    ]


def _movement_lanes(
    src: _Port, dst: _Port, src_one_sided: bool, dst_one_sided: bool
) -> list[tuple[int, int]]:
    """Lane pairs for one movement from port ``src`` into port ``dst``.

    Straight movements connect all lanes side by side. Left turns use the
    innermost and right turns the outermost lane, except where a road can only
    be left (``src_one_sided``) or entered (``dst_one_sided``) by turns to one
    side: there all its lanes take part, so no lane becomes a trap.
    """
    lanes_in, lanes_out = src.lane_ids(True), dst.lane_ids(False)
    if not lanes_in or not lanes_out:
        return []
    turn = _turn_angle(src, dst)
    if abs(turn) < math.pi / 4:
        return _pair_lanes(lanes_in, lanes_out, inner=True)
    edge = 0 if turn > 0 else -1
    sources = lanes_in if src_one_sided else [lanes_in[edge]]
    targets = lanes_out if dst_one_sided else [lanes_out[edge]]
    return _pair_lanes(sources, targets, inner=turn > 0)


def _turn_sides(ports: list[_Port], i: int, outbound: bool) -> set[bool]:
    """Turn directions (True: left) leading out of (or into) port ``i``."""
    if outbound:
        turns = [_turn_angle(ports[i], p) for p in ports if p is not ports[i] and p.lane_ids(False)]
    else:
        turns = [_turn_angle(p, ports[i]) for p in ports if p is not ports[i] and p.lane_ids(True)]
    return {t > 0 for t in turns if abs(t) >= math.pi / 4}


def _plan_movements(ports: list[_Port]) -> list[tuple[int, int, int, int]]:
    """Choose ``(src port, dst port, src lane, dst lane)`` for every movement."""
    pairs = [(i, j) for i in range(len(ports)) for j in range(len(ports)) if i != j]
    out_sided = [len(_turn_sides(ports, i, outbound=True)) < 2 for i in range(len(ports))]
    in_sided = [len(_turn_sides(ports, i, outbound=False)) < 2 for i in range(len(ports))]
    moves = [
        (i, j, a, b)
        for i, j in pairs
        for a, b in _movement_lanes(ports[i], ports[j], out_sided[i], in_sided[j])
    ]
    _cover_unlinked_lanes(ports, pairs, moves)
    return moves


def _cover_unlinked_lanes(
    ports: list[_Port], pairs: list[tuple[int, int]], moves: list[tuple[int, int, int, int]]
) -> None:
    """Give every inbound lane a successor and every outbound lane a predecessor.

    Missing links fall back to the straightest possible movement (in place).
    """
    straightness = {(i, j): abs(_turn_angle(ports[i], ports[j])) for i, j in pairs}
    for i, port in enumerate(ports):
        for lane in port.lane_ids(True):
            if not any(m[0] == i and m[2] == lane for m in moves):
                options = [p for p in pairs if p[0] == i and ports[p[1]].lane_ids(False)]
                j = min(options, key=straightness.__getitem__)[1]
                moves.append((i, j, lane, ports[j].lane_ids(False)[-1]))
        for lane in port.lane_ids(False):
            if not any(m[1] == i and m[3] == lane for m in moves):
                options = [p for p in pairs if p[1] == i and ports[p[0]].lane_ids(True)]
                j = min(options, key=straightness.__getitem__)[0]
                moves.append((j, i, ports[j].lane_ids(True)[-1], lane))


def _build_junction(index: int, name: str, ports: list[_Port]) -> xodr.CommonJunctionCreator:
    """Create one junction with a single-lane connecting road per movement."""
    junction_id = JUNCTION_ID_BASE + index
    startnum = CONNECTING_ID_BASE + index * CONNECTING_IDS_PER_JUNCTION
    creator = xodr.CommonJunctionCreator(junction_id, name, startnum=startnum)
    for port in ports:
        creator.add_incoming_road_cartesian_geometry(port.road, *port.pose, port.connection)
    moves = _plan_movements(ports)
    if len(moves) >= CONNECTING_IDS_PER_JUNCTION:
        raise ValueError(f"junction {name} needs too many connecting roads")
    for i, j, lane_in, lane_out in moves:
        creator.add_connection(ports[i].road.id, ports[j].road.id, lane_in, lane_out)
    for road in creator.get_connecting_roads():
        _simplify_spirals(road)
        _clear_marks(road)
    logger.debug("junction %s: %d ports, %d connecting roads", name, len(ports), len(moves))
    return creator


def _clear_marks(road: xodr.Road) -> None:
    """Remove painted marks from a junction connecting road."""
    for section in road.lanes.lanesections:
        for lane in [section.centerlane, *section.leftlanes, *section.rightlanes]:
            lane.roadmark = [NO_MARK.build()]


GEO_REFERENCE = "+proj=tmerc +lat_0=0 +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"


def write_xodr(odr: xodr.OpenDrive, path: Path) -> None:
    """Write an OpenDRIVE file deterministically (fixed header date).

    Args:
        odr: The adjusted network.
        path: Destination file.
    """
    root = odr.get_element()
    header = root.find("header")
    if header is not None:
        header.set("date", FIXED_HEADER_DATE)
        # A local transverse Mercator origin, as CARLA's towns carry; without one carla.Map
        # prints a warning on every load.
        geo = ET.SubElement(header, "geoReference")
        geo.text = GEO_REFERENCE
    ET.indent(root, space="  ")
    text = ET.tostring(root, encoding="unicode")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n", encoding="utf-8")
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
