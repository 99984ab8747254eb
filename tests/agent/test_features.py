"""agent/features.py: the feature history the policy sees (stacked or lagged frames)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features import FeatureHistory, stack_lags


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
