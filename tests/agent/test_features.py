"""agent/features.py: the feature history the policy sees (stacked or lagged frames) and the
memory of the vehicle gap."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features import FeatureHistory, GapMemory, stack_lags
from perception.collect import MAX_DISTANCE


def _history(lags: tuple[int, ...], n: int = 2) -> FeatureHistory:
    history = FeatureHistory(n, 1, lags)
    history.restart(np.zeros((n, 1), np.float32))
    for value in range(1, 6):
        history.push(np.full((n, 1), value, np.float32))
    return history


def test_lags_default_to_the_last_frames_and_sort_oldest_first() -> None:
    assert stack_lags(3) == (2, 1, 0)
    assert stack_lags(2, (0, 5, 1)) == (5, 1, 0)


def test_the_policy_sees_the_frames_its_lags_name() -> None:
    history = _history((3, 1, 0))
    assert history.size == 3
    np.testing.assert_array_equal(history.observe(), [[2, 4, 5], [2, 4, 5]])
    # a terminal observation after one more frame, and the history left as it was
    np.testing.assert_array_equal(history.observe_after(1, np.array([6], np.float32)), [3, 5, 6])
    np.testing.assert_array_equal(history.observe()[1], [2, 4, 5])


def test_a_stack_is_the_newest_frames() -> None:
    np.testing.assert_array_equal(_history(stack_lags(2)).observe()[0], [4, 5])


def test_a_new_episode_fills_only_its_own_history_with_its_first_frame() -> None:
    history = _history((4, 0))
    history.restart(np.array([9], np.float32), 0)
    np.testing.assert_array_equal(history.observe(), [[9, 9], [1, 5]])


def test_bad_lags_are_refused() -> None:
    with pytest.raises(ValueError, match="oldest first"):
        FeatureHistory(1, 1, (0, 3))


def _metres(memory: GapMemory) -> list[float]:
    return [round(float(v), 4) for v in memory.observe()[:, 0] * MAX_DISTANCE]


def test_gap_memory_keeps_a_standing_car_when_the_reading_jumps() -> None:
    # 5 m/s towards a car standing 10 m ahead, 0.1 s apart: read right down to 9 m,
    # then the car fills the frame and the reading jumps to 49 m.
    memory = GapMemory(1, decisions=10, dt=0.1)
    memory.restart(np.array([10.0]), np.array([5.0]))
    for reading, left in [(9.5, 9.5), (9.0, 9.0), (49.0, 8.5), (49.0, 8.0)]:
        memory.push(np.array([reading]), np.array([5.0]))
        assert _metres(memory) == [left]


def test_gap_memory_forgets_after_its_window() -> None:
    memory = GapMemory(1, decisions=2, dt=0.1)
    memory.restart(np.array([5.0]), np.array([0.0]))
    for _ in range(3):  # standing still: the 5 m reading drops out after 2 more decisions
        memory.push(np.array([30.0]), np.array([0.0]))
    assert _metres(memory) == [30.0]


def test_gap_memory_odometry_is_trapezoidal_and_clipped() -> None:
    memory = GapMemory(1, decisions=5, dt=0.5)
    memory.restart(np.array([2.0]), np.array([0.0]))
    memory.push(np.array([50.0]), np.array([4.0]))  # 0.5 * (0 + 4) * 0.5 = 1 m driven
    assert _metres(memory) == [1.0]
    memory.push(np.array([50.0]), np.array([4.0]))  # 2 m more: past the car, never below 0
    assert _metres(memory) == [0.0]


def test_gap_memory_terminal_view_and_restart_touch_one_episode() -> None:
    memory = GapMemory(2, decisions=3, dt=0.1)
    memory.restart(np.array([20.0, 40.0]), np.array([0.0, 0.0]))
    before = memory.observe().copy()
    after = memory.observe_after(1, 10.0, 0.0)
    np.testing.assert_array_equal(memory.observe(), before)  # nothing changed
    memory.push(np.array([20.0, 10.0]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(after, memory.observe()[1])
    memory.restart(np.array(7.0), np.array(0.0), 0)
    assert _metres(memory) == [7.0, 10.0]


def test_bad_gap_memory_is_refused() -> None:
    with pytest.raises(ValueError, match="dt > 0"):
        GapMemory(1, 3, 0.0)
