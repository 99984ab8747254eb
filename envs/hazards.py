"""What lies ahead on the route: the next stop line and its light, vehicles, pedestrians.

Shared by the shaped reward (its target speed drops before hazards) and the autopilot (which
brakes for them). Works on any backend's ``WorldState`` and the route's dense plan.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from envs.backends.base import Actors, TrafficLightInfo, WorldState
from envs.routes import RoutePlan
from envs.sim.roadmap import RoadMap
from envs.types import TrafficLightState

CORRIDOR = 1.6  # [m] half width of the path swept ahead of the ego (plus the other's half width)
LOOKAHEAD = 40.0  # [m] how far along the route hazards are searched
_SAMPLE = 2.0  # [m] spacing of the corridor samples
# [s] actors are also checked where they will be after these times, at constant velocity
VEHICLE_PREDICTION = (0.0, 0.5, 1.0, 1.5, 2.0)
WALKER_PREDICTION = (0.0, 0.5, 1.0, 1.5)


@dataclass(frozen=True)
class Hazards:
    """Distances are along the route from the ego's front bumper [m]; ``inf`` when none.

    Attributes:
        light_distance: To the next stop line on the route.
        light_state: State of that light (``UNKNOWN`` when none).
        vehicle_gap: To the nearest vehicle in the corridor ahead.
        vehicle_speed: That vehicle's speed along the route there (0 if crossing or oncoming)
            [m/s].
        walker_gap: To the nearest pedestrian in the corridor ahead.
    """

    light_distance: float = math.inf
    light_state: TrafficLightState = TrafficLightState.UNKNOWN
    vehicle_gap: float = math.inf
    vehicle_speed: float = 0.0
    walker_gap: float = math.inf


class RouteHazards:
    """Locates a route's stop lines once, then finds hazards ahead each tick."""

    def __init__(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        self.plan = plan
        road_lane = np.array([(roadmap.keys[s][0], roadmap.keys[s][2]) for s in plan.segments])
        stops: list[tuple[int, int]] = []  # (plan index, light index)
        for light_index, light in enumerate(lights):
            for line in light.stop_lines:
                # Only plan points on the governed lane: the junction lane that follows
                # starts at the same spot and must not be mistaken for it.
                on_lane = np.flatnonzero(
                    (road_lane[:, 0] == line.road_id) & (road_lane[:, 1] == line.lane_id)
                )
                if len(on_lane) == 0:
                    continue
                centre = (np.asarray(line.start) + np.asarray(line.end)) / 2.0
                d = np.hypot(*(plan.points[on_lane, :2] - centre).T)
                close = np.flatnonzero(d < 2.5)
                # A route that loops may pass the same stop line more than once.
                for run in np.split(close, np.flatnonzero(np.diff(on_lane[close]) > 5) + 1):
                    if len(run):
                        best = run[int(np.argmin(d[run]))]
                        stops.append((int(on_lane[best]), light_index))
        stops.sort()
        self.stop_index = np.array([s[0] for s in stops], dtype=np.int64)
        self.stop_light = np.array([s[1] for s in stops], dtype=np.int64)
        # Per-tick lookups in plain floats (a few bisections beat numpy's call overhead).
        self._distance = plan.distance.tolist()
        self._stop_distance = plan.distance[self.stop_index].tolist()
        spacing = plan.distance[-1] / max(len(plan.distance) - 1, 1)
        self._step = max(1, round(_SAMPLE / max(spacing, 1e-6)))  # corridor samples [points]

    def ahead(self, state: WorldState, index: int) -> Hazards:
        """Hazards ahead of the ego, which is at plan point ``index``."""
        plan, distance = self.plan, self._distance
        here = distance[index] + state.ego.length / 2.0
        light_distance, light_state = math.inf, TrafficLightState.UNKNOWN
        k = bisect.bisect_left(self._stop_distance, here - 0.5)  # the next stop line
        if k < len(self._stop_distance):
            light_distance = self._stop_distance[k] - here
            light_state = state.light_state(int(self.stop_light[k]))
        end = bisect.bisect_left(distance, distance[index] + LOOKAHEAD)
        samples = np.arange(index, min(end + 1, len(distance)), self._step)
        corridor = _Corridor(plan, samples, here)
        vehicle_gap, vehicle_speed = corridor.nearest(state.vehicles, VEHICLE_PREDICTION)
        walker_gap, _ = corridor.nearest(state.walkers, WALKER_PREDICTION)
        return Hazards(light_distance, light_state, vehicle_gap, vehicle_speed, walker_gap)


def predicted_xy(
    xy: np.ndarray, yaw: np.ndarray, speed: np.ndarray, horizons: tuple[float, ...]
) -> np.ndarray:
    """Where (N, 2) actors heading ``yaw`` [deg] at ``speed`` [m/s] will be after each horizon
    [s] at constant velocity: (N * H, 2), one block of N rows per horizon."""
    rad = np.radians(yaw)
    velocity = np.empty((len(xy), 2))
    velocity[:, 0], velocity[:, 1] = np.cos(rad), np.sin(rad)
    velocity *= speed[:, None]
    return np.concatenate([xy + velocity * h for h in horizons])


class _Corridor:
    """The route's swept corridor ahead: samples every ``_SAMPLE`` m and their bounding box,
    shared by the searches for vehicles and for pedestrians."""

    def __init__(self, plan: RoutePlan, samples: np.ndarray, here: float) -> None:
        self.plan, self.samples, self.here = plan, samples, here
        self.pts = plan.points[samples, :2]
        if len(samples):
            self.lo, self.hi = self.pts.min(axis=0) - 4.0, self.pts.max(axis=0) + 4.0

    def nearest(self, actors: Actors, horizons: tuple[float, ...]) -> tuple[float, float]:
        """Gap along the route to the nearest actor in the corridor, now or soon, and that
        actor's speed along the route."""
        if len(actors) == 0 or len(self.samples) == 0:
            return math.inf, 0.0
        plan, samples, here = self.plan, self.samples, self.here
        pts, lo, hi = self.pts, self.lo, self.hi
        # Only actors that can reach the corridor's box within the horizon are predicted.
        xy = actors.xyz[:, :2]
        travel = np.abs(actors.speed) * max(horizons)
        reachable = np.flatnonzero(
            (xy[:, 0] > lo[0] - travel)
            & (xy[:, 0] < hi[0] + travel)
            & (xy[:, 1] > lo[1] - travel)
            & (xy[:, 1] < hi[1] + travel)
        )
        if len(reachable) == 0:
            return math.inf, 0.0
        # Where they will be after each horizon; ``source`` maps a row back to its actor.
        count = len(reachable)
        xy = predicted_xy(xy[reachable], actors.yaw[reachable], actors.speed[reachable], horizons)
        box = np.flatnonzero(
            (xy[:, 0] > lo[0]) & (xy[:, 0] < hi[0]) & (xy[:, 1] > lo[1]) & (xy[:, 1] < hi[1])
        )
        if len(box) == 0:
            return math.inf, 0.0
        source = reachable[box % count]
        extent = actors.extent[source]
        d = np.hypot(pts[:, None, 0] - xy[None, box, 0], pts[:, None, 1] - xy[None, box, 1])
        reach = CORRIDOR + np.minimum(extent[:, 1] / 2.0, 1.2)
        inside = d < reach[None, :]
        hit = inside.any(axis=0)
        if not hit.any():
            return math.inf, 0.0
        first = np.argmax(inside, axis=0)  # first sample of each actor's contact
        along = plan.distance[samples[first]] - here - extent[:, 0] / 2.0
        along = np.where(hit, along, np.inf)
        best = int(np.argmin(along))
        # Only the part of its velocity along the route carries it out of the way.
        route_yaw = plan.yaw[samples[first[best]]]
        heading = math.radians(float(actors.yaw[source[best]])) - route_yaw
        speed = max(float(actors.speed[source[best]]) * math.cos(heading), 0.0)
        return max(float(along[best]), 0.0), speed
