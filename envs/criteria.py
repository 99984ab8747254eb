"""Infraction detectors, computed once per physics tick and shared by the reward and by scoring.

``RouteCriteria.update(state)`` runs every leaderboard criterion on one ``WorldState`` and returns
a ``CriteriaStatus``. Thresholds and semantics follow the CARLA leaderboard 2.0 (which keeps
1.0's coefficients); each piece names the ``scenario_runner`` class it mirrors, in
``srunner/scenariomanager/scenarioatomics/atomic_criteria.py`` (CollisionTest,
RunningRedLightTest, OutsideRouteLanesTest, InRouteTest, RouteCompletionTest, ActorBlockedTest,
MinimumSpeedRouteTest), and ``leaderboard/scenarios/route_scenario.py`` for how the leaderboard
configures them. Messages reproduce the leaderboard's text so results files read the same.

Where this module knowingly differs from the leaderboard (each also noted at the code):
  * red light: the ego's *front bumper* crossing the stop line counts (the leaderboard tests a
    short segment at the vehicle's tail, i.e. once the whole car is past the line);
  * red light: a light can be counted again on a later pass once the ego has left its 15 m
    radius (the leaderboard only forgets it after running a different light);
  * off-road: only driving lanes are allowed (``RoadMap`` holds no parking lanes);
  * wrong lane: ego heading against the lane's by more than ``wrong_lane_angle`` outside
    junctions (the leaderboard toggles on 150 deg lane flips and checks 120 deg after junctions);
  * route progress only advances over plan points within ``deviation_distance`` of the ego;
  * a collision's speed test uses the larger of the ego's speed before and after the tick (the
    embedded simulator stops the car on contact; CARLA's sensor callback sees it moving).

For scoring, use the final ``CriteriaStatus.infractions``: the single ``outside_route_lanes``
event is updated in place as the route goes on, and is in ``new_infractions`` only once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import numpy as np

from envs.backends.base import TrafficLightInfo, WorldState
from envs.routes import RoutePlan
from envs.sim.collision import CellGrid
from envs.sim.roadmap import LaneTracker, RoadMap
from envs.types import ActorKind, CollisionEvent, TrafficLightState, Transform

Point = tuple[float, float]

INFRACTION_KEYS = (
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)
"""Leaderboard 2.0 infraction keys, in the order of its ``RouteRecord.infractions``."""

RouteStatus = Literal["running", "completed", "route_dev", "vehicle_blocked", "route_timeout"]
FAILURE_MESSAGES: dict[str, str] = {
    "route_dev": "Agent deviated from the route",
    "vehicle_blocked": "Agent got blocked",
    "route_timeout": "Agent timed out",
}
"""The leaderboard's failure text per route status (status line ``Failed - <text>``)."""

_COLLISION_KEYS = {
    ActorKind.VEHICLE: "collisions_vehicle",
    ActorKind.WALKER: "collisions_pedestrian",
    ActorKind.STATIC: "collisions_layout",
}
_DEVIATION_WINDOW = 5  # plan points ahead searched for the route distance (InRouteTest)
_STOP_LINE_STRETCH = 1.2  # stop lines span 0.6 lane widths each side (RunningRedLightTest)


