"""The autopilot drives routes cleanly (the full 50-route figure is a benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.autopilot import Autopilot, AutopilotAgent, drive_plan
from envs.backends.base import EpisodeSpec
from envs.backends.embedded import EmbeddedBackend
from envs.driving_env import DrivingEnv
from envs.planner import RoutePlanner
from envs.reward import COMFORT_DECEL
from envs.types import Transform


@pytest.mark.parametrize("town", ["Grid01", "Multi01"])
def test_autopilot_completes_routes_without_infractions(town: str) -> None:
    backend = EmbeddedBackend(town)
    planner = RoutePlanner(backend.road_map)
    rng = np.random.default_rng(0)
    for episode in range(2):
        plan = planner.plan(planner.random_keypoints(rng, 300, 600))
        spec = EpisodeSpec(seed=episode, ego=Transform(0.0, 0.0), vehicles=30, walkers=30)
        status = drive_plan(backend, plan, spec)
        serious = [
            i.key
            for i in status.infractions
            if i.key.startswith("collisions") or i.key == "red_light"
        ]
        assert status.status == "completed", (town, episode, status.failure_message)
        assert serious == []
    backend.close()


def test_autopilot_drives_the_env_through_its_actions() -> None:
    env = DrivingEnv({"vehicles": 5, "walkers": 0, "route_length": (150.0, 200.0)})
    env.reset(seed=5)
    agent = AutopilotAgent(env)
    agent.reset()
    for _ in range(800):
        _, _, terminated, truncated, info = env.step(agent.act())
        if terminated or truncated:
            break
    assert info["status"] == "completed"
    assert info["route_completion"] > 99.0
    env.close()


def test_curve_speeds_are_reached_with_comfortable_braking() -> None:
    """Regression: the curve limit used to apply only 20 m before the curve, so the car braked
    at full force at a junction's turn and crawled over a stop line it had passed on yellow."""
    backend = EmbeddedBackend("Grid01")
    planner = RoutePlanner(backend.road_map)
    plan = planner.plan(planner.random_keypoints(np.random.default_rng(3), 300, 600))
    pilot = Autopilot()
    pilot.reset(plan, backend.road_map, backend._lights)
    limit = pilot._curve_speed
    step = np.diff(plan.distance)
    assert limit.min() < 0.6 * pilot.params.cruise_speed  # the route turns somewhere
    # Between neighbouring points the limit falls no faster than COMFORT_DECEL allows.
    assert np.all(limit[:-1] ** 2 <= limit[1:] ** 2 + 2.0 * COMFORT_DECEL * step + 1e-6)
    backend.close()
