"""The Gymnasium driving environment: a route on either simulator, scored like the leaderboard.

``step()`` follows one template: action -> control; ``action_repeat`` physics ticks, the
criteria updated on every tick; the observation (stacked camera frames + measurements); the
reward's named terms; termination on failure or completion, truncation on timeout or a
simulator crash. ``info`` carries the infractions (leaderboard keys), route completion,
distance, the reward terms and why the episode ended.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import gymnasium as gym
import numpy as np

from envs.action import ActionAdapter
from envs.backends.base import (
    CameraSpec,
    EpisodeSpec,
    SimulatorBackend,
    SimulatorCrashed,
    WorldState,
)
from envs.config import EnvConfig, config_from_dict
from envs.criteria import CriteriaParams, RouteCriteria
from envs.hazards import RouteHazards
from envs.observation import ObservationBuilder
from envs.planner import RoutePlanner
from envs.reward import STANDING_SPEED, shaped_reward, simple_reward, standstill_cost
from envs.routes import RoutePlan, RouteSpec, load_routes
from envs.sim.weather import Weather
from envs.types import Transform
from evaluation.scoring import PENALTY

logger = logging.getLogger(__name__)

CAMERA = "front"
FAILURE_KEYS = {"collisions_pedestrian", "collisions_vehicle", "collisions_layout"}


class DrivingEnv(gym.Env[dict[str, np.ndarray], Any]):
    """Drive a route with a front camera; see ``EnvConfig`` for every setting.

    Args:
        config: The environment config (``EnvConfig`` or a mapping of its fields).
        backend: A ready ``SimulatorBackend``; by default one is built from the config.
        render_mode: ``rgb_array`` returns the latest camera image from ``render()``.
        backend_name: Default ``backend`` (set by the registered ids).
        **overrides: Config fields to change (``gym.make("segdrive/Embedded-v0", vehicles=0)``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium's)

    def __init__(
        self,
        config: EnvConfig | dict[str, Any] | None = None,
        backend: SimulatorBackend | None = None,
        render_mode: str | None = None,
        backend_name: str | None = None,
        **overrides: Any,
    ) -> None:
        if isinstance(config, EnvConfig):
            config = {f: getattr(config, f) for f in config.__dataclass_fields__}
        values = {**(config or {}), **overrides}
        if backend_name is not None:
            values.setdefault("backend", backend_name)
        self.config = config_from_dict(values, "environment config")
        self.render_mode = render_mode
        self.actions = ActionAdapter(self.config)
        self.observations = ObservationBuilder(self.config)
        self.action_space = self.actions.space
        self.observation_space = self.observations.space  # type: ignore[assignment]
        self._backend = backend
        self._routes: list[RouteSpec] = (
            load_routes(self.config.routes) if self.config.routes else []
        )
        self._planners: dict[str, RoutePlanner] = {}
        self._last_image: np.ndarray | None = None
        self._closed = False

    # ---------------------------------------------------------------------------- backend
    @property
    def backend(self) -> SimulatorBackend:
        """The simulator, created on first use."""
        if self._backend is None:
            self._backend = self._make_backend()
        return self._backend

    def _make_backend(self) -> SimulatorBackend:
        c = self.config
        if c.backend == "carla":
            from envs.backends.carla_connection import CarlaOptions

            options = CarlaOptions(c.host, c.port, c.tm_port, c.timeout, c.retries)
            backend: SimulatorBackend = options.backend(c.physics_dt)
        else:
            from envs.backends.embedded import EmbeddedBackend
            from envs.sim.world import WorldConfig

            backend = EmbeddedBackend(c.towns[0], WorldConfig(dt=c.physics_dt))
        if c.image != "bev":
            spec = CameraSpec(
                width=c.camera_width,
                height=c.camera_height,
                fov=c.camera_fov,
                x=c.camera_x,
                z=c.camera_z,
                pitch=c.camera_pitch,
                depth=False,  # the observation never shows it
            )
            backend.set_cameras({CAMERA: spec})
        return backend

    def _planner(self) -> RoutePlanner:
        roadmap = self.backend.road_map
        if roadmap.name not in self._planners:
            self._planners[roadmap.name] = RoutePlanner(roadmap)
        return self._planners[roadmap.name]

    # ------------------------------------------------------------------------------ reset
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode on a new route.

        Options: ``route`` (a ``RouteSpec`` to drive), ``weather`` (preset name or ``Weather``),
        ``vehicles`` / ``walkers`` (densities), ``lights`` (light mode).
        """
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        route: RouteSpec | None = options.get("route")
        if route is None and self._routes:
            route = self._routes[int(rng.integers(len(self._routes)))]
        town = (
            route.town
            if route is not None
            else self.config.towns[int(rng.integers(len(self.config.towns)))]
        )
        self.backend.load_town(town)
        planner = self._planner()
        keypoints = (
            route.keypoints
            if route is not None
            else planner.random_keypoints(
                rng, *self.config.route_length, self.config.lane_change_share
            )
        )
        plan = planner.plan(keypoints)
        self._route, self._plan = route, plan
        weather = self._pick_weather(options.get("weather"), route)
        ego = Transform(
            float(plan.points[0, 0]),
            float(plan.points[0, 1]),
            float(plan.points[0, 2]) + 0.2,
            math.degrees(float(plan.yaw[0])),
        )
        spec = EpisodeSpec(
            seed=int(rng.integers(2**31 - 1)),
            ego=ego,
            vehicles=int(options.get("vehicles", self.config.vehicles)),
            walkers=int(options.get("walkers", self.config.walkers)),
            weather=weather,
            lights=options.get("lights", self.config.lights),
        )
        state = self.backend.reset(spec)
        self._criteria = RouteCriteria(
            plan,
            self.backend.road_map,
            CriteriaParams(version=self.config.leaderboard, blocked_time=self.config.blocked_time),
        )
        self._hazards = RouteHazards(plan, self.backend.road_map, state.lights)
        self.observations.reset(plan)
        self._index = 0
        self._infractions: list[Any] = []
        self._infraction_counts: Counter[str] = Counter()
        self._penalty = 1.0
        self._state = state
        status = self._criteria.update(state)
        obs = self._observe(state)
        return obs, self._info(state, status, {}, [])

    def _pick_weather(self, choice: str | Weather | None, route: RouteSpec | None) -> Weather:
        if isinstance(choice, Weather):
            return choice
        if choice is not None:
            return Weather.preset(choice)
        names = self.config.weathers
        if names == ("route",) and route is not None:
            return route.weather_at(0.0)
        return Weather.preset(names[int(self.np_random.integers(len(names)))])

    # ------------------------------------------------------------------------------- step
    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for one decision period (``action_repeat`` physics ticks)."""
        control = self.actions.to_control(action)
        repeat = self.config.action_repeat
        new: list[Any] = []
        truncation = ""
        status = None
        state = self._state
        for i in range(repeat):
            try:
                state = self.backend.tick(
                    control, render=i == repeat - 1 and self.config.image != "bev"
                )
            except SimulatorCrashed as crash:
                logger.warning("simulator crashed: %s", crash)
                truncation = "simulator"
                break
            status = self._criteria.update(state)
            new.extend(status.new_infractions)
            if status.done or self._fails(new):
                break
        self._state = state
        start_distance = float(self._plan.distance[self._index])
        obs = self._observe(state)
        progress = float(self._plan.distance[self._index]) - start_distance
        self._infractions.extend(new)
        self._infraction_counts.update(i.key for i in new)
        for infraction in new:
            self._penalty *= PENALTY.get(infraction.key, 1.0)
        failed = self._fails(new) or (
            status is not None and status.done and status.status != "completed"
        )
        terms = self._reward_terms(state, progress, failed)
        terminated = bool(failed or (status is not None and status.done))
        if status is not None and status.status == "route_timeout":
            terminated, truncation = False, "route_timeout"
        self._update_route_weather(status)
        info = self._info(state, status, terms, new)
        if terminated or truncation:  # the whole route's events, for episode scores
            info["route_infractions"] = list(self._infractions)
        if truncation:
            info["truncation_reason"] = truncation
        return obs, float(sum(terms.values())), terminated, bool(truncation), info

    def _fails(self, infractions: list[Any]) -> bool:
        if not infractions:
            return False
        c = self.config
        keys = {i.key for i in infractions}
        return bool(
            (c.terminate_on_collision and keys & FAILURE_KEYS)
            or (c.terminate_on_red_light and "red_light" in keys)
        )

    def _reward_terms(self, state: WorldState, progress: float, failed: bool) -> dict[str, float]:
        c = self.config
        speed = state.ego.speed
        hazards = None
        if c.reward == "shaped" or (c.standstill_penalty > 0 and abs(speed) < STANDING_SPEED):
            hazards = self._hazards.ahead(state, self._index)
        if c.reward == "simple":
            terms = simple_reward(progress, self._plan.length, self._penalty, failed)
        else:
            assert hazards is not None
            ego = state.ego.transform
            point = self._plan.points[self._index]
            lateral = math.hypot(ego.x - point[0], ego.y - point[1])
            heading = (math.radians(ego.yaw) - self._plan.yaw[self._index] + math.pi) % (
                2 * math.pi
            ) - math.pi
            terms = shaped_reward(speed, lateral, heading, hazards, c.target_speed, failed)
        if c.standstill_penalty > 0:
            terms["standstill"] = (
                0.0
                if hazards is None
                else standstill_cost(
                    speed, hazards, c.target_speed, c.standstill_penalty, c.decision_dt
                )
            )
        return terms

    def _update_route_weather(self, status: Any) -> None:
        if self._route is None or self.config.weathers != ("route",) or status is None:
            return
        weather = self._route.weather_at(status.route_completion)
        if weather != self._state.weather:
            self.backend.set_weather(weather)

    # ------------------------------------------------------------------------ observation
    def _track(self, state: WorldState) -> int:
        """Advance the ego's index on the plan (never backwards, never far ahead)."""
        ego = state.ego.transform
        self._index = self._plan.advance(self._index, ego.x, ego.y)
        return self._index

    def _observe(self, state: WorldState) -> dict[str, np.ndarray]:
        index = self._track(state)
        if self.config.image == "bev":
            from envs.sim.bev import bev

            world = getattr(self.backend, "world", None)
            if world is None:
                raise ValueError("image: bev needs the embedded backend")
            size = (self.config.bev_size, self.config.bev_size)
            raw = bev(world, size, self.config.bev_ppm, self._plan.points[index:, :2])
            image = self.observations.image_of(raw)
        elif CAMERA in state.cameras:
            image = self.observations.image_of(state.cameras[CAMERA])
        else:  # the episode ended before the decision's last tick: keep the previous frame
            assert self._last_image is not None
            image = self._last_image
        self._last_image = image
        return self.observations.build(state, image, index)

    def _info(
        self, state: WorldState, status: Any, terms: dict[str, float], new: list[Any]
    ) -> dict[str, Any]:
        return {
            "route_completion": 0.0 if status is None else float(status.route_completion),
            "distance": float(self._plan.distance[self._index]),
            "route_length": self._plan.length,
            "infractions": [i.key for i in new],
            "infractions_total": dict(self._infraction_counts),
            "outside_lanes_percentage": 0.0
            if status is None
            else float(status.outside_lanes_percentage),
            "status": "running" if status is None else status.status,
            "reward_terms": terms,
            "speed": state.ego.speed,
            "weather": state.weather,
            "invalid_actions": self.actions.invalid_actions,
            "sim_time": state.time,
        }

    def render(self) -> np.ndarray | None:
        """The latest camera image (H, W, 3) for ``rgb_array``."""
        if self.render_mode != "rgb_array":
            return None
        frame = self._state.cameras.get(CAMERA) if hasattr(self, "_state") else None
        return None if frame is None else frame.rgb

    def close(self) -> None:
        """Release the simulator (idempotent)."""
        if self._backend is not None and not self._closed:
            self._backend.close()
        self._closed = True

    def expert_action(self) -> np.ndarray | int:
        """What the privileged autopilot would do now, as an action of this env's space.

        For demonstrations (behaviour-cloning warm start); callable through
        ``VecEnv.env_method("expert_action")``. The autopilot follows the current episode's
        plan and is restarted with every episode (``agent.autopilot.teacher``: at the env's
        ``target_speed``).
        """
        from agent.autopilot import teacher

        if getattr(self, "_expert_plan", None) is not self._plan:
            self._expert = teacher(self.config)  # noise-free; leaves the env generator alone
            self._expert.reset(self._plan, self.backend.road_map, self._state.lights)
            self._expert_plan = self._plan
        control = self._expert.run_step(self._state, self.config.decision_dt)
        return self.actions.from_control(control)

    @property
    def plan(self) -> RoutePlan:
        """The dense plan of the current route."""
        return self._plan

    @property
    def world_state(self) -> WorldState:
        """The latest simulator snapshot (privileged: for experts and diagnostics)."""
        return self._state
