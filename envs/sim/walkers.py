"""Pedestrians walking the sidewalks, crossing at junctions, and some jaywalking.

Sidewalk centre lines become one point graph: consecutive points of a strip are linked both
ways; the ends of strips are linked to strip ends of other roads within ``link_radius`` (walking
round a corner, or crossing the road at the junction); every point also knows the nearest point
of the strip across the road (jaywalking). Pedestrians walk from point to point at their own
speed and stop for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from envs.sim.raster import OUTSIDE, RoadRaster
from envs.sim.roadmap import RoadMap

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class WalkerParams:
    """Pedestrian behaviour.

    Attributes:
        speed_range: Walking speeds are drawn uniformly from this range [m/s].
        jaywalk_fraction: Fraction of pedestrians who cross roads away from junctions.
        jaywalk_rate: Chance per sidewalk point reached that a jaywalker crosses there.
        link_radius: Strip ends closer than this are connected (corners and crossings) [m].
        spacing: Point spacing along sidewalks [m].
        radius: Body radius for collisions [m].
    """

    speed_range: tuple[float, float] = (1.0, 1.6)
    jaywalk_fraction: float = 0.1
    jaywalk_rate: float = 0.03
    link_radius: float = 28.0
    spacing: float = 2.0
    radius: float = 0.35

    def __post_init__(self) -> None:
        if not 0.0 <= self.jaywalk_fraction <= 1.0:
            raise ValueError(f"jaywalk_fraction must be in [0, 1], got {self.jaywalk_fraction}")


class SidewalkGraph:
    """Sidewalk points and their links; built once per town."""

    def __init__(self, roadmap: RoadMap, params: WalkerParams, raster: RoadRaster) -> None:
        points, strip, fwd, bwd = [], [], [], []
        offset = 0
        for index, walk in enumerate(roadmap.sidewalks):
            steps = np.linalg.norm(np.diff(walk.points[:, :2], axis=0), axis=1)
            arc = np.concatenate([[0.0], np.cumsum(steps)])
            count = max(2, int(np.ceil(arc[-1] / params.spacing)) + 1)
            s = np.linspace(0.0, arc[-1], count)
            pts = np.stack([np.interp(s, arc, walk.points[:, i]) for i in range(3)], axis=1)
            ids = np.arange(offset, offset + count)
            points.append(pts)
            strip.append(np.full(count, index))
            fwd.append(np.append(ids[1:], -1))
            bwd.append(np.insert(ids[:-1], 0, -1))
            offset += count
        self.points = np.concatenate(points) if points else np.zeros((0, 3))
        self.strip = np.concatenate(strip) if strip else np.zeros(0, dtype=np.int64)
        self.forward = np.concatenate(fwd) if fwd else np.zeros(0, dtype=np.int64)
        self.backward = np.concatenate(bwd) if bwd else np.zeros(0, dtype=np.int64)
        self._raster = raster
        self._link_ends(params.link_radius)
        self._link_across()
        del self._raster

    def _link_ends(self, radius: float) -> None:
        ends = np.flatnonzero((self.forward < 0) | (self.backward < 0))
        self.end_links: dict[int, IntArray] = {}
        if len(ends) == 0:
            return
        xy = self.points[ends, :2]
        dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        for row, end in enumerate(ends):
            near = (dist[row] < radius) & (self.strip[ends] != self.strip[end])
            clear = [int(e) for e in ends[near] if self._walkable(int(end), int(e))]
            self.end_links[int(end)] = np.array(clear, dtype=np.int64)

    def _walkable(self, a: int, b: int) -> bool:
        """Whether the straight walk between two points stays off buildings and lots."""
        steps = max(2, int(np.hypot(*(self.points[b, :2] - self.points[a, :2])) / 0.5))
        line = np.linspace(self.points[a, :2], self.points[b, :2], steps)
        return bool((self._raster.classify(line) != OUTSIDE).all())

    def _link_across(self) -> None:
        """For each point, the nearest point of another strip lying across (5-30 m, sideways)."""
        count = len(self.points)
        self.across = np.full(count, -1, dtype=np.int64)
        if count == 0:
            return
        xy = self.points[:, :2]
        direction = xy[np.maximum(self.forward, 0)] - xy[np.maximum(self.backward, 0)]
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
        for start in range(0, count, 512):
            block = slice(start, min(start + 512, count))
            rel = xy[None, :, :] - xy[block, None, :]
            dist = np.linalg.norm(rel, axis=-1)
            along = np.abs((rel * direction[block, None, :]).sum(axis=-1)) / np.maximum(dist, 1e-9)
            ok = (dist > 5.0) & (dist < 30.0) & (along < 0.3)
            ok &= self.strip[None, :] != self.strip[block, None]
            dist = np.where(ok, dist, np.inf)
            best = np.argmin(dist, axis=1)
            found = np.isfinite(dist[np.arange(len(best)), best])
            self.across[block] = np.where(found, best, -1)
        for i in np.flatnonzero(self.across >= 0):
            if not self._walkable(int(i), int(self.across[i])):
                self.across[i] = -1


class Walkers:
    """All pedestrians of a world as arrays of length W."""

    def __init__(self, graph: SidewalkGraph, params: WalkerParams) -> None:
        self.graph = graph
        self.params = params
        self.resize(0)

    def resize(self, count: int) -> None:
        """Allocate state arrays for ``count`` pedestrians."""
        self.xyz = np.zeros((count, 3))
        self.yaw = np.zeros(count)
        self.target = np.zeros(count, dtype=np.int64)
        self.heading_forward = np.ones(count, dtype=bool)
        self.speed = np.zeros(count)
        self.walk_speed = np.zeros(count)
        self.jaywalker = np.zeros(count, dtype=bool)
        self.active = np.ones(count, dtype=bool)
        self.appearance = np.zeros(count, dtype=np.int64)

    def reset(self, rng: np.random.Generator, count: int) -> None:
        """Place ``count`` pedestrians on random sidewalk points.

        Raises:
            ValueError: if the town has too few sidewalk points for that many.
        """
        points = len(self.graph.points)
        if count > points // 2:
            raise ValueError(
                f"impossible pedestrian density: {count} requested, but the town's sidewalks "
                f"hold at most {points // 2}"
            )
        self.resize(count)
        if count == 0:
            return
        start = rng.choice(points, size=count, replace=False)
        self.xyz[:] = self.graph.points[start]
        self.heading_forward[:] = rng.random(count) < 0.5
        self.target[:] = [
            self._next_along(int(p), bool(f))
            for p, f in zip(start, self.heading_forward, strict=True)
        ]
        self.walk_speed[:] = rng.uniform(*self.params.speed_range, size=count)
        self.jaywalker[:] = rng.random(count) < self.params.jaywalk_fraction
        self.appearance[:] = rng.integers(0, 8, size=count)
        self.speed[:] = self.walk_speed
        d = self.graph.points[self.target] - self.xyz
        self.yaw[:] = np.arctan2(d[:, 1], d[:, 0])

    def _next_along(self, point: int, forward: bool) -> int:
        nxt = int(self.graph.forward[point] if forward else self.graph.backward[point])
        if nxt >= 0:
            return nxt
        prev = int(self.graph.backward[point] if forward else self.graph.forward[point])
        return prev if prev >= 0 else point

    def step(self, rng: np.random.Generator, dt: float) -> None:
        """Walk every active pedestrian ``dt`` seconds towards its target point."""
        if len(self.xyz) == 0:
            return
        delta = self.graph.points[self.target] - self.xyz
        dist = np.maximum(np.sqrt(delta[:, 0] ** 2 + delta[:, 1] ** 2), 1e-9)
        travel = self.walk_speed * dt
        frac = np.minimum(travel / dist, 1.0)
        frac[~self.active] = 0.0
        self.xyz += delta * frac[:, None]
        for i in np.nonzero(frac >= 1.0)[0]:
            self.target[i] = self._choose(rng, int(i))
            d = self.graph.points[self.target[i]] - self.xyz[i]
            if d[0] or d[1]:
                self.yaw[i] = np.arctan2(d[1], d[0])

    def _choose(self, rng: np.random.Generator, i: int) -> int:
        g = self.graph
        here = int(self.target[i])
        if self.jaywalker[i] and g.across[here] >= 0 and rng.random() < self.params.jaywalk_rate:
            self.heading_forward[i] = rng.random() < 0.5
            return int(g.across[here])
        nxt = int(g.forward[here] if self.heading_forward[i] else g.backward[here])
        if nxt >= 0:
            return nxt
        links = g.end_links.get(here, np.zeros(0, dtype=np.int64))
        if len(links) == 0:
            self.heading_forward[i] = not self.heading_forward[i]
            return self._next_along(here, bool(self.heading_forward[i]))
        target = int(links[rng.integers(len(links))])
        # Continue into the new strip away from its end.
        self.heading_forward[i] = bool(g.backward[target] < 0)
        return target

    def knock_down(self, index: int) -> None:
        """Take a pedestrian out of play (hit by the ego)."""
        self.active[index] = False
        self.speed[index] = 0.0
