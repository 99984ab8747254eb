"""The throughput benchmarks run and report their figures (no timing is asserted)."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from benchmarks.throughput import main, random_steps


class _Counting(gym.Env[np.ndarray, np.ndarray]):
    """Ends an episode every 3 steps and records the actions it was given."""

    observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,))
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,))

    def __init__(self) -> None:
        self.actions: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.actions.append(action)
        self.t += 1
        return np.zeros(1, np.float32), 0.0, self.t == 3, False, {}


def test_random_steps_counts_resets_and_draws_seeded_actions() -> None:
    a, b = _Counting(), _Counting()
    seconds, resets = random_steps(a, 10, seed=4)
    random_steps(b, 10, seed=4)
    assert seconds > 0 and resets == 3 and len(a.actions) == 10
    np.testing.assert_array_equal(np.stack(a.actions), np.stack(b.actions))
    assert len({tuple(x) for x in a.actions}) == 10  # a fresh random action every step


@pytest.mark.render
def test_env_and_render_benchmarks_print_their_figures(capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--steps", "20", "--vehicles", "3", "--walkers", "3", "--json"]
    assert main(["env", *small]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["steps"] == 20 and env["steps_per_s"] > 0 and env["camera"] == "160x96"
    assert main(["render", *small]) == 0
    render = json.loads(capsys.readouterr().out)
    assert render["frames"] == 20 and render["frames_per_s"] > render["combined_per_s"] > 0
