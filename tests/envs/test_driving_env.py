"""The Gymnasium environment: API contracts, determinism, termination, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs  # noqa: F401  (registers the ids)
from envs.driving_env import DrivingEnv
from envs.observation import ARC_CURVATURE_RANGE, ARC_MIN_DISTANCE, TARGET_RANGE, arcs

SMALL = {"vehicles": 5, "walkers": 5, "route_length": (150.0, 250.0)}


@pytest.fixture(scope="module")
def env() -> DrivingEnv:
    e = DrivingEnv(SMALL)
    yield e
    e.close()


def test_registered_ids_make_the_env() -> None:
    made = gym.make("segdrive/Embedded-v0", vehicles=0, walkers=0)
    assert made.unwrapped.config.backend == "embedded"
    assert gym.spec("segdrive/Carla-v0").kwargs["backend_name"] == "carla"
    made.close()


@pytest.mark.parametrize("action", ["continuous", "continuous_accel", "discrete"])
def test_passes_gymnasium_and_sb3_checkers(action: str) -> None:
    e = DrivingEnv({**SMALL, "action": action})
    check_env(e, skip_render_check=True)
    sb3_check_env(e, warn=False)
    if action == "discrete":
        assert e.action_space.n == 28
    e.close()
    e.close()  # idempotent


def test_observation_layout(env: DrivingEnv) -> None:
    obs, info = env.reset(seed=1)
    assert obs["image"].shape == (12, 96, 160) and obs["image"].dtype == np.uint8
    assert obs["targets"].shape == (6,)
    assert obs["command"].sum() == 1.0
    assert obs["targets"][0] > 0.0  # the next target is ahead of the car
    assert info["route_length"] > 100.0 and info["status"] == "running"
    assert obs["arcs"].shape == (6,)
    targets = obs["targets"].reshape(3, 2)
    inside = np.abs(targets).max(axis=1) < TARGET_RANGE  # the arcs use the unclipped points
    expected = arcs(targets).reshape(3, 2)[inside]
    np.testing.assert_allclose(obs["arcs"].reshape(3, 2)[inside], expected, atol=1e-6)


def test_arcs_are_the_pure_pursuit_circles_to_the_targets() -> None:
    local = np.array([[10.0, 0.0], [10.0, 10.0], [5.0, -5.0], [0.1, 0.2], [-3.0, 0.0]], np.float32)
    bearing, curvature = arcs(local).reshape(-1, 2).T
    np.testing.assert_allclose(bearing[:3], [0.0, np.pi / 4, -np.pi / 4], atol=1e-6)
    # straight ahead: no turn; (10, 10) lies on the circle of radius 10 tangent to the heading
    np.testing.assert_allclose(curvature[:3], [0.0, 0.1, -0.2], atol=1e-6)
    assert curvature[3] == pytest.approx(2 * 0.2 / ARC_MIN_DISTANCE**2)  # a target at the bumper
    assert bearing[4] == pytest.approx(np.pi) and curvature[4] == 0.0  # behind
    sharp = arcs(np.array([[0.5, 3.0]], np.float32))[1]
    assert sharp == ARC_CURVATURE_RANGE  # clipped to the space's bound


def episode(e: DrivingEnv, seed: int, steps: int = 40) -> list[np.ndarray]:
    """Images, targets and rewards of an episode of seeded random actions."""
    obs, _ = e.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, 3)).astype(np.float32)
    out = [obs["image"], obs["targets"]]
    for a in actions:
        obs, reward, term, trunc, _ = e.step(a)
        out += [obs["image"], obs["targets"], np.array([reward])]
        if term or trunc:
            break
    return out


def rollout(seed: int, steps: int = 40) -> list[np.ndarray]:
    e = DrivingEnv(SMALL)
    out = episode(e, seed, steps)
    e.close()
    return out


def same(first: list[np.ndarray], second: list[np.ndarray]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a, b) for a, b in zip(first, second, strict=True)
    )


def test_same_seed_same_rollout() -> None:
    assert same(rollout(7), rollout(7))


def test_an_episode_does_not_depend_on_the_towns_driven_before() -> None:
    """Towns stay loaded between episodes (a switch back rebuilds nothing) and every reset
    reseeds the whole world, so a seed replays its episode after another town's episode."""
    config = {**SMALL, "towns": ("Grid01", "Multi01")}
    fresh = DrivingEnv(config)
    expected = episode(fresh, 7)
    town = fresh.backend.road_map.name
    fresh.close()
    e = DrivingEnv(config)
    e.reset(seed=7)
    world = e.backend.world  # type: ignore[attr-defined]
    other = next(s for s in range(1, 50) if e.reset(seed=s) and e.backend.road_map.name != town)
    episode(e, other, 10)
    replay = episode(e, 7)
    assert e.backend.world is world  # type: ignore[attr-defined]
    e.close()
    assert same(expected, replay)


