"""NPC vehicles: lane followers with the Intelligent Driver Model, vectorised over all vehicles.

Each NPC lives on the lane graph as ``(segment, s)`` and picks a random successor at the end of
every segment, so it drives through junctions with random turns. Its acceleration follows the
IDM (Treiber, Hennecke & Helbing 2000) towards a desired speed capped by the curvature ahead,
with the leader being the nearest obstacle inside the corridor it is about to drive through:
other NPCs, the ego, pedestrians, or the stop line of a red light (and of a yellow one it can
still stop for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from envs.sim.lights import GREEN, RED, YELLOW
from envs.sim.roadmap import RoadMap

FloatArray = NDArray[np.float64]

# Body sizes (length, width, height) [m] of the NPC shapes: compact, sedan, SUV, van.
VEHICLE_SHAPES = np.array([[3.9, 1.8, 1.5], [4.6, 1.9, 1.45], [4.9, 2.1, 1.75], [5.4, 2.05, 2.2]])


@dataclass(frozen=True)
class TrafficParams:
    """NPC driver model.

    Attributes:
        speed_range: Desired speeds are drawn uniformly from this range [m/s].
        max_accel: IDM maximum acceleration a [m/s^2].
        comfort_decel: IDM comfortable deceleration b [m/s^2]; also decides whether to stop
            at a yellow light.
        max_decel: Hardest braking [m/s^2].
        min_gap: IDM jam distance s0 [m].
        time_headway: IDM time headway T [s].
        lateral_accel: Speed in curves is capped so that v^2 * curvature stays below this [m/s^2].
        corridor: Half width of the corridor checked for obstacles [m].
        lookahead: Distances along the own path where the corridor is sampled [m].
        spawn_spacing: Minimum spacing of spawn slots along a lane [m].
        gridlock_patience: After waiting this long behind an obstacle, a driver ignores other
            NPCs for 4 s, which dissolves gridlocks [s].
        perception_interval: Drivers look for obstacles every this many steps and extrapolate
            the gap in between (a reaction time of ``interval * dt``) [steps].
    """

    speed_range: tuple[float, float] = (7.0, 11.0)
    max_accel: float = 2.0
    comfort_decel: float = 3.0
    max_decel: float = 8.0
    min_gap: float = 2.5
    time_headway: float = 1.2
    lateral_accel: float = 2.5
    corridor: float = 1.3
    lookahead: tuple[float, ...] = (1.0, 4.0, 8.0, 13.0, 19.0, 26.0)
    spawn_spacing: float = 10.0
    gridlock_patience: float = 60.0
    perception_interval: int = 2


class Traffic:
    """All NPC vehicles of a world, as arrays of length N (the active count)."""

    def __init__(
        self, roadmap: RoadMap, seg_light: NDArray[np.int64], params: TrafficParams
    ) -> None:
        self.map = roadmap
        self.seg_light = seg_light
        self.params = params
        self._lookahead = np.asarray(params.lookahead, dtype=np.float64)
        self.slots = roadmap.spawn_slots(params.spawn_spacing)
        self.resize(0)

    def resize(self, count: int) -> None:
        """Allocate state arrays for ``count`` vehicles."""
        self.seg = np.zeros(count, dtype=np.int64)
        self.s = np.zeros(count)
        self.speed = np.zeros(count)
        self.next_seg = np.zeros(count, dtype=np.int64)
        self.desired = np.zeros(count)
        self.shape = np.zeros(count, dtype=np.int64)
        self.color = np.zeros(count, dtype=np.int64)
        self.xyz = np.zeros((count, 3))
        self.yaw = np.zeros(count)
        self.half_length = np.zeros(count)
        self.half_width = np.zeros(count)
        self.bound_radius = np.zeros(count)
        self.extent = np.zeros((count, 2))  # footprint (length, width) [m]
        self.stop_light = np.full(count, -1, dtype=np.int64)
        self._since_look = 1 << 30  # look at the first step
        self._gap = np.full(count, np.inf)
        self._gap_speed = np.zeros(count)
        self._curve_speed = np.full(count, np.inf)
        self._waited = np.zeros(count)
        self._ghost_left = np.zeros(count)
        self._ghost = np.zeros(count, dtype=bool)
        self.stop_s = np.full(count, np.inf)
        self._upper = np.triu(np.ones((count, count), dtype=bool), 1)
        self._rows = np.arange(count)
        reach = self.params.lookahead[-1] + self.params.corridor + 3.0
        self._reach = reach
        self._box = math.hypot(reach, 3.0 + 0.7 * reach) + 1.0  # holds the cone below

    @property
    def capacity(self) -> int:
        """How many vehicles the town can hold at the spawn spacing."""
        return len(self.slots[0])

    def reset(
        self, rng: np.random.Generator, count: int, keep_clear: FloatArray, radius: float
    ) -> None:
        """Spawn ``count`` vehicles on free slots at least ``radius`` metres from ``keep_clear``.

        Raises:
            ValueError: if the town cannot hold that many vehicles.
        """
        segs, offsets = self.slots
        xyz, _ = self.map.pose(segs, offsets)
        free = np.hypot(xyz[:, 0] - keep_clear[0], xyz[:, 1] - keep_clear[1]) > radius
        candidates = np.flatnonzero(free)
        if count > len(candidates):
            raise ValueError(
                f"impossible traffic density: {count} vehicles requested, but town "
                f"{self.map.name!r} has room for {len(candidates)} (one per "
                f"{self.params.spawn_spacing:.0f} m of lane away from the ego)"
            )
        self.resize(count)
        chosen = (
            np.sort(rng.choice(candidates, size=count, replace=False)) if count else candidates[:0]
        )
        self.seg[:] = segs[chosen]
        self.s[:] = offsets[chosen]
        self.desired[:] = rng.uniform(*self.params.speed_range, size=count)
        self.speed[:] = 0.0
        self.shape[:] = rng.integers(0, len(VEHICLE_SHAPES), size=count)
        self.color[:] = rng.integers(0, 8, size=count)
        for i in range(count):
            self.next_seg[i] = self._choose_next(rng, int(self.seg[i]))
        self._settle()

    def place(
        self,
        segments: NDArray[np.int64],
        offsets: FloatArray,
        desired: FloatArray,
        shape: int = 1,
    ) -> None:
        """Replace the vehicles by ones at given lane positions (scenarios and tests).

        Each keeps to its lane's first successor; ``desired`` speeds near 0 park them.
        """
        count = len(segments)
        self.resize(count)
        self.seg[:], self.s[:], self.desired[:], self.shape[:] = segments, offsets, desired, shape
        for i in range(count):
            options = self.map.successors[int(self.seg[i])]
            self.next_seg[i] = int(options[0]) if len(options) else -1
        self._settle()

    def _settle(self) -> None:
        """Derive sizes, the light ahead and poses from the lane state of fresh vehicles."""
        self.half_length[:] = VEHICLE_SHAPES[self.shape, 0] / 2.0
        self.half_width[:] = VEHICLE_SHAPES[self.shape, 1] / 2.0
        self.bound_radius = np.hypot(self.half_length, self.half_width)
        self.extent = np.stack([2 * self.half_length, 2 * self.half_width], axis=1)
        for i in range(len(self.s)):
            self._refresh_stop(i)
        self.xyz, self.yaw = self.map.pose(self.seg, self.s)

    @property
    def needs_obstacles(self) -> bool:
        """Whether the next ``step`` looks for obstacles (every ``perception_interval`` steps)."""
        return self._since_look >= self.params.perception_interval

    def _choose_next(self, rng: np.random.Generator, seg: int) -> int:
        options = self.map.successors[seg]
        if len(options) == 0:
            return -1
        return int(options[rng.integers(len(options))]) if len(options) > 1 else int(options[0])

    def _corridor(self) -> tuple[FloatArray, FloatArray]:
        """Points of each vehicle's path ahead (N, K, 3) and the curvature there (N, K)."""
        length = self.map.seg_length
        ahead = self.s[:, None] + self._lookahead[None, :]
        over = ahead > length[self.seg][:, None]
        nxt = np.where(self.next_seg >= 0, self.next_seg, self.seg)
        seg_k = np.where(over, nxt[:, None], self.seg[:, None])
        s_k = np.where(over, ahead - length[self.seg][:, None], ahead)
        s_k = np.minimum(s_k, length[seg_k])
        xyz, index = self.map.pose_and_index(seg_k, s_k)
        return xyz, self.map.curvature[index]

    def _refresh_stop(self, i: int) -> None:
        """Cache the light ahead of vehicle ``i`` (at the end of this or the next segment)."""
        seg, nxt = int(self.seg[i]), int(self.next_seg[i])
        length = float(self.map.seg_length[seg])
        if self.seg_light[seg] >= 0:
            self.stop_light[i], self.stop_s[i] = self.seg_light[seg], length
        elif nxt >= 0 and self.seg_light[nxt] >= 0:
            self.stop_light[i], self.stop_s[i] = (
                self.seg_light[nxt],
                length + self.map.seg_length[nxt],
            )
        else:
            self.stop_light[i], self.stop_s[i] = -1, np.inf

    def _stop_line_gap(self, light_state: NDArray[np.int64]) -> FloatArray:
        """Distance from each front bumper to a stop line it must respect, else inf [m]."""
        if len(light_state) == 0:
            return np.full(len(self.s), np.inf)
        state = np.where(self.stop_light >= 0, light_state[self.stop_light], GREEN)
        distance = self.stop_s - self.s - self.half_length - 1.0
        can_stop = self.speed * self.speed < (2.0 * self.params.comfort_decel) * (distance + 0.5)
        stop = (state == RED) | ((state == YELLOW) & can_stop)
        return np.where(stop, np.maximum(distance, 0.0), np.inf)

    def step(
        self,
        rng: np.random.Generator,
        dt: float,
        light_state: NDArray[np.int64],
        obstacles: FloatArray,
        obstacle_speed: FloatArray,
        obstacle_radius: FloatArray,
    ) -> None:
        """Advance every vehicle by ``dt`` seconds.

        Args:
            rng: Random source for turn choices.
            dt: Step [s].
            light_state: (L,) current light states.
            obstacles: (M, 2) positions of non-NPC obstacles (ego, pedestrians) [m].
            obstacle_speed: (M,) their speeds [m/s].
            obstacle_radius: (M,) their half lengths [m].
        """
        count = len(self.s)
        if count == 0:
            return
        p = self.params
        if self.needs_obstacles:
            path, curvature = self._corridor()
            gap, speed = self._leaders(path, obstacles, obstacle_speed, obstacle_radius)
            # A stop line to respect is a standing obstacle.
            light_gap = self._stop_line_gap(light_state)
            use_light = light_gap < gap
            self._gap = np.where(use_light, light_gap, gap)
            self._gap_speed = np.where(use_light, 0.0, speed)
            self._curve_speed = np.sqrt(
                p.lateral_accel / np.maximum(curvature[:, :4].max(axis=1), 1e-4)
            )
            self._break_gridlock(dt * min(self._since_look, p.perception_interval))
            self._since_look = 0
        else:  # between looks, drivers extrapolate the gap at the last seen closing speed
            self._gap = self._gap - (self.speed - self._gap_speed) * dt
        self._since_look += 1
        lead_gap, lead_speed = self._gap, self._gap_speed
        v0 = np.minimum(self.desired, self._curve_speed)
        v = self.speed
        s_star = (
            p.min_gap
            + v * p.time_headway
            + v * (v - lead_speed) / (2.0 * np.sqrt(p.max_accel * p.comfort_decel))
        )
        interaction = (np.maximum(s_star, 0.0) / np.maximum(lead_gap, 0.05)) ** 2
        accel = p.max_accel * (1.0 - (v / v0) ** 4 - interaction)
        accel = np.maximum(np.minimum(accel, p.max_accel), -p.max_decel)
        self.speed = np.maximum(v + accel * dt, 0.0)
        self.s = self.s + self.speed * dt
        self._advance_segments(rng)
        self.xyz, self.yaw = self.map.pose(self.seg, self.s)

    def _leaders(
        self,
        path: FloatArray,
        obstacles: FloatArray,
        obstacle_speed: FloatArray,
        obstacle_radius: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Gap to and speed of the nearest obstacle in each vehicle's corridor (inf if none).

        Only pairs closer than the corridor's reach are examined, so the cost grows with the
        number of nearby pairs, not with N x M.
        """
        count = len(self.s)
        p = self.params
        xy = self.xyz[:, :2]
        others = np.concatenate([xy, obstacles])
        dx = others[None, :, 0] - xy[:, None, 0]
        dy = others[None, :, 1] - xy[:, None, 1]
        # First a square around each vehicle that holds its cone (few operations on all pairs),
        box = np.abs(dx) < self._box
        box &= np.abs(dy) < self._box
        box[self._rows, self._rows] = False
        if self._ghost.any():  # gridlock breakers pass through other NPCs for a moment
            box[self._ghost, :count] = False
        rows, cols = np.nonzero(box)  # the candidate pairs, by row then column
        gap, lead_speed = np.full(count, np.inf), np.zeros(count)
        if len(rows) == 0:
            return gap, lead_speed
        # then the cone that holds the whole corridor, even through a tight junction turn.
        dx, dy = dx[rows, cols], dy[rows, cols]
        cos, sin = np.cos(self.yaw)[rows], np.sin(self.yaw)[rows]
        ahead = dx * cos + dy * sin
        near = (ahead > -3.0) & (ahead < self._reach)
        near &= np.abs(dx * sin - dy * cos) < 3.0 + 0.7 * np.abs(ahead)
        rows, cols, dx, dy = rows[near], cols[near], dx[near], dy[near]
        if len(rows) == 0:
            return gap, lead_speed
        other_half = np.concatenate([self.half_length, obstacle_radius])
        rel = path[rows, :, :2] - others[cols, None, :]
        limit = (p.corridor + np.minimum(other_half[cols], 1.2)) ** 2
        hit = ((rel * rel).sum(axis=-1) < limit[:, None]).any(axis=1)
        # Two vehicles each in the other's path (crossing in a junction): the lower index goes.
        npc = hit & (cols < count)
        if npc.any():
            mutual = np.zeros((count, count), dtype=bool)
            mutual[rows[npc], cols[npc]] = True
            mutual &= mutual.T & self._upper
            hit[npc] &= ~mutual[rows[npc], cols[npc]]
        rows, cols, dx, dy = rows[hit], cols[hit], dx[hit], dy[hit]
        if len(rows) == 0:
            return gap, lead_speed
        pair_gap = np.sqrt(dx * dx + dy * dy) - self.half_length[rows] - other_half[cols]
        # Each row's nearest (the first column among equals, as ``argmin``): sort by row, then
        # gap (stable), and take the first pair of every row.
        order = np.lexsort((pair_gap, rows))
        ordered = rows[order]
        starts = np.empty(len(order), dtype=bool)
        starts[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
        first = order[starts]
        leaders = rows[first]
        gap[leaders] = pair_gap[first]
        lead_speed[leaders] = np.concatenate([self.speed, obstacle_speed])[cols[first]]
        return gap, lead_speed

    def _break_gridlock(self, dt: float) -> None:
        """Let vehicles stuck behind other NPCs for too long drive through them for a while.

        Chains of vehicles that block each other (a junction full of crossing turns, an exit
        lane backed up) would otherwise freeze a town for good; NPC-NPC overlaps have no
        consequence, and the ego, pedestrians and red lights are still respected.
        """
        waiting = (self.speed < 0.1) & (self._gap < self.params.min_gap + 1.0)
        self._waited = np.where(waiting, self._waited + dt, 0.0)
        self._ghost_left = np.maximum(self._ghost_left - dt, 0.0)
        stuck = self._waited > self.params.gridlock_patience
        if stuck.any():
            self._ghost_left[stuck] = 4.0
            self._waited[stuck] = 0.0
        self._ghost = self._ghost_left > 0.0

    def _advance_segments(self, rng: np.random.Generator) -> None:
        length = self.map.seg_length
        for i in np.flatnonzero(self.s > length[self.seg]):
            while self.s[i] > length[self.seg[i]]:
                nxt = int(self.next_seg[i])
                if nxt < 0:  # dead end (only in imported towns): wait at the lane end
                    self.s[i] = length[self.seg[i]]
                    self.speed[i] = 0.0
                    break
                self.s[i] -= length[self.seg[i]]
                self.seg[i] = nxt
                self.next_seg[i] = self._choose_next(rng, nxt)
            self._refresh_stop(int(i))
