"""The autopilot: a privileged rule-based driver through the ``SimulatorBackend`` boundary.

It follows the route's dense plan with pure pursuit (lateral) and a PI speed controller
(longitudinal) towards a target speed that respects the curvature ahead and drops to a stop
before red lights (and yellow ones it can stop for), vehicles and pedestrians in its path
(``envs.hazards``). It collects perception data, is the expert baseline of the evaluation,
and checks that the environment is drivable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from envs.backends.base import EpisodeSpec, SimulatorBackend, TrafficLightInfo, WorldState
from envs.config import EnvConfig
from envs.criteria import CriteriaStatus, RouteCriteria
from envs.driving_env import DrivingEnv
from envs.hazards import Hazards, RouteHazards, predicted_xy
from envs.reward import (
    COMFORT_DECEL,
    FOLLOW_HEADWAY,
    LIGHT_STOP_GAP,
    STOP_MARGIN,
    desired_speed,
    stops_for_light,
)
from envs.routes import RoutePlan
from envs.sim.roadmap import RoadMap
from envs.types import Transform, VehicleControl


@dataclass(frozen=True)
class AutopilotParams:
    """Controller gains and limits.

    Attributes:
        cruise_speed: Speed on open road [m/s].
        lateral_accel: Curves are taken at most this lateral acceleration [m/s^2].
        lookahead_gain: Pure-pursuit lookahead per unit speed [s].
        lookahead_min: Shortest lookahead [m].
        lookahead_max: Longest lookahead [m].
        wheelbase: Ego wheelbase [m].
        max_steer_deg: Wheel angle at full steer [deg].
        kp: Proportional speed gain [1/(m/s)].
        ki: Integral speed gain [1/m].
        brake_gain: Brake per m/s of overspeed.
        max_throttle: Throttle ceiling.
        steer_noise: Standard deviation of noise added to steer (data collection).
        noise_hold: Steps each noise sample is held.
        vehicle_margin: Gap it stops at behind a car [m].
        follow_headway: Time gap it keeps behind a moving car, on top of the margin [s].
    """

    cruise_speed: float = 12.0
    lateral_accel: float = 3.0
    lookahead_gain: float = 0.6
    lookahead_min: float = 4.0
    lookahead_max: float = 12.0
    wheelbase: float = 2.875
    max_steer_deg: float = 35.0
    kp: float = 0.35
    ki: float = 0.05
    brake_gain: float = 0.5
    max_throttle: float = 1.0
    steer_noise: float = 0.0
    noise_hold: int = 10
    vehicle_margin: float = STOP_MARGIN["vehicle"]
    follow_headway: float = FOLLOW_HEADWAY


STOP_DECEL = 6.0  # [m/s^2] deceleration that full brake is taken to give when stopping
CURVE_WINDOW = 5.0  # [m] a point's curve speed holds from this far before the curvature
YIELD_DISTANCE = 10.0  # [m] from the junction entry where the yield check starts
YIELD_TIMES = tuple(0.5 * k for k in range(7))  # [s] crossing traffic is predicted to 3 s


class Autopilot:
    """Drives one route; call ``reset`` per route, then ``run_step`` every tick."""

    def __init__(self, params: AutopilotParams | None = None, seed: int = 0) -> None:
        self.params = params or AutopilotParams()
        self._rng = np.random.default_rng(seed)

    def reset(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """Take a new route."""
        self.plan = plan
        self.hazards = RouteHazards(plan, roadmap, lights)
        self.index = 0
        self._integral = 0.0
        self._noise = 0.0
        self._ticks = 0
        self._yield_gap = 0.0
        self._curve_speed = self._curve_speeds(plan)
        self.last_hazards = Hazards()
        self._junctions = self._unsignalised_junctions(plan, roadmap)

    def _unsignalised_junctions(self, plan: RoutePlan, roadmap: RoadMap) -> list[tuple[int, int]]:
        """(entry, exit) plan indices of the junctions on the route that have no light."""
        inside = roadmap.seg_junction[plan.segments] >= 0
        edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
        entries = [int(i) + 1 for i in edges if not inside[i]]
        spans = []
        for entry in entries:
            exits = np.flatnonzero(~inside[entry:])
            exit_ = entry + (int(exits[0]) if len(exits) else len(inside) - entry)
            signalised = np.any(np.abs(self.hazards.stop_index - entry) < 4)
            if not signalised:
                spans.append((entry, exit_))
        return spans

    def _curve_speeds(self, plan: RoutePlan) -> np.ndarray:
        """Speed limit at each plan point from the curvature ahead [m/s].

        Each point's own limit keeps the lateral acceleration under ``lateral_accel``; a
        backward pass then lowers it so that every curve ahead is reached at its speed with
        ``COMFORT_DECEL`` braking, rather than braked for hard at its entry (which also carried
        the car slowly over stop lines it had decided to pass on yellow).
        """
        turn = np.abs(np.diff(np.unwrap(plan.yaw), append=plan.yaw[-1]))
        step = np.maximum(np.diff(plan.distance, append=plan.distance[-1] + 1.0), 1e-3)
        curvature = np.convolve(turn / step, np.ones(5) / 5, mode="same")
        window = max(1, int(CURVE_WINDOW / max(float(np.median(step)), 0.1)))
        ahead = np.array([curvature[i : i + window].max() for i in range(len(curvature))])
        limit = np.sqrt(self.params.lateral_accel / np.maximum(ahead, 1e-4))
        for i in range(len(limit) - 2, -1, -1):
            reach = limit[i + 1] ** 2 + 2.0 * COMFORT_DECEL * step[i]
            if limit[i] ** 2 > reach:
                limit[i] = math.sqrt(reach)
        return limit

    def run_step(self, state: WorldState, dt: float = 0.05) -> VehicleControl:
        """The control for the current state."""
        p = self.params
        ego = state.ego.transform
        self.index = self.plan.advance(self.index, ego.x, ego.y)
        steer = self._steer(state)
        hazards = self.hazards.ahead(state, self.index)
        self.last_hazards = hazards
        target = min(p.cruise_speed, float(self._curve_speed[self.index]))
        target = desired_speed(target, hazards, state.ego.speed, p.vehicle_margin, p.follow_headway)
        if self._must_yield(state):
            target = (
                0.0
                if self._yield_gap < 2.0
                else min(target, math.sqrt(2.5 * (self._yield_gap - 1.0)))
            )
        # Arrive at the route's end, rather than run on into whatever lies beyond it.
        remaining = self.plan.length - self.plan.distance[self.index]
        target = min(target, math.sqrt(2.0 * COMFORT_DECEL * (remaining + 1.0)))
        throttle, brake = self._pedals(state.ego.speed, target, dt)
        stop_brake = self._stop_line_brake(state.ego.speed, hazards)
        if stop_brake > brake:
            throttle, brake = 0.0, stop_brake
        return VehicleControl(throttle=throttle, steer=steer, brake=brake)

    def _stop_line_brake(self, speed: float, hazards: Hazards) -> float:
        """Brake that stops the car before a stop line it has decided to stop at.

        The speed controller alone brakes in proportion to overspeed, which can carry the car
        over the line; this asks for the deceleration the remaining distance needs.
        """
        distance = hazards.light_distance - LIGHT_STOP_GAP
        if not math.isfinite(distance) or not stops_for_light(hazards, speed):
            return 0.0  # no light, green, or too close to stop comfortably on yellow
        needed = speed * speed / (2.0 * max(distance, 0.3))
        return float(min(1.0, needed / STOP_DECEL)) if needed > 0.5 else 0.0

    def _must_yield(self, state: WorldState) -> bool:
        """Before an unsignalised junction, wait while traffic there would cross our path.

        Looks at vehicles predicted over ``YIELD_TIMES`` at constant velocity;
        once inside the junction the car keeps going (stopping inside blocks everyone).
        """
        here = self.plan.distance[self.index] + state.ego.length / 2.0
        for entry, exit_ in self._junctions:
            gap = self.plan.distance[entry] - here
            if gap < -0.5 or gap > YIELD_DISTANCE:
                continue
            path = self.plan.points[entry:exit_:2, :2]
            vehicles = state.vehicles
            if len(vehicles) == 0 or len(path) == 0:
                return False
            # Only moving traffic has right of way here; a car standing in the junction is
            # an obstacle on the path, which the corridor check handles.
            moving = np.tile(vehicles.speed > 0.5, len(YIELD_TIMES))
            future = predicted_xy(vehicles.xyz[:, :2], vehicles.yaw, vehicles.speed, YIELD_TIMES)[
                moving
            ]
            d = np.hypot(
                future[:, None, 0] - path[None, :, 0], future[:, None, 1] - path[None, :, 1]
            )
            if (d.min(axis=1, initial=np.inf) < 3.0).any():
                self._yield_gap = gap
                return True
        return False

    def _steer(self, state: WorldState) -> float:
        p = self.params
        ego = state.ego.transform
        speed = max(state.ego.speed, 0.0)
        lookahead = min(
            max(p.lookahead_gain * speed + p.lookahead_min, p.lookahead_min), p.lookahead_max
        )
        yaw = math.radians(ego.yaw)
        # Pure pursuit from the rear axle.
        rear_x = ego.x - math.cos(yaw) * p.wheelbase / 2.0
        rear_y = ego.y - math.sin(yaw) * p.wheelbase / 2.0
        goal_distance = self.plan.distance[self.index] + lookahead
        goal = min(
            int(np.searchsorted(self.plan.distance, goal_distance)), len(self.plan.points) - 1
        )
        dx, dy = self.plan.points[goal, 0] - rear_x, self.plan.points[goal, 1] - rear_y
        alpha = math.atan2(dy, dx) - yaw
        alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
        distance = max(math.hypot(dx, dy), 1e-3)
        delta = math.atan2(2.0 * p.wheelbase * math.sin(alpha), distance)
        steer = delta / math.radians(p.max_steer_deg)
        if p.steer_noise > 0.0:
            if self._ticks % p.noise_hold == 0:
                self._noise = float(self._rng.normal(0.0, p.steer_noise))
            steer += self._noise
        self._ticks += 1
        return float(np.clip(steer, -1.0, 1.0))

    def _pedals(self, speed: float, target: float, dt: float) -> tuple[float, float]:
        p = self.params
        error = target - speed
        if target < 0.1:
            self._integral = 0.0
            return 0.0, 1.0  # stop now (a hazard inside the margin) and hold the car still
        if error < -0.5:
            self._integral = 0.0
            return 0.0, float(min(1.0, p.brake_gain * -error))
        self._integral = float(np.clip(self._integral + error * dt, -5.0, 5.0))
        throttle = p.kp * error + p.ki * self._integral
        return float(np.clip(throttle, 0.0, p.max_throttle)), 0.0


def teacher(config: EnvConfig) -> Autopilot:
    """The noise-free autopilot that training imitates in an env with ``config``: it cruises at
    the ``target_speed`` the shaped reward asks for, so that demonstrations and reward agree."""
    return Autopilot(AutopilotParams(cruise_speed=config.target_speed))


class AutopilotAgent:
    """The autopilot acting through a ``DrivingEnv``'s own action space.

    Call ``reset()`` after each ``env.reset()``, then ``act()`` before each ``env.step()``.
    """

    def __init__(
        self, env: DrivingEnv, params: AutopilotParams | None = None, seed: int = 0
    ) -> None:
        self.env = env
        self.pilot = Autopilot(params, seed)

    def reset(self) -> None:
        """Start following the env's current route."""
        env = self.env
        self.pilot.reset(env.plan, env.backend.road_map, env.world_state.lights)

    def act(self) -> np.ndarray | int:
        """The action for the env's current state."""
        control = self.pilot.run_step(self.env.world_state)
        return self.env.actions.from_control(control)


def drive_plan(
    backend: SimulatorBackend, plan: RoutePlan, spec: EpisodeSpec, pilot: Autopilot | None = None
) -> CriteriaStatus:
    """Drive ``plan`` with the autopilot from the plan's start until the criteria end it.

    ``spec.ego`` is ignored: the ego starts at the plan's first point.
    """
    x, y, z = (float(v) for v in plan.points[0])
    start = Transform(x, y, z, math.degrees(plan.yaw[0]))
    state = backend.reset(dataclasses.replace(spec, ego=start))
    pilot = pilot or Autopilot()
    pilot.reset(plan, backend.road_map, state.lights)
    criteria = RouteCriteria(plan, backend.road_map)
    status = criteria.update(state)
    while not status.done:
        state = backend.tick(pilot.run_step(state, backend.dt))
        status = criteria.update(state)
    return status