def test_nan_and_out_of_range_actions_are_clipped_and_counted(env: DrivingEnv) -> None:
    env.reset(seed=2)
    _, _, _, _, info = env.step(np.array([np.nan, 5.0, -np.inf], dtype=np.float32))
    assert info["invalid_actions"] >= 1
    assert np.isfinite(info["speed"])


def test_driving_into_a_wall_terminates_with_a_layout_collision() -> None:
    e = DrivingEnv({**SMALL, "vehicles": 0, "walkers": 0})
    e.reset(seed=3)
    for _ in range(300):
        _, _reward, terminated, truncated, info = e.step(np.array([1.0, 1.0, -1.0], np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert "collisions_layout" in info["infractions"]
    assert info["reward_terms"]["terminal"] == -1.0
    e.close()


def test_the_expert_cruises_at_the_speed_the_reward_asks_for() -> None:
    e = DrivingEnv({**SMALL, "vehicles": 0, "walkers": 0, "lights": "green", "target_speed": 5.0})
    e.reset(seed=1)
    speeds = []
    for _ in range(150):
        e.step(e.expert_action())
        speeds.append(e.world_state.ego.speed)
    assert 4.0 < max(speeds) < 5.5
    e.close()


def test_reward_terms_are_named_and_summed(env: DrivingEnv) -> None:
    env.reset(seed=4)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info["reward_terms"]) == {"speed", "lateral", "heading", "terminal"}
    assert reward == pytest.approx(sum(info["reward_terms"].values()))


def test_standing_on_a_clear_road_costs_and_a_short_blocked_time_ends_it() -> None:
    e = DrivingEnv(
        {
            **SMALL,
            "vehicles": 0,
            "walkers": 0,
            "lights": "green",
            "reward": "simple",
            "standstill_penalty": 0.5,
            "blocked_time": 3.0,
        }
    )
    e.reset(seed=5)
    brake = np.array([0.0, 0.0, 1.0], np.float32)
    costs = []
    for _ in range(100):
        _, reward, terminated, truncated, info = e.step(brake)
        costs.append(info["reward_terms"]["standstill"])
        if terminated or truncated:
            break
    e.close()
    assert terminated and not truncated
    assert info["status"] == "vehicle_blocked"
    assert info["reward_terms"]["terminal"] == -1.0
    assert 30 <= len(costs) <= 32  # 3 s at 10 decisions per second
    assert costs[:-1] == pytest.approx([-0.05] * (len(costs) - 1))
    assert reward == pytest.approx(sum(info["reward_terms"].values()))


def test_blocked_time_defaults_to_the_leaderboards(env: DrivingEnv) -> None:
    env.reset(seed=5)
    for _ in range(40):  # 4 s of standing: no end, no standstill term unless asked for
        _, _, terminated, _, info = env.step(np.array([0.0, 0.0, 1.0], np.float32))
    assert not terminated and "standstill" not in info["reward_terms"]


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ValueError, match="vehicels"):
        DrivingEnv({"vehicels": 3})
    with pytest.raises(ValueError, match="Sunny"):
        DrivingEnv({"weathers": ["Sunny"]})
    with pytest.raises(ValueError, match="lane_change_share must be in"):
        DrivingEnv({"lane_change_share": 1.5})
    with pytest.raises(ValueError, match="blocked_time must be > 0"):
        DrivingEnv({"blocked_time": 0})
    # Regression: a word where a number belongs failed inside a comparison ("'<' not
    # supported between instances of 'str' and 'float'") instead of naming the key.
    with pytest.raises(ValueError, match="target_speed must be a number, got 'fast'"):
        DrivingEnv({"target_speed": "fast"})
    with pytest.raises(ValueError, match="vehicles must be an integer, got 'many'"):
        DrivingEnv({"vehicles": "many"})


def test_vector_envs() -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    def make(rank: int):
        return lambda: DrivingEnv({**SMALL, "vehicles": 2, "walkers": 2})

    # Fork would copy an initialised EGL context into the children: spawn them fresh.
    vec = SubprocVecEnv([make(i) for i in range(2)], start_method="spawn")
    vec.seed(0)
    obs = vec.reset()
    assert obs["image"].shape == (2, 12, 96, 160)
    obs, rewards, _dones, infos = vec.step(np.zeros((2, 3), np.float32))
    assert rewards.shape == (2,) and len(infos) == 2
    vec.close()
    sync = gym.vector.SyncVectorEnv([make(0), make(1)])
    obs, _ = sync.reset(seed=0)
    assert obs["speed"].shape == (2, 1)
    sync.close()
