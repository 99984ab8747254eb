"""The global route planner: keypoints -> the dense plan with ``RoadOption`` commands.

Works on ``RoadMap``'s lane graph (segments linked to their successors) plus lane-change links
between neighbouring same-direction lanes where the marking allows it, with A* by lane length,
like CARLA's ``GlobalRoutePlanner``. Also samples random routes for training.
"""

from __future__ import annotations

import itertools
import logging
import math

import networkx as nx
import numpy as np

from envs.routes import (
    LANE_CHANGE_LENGTH,
    SNAP_MAX_DISTANCE,
    SNAP_WARN_DISTANCE,
    TURN_THRESHOLD_DEG,
    FloatArray,
    IntArray,
    RoadOption,
    RoutePlan,
)
from envs.sim.roadmap import RoadMap

logger = logging.getLogger(__name__)

Piece = tuple[int, float, float]  # (segment, s_from, s_to)
LANE_CHANGE_PENALTY = 5.0  # [m] extra cost of a lane change, so the planner avoids needless ones


class RoutePlanner:
    """Plans dense routes on one town; build once per town (it caches the search graph)."""

    def __init__(self, roadmap: RoadMap, resolution: float = 1.0) -> None:
        self.map = roadmap
        self.resolution = resolution
        graph = nx.DiGraph()
        for seg, targets in enumerate(roadmap.successors):
            graph.add_node(seg)
            for t in targets:
                graph.add_edge(seg, int(t), weight=float(roadmap.seg_length[seg]), change=0)
        for side, neighbours in ((-1, roadmap.lane_left), (1, roadmap.lane_right)):
            for lane in np.flatnonzero(neighbours >= 0):
                cost = LANE_CHANGE_LENGTH + LANE_CHANGE_PENALTY
                graph.add_edge(int(lane), int(neighbours[lane]), weight=cost, change=side)
        self.graph = graph
        ends = roadmap.seg_start + roadmap.seg_count - 1
        self._ends = roadmap.points[ends, :2]

    # ------------------------------------------------------------------------------- snapping
    def snap(self, point: FloatArray) -> tuple[int, float]:
        """The lane position ``(segment, s)`` nearest a keypoint.

        Raises:
            ValueError: when no driving lane lies within ``SNAP_MAX_DISTANCE``.
        """
        x, y, z = (float(v) for v in point)
        hit = self.map.locate(x, y, z)
        if hit is None or hit[2] > SNAP_MAX_DISTANCE:
            away = "no lane" if hit is None else f"{hit[2]:.1f} m"
            raise ValueError(
                f"waypoint ({x:.1f}, {y:.1f}) is off the road of town {self.map.name!r} "
                f"(nearest driving lane: {away}); check that the route belongs to this town"
            )
        if hit[2] > SNAP_WARN_DISTANCE:
            logger.warning(
                "waypoint (%.1f, %.1f) snapped %.1f m onto the nearest lane", x, y, hit[2]
            )
        return hit[0], hit[1]

    # ------------------------------------------------------------------------------- planning
    def _heuristic(self, a: int, b: int) -> float:
        return float(np.hypot(*(self._ends[a] - self._ends[b])))

    def _segment_path(self, start: int, goal: int) -> list[int]:
        if start == goal:  # the goal lies behind us on the same lane: go round
            options = [int(n) for n in self.graph.successors(start)]
            paths = [self._segment_path(n, goal) for n in options]
            return [start, *min(paths, key=self._path_cost)]
        try:
            path: list[int] = nx.astar_path(
                self.graph, start, goal, self._heuristic, weight="weight"
            )
        except nx.NetworkXNoPath:
            raise ValueError(
                f"no drivable path from lane {self.map.keys[start]} to lane {self.map.keys[goal]} "
                f"in town {self.map.name!r}"
            ) from None
        return path

    def _path_cost(self, path: list[int]) -> float:
        return float(sum(self.graph.edges[a, b]["weight"] for a, b in itertools.pairwise(path)))

    def plan(self, keypoints: FloatArray) -> RoutePlan:
        """Dense plan through ``keypoints`` ((K, 3), K >= 2) in order."""
        if len(keypoints) < 2:
            raise ValueError("a route needs at least two keypoints")
        stops = [self.snap(p) for p in keypoints]
        pieces: list[tuple[Piece, int]] = []  # ((seg, s0, s1), lane change side into it)
        for (seg_a, s_a), (seg_b, s_b) in itertools.pairwise(stops):
            if seg_a == seg_b and s_b >= s_a:
                pieces.append(((seg_a, s_a, s_b), 0))
                continue
            path = self._segment_path(seg_a, seg_b)
            s_from = s_a
            for i, seg in enumerate(path):
                change = 0 if i == 0 else int(self.graph.edges[path[i - 1], seg]["change"])
                if change:  # leave the previous lane partway: continue on this one alongside
                    prev_piece, prev_change = pieces.pop()
                    switch = min(prev_piece[1] + 5.0, prev_piece[2])
                    pieces.append(((prev_piece[0], prev_piece[1], switch), prev_change))
                    s_from = switch + LANE_CHANGE_LENGTH
                s_to = s_b if i == len(path) - 1 else float(self.map.seg_length[seg])
                pieces.append(((seg, min(s_from, s_to), s_to), change))
                s_from = 0.0
        return self._densify(pieces)

    def _densify(self, pieces: list[tuple[Piece, int]]) -> RoutePlan:
        xyz: list[FloatArray] = []
        segs: list[IntArray] = []
        commands: list[IntArray] = []
        for (seg, s0, s1), change in pieces:
            s = np.arange(s0, s1, self.resolution) if s1 - s0 > 1e-6 else np.array([s0])
            if change and xyz:  # ramp over from the previous lane
                ramp = self._ramp(xyz[-1][-1], seg, s0)
                xyz.append(ramp)
                segs.append(np.full(len(ramp), seg))
                side = RoadOption.CHANGELANELEFT if change < 0 else RoadOption.CHANGELANERIGHT
                commands.append(np.full(len(ramp), side))
            pos, _ = self.map.pose(np.full(len(s), seg), s)
            xyz.append(pos)
            segs.append(np.full(len(s), seg))
            commands.append(np.full(len(s), self._command(seg)))
        points = np.concatenate(xyz)
        keep = np.concatenate(
            [[True], np.linalg.norm(np.diff(points[:, :2], axis=0), axis=1) > 1e-3]
        )
        points = points[keep]
        step = np.linalg.norm(np.diff(points[:, :2], axis=0), axis=1)
        d = np.gradient(points[:, :2], axis=0)
        return RoutePlan(
            points=points,
            yaw=np.arctan2(d[:, 1], d[:, 0]),
            commands=np.concatenate(commands)[keep].astype(np.int64),
            segments=np.concatenate(segs)[keep].astype(np.int64),
            distance=np.concatenate([[0.0], np.cumsum(step)]),
        )

    def _ramp(self, start: FloatArray, seg: int, s_end: float) -> FloatArray:
        """Points blending from ``start`` onto lane ``seg`` over the lane-change length."""
        count = max(2, round(LANE_CHANGE_LENGTH / self.resolution))
        weight = np.linspace(0.0, 1.0, count)[1:, None]
        along = np.maximum(s_end - LANE_CHANGE_LENGTH * (1.0 - weight[:, 0]), 0.0)
        target, _ = self.map.pose(np.full(len(along), seg), along)
        result: FloatArray = start[None, :] * (1.0 - weight) + target * weight
        return result

    def _command(self, seg: int) -> RoadOption:
        """LANEFOLLOW on lanes; through junctions LEFT / RIGHT / STRAIGHT by the heading change."""
        if self.map.seg_junction[seg] < 0:
            return RoadOption.LANEFOLLOW
        a = int(self.map.seg_start[seg])
        b = a + int(self.map.seg_count[seg]) - 1
        turn = math.degrees((self.map.yaw[b] - self.map.yaw[a] + math.pi) % (2 * math.pi) - math.pi)
        if abs(turn) < TURN_THRESHOLD_DEG:
            return RoadOption.STRAIGHT
        return RoadOption.RIGHT if turn > 0 else RoadOption.LEFT  # yaw grows clockwise (right)

    # ---------------------------------------------------------------------------- random routes
    def random_keypoints(
        self,
        rng: np.random.Generator,
        min_length: float,
        max_length: float,
        lane_change_share: float = 0.0,
    ) -> FloatArray:
        """Keypoints of a random drive of ``min_length``-``max_length`` metres.

        Starts on a random lane outside junctions and takes random turns; a keypoint is placed
        5 m into every lane after a junction, so re-planning follows the same turns. On a lane
        with a same-direction neighbour that may be changed into (and is long enough), the
        drive moves over to it with probability ``lane_change_share``: a keypoint on the
        neighbour ``LANE_CHANGE_LENGTH + 20`` m in, which the plan reaches by a lane change.
        Without it, a change only comes up where the shortest path needs one (about one
        random Multi01 route in ten), while leaderboard routes have them often.
        """
        if not 0 < min_length <= max_length:
            raise ValueError(
                f"route length range must satisfy 0 < min <= max, got {min_length}, {max_length}"
            )
        target = rng.uniform(min_length, max_length)
        lanes = np.flatnonzero((self.map.seg_junction < 0) & (self.map.seg_length > 12.0))
        seg = int(rng.choice(lanes))
        s = float(rng.uniform(2.0, self.map.seg_length[seg] - 10.0))
        keys = [(seg, s)]
        travelled = float(self.map.seg_length[seg]) - s
        for _ in range(10_000):
            options = self.map.successors[seg]
            seg = int(options[rng.integers(len(options))])
            if self.map.seg_junction[seg] < 0 and self.map.seg_length[seg] > 6.0:
                remaining = target - travelled
                if remaining < self.map.seg_length[seg] - 1.0:
                    keys.append((seg, max(remaining, 5.0)))
                    break
                keys.append((seg, 5.0))
                if lane_change_share > 0.0:
                    seg = self._random_lane_change(seg, rng, lane_change_share, keys)
            travelled += float(self.map.seg_length[seg])
        segs = np.array([k[0] for k in keys])
        offsets = np.array([k[1] for k in keys])
        return self.map.pose(segs, offsets)[0]

    def _random_lane_change(
        self, seg: int, rng: np.random.Generator, share: float, keys: list[tuple[int, float]]
    ) -> int:
        """Maybe move a random drive from lane ``seg`` to a neighbour (see ``random_keypoints``);
        returns the lane it continues on."""
        into = LANE_CHANGE_LENGTH + 20.0
        sides = [
            int(n)
            for n in (self.map.lane_left[seg], self.map.lane_right[seg])
            if n >= 0 and self.map.seg_length[n] > into + 10.0
        ]
        if not sides or rng.random() >= share:
            return seg
        neighbour = sides[int(rng.integers(len(sides)))]
        keys.append((neighbour, into))
        return neighbour
