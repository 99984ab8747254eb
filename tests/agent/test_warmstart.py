"""Behaviour-cloning demonstrations: rebalancing standing still."""

from __future__ import annotations

import numpy as np

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
    from agent.warmstart import _turn_balance

    actions = np.zeros((100, 2), dtype=np.float32)
    actions[:5, 0] = -0.6  # five samples of a left turn among 95 straight ones
    keep = _turn_balance(actions, 0.3)
    turning = np.abs(actions[keep, 0]) > 0.15
    assert 0.25 < turning.mean() < 0.35
    assert set(keep.tolist()) == set(range(100))  # nothing dropped
    assert np.array_equal(_turn_balance(actions, 0.0), np.arange(100))
    actions[:, 0] = 0.0
    assert np.array_equal(_turn_balance(actions, 0.3), np.arange(100))  # no turns: as is