@dataclass(frozen=True)
class CriteriaParams:
    """Criteria thresholds; defaults are the leaderboard's.

    Attributes:
        version: Leaderboard version, 1 or 2; picks the default off-road allowance.
        collision_time: A collision with the last actor hit within this time is the same
            one [s] (CollisionTest.MAX_ID_TIME).
        collision_radius: A collision within this distance of the last counted one is the
            same one [m] (CollisionTest.COLLISION_RADIUS).
        collision_min_speed: Collisions while the ego is slower than this are not its fault
            and are not counted [m/s] (CollisionTest.EPSILON; DESIGN §5 agrees).
        red_light_distance: Only lights whose stop lines' centre is this near are checked [m]
            (RunningRedLightTest.DISTANCE_LIGHT).
        offroad_allowance: Distance beyond half the lane width before the ego is outside its
            lanes [m]; ``None``: 0.5 (LB 2.0 OutsideRouteLanesTest) or 1.3 (LB 1.0).
        wrong_lane_angle: Heading difference from the lane beyond which the ego drives in an
            opposite-direction lane [deg].
        deviation_distance: Route deviation at this distance from the route [m]
            (InRouteTest offroad_max).
        deviation_safe_distance: Progress made farther than this from the route counts
            towards ``deviation_percentage`` [m] (InRouteTest offroad_min).
        deviation_percentage: Route deviation once that progress exceeds this share of the
            route length [%] (InRouteTest.MAX_ROUTE_PERCENTAGE).
        blocked_speed: Below this speed the ego is standing still [m/s] (ActorBlockedTest).
        blocked_time: Standing still this long ends the route [s].
        timeout_per_meter: Route time limit per metre of route [s/m] (LB 1.0).
        timeout_initial: Route time limit added to that [s] (LB 1.0 INITIAL_SECONDS_DELAY).
        completion_percentage: Route completion above which the route can end [%].
        completion_distance: ... when the ego is also this near the route's end [m].
        progress_window: Plan points ahead examined per tick for progress (1 m each), so no
            tick can skip more than this [points] (RouteCompletionTest.WINDOWS_SIZE).
        min_speed_checkpoints: Route sections over which the ego's mean speed is compared to
            the traffic's (LB 2.0 MinimumSpeedRouteTest, 4 checkpoints); 0 disables.
    """

    version: int = 2
    collision_time: float = 5.0
    collision_radius: float = 5.0
    collision_min_speed: float = 0.1
    red_light_distance: float = 15.0
    offroad_allowance: float | None = None
    wrong_lane_angle: float = 90.0
    deviation_distance: float = 30.0
    deviation_safe_distance: float = 15.0
    deviation_percentage: float = 30.0
    blocked_speed: float = 0.1
    blocked_time: float = 180.0
    timeout_per_meter: float = 0.8
    timeout_initial: float = 5.0
    completion_percentage: float = 99.0
    completion_distance: float = 10.0
    progress_window: int = 3
    min_speed_checkpoints: int = 4

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"CriteriaParams.version must be 1 or 2, got {self.version!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "version" and value is not None and value < 0:
                raise ValueError(f"CriteriaParams.{f.name} must be >= 0, got {value!r}")
        if self.progress_window < 1:
            raise ValueError("CriteriaParams.progress_window must be >= 1")

    @property
    def lane_allowance(self) -> float:
        """Off-road allowance beyond half the lane width [m]."""
        if self.offroad_allowance is not None:
            return self.offroad_allowance
        return 0.5 if self.version == 2 else 1.3

    def route_timeout(self, length: float) -> float:
        """Time limit of a route of ``length`` metres [s]."""
        return self.timeout_per_meter * length + self.timeout_initial


@dataclass(frozen=True)
class Infraction:
    """One leaderboard event.

    Attributes:
        key: Leaderboard key (one of ``INFRACTION_KEYS``).
        frame: Simulation frame of the event (of the latest update for ``outside_route_lanes``).
        time: Simulated time of the event [s].
        x, y: Ego position at the event [m].
        message: The leaderboard's message text.
        value: Percentage for ``outside_route_lanes`` (share of the completed route driven
            outside the route's lanes) and ``min_speed_infractions`` (ego speed as a share of
            the traffic's) [%]; ``None`` otherwise.
    """

    key: str
    frame: int
    time: float
    x: float
    y: float
    message: str
    value: float | None = None


