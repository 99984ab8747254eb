"""Behaviour-cloning demonstrations: rebalancing standing still."""

from __future__ import annotations

import numpy as np

from agent.warmstart import _standing_balance


def test_waits_are_thinned_and_starts_repeated() -> None:
    """One env: drives, waits 40 steps at a light, drives off, drives."""
    speed = np.concatenate([np.full(10, 8.0), np.zeros(40), [0.0, 0.3, 1.0], np.full(10, 6.0)])
    speed = speed[:, None]  # (rounds, envs)
    done = np.zeros_like(speed, dtype=bool)
    keep = _standing_balance(speed, done, 0.25, np.random.default_rng(0))
    flat = speed.reshape(-1)
    starts = (50, 51)  # standing, and faster one step later: the expert drives off
    waits = [i for i in np.unique(keep) if flat[i] < 0.5 and i not in starts]
    assert 0 < len(waits) < 20  # about a quarter of the 40 waiting samples
    copies = int(np.isin(keep, starts).sum())
    assert abs(copies - len(waits)) <= len(starts)  # repeated until they balance the waits
    moving = np.flatnonzero(flat >= 0.5)
    assert set(moving) <= set(keep.tolist())  # every moving sample is kept, once
    assert np.all(np.diff(keep) >= 0)


def test_a_start_needs_the_same_episode() -> None:
    """A standing sample whose next step belongs to a new episode is not a start."""
    speed = np.array([[0.0], [5.0]])
    done = np.array([[True], [False]])
    keep = _standing_balance(speed, done, 0.0, np.random.default_rng(0))
    assert keep.tolist() == [1]
