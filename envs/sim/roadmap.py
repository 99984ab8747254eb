"""OpenDRIVE towns loaded through ``carla.Map`` and flattened into numpy arrays.

``carla.Map(name, xodr_text)`` parses OpenDRIVE with no server, so coordinates, lanes, junctions
and waypoints are CARLA's own. For speed, the simulator does not query ``carla.Map`` per actor per
step: at load time every driving lane of the topology becomes a *segment*, a polyline resampled at
a uniform spacing of about ``resolution`` metres, and all segments are packed into flat arrays. An
actor on a lane is then just ``(segment, s)``: its pose is one vectorised interpolation.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import carla
import networkx as nx
import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

_DENSE_STEP = 0.5  # [m] spacing of carla waypoints read along each lane before resampling
LaneKey = tuple[int, int, int]  # (road_id, section_id, lane_id)


@dataclass(frozen=True)
class Sidewalk:
    """A sidewalk strip beside one side of a road: a centre polyline and its width.

    Attributes:
        points: (K, 3) centre line [m], in the direction of the adjacent driving lane.
        width: Strip width [m].
        segment: Index of the driving segment it runs beside.
    """

    points: FloatArray
    width: float
    segment: int


_SPIRAL = re.compile(r'<spiral\s+curvStart="([^"]+)"\s+curvEnd="([^"]+)"\s*/>')


def fix_degenerate_spirals(xodr_text: str) -> str:
    """Rewrite spirals whose start and end curvature are equal as arcs.

    CARLA's OpenDRIVE parser divides by the curvature change of a spiral, so a constant-curvature
    spiral (which some generators, scenariogeneration's junction creator among them, write)
    evaluates to NaN positions. An arc is the same curve.
    """

    def repl(match: re.Match[str]) -> str:
        start, end = float(match.group(1)), float(match.group(2))
        if abs(start - end) > 1e-9:
            return match.group(0)
        return f'<arc curvature="{match.group(1)}"/>'

    return _SPIRAL.sub(repl, xodr_text)


def _lane_key(wp: carla.Waypoint) -> LaneKey:
    return (int(wp.road_id), int(wp.section_id), int(wp.lane_id))


def _loc(wp: carla.Waypoint) -> tuple[float, float, float]:
    loc = wp.transform.location
    return (loc.x, loc.y, loc.z)


def _follow_lane(entry: carla.Waypoint, exit_: carla.Waypoint) -> list[carla.Waypoint]:
    """Dense waypoints from ``entry`` to ``exit_`` along one lane (like CARLA's route planner)."""
    key = _lane_key(entry)
    end = np.array(_loc(exit_))
    dense = [entry]
    current = entry
    for _ in range(100_000):
        if np.linalg.norm(np.array(_loc(current)) - end) <= _DENSE_STEP:
            break
        candidates = [w for w in current.next(_DENSE_STEP) if _lane_key(w) == key]
        if not candidates:
            break
        current = candidates[0]
        dense.append(current)
    dense.append(exit_)
    return dense


def _resample(points: FloatArray, resolution: float) -> tuple[FloatArray, FloatArray]:
    """Resample a polyline at uniform spacing; returns the new points and their arc length."""
    steps = np.linalg.norm(np.diff(points[:, :2], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    length = float(arc[-1])
    count = max(2, math.ceil(length / resolution) + 1)
    s = np.linspace(0.0, length, count)
    out = np.stack([np.interp(s, arc, points[:, i]) for i in range(points.shape[1])], axis=1)
    return out, s


class RoadMap:
    """A town: the ``carla.Map`` plus flat arrays of its driving lanes and sidewalks.

    Attributes:
        name: Town name.
        carla_map: The offline ``carla.Map`` (for waypoint queries).
        resolution: Nominal point spacing of the segment polylines [m].
        seg_start: (S,) index of each segment's first point in ``points``.
        seg_count: (S,) number of points of each segment.
        seg_length: (S,) segment length [m].
        seg_ds: (S,) point spacing of each segment [m].
        seg_road, seg_section, seg_lane: (S,) OpenDRIVE ids of each segment.
        seg_junction: (S,) junction id, or -1 outside junctions.
        seg_width: (S,) mean lane width [m].
        successors: per segment, the segments that continue it.
        predecessors: per segment, the segments that lead into it.
        points: (P, 3) packed lane centre points [m].
        yaw: (P,) heading of each point [rad] (CARLA frame: from +x towards +y).
        width: (P,) lane width at each point [m].
        curvature: (P,) unsigned curvature at each point [1/m].
        left_marking, right_marking: (P,) ``carla.LaneMarkingType`` values at each point.
        left_color, right_color: (P,) ``carla.LaneMarkingColor`` values at each point.
        sidewalks: sidewalk strips beside the rightmost driving lanes.
        graph: directed lane graph; nodes are segment indices, edge attribute ``length``.
    """

    def __init__(self, name: str, xodr_text: str, resolution: float = 1.0) -> None:
        if "<OpenDRIVE" not in xodr_text[:5000]:
            raise ValueError(
                f"town {name!r}: the text is not OpenDRIVE (no <OpenDRIVE> root element); "
                "pass a .xodr file such as a CARLA server's world.get_map().to_opendrive()"
            )
        self.name = name
        self.xodr_text = xodr_text
        self.resolution = resolution
        self.carla_map = carla.Map(name, fix_degenerate_spirals(xodr_text))
        topology = self.carla_map.get_topology()
        if not topology:
            raise ValueError(f"town {name!r}: the OpenDRIVE file has no driving lanes")
        self._build_segments(topology)
        self._build_links()
        self._build_lane_changes()
        self._build_sidewalks()
        self.graph = self._build_graph()
        logger.info(
            "town %s: %d lane segments, %.1f km of lanes, %d sidewalks",
            name,
            len(self.seg_length),
            self.seg_length.sum() / 1000.0,
            len(self.sidewalks),
        )

    @classmethod
    def from_file(cls, path: str | Path, resolution: float = 1.0) -> RoadMap:
        """Load a ``.xodr`` file; the town is named after the file stem."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"OpenDRIVE file {path} does not exist")
        return cls(path.stem, path.read_text(encoding="utf-8"), resolution)

    # ----------------------------------------------------------------------------------- build
    def _build_segments(self, topology: list[tuple[carla.Waypoint, carla.Waypoint]]) -> None:
        self.keys: list[LaneKey] = []
        self.key_to_seg: dict[LaneKey, int] = {}
        self._exits: list[list[carla.Waypoint]] = []
        chunks: list[FloatArray] = []
        meta: list[tuple[int, ...]] = []
        for entry, exit_ in topology:
            key = _lane_key(entry)
            if key in self.key_to_seg:  # a lane into a junction is listed once per way out
                self._exits[self.key_to_seg[key]].append(exit_)
                continue
            dense = _follow_lane(entry, exit_)
            raw = np.array(
                [
                    (
                        *_loc(w),
                        w.lane_width,
                        int(w.left_lane_marking.type),
                        int(w.right_lane_marking.type),
                        int(w.left_lane_marking.color),
                        int(w.right_lane_marking.color),
                    )
                    for w in dense
                ],
                dtype=np.float64,
            )
            self.key_to_seg[key] = len(self.keys)
            self.keys.append(key)
            self._exits.append([exit_])
            chunks.append(raw)
            junction = entry.get_junction().id if entry.is_junction else -1
            meta.append((*key, junction))
        self._pack(chunks, meta)

    def _pack(self, chunks: list[FloatArray], meta: list[tuple[int, ...]]) -> None:
        starts, counts, lengths, ds, pts, marks = [], [], [], [], [], []
        offset = 0
        for raw in chunks:
            resampled, s = _resample(raw[:, :4], self.resolution)
            nearest = (
                np.searchsorted(
                    np.concatenate(
                        [[0.0], np.cumsum(np.linalg.norm(np.diff(raw[:, :2], axis=0), axis=1))]
                    ),
                    s,
                    side="right",
                )
                - 1
            )
            marks.append(raw[np.clip(nearest, 0, len(raw) - 1), 4:])
            starts.append(offset)
            counts.append(len(resampled))
            lengths.append(s[-1])
            ds.append(s[1] - s[0])
            pts.append(resampled)
            offset += len(resampled)
        self.seg_start = np.array(starts, dtype=np.int64)
        self.seg_count = np.array(counts, dtype=np.int64)
        self.seg_length = np.array(lengths, dtype=np.float64)
        self.seg_ds = np.maximum(np.array(ds, dtype=np.float64), 1e-6)
        info = np.array(meta, dtype=np.int64)
        self.seg_road, self.seg_section, self.seg_lane, self.seg_junction = info.T.copy()
        packed = np.concatenate(pts)
        self.points = np.ascontiguousarray(packed[:, :3])
        self.width = packed[:, 3].copy()
        mark = np.concatenate(marks).astype(np.int64)
        self.left_marking, self.right_marking, self.left_color, self.right_color = mark.T.copy()
        self.seg_width = np.array(
            [self.width[a : a + n].mean() for a, n in zip(starts, counts, strict=True)]
        )
        self._compute_headings()

    def _compute_headings(self) -> None:
        yaw = np.empty(len(self.points))
        curvature = np.zeros(len(self.points))
        for a, n in zip(self.seg_start, self.seg_count, strict=True):
            xy = self.points[a : a + n, :2]
            d = np.gradient(xy, axis=0)
            heading = np.arctan2(d[:, 1], d[:, 0])
            yaw[a : a + n] = heading
            if n >= 3:
                turn = np.diff(np.unwrap(heading))
                step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
                k = np.abs(turn) / np.maximum(step, 1e-6)
                curvature[a : a + n] = np.concatenate([k[:1], np.maximum(k[:-1], k[1:]), k[-1:]])
        self.yaw = yaw
        self.curvature = curvature

    def _build_links(self) -> None:
        count = len(self.keys)
        succ: list[set[int]] = [set() for _ in range(count)]
        for seg, exits in enumerate(self._exits):
            # CARLA's topology ends a segment on the first waypoint of the next lane; where it
            # does not, the lanes a short step further on are the successors.
            for wp in [w for exit_ in exits for w in (exit_, *exit_.next(0.1))]:
                target = self.key_to_seg.get(_lane_key(wp))
                if target is not None and target != seg:
                    succ[seg].add(target)
        self.successors = [np.array(sorted(s), dtype=np.int64) for s in succ]
        pred: list[list[int]] = [[] for _ in range(count)]
        for seg, targets in enumerate(self.successors):
            for t in targets:
                pred[int(t)].append(seg)
        self.predecessors = [np.array(sorted(p), dtype=np.int64) for p in pred]
        del self._exits

    def _build_lane_changes(self) -> None:
        """Neighbour lanes in the same direction that a lane change may reach (or -1)."""
        count = len(self.keys)
        self.lane_left = np.full(count, -1, dtype=np.int64)
        self.lane_right = np.full(count, -1, dtype=np.int64)
        for seg in np.flatnonzero(self.seg_junction < 0):
            mid = int(self.seg_start[seg] + self.seg_count[seg] // 2)
            x, y, z = self.points[mid]
            wp = self.carla_map.get_waypoint(
                carla.Location(x=float(x), y=float(y), z=float(z)),
                project_to_road=True,
                lane_type=carla.LaneType.Driving,
            )
            if wp is None or _lane_key(wp) != self.keys[seg]:
                continue
            allowed = wp.lane_change
            for side, flag, out in (
                (wp.get_left_lane(), carla.LaneChange.Left, self.lane_left),
                (wp.get_right_lane(), carla.LaneChange.Right, self.lane_right),
            ):
                if side is None or side.lane_type != carla.LaneType.Driving:
                    continue
                if side.lane_id * wp.lane_id <= 0 or not (int(allowed) & int(flag)):
                    continue
                out[seg] = self.key_to_seg.get(_lane_key(side), -1)

    def _build_sidewalks(self) -> None:
        self.sidewalks: list[Sidewalk] = []
        for seg in range(len(self.keys)):
            if self.seg_junction[seg] >= 0:
                continue
            a, n = int(self.seg_start[seg]), int(self.seg_count[seg])
            centre, widths = [], []
            for x, y, z in self.points[a : a + n : 2]:
                wp = self.carla_map.get_waypoint(
                    carla.Location(x=float(x), y=float(y), z=float(z)),
                    project_to_road=True,
                    lane_type=carla.LaneType.Driving,
                )
                side = wp.get_right_lane() if wp is not None else None
                while side is not None and side.lane_type not in (
                    carla.LaneType.Sidewalk,
                    carla.LaneType.Driving,
                ):
                    side = side.get_right_lane()
                if side is None or side.lane_type != carla.LaneType.Sidewalk:
                    continue  # e.g. a point that snapped into a junction
                centre.append(_loc(side))
                widths.append(side.lane_width)
            if len(centre) >= 2:
                self.sidewalks.append(Sidewalk(np.array(centre), float(np.mean(widths)), seg))

    def _build_graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for seg, length in enumerate(self.seg_length):
            graph.add_node(seg, length=float(length))
        for seg, targets in enumerate(self.successors):
            for t in targets:
                graph.add_edge(seg, int(t), length=float(self.seg_length[seg]))
        return graph

    # ----------------------------------------------------------------------------------- query
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of all lane points [m], with a 10 m margin."""
        lo = self.points[:, :2].min(axis=0) - 10.0
        hi = self.points[:, :2].max(axis=0) + 10.0
        if self.sidewalks:
            walk = np.concatenate([w.points[:, :2] for w in self.sidewalks])
            lo = np.minimum(lo, walk.min(axis=0) - 10.0)
            hi = np.maximum(hi, walk.max(axis=0) + 10.0)
        return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))

    def pose(self, seg: IntArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Vectorised pose on lanes.

        Args:
            seg: Segment indices, any shape.
            s: Distance along each segment [m], same shape (clipped to the segment).

        Returns:
            ``(xyz, yaw)``: positions of shape ``seg.shape + (3,)`` [m] and headings [rad].
        """
        xyz, idx = self._interpolate(seg, s, point_index=False)
        return xyz, self.yaw[idx]

    def pose_and_index(self, seg: IntArray, s: FloatArray) -> tuple[FloatArray, IntArray]:
        """``pose(seg, s)[0]`` and ``point_index(seg, s)`` in one pass (shared lookups)."""
        return self._interpolate(seg, s, point_index=True)

    def _interpolate(
        self, seg: IntArray, s: FloatArray, point_index: bool
    ) -> tuple[FloatArray, IntArray]:
        """Positions at ``s`` on ``seg`` and, per position, the packed index of the point
        before it that the interpolation starts from, or with ``point_index`` what
        ``point_index`` returns (they differ only at a segment's last point)."""
        start, count = self.seg_start[seg], self.seg_count[seg]
        pos = s / self.seg_ds[seg]
        whole = pos.astype(np.int64)
        i = np.maximum(np.minimum(whole, count - 2), 0)
        frac = np.minimum(np.maximum(pos - i, 0.0), 1.0)[..., None]
        idx = start + i
        xyz = self.points[idx]
        xyz += (self.points[idx + 1] - xyz) * frac
        if point_index:
            return xyz, start + np.maximum(np.minimum(whole, count - 1), 0)
        return xyz, idx

    def lane_edges(self, index: IntArray) -> tuple[FloatArray, FloatArray]:
        """Left and right lane edges (N, 2) at packed point indices ``index`` [m].

        Left and right as seen driving along the lane; the right vector of heading ``yaw`` in
        CARLA's left-handed frame is ``(-sin yaw, cos yaw)``.
        """
        yaw = self.yaw[index]
        half = self.width[index, None] / 2.0
        right = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1) * half
        xy = self.points[index, :2]
        return xy - right, xy + right

    def segment_end(self, seg: IntArray) -> IntArray:
        """Packed index of the last point of each segment."""
        return self.seg_start[seg] + self.seg_count[seg] - 1

    def point_index(self, seg: IntArray, s: FloatArray) -> IntArray:
        """Index into the packed point arrays of the point at or before ``s`` on ``seg``."""
        i = np.maximum(
            np.minimum((s / self.seg_ds[seg]).astype(np.int64), self.seg_count[seg] - 1), 0
        )
        return self.seg_start[seg] + i

    def locate(self, x: float, y: float, z: float = 0.0) -> tuple[int, float, float, float] | None:
        """The driving segment nearest a location.

        Returns:
            ``(segment, s, lateral_distance, z)`` or ``None`` when no driving lane is near;
            ``z`` is the road height there [m].
        """
        wp = self.carla_map.get_waypoint(
            carla.Location(x=x, y=y, z=z), project_to_road=True, lane_type=carla.LaneType.Driving
        )
        if wp is None:
            return None
        seg = self.key_to_seg.get(_lane_key(wp))
        if seg is None:
            return None
        a, n = int(self.seg_start[seg]), int(self.seg_count[seg])
        d = np.hypot(self.points[a : a + n, 0] - x, self.points[a : a + n, 1] - y)
        i = int(np.argmin(d))
        return seg, float(i * self.seg_ds[seg]), float(d[i]), float(self.points[a + i, 2])

    def spawn_slots(self, spacing: float) -> tuple[IntArray, FloatArray]:
        """Spawn positions ``(segments, s)`` every ``spacing`` metres outside junctions."""
        segs, offsets = [], []
        for seg in np.flatnonzero(self.seg_junction < 0):
            length = self.seg_length[seg]
            if length < 4.0:
                continue
            s = np.arange(2.0, length - 2.0, spacing)
            segs.append(np.full(len(s), seg, dtype=np.int64))
            offsets.append(s)
        if not segs:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(segs), np.concatenate(offsets)


class LaneTracker:
    """``RoadMap.locate`` for one point that moves a little between calls (an ego vehicle).

    ``carla.Map.get_waypoint`` costs about a quarter of a millisecond; a vehicle stays on one
    lane segment for many ticks, so the tracker first searches the few lane points around its
    last answer and asks the map only when the point has left that lane or segment. Outside
    junctions the answer is ``locate``'s (a point inside a lane's width belongs to that lane, and
    the nearest lane point is only accepted inside the window, not at its edge); where junction
    lanes overlap, the tracker keeps the one it is on, which contains the point, while
    ``carla.Map`` may name any of them.
    """

    def __init__(self, roadmap: RoadMap, window: int = 3) -> None:
        self.map = roadmap
        self.window = window
        self.reset()

    def reset(self) -> None:
        """Forget the last answer (after a teleport or a new episode)."""
        self._seg, self._index = -1, 0

    def locate(self, x: float, y: float, z: float = 0.0) -> tuple[int, float, float, float] | None:
        """Same as ``RoadMap.locate``: ``(segment, s, lateral_distance, z)`` or ``None``."""
        m, seg = self.map, self._seg
        if seg >= 0:
            a, n = int(m.seg_start[seg]), int(m.seg_count[seg])
            lo = max(self._index - self.window, 0)
            hi = min(self._index + self.window + 1, n)
            window = m.points[a + lo : a + hi].tolist()  # a few points: plain floats are faster
            best, j = math.inf, 0
            for k, (px, py, _) in enumerate(window):
                dx, dy = px - x, py - y
                d2 = dx * dx + dy * dy
                if d2 < best:  # the first of equals, as ``argmin``
                    best, j = d2, k
            i = lo + j
            half = float(m.width[a + i]) / 2.0
            interior = (j > 0 or lo == 0) and (j < len(window) - 1 or hi == n)
            if 0 < i < n - 1 and interior and best < half * half:
                self._index = i
                return seg, i * float(m.seg_ds[seg]), math.sqrt(best), window[j][2]
        hit = m.locate(x, y, z)
        if hit is None:
            self._seg = -1
        else:
            self._seg, self._index = hit[0], round(hit[1] / float(m.seg_ds[hit[0]]))
        return hit
