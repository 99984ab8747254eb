"""Behaviour-cloning demonstrations: rebalancing standing still."""

from __future__ import annotations

import numpy as np
import pytest

from agent.warmstart import _standing_balance


def _drive() -> tuple[np.ndarray, np.ndarray]:
    """Drives, waits 40 steps at a light, drives off, drives: speeds and expert actions."""
    speed = np.concatenate([np.full(10, 8.0), np.zeros(40), [0.0, 0.3, 1.0], np.full(10, 6.0)])
    actions = np.zeros((len(speed), 2), dtype=np.float32)
    actions[:10, 1] = 0.2
    actions[10:50, 1] = -0.5  # waiting: the expert holds the brake
    actions[50:, 1] = 1.0  # green: the expert drives off
    return speed, actions


def test_waits_are_thinned_and_starts_repeated() -> None:
    speed, actions = _drive()
    keep = _standing_balance(speed, actions, 0.25, np.random.default_rng(0))
    starts = (50, 51)  # standing, and the expert's label drives off
    waits = [i for i in np.unique(keep) if speed[i] < 0.5 and i not in starts]
    assert 0 < len(waits) < 20  # about a quarter of the 40 waiting samples
    copies = int(np.isin(keep, starts).sum())
    assert abs(copies - len(waits)) <= len(starts)  # repeated until they balance the waits
    moving = np.flatnonzero(speed >= 0.5)
    assert set(moving) <= set(keep.tolist())  # every moving sample is kept, once
    assert np.all(np.diff(keep) >= 0)


def test_a_learner_that_sits_at_a_green_light_gives_starts() -> None:
    """DAgger: the car did not move (the learner drove), but the expert's label says go."""
    speed = np.zeros(30)
    actions = np.zeros((30, 2), dtype=np.float32)
    actions[:10, 1] = -1.0  # red: wait
    actions[10:, 1] = 1.0  # green: the learner sat on, the expert says go
    keep = _standing_balance(speed, actions, 0.0, np.random.default_rng(0))
    assert set(keep.tolist()) == set(range(10, 30))  # every start kept, no wait


def test_turns_are_repeated_to_the_asked_share() -> None:
    from agent.warmstart import _rebalance

    actions = np.zeros((100, 2), dtype=np.float32)
    actions[:5, 0] = -0.6  # five samples of a left turn among 95 straight ones
    keep = _rebalance(actions, 0.3)
    turning = np.abs(actions[keep, 0]) > 0.15
    assert 0.25 < turning.mean() < 0.35
    assert set(keep.tolist()) == set(range(100))  # nothing dropped
    assert np.array_equal(_rebalance(actions, 0.0), np.arange(100))
    actions[:, 0] = 0.0
    assert np.array_equal(_rebalance(actions, 0.3), np.arange(100))  # no turns: as is


@pytest.mark.parametrize("columns", [2, 3])
def test_hard_braking_is_repeated_to_the_asked_share(columns: int) -> None:
    from agent.warmstart import _rebalance

    actions = np.zeros((200, columns), dtype=np.float32)
    if columns == 2:  # steer, signed acceleration
        actions[:8, 1] = -0.8
        actions[8:12, 1] = -0.1  # easing off is not braking
    else:  # steer, throttle, brake
        actions[:8, 2] = 0.8
        actions[8:12, 2] = 0.1
    actions[4:20, 0] = 0.5  # 4 of the braking samples also turn
    braking = np.zeros(200, dtype=bool)
    braking[:8] = True
    assert np.array_equal(_rebalance(actions, 0.0, 0.0), np.arange(200))
    keep = _rebalance(actions, 0.0, 0.2)
    assert 0.15 < braking[keep].mean() < 0.25
    assert set(keep.tolist()) == set(range(200)) and np.all(np.diff(keep) >= 0)
    # Both: a turning and braking sample takes the larger of the two counts.
    both = np.bincount(_rebalance(actions, 0.3, 0.2), minlength=200)
    turn_only = np.bincount(_rebalance(actions, 0.3, 0.0), minlength=200)
    brake_only = np.bincount(_rebalance(actions, 0.0, 0.2), minlength=200)
    np.testing.assert_array_equal(both, np.maximum(turn_only, brake_only))