@dataclass(frozen=True)
class CriteriaStatus:
    """The criteria after one tick.

    Attributes:
        new_infractions: Events first raised on this tick (``outside_route_lanes`` appears
            here once, when it starts; its percentage then updates in ``infractions``).
        infractions: Every event so far.
        route_completion: Share of the route completed [0-100].
        route_progress: Distance along the plan reached [m].
        distance_driven: Odometer of the ego since the start [m].
        outside_lanes_percentage: Share of the completed route driven outside the route's
            lanes [%].
        outside_lanes: Whether the ego is off-road or in an opposite lane on this tick.
        route_distance: Distance from the ego to the plan [m].
        done: Whether the route is over.
        status: ``running``, ``completed``, ``route_dev``, ``vehicle_blocked`` or
            ``route_timeout``.
        failure_message: The leaderboard's failure text, ``""`` unless failed.
    """

    new_infractions: tuple[Infraction, ...]
    infractions: tuple[Infraction, ...]
    route_completion: float
    route_progress: float
    distance_driven: float
    outside_lanes_percentage: float
    outside_lanes: bool
    route_distance: float
    done: bool
    status: RouteStatus
    failure_message: str


# --------------------------------------------------------------------------------- geometry
def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(a: Point, b: Point, c: Point, cross: float) -> bool:
    inside_x = min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
    return cross == 0 and inside_x and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the planar segments p1-p2 and q1-q2 meet (touching counts)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        _on_segment(q1, q2, p1, d1)
        or _on_segment(q1, q2, p2, d2)
        or _on_segment(p1, p2, q1, d3)
        or _on_segment(p1, p2, q2, d4)
    )


def angle_between(a_deg: float, b_deg: float) -> float:
    """Absolute difference of two headings, in [0, 180] degrees."""
    return abs((a_deg - b_deg + 180.0) % 360.0 - 180.0)


def front_point(transform: Transform, length: float) -> Point:
    """Centre of the front bumper of a vehicle of ``length`` metres [m]."""
    yaw = math.radians(transform.yaw)
    half = length / 2.0
    return (transform.x + half * math.cos(yaw), transform.y + half * math.sin(yaw))


def _where(t: Transform) -> str:
    return f"(x={round(t.x, 3)}, y={round(t.y, 3)}, z={round(t.z, 3)})"


# ------------------------------------------------------------------------------- lane state
@dataclass(frozen=True)
class LaneState:
    """Where the ego is relative to the driving lanes.

    Attributes:
        road_id, lane_id: OpenDRIVE ids of the nearest driving lane (-1, 0 when none).
        lane_yaw: That lane's heading there [deg].
        offset: Distance from the ego centre to the lane centre line [m].
        off_road: Farther than half the lane width plus the allowance.
        wrong_lane: In a lane whose direction opposes the ego's heading, outside junctions.
    """

    road_id: int
    lane_id: int
    lane_yaw: float
    offset: float
    off_road: bool
    wrong_lane: bool


