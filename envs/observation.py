"""Observations: stacked camera frames plus measurements (speed, last control, route targets
and the arcs to them, high-level command)."""

from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from envs.backends.base import CameraFrame, WorldState
from envs.config import EnvConfig
from envs.routes import RoadOption, RoutePlan

COMMANDS = (
    RoadOption.LEFT,
    RoadOption.RIGHT,
    RoadOption.STRAIGHT,
    RoadOption.LANEFOLLOW,
    RoadOption.CHANGELANELEFT,
    RoadOption.CHANGELANERIGHT,
)
TARGET_RANGE = 100.0  # [m] route targets are clipped to this box around the ego
SPEED_RANGE = 60.0  # [m/s] bound of the speed measurement
ARC_CURVATURE_RANGE = 0.5  # [1/m] bound of the arcs' curvature (a 2 m radius)
ARC_MIN_DISTANCE = 1.0  # [m] targets nearer than this count as this far for the curvature


class ObservationBuilder:
    """Keeps the frame stack and builds the ``Dict`` observation.

    Keys: ``image`` uint8 (channels x stack, H, W) channel-first; ``speed`` (1,) [m/s];
    ``control`` (3,) last steer, throttle, brake; ``targets`` (2N,) the next N thinned route
    points in the ego frame, flattened as x0, y0, x1, y1... (x forward, y right) [m];
    ``arcs`` (2N,) the same targets as the arc a car would drive to each of them, flattened
    as bearing0, curvature0, bearing1, ... (the bearing [rad] and the curvature [1/m] of the
    circle through the ego and the target tangent to the ego's heading, pure pursuit's
    ``2 sin(bearing) / distance``; positive right); ``command`` (6,) one-hot of LEFT, RIGHT,
    STRAIGHT, LANEFOLLOW, CHANGELANELEFT, CHANGELANERIGHT.
    """

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        if config.image == "bev":
            from envs.sim.bev import BEV_CHANNELS

            self.channels, height, width = len(BEV_CHANNELS), config.bev_size, config.bev_size
        else:
            self.channels = 3 if config.image == "rgb" else 1
            height, width = config.camera_height, config.camera_width
        shape = (self.channels * config.frame_stack, height, width)
        n = config.num_targets
        self.space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, shape=shape, dtype=np.uint8),
                "speed": spaces.Box(-SPEED_RANGE, SPEED_RANGE, shape=(1,), dtype=np.float32),
                "control": spaces.Box(
                    np.array([-1, 0, 0], np.float32), np.ones(3, np.float32), dtype=np.float32
                ),
                "targets": spaces.Box(
                    -TARGET_RANGE, TARGET_RANGE, shape=(2 * n,), dtype=np.float32
                ),
                "arcs": spaces.Box(
                    np.tile(np.array([-math.pi, -ARC_CURVATURE_RANGE], np.float32), n),
                    np.tile(np.array([math.pi, ARC_CURVATURE_RANGE], np.float32), n),
                    dtype=np.float32,
                ),
                "command": spaces.Box(0.0, 1.0, shape=(len(COMMANDS),), dtype=np.float32),
            }
        )
        self._frames: deque[NDArray[np.uint8]] = deque(maxlen=config.frame_stack)
        self._thin_list = [0]
        self._plan: RoutePlan | None = None

    def reset(self, plan: RoutePlan) -> None:
        """New route: clear the frame stack."""
        self._plan = plan
        self._thin_list = plan.thinned().tolist()
        self._frames.clear()

    def image_of(self, frame: CameraFrame | NDArray[np.uint8]) -> NDArray[np.uint8]:
        """One frame as channel-first uint8 (a camera frame, or BEV masks (C, H, W) in {0, 1})."""
        if isinstance(frame, CameraFrame):
            if self.config.image == "labels":
                return frame.labels[None, :, :]
            return np.ascontiguousarray(frame.rgb.transpose(2, 0, 1))
        return (frame * np.uint8(255)).astype(np.uint8)

    def build(
        self, state: WorldState, image: NDArray[np.uint8], index: int
    ) -> dict[str, np.ndarray]:
        """The observation after a decision step; ``index`` is the ego's plan point."""
        if not self._frames:
            for _ in range(self.config.frame_stack - 1):
                self._frames.append(image)
        self._frames.append(image)
        control = state.ego.control
        upcoming = self._upcoming(index)
        local = self._local_targets(state, upcoming)
        return {
            "image": np.concatenate(self._frames, axis=0),
            "speed": np.array(
                [min(max(state.ego.speed, -SPEED_RANGE), SPEED_RANGE)], dtype=np.float32
            ),
            "control": np.array([control.steer, control.throttle, control.brake], dtype=np.float32),
            "targets": np.minimum(np.maximum(local, -TARGET_RANGE), TARGET_RANGE).reshape(-1),
            "arcs": arcs(local),
            "command": self._command(index, upcoming),
        }

    def _upcoming(self, index: int) -> list[int]:
        """Plan indices of the next ``num_targets`` thinned points (the last one repeated)."""
        thin = self._thin_list
        ahead = thin[bisect.bisect_right(thin, index) :] or thin[-1:]
        n = self.config.num_targets
        return ahead[:n] + ahead[-1:] * max(0, n - len(ahead))

    def _local_targets(self, state: WorldState, upcoming: list[int]) -> NDArray[np.float32]:
        """The ``upcoming`` plan points in the ego frame (N, 2) [m]."""
        assert self._plan is not None
        ego = state.ego.transform
        yaw = math.radians(ego.yaw)
        cos, sin = math.cos(yaw), math.sin(yaw)
        local = np.empty((len(upcoming), 2), dtype=np.float32)
        for row, (x, y) in enumerate(self._plan.points[upcoming, :2].tolist()):
            dx, dy = x - ego.x, y - ego.y
            local[row] = (dx * cos + dy * sin, -dx * sin + dy * cos)
        return local

    def command_of(self, index: int, upcoming: list[int] | None = None) -> int | None:
        """Position in ``COMMANDS`` of the command shown at plan point ``index`` (or None).

        Inside a turn or lane change: that command; on a lane: the next one coming up.
        """
        assert self._plan is not None
        command = int(self._plan.commands[index])
        if command == RoadOption.LANEFOLLOW:
            command = int(self._plan.commands[(upcoming or self._upcoming(index))[0]])
        return COMMANDS.index(RoadOption(command)) if command in COMMANDS else None

    def _command(self, index: int, upcoming: list[int]) -> NDArray[np.float32]:
        one_hot = np.zeros(len(COMMANDS), dtype=np.float32)
        position = self.command_of(index, upcoming)
        if position is not None:
            one_hot[position] = 1.0
        return one_hot


def arcs(local: NDArray[np.float32]) -> NDArray[np.float32]:
    """Bearing [rad] and pure-pursuit curvature [1/m] of ego-frame points (N, 2), flattened.

    The circle through the ego, tangent to its heading, through a point at (forward, right)
    has curvature ``2 right / distance**2`` (Coulter, "Implementation of the pure pursuit path
    tracking algorithm", CMU-RI-TR-92-01): the steering a route target asks for, and the same
    for every target on one circular bend, which a network reads far more easily than the
    coordinates. Points nearer than ``ARC_MIN_DISTANCE`` count as that far.
    """
    forward, right = local[:, 0], local[:, 1]
    squared = np.maximum(forward**2 + right**2, ARC_MIN_DISTANCE**2)
    curvature = np.minimum(
        np.maximum(2.0 * right / squared, -ARC_CURVATURE_RANGE), ARC_CURVATURE_RANGE
    )
    out = np.empty((len(local), 2), dtype=np.float32)
    out[:, 0], out[:, 1] = np.arctan2(right, forward), curvature
    return out.reshape(-1)
