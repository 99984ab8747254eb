"""Agent actions -> ``VehicleControl``: continuous for PPO/SAC, a discrete grid for DQN."""

from __future__ import annotations

import itertools

import numpy as np
from gymnasium import spaces

from envs.config import EnvConfig
from envs.types import VehicleControl


class ActionAdapter:
    """Builds the action space and turns actions into controls.

    Continuous: ``[steer, throttle, brake]`` in ``[-1, 1]^3`` (throttle and brake map linearly
    from [-1, 1] to [0, 1], the symmetric box SB3 recommends), or with ``continuous_accel``
    ``[steer, accel]`` in ``[-1, 1]^2`` where negative ``accel`` brakes.
    Discrete: the grid ``discrete_steer x discrete_pedals`` (pedal < 0 brakes). Out-of-range
    or non-finite actions are clipped / zeroed and counted in ``invalid_actions``.
    """

    def __init__(self, config: EnvConfig) -> None:
        self.kind = config.action
        self.invalid_actions = 0
        if self.kind == "discrete":
            self.grid = np.array(
                list(itertools.product(config.discrete_steer, config.discrete_pedals))
            )
            self.space: spaces.Space = spaces.Discrete(len(self.grid))
        elif self.kind == "continuous_accel":
            self.space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        else:
            self.space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)

    def to_control(self, action: object) -> VehicleControl:
        """The control for one action (never raises on bad numbers)."""
        if self.kind == "discrete":
            index = int(np.asarray(action).reshape(-1)[0])
            if not 0 <= index < len(self.grid):
                self.invalid_actions += 1
                index = min(max(index, 0), len(self.grid) - 1)
            steer, pedal = self.grid[index]
            return VehicleControl(throttle=max(pedal, 0.0), steer=steer, brake=max(-pedal, 0.0))
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        box = self.space
        assert isinstance(box, spaces.Box)
        if values.shape != box.shape:
            raise ValueError(f"action must have shape {box.shape}, got {values.shape}")
        clipped = values.tolist()
        # Plain comparisons first (NaN fails them): numpy's clipping costs more than the rest
        # of this call, and a policy's actions are nearly always in range.
        if not all(-1.0 <= v <= 1.0 for v in clipped):
            self.invalid_actions += 1
            safe = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
            clipped = np.clip(safe, -1.0, 1.0).tolist()
        if self.kind == "continuous_accel":
            steer, accel = clipped
            return VehicleControl(throttle=max(accel, 0.0), steer=steer, brake=max(-accel, 0.0))
        steer, throttle, brake = clipped
        return VehicleControl(
            throttle=float(throttle + 1.0) / 2.0, steer=float(steer), brake=float(brake + 1.0) / 2.0
        )

    def from_control(self, control: VehicleControl) -> np.ndarray | int:
        """The action that best reproduces ``control`` (to drive the env with the autopilot)."""
        pedal = control.throttle - control.brake
        if self.kind == "discrete":
            cost = (self.grid[:, 0] - control.steer) ** 2 + (self.grid[:, 1] - pedal) ** 2
            return int(np.argmin(cost))
        if self.kind == "continuous_accel":
            return np.array([control.steer, pedal], dtype=np.float32)
        throttle, brake = 2.0 * control.throttle - 1.0, 2.0 * control.brake - 1.0
        return np.array([control.steer, throttle, brake], dtype=np.float32)