def _polyline_distance(points: np.ndarray, i: int, x: float, y: float) -> float:
    """Distance from (x, y) to the polyline pieces either side of ``points[i]`` [m]."""
    best = math.hypot(x - points[i, 0], y - points[i, 1])
    for j in (i - 1, i):
        if 0 <= j < len(points) - 1:
            (ax, ay), (bx, by) = points[j, :2].tolist(), points[j + 1, :2].tolist()
            dx, dy = bx - ax, by - ay
            t = min(max(((x - ax) * dx + (y - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0), 1)
            best = min(best, math.hypot(x - ax - t * dx, y - ay - t * dy))
    return best


def lane_state(
    roadmap: RoadMap,
    ego: Transform,
    allowance: float,
    wrong_angle: float,
    tracker: LaneTracker | None = None,
) -> LaneState:
    """Classify the ego's position against the nearest driving lane (OutsideRouteLanesTest).

    Args:
        roadmap: The town.
        ego: Ego pose.
        allowance: Tolerance beyond half the lane width [m].
        wrong_angle: Heading difference that makes a lane opposite [deg].
        tracker: Finds the lane faster when called tick after tick (same answer).
    """
    hit = (tracker or roadmap).locate(ego.x, ego.y, ego.z)
    if hit is None:
        return LaneState(-1, 0, ego.yaw, math.inf, True, False)
    seg, s = hit[0], hit[1]
    start, count = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
    i = min(round(float(s) / float(roadmap.seg_ds[seg])), count - 1)
    offset = _polyline_distance(roadmap.points[start : start + count], i, ego.x, ego.y)
    lane_yaw = math.degrees(float(roadmap.yaw[start + i]))
    off_road = offset > float(roadmap.width[start + i]) / 2.0 + allowance
    # lanes are too chaotic at junctions to tell a wrong one (as the leaderboard does)
    wrong = roadmap.seg_junction[seg] < 0 and angle_between(ego.yaw, lane_yaw) > wrong_angle
    road, _, lane = roadmap.keys[seg]
    return LaneState(road, lane, lane_yaw, offset, bool(off_road), bool(wrong))


# ------------------------------------------------------------------------------- collisions
@dataclass
class CollisionFilter:
    """De-duplicates collision events like the leaderboard's CollisionTest.

    A contact is ignored when it is with the last actor hit less than ``time`` seconds ago, or
    when the ego is still within ``radius`` metres of where the last counted one happened, or
    when the ego is slower than ``min_speed``. Static layout has no id to remember.
    """

    time: float = 5.0
    radius: float = 5.0
    min_speed: float = 0.1
    _last_id: int | None = field(default=None, init=False, repr=False)
    _last_time: float = field(default=-math.inf, init=False, repr=False)
    _last_xy: Point | None = field(default=None, init=False, repr=False)

    def filter(
        self, events: tuple[CollisionEvent, ...], ego: Transform, speed: float, now: float
    ) -> list[CollisionEvent]:
        """The events of one tick that count.

        Args:
            events: Contacts reported this tick.
            ego: Ego pose [m].
            speed: Ego speed during the tick [m/s] (sign ignored).
            now: Simulated time [s].
        """
        if self._last_xy is not None and math.dist(self._last_xy, (ego.x, ego.y)) > self.radius:
            self._last_xy = None
        if self._last_id is not None and now - self._last_time > self.time:
            self._last_id = None
        counted = []
        for event in events:
            if event.other_kind == ActorKind.STATIC or event.other_id < 0:
                same_actor = False
            else:
                same_actor = event.other_id == self._last_id
            if "sidewalk" in event.other_type:
                continue  # the leaderboard ignores kerb contacts
            # Too slow to be at fault: the leaderboard's CollisionTest.EPSILON; DESIGN §5 agrees.
            if same_actor or self._last_xy is not None or abs(speed) < self.min_speed:
                continue
            counted.append(event)
            self._last_time, self._last_xy = now, (ego.x, ego.y)
            self._last_id = None if event.other_kind == ActorKind.STATIC else event.other_id
        return counted


def collision_infraction(
    event: CollisionEvent, ego: Transform, frame: int, now: float
) -> Infraction:
    """The leaderboard event for a counted collision."""
    message = (
        f"Agent collided against object with type={event.other_type} and id={event.other_id} "
        f"at {_where(ego)}"
    )
    return Infraction(_COLLISION_KEYS[event.other_kind], frame, now, ego.x, ego.y, message)


# ------------------------------------------------------------------------------- red lights
def stop_lines_centre(light: TrafficLightInfo) -> Point:
    """Centre of a light's stop lines (where CARLA puts its trigger volume) [m]."""
    if not light.stop_lines:
        return (light.position[0], light.position[1])
    xs = [(line.start[0] + line.end[0]) / 2.0 for line in light.stop_lines]
    ys = [(line.start[1] + line.end[1]) / 2.0 for line in light.stop_lines]
    return (sum(xs) / len(xs), sum(ys) / len(ys))


def crosses_stop_line(
    light: TrafficLightInfo, previous_front: Point, front: Point, lane: LaneState
) -> bool:
    """Whether the front bumper crossed, moving forwards, a stop line of the ego's own lane.

    Args:
        light: The light.
        previous_front, front: Front bumper centre on the previous and this tick [m].
        lane: The ego's lane this tick; only the stop line of that (road, lane) counts and only
            if the ego heads along it (the leaderboard's same-lane and dot-product checks).
    """
    dx, dy = front[0] - previous_front[0], front[1] - previous_front[1]
    if dx == 0 and dy == 0:
        return False
    if angle_between(lane.lane_yaw, math.degrees(math.atan2(dy, dx))) >= 90.0:
        return False  # reversing over the line, or crossing another direction's line
    for line in light.stop_lines:
        if (line.road_id, line.lane_id) != (lane.road_id, lane.lane_id):
            continue
        mx, my = (line.start[0] + line.end[0]) / 2.0, (line.start[1] + line.end[1]) / 2.0
        hx, hy = (line.end[0] - mx) * _STOP_LINE_STRETCH, (line.end[1] - my) * _STOP_LINE_STRETCH
        if segments_intersect(previous_front, front, (mx - hx, my - hy), (mx + hx, my + hy)):
            return True
    return False


# ------------------------------------------------------------------------------- the criteria
@dataclass
class _Progress:
    """Route-following state (RouteCompletionTest, InRouteTest, OutsideRouteLanesTest)."""

    index: int = 0
    total: float = 0.0  # progress accumulated [m]
    outside: float = 0.0  # progress made outside the route's lanes [m]
    far: float = 0.0  # progress made farther than the safe distance [m]
    distance: float = 0.0  # ego to the plan [m]
    completion: float = 0.0  # [%]


MIN_SPEED_RADIUS = 50.0  # [m] vehicles this close to the ego make up "the surrounding traffic"


@dataclass
class _MinSpeed:
    """Speed sums of the current MinimumSpeedRouteTest section."""

    start: float = 0.0  # route progress where the section began [m]
    ego: float = 0.0
    traffic: float = 0.0
    samples: int = 0


class RouteCriteria:
    """All leaderboard criteria along one route; call ``update`` once per physics tick.

    Args:
        plan: The dense route plan (1 m spacing).
        roadmap: The town the plan is in.
        params: Thresholds.

    Attributes:
        timeout: The route's time limit [s].
    """

    def __init__(
        self, plan: RoutePlan, roadmap: RoadMap, params: CriteriaParams | None = None
    ) -> None:
        self.plan, self.roadmap = plan, roadmap
        self._lane_tracker = LaneTracker(roadmap)
        self.params = p = params or CriteriaParams()
        self.timeout = p.route_timeout(plan.length)
        self._collisions = CollisionFilter(
            p.collision_time, p.collision_radius, p.collision_min_speed
        )
        self._progress = _Progress()
        self._speed = _MinSpeed()
        self._infractions: list[Infraction] = []
        self._front: Point | None = None
        self._xy: Point | None = None
        self._odometer = 0.0
        self._previous_speed = 0.0
        self._last_moving: float | None = None
        self._red_light: int | None = None
        self._centres_of: tuple[TrafficLightInfo, ...] | None = None
        self._centres = np.zeros((0, 2))
        self._centre_list: list[list[float]] = []
        self._light_grid = CellGrid([], 0.0, 1.0)
        self._final: CriteriaStatus | None = None

    @property
    def infractions(self) -> tuple[Infraction, ...]:
        """Every event so far."""
        return tuple(self._infractions)

    def update(self, state: WorldState) -> CriteriaStatus:
        """Run every criterion on one tick; after the route ends, returns its final status."""
        if self._final is not None:
            return replace(self._final, new_infractions=())
        ego = state.ego.transform
        if self._xy is not None:
            self._odometer += math.dist(self._xy, (ego.x, ego.y))
        self._xy = (ego.x, ego.y)
        p = self.params
        lane = lane_state(
            self.roadmap, ego, p.lane_allowance, p.wrong_lane_angle, self._lane_tracker
        )
        # The speed going into the tick as well: a simulator may stop the car on contact.
        speed = max(abs(state.ego.speed), self._previous_speed)
        self._previous_speed = abs(state.ego.speed)
        hits = self._collisions.filter(state.collisions, ego, speed, state.time)
        new = [collision_infraction(e, ego, state.frame, state.time) for e in hits]
        new += self._red_lights(state, lane)
        outside = lane.off_road or lane.wrong_lane
        advanced = self._advance(ego, outside)
        new += self._outside_lanes(state, outside and advanced)
        new += self._min_speed(state)
        status, ending = self._termination(state)
        new += ending
        if status != "running" and self._progress.total > 0.95 * self.plan.length:
            new += self._close_min_speed_section(state)  # as MinimumSpeedRouteTest.terminate
        self._infractions.extend(new)
        result = self._status(tuple(new), status, outside)
        if result.done:
            self._final = result
        return result

    # ------------------------------------------------------------------------- per criterion
    @staticmethod
    def _event(key: str, state: WorldState, message: str, value: float | None = None) -> Infraction:
        ego = state.ego.transform
        return Infraction(key, state.frame, state.time, ego.x, ego.y, message, value)

    def _light_centres(self, lights: tuple[TrafficLightInfo, ...]) -> np.ndarray:
        """(L, 2) stop-line centres, computed once per town (the tuple is the same each tick)."""
        if self._centres_of is not lights:
            self._centres_of = lights
            self._centres = np.array([stop_lines_centre(light) for light in lights]).reshape(-1, 2)
            # Cells of the check distance (a metre of slack): most ticks find no candidate.
            distance = self.params.red_light_distance
            self._centre_list = self._centres.tolist()
            self._light_grid = CellGrid(self._centre_list, distance + 1.0, max(distance, 1.0))
        return self._centres

    def _lights_near(self, lights: tuple[TrafficLightInfo, ...], x: float, y: float) -> list[int]:
        """Indices of the lights whose stop lines' centre is within ``red_light_distance``."""
        self._light_centres(lights)
        centres, reach = self._centre_list, self.params.red_light_distance
        return [
            i
            for i in self._light_grid.candidates(x, y)
            if math.hypot(centres[i][0] - x, centres[i][1] - y) <= reach
        ]

    def _red_lights(self, state: WorldState, lane: LaneState) -> list[Infraction]:
        ego = state.ego.transform
        previous, front = self._front, front_point(ego, state.ego.length)
        self._front = front
        near = self._lights_near(state.lights, ego.x, ego.y)
        if self._red_light is not None and self._red_light not in {
            state.lights[i].id for i in near
        }:
            self._red_light = None  # left it behind: a later pass counts again
        found: list[Infraction] = []
        for i in near:
            light = state.lights[i]
            if previous is None or light.id == self._red_light:
                continue
            if state.light_state(i) == TrafficLightState.RED and crosses_stop_line(
                light, previous, front, lane
            ):
                self._red_light = light.id
                x, y, z = light.position
                message = f"Agent ran a red light {light.id} at {_where(Transform(x, y, z))}"
                found.append(self._event("red_light", state, message))
        return found

    def _advance(self, ego: Transform, outside: bool) -> bool:
        """Move along the plan over points the ego has passed; True if it moved.

        A point is passed when the ego is beyond the plane through it normal to the route
        (RouteCompletionTest); only the next ``progress_window`` points are examined, and only
        those within ``deviation_distance``, so cutting across to a later part of the route
        earns nothing.
        """
        plan, p, prog = self.plan, self.params, self._progress
        start = prog.index
        stop = min(start + max(p.progress_window, _DEVIATION_WINDOW), len(plan.points) - 1)
        xy = plan.points[start : stop + 1, :2].tolist()
        gaps = [math.hypot(ego.x - px, ego.y - py) for px, py in xy]
        prog.distance = min(gaps)  # InRouteTest: nearest of the next few route points
        new_index = start
        for k in range(1, min(p.progress_window, stop - start) + 1):
            yaw = float(plan.yaw[start + k])
            along = (ego.x - xy[k][0]) * math.cos(yaw) + (ego.y - xy[k][1]) * math.sin(yaw)
            if along > 0 and gaps[k] < p.deviation_distance:
                new_index = start + k
        if new_index == start:
            return False
        step = float(plan.distance[new_index] - plan.distance[start])
        prog.index, prog.total = new_index, prog.total + step
        prog.outside += step if outside else 0.0
        prog.far += step if prog.distance >= p.deviation_safe_distance else 0.0
        prog.completion = round(100.0 * float(plan.distance[new_index]) / max(plan.length, 1e-9), 2)
        return True

    def _outside_lanes(self, state: WorldState, grew: bool) -> list[Infraction]:
        prog = self._progress
        if not grew:
            return []
        pct = 100.0 * prog.outside / max(prog.total, 1e-9)
        message = (
            f"Agent went outside its route lanes for about {round(prog.outside, 3)} meters "
            f"({round(pct, 2)}% of the completed route)"
        )
        for k, old in enumerate(self._infractions):
            if old.key == "outside_route_lanes":  # one event, updated as the route goes on
                self._infractions[k] = replace(
                    old, frame=state.frame, time=state.time, message=message, value=pct
                )
                return []
        return [self._event("outside_route_lanes", state, message, pct)]

    def _min_speed(self, state: WorldState) -> list[Infraction]:
        checkpoints = self.params.min_speed_checkpoints
        if checkpoints == 0:
            return []
        found = []
        if self._progress.total - self._speed.start > self.plan.length / checkpoints:
            found = self._close_min_speed_section(state)
        if len(state.vehicles):
            # The traffic around the ego sets the pace, not cars stuck across town.
            ego = state.ego.transform
            xy = state.vehicles.xyz
            near = (xy[:, 0] - ego.x) ** 2 + (xy[:, 1] - ego.y) ** 2 < MIN_SPEED_RADIUS**2
            count = int(np.count_nonzero(near))
            if count:  # their mean speed (sum / count is what ``mean`` computes, faster)
                self._speed.ego += abs(state.ego.speed)
                self._speed.traffic += float(np.abs(state.vehicles.speed[near]).sum()) / count
                self._speed.samples += 1
        return found

    def _close_min_speed_section(self, state: WorldState) -> list[Infraction]:
        s = self._speed
        value = 100.0
        if s.samples > 0 and s.traffic > 0:
            value = round(100.0 * s.ego / s.traffic, 2)
        self._speed = _MinSpeed(start=self._progress.total)
        if value >= 100.0 or self.params.min_speed_checkpoints == 0:
            return []
        message = f"Average speed is {value}% of the surrounding traffic's one"
        return [self._event("min_speed_infractions", state, message, value)]

    def _termination(self, state: WorldState) -> tuple[RouteStatus, list[Infraction]]:
        """Completed, deviated, blocked or timed out (checked in that order), with its event."""
        p, prog, ego = self.params, self._progress, state.ego.transform
        end = self.plan.points[-1]
        if (
            prog.completion > p.completion_percentage
            and math.hypot(ego.x - end[0], ego.y - end[1]) < p.completion_distance
        ):
            prog.completion = 100.0
            return "completed", []
        far = 100.0 * prog.far / max(self.plan.length, 1e-9) > p.deviation_percentage
        if prog.distance >= p.deviation_distance or far:
            message = f"Agent deviated from the route at {_where(ego)}"
            return "route_dev", [self._event("route_dev", state, message)]
        if abs(state.ego.speed) >= p.blocked_speed or self._last_moving is None:
            self._last_moving = state.time
        elif state.time - self._last_moving > p.blocked_time:
            message = f"Agent got blocked at {_where(ego)}"
            return "vehicle_blocked", [self._event("vehicle_blocked", state, message)]
        if state.time > self.timeout:
            return "route_timeout", [self._event("route_timeout", state, "Route timeout.")]
        return "running", []

    def _status(
        self, new: tuple[Infraction, ...], status: RouteStatus, outside: bool
    ) -> CriteriaStatus:
        prog = self._progress
        return CriteriaStatus(
            new_infractions=new,
            infractions=tuple(self._infractions),
            route_completion=prog.completion,
            route_progress=float(self.plan.distance[prog.index]),
            distance_driven=self._odometer,
            outside_lanes_percentage=100.0 * prog.outside / prog.total if prog.total > 0 else 0.0,
            outside_lanes=outside,
            route_distance=prog.distance,
            done=status != "running",
            status=status,
            failure_message=FAILURE_MESSAGES.get(status, ""),
        )
