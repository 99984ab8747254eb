"""Simulator-neutral value types shared by the embedded simulator and the CARLA adapter.

Everything here is in CARLA's world frame: x forward/east, y right/south (left-handed, as
``carla.Location``), z up, angles in degrees with yaw measured from +x towards +y, exactly as
``carla.Rotation``. Units are SI unless a field says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True)
class VehicleControl:
    """Driver input, field for field compatible with ``carla.VehicleControl``.

    Attributes:
        throttle: Accelerator pedal in [0, 1].
        steer: Steering wheel in [-1, 1]; positive turns right (towards +y), as in CARLA.
        brake: Brake pedal in [0, 1].
        hand_brake: Locks the rear wheels.
        reverse: Throttle drives backwards.
    """

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def sanitized(self) -> tuple[VehicleControl, bool]:
        """Return a copy with NaN/inf replaced by 0 and values clipped to range.

        Returns:
            The safe control and whether anything had to be changed.
        """
        if 0.0 <= self.throttle <= 1.0 and -1.0 <= self.steer <= 1.0 and 0.0 <= self.brake <= 1.0:
            return self, False  # NaN fails every comparison, so it never takes this path
        values = []
        for value, low in ((self.throttle, 0.0), (self.steer, -1.0), (self.brake, 0.0)):
            safe = float(value) if math.isfinite(value) else 0.0
            values.append(min(max(safe, low), 1.0))
        changed = values != [self.throttle, self.steer, self.brake]
        return (
            VehicleControl(
                values[0], values[1], values[2], bool(self.hand_brake), bool(self.reverse)
            ),
            changed,
        )


@dataclass(frozen=True)
class Transform:
    """A pose in CARLA's frame: location [m] and rotation [deg]."""

    x: float
    y: float
    z: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def distance(self, other: Transform) -> float:
        """Planar distance to another transform [m]."""
        return math.hypot(self.x - other.x, self.y - other.y)


class TrafficLightState(IntEnum):
    """Light states with the integer values of ``carla.TrafficLightState``."""

    RED = 0
    YELLOW = 1
    GREEN = 2
    OFF = 3
    UNKNOWN = 4


class ActorKind(IntEnum):
    """What a collision was with; decides the leaderboard penalty."""

    VEHICLE = 0
    WALKER = 1
    STATIC = 2


@dataclass(frozen=True)
class CollisionEvent:
    """One contact between the ego and something else, like CARLA's collision sensor.

    Attributes:
        frame: Simulation frame of the contact.
        other_kind: Vehicle, walker or static layout.
        other_id: Actor id (vehicles and walkers) or -1 for the static layout.
        other_type: CARLA-style type id, e.g. ``vehicle.npc``, ``walker.pedestrian``,
            ``static.building``, ``static.pole``.
        relative_speed: Closing speed at contact [m/s].
        impulse: Normal impulse magnitude estimate [N s] (ego mass times closing speed).
        x: Contact location x [m].
        y: Contact location y [m].
    """

    frame: int
    other_kind: ActorKind
    other_id: int
    other_type: str
    relative_speed: float
    impulse: float
    x: float
    y: float


@dataclass(frozen=True)
class LaneInvasionEvent:
    """The ego crossed a lane marking, like CARLA's lane-invasion sensor.

    Attributes:
        frame: Simulation frame.
        marking_type: Name of ``carla.LaneMarkingType`` (``Broken``, ``Solid``, ``SolidSolid``...).
        marking_color: Name of ``carla.LaneMarkingColor`` (``White``, ``Yellow``...).
    """

    frame: int
    marking_type: str
    marking_color: str
