"""Kinematic bicycle model for the ego vehicle, driven by ``VehicleControl``.

The state is the rear-axle position, heading and signed speed. Each step first updates the speed
from the pedals (engine force falling off with speed, brake, aerodynamic drag and rolling
resistance), then moves along the exact circular arc that the steering angle gives
(``yaw_rate = v tan(delta) / L``), so the turning radius is ``L / tan(delta)`` at any step size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from envs.types import VehicleControl


@dataclass(frozen=True)
class VehicleParams:
    """Vehicle geometry and limits; defaults approximate CARLA's ``vehicle.lincoln.mkz_2020``.

    Attributes:
        length: Body length [m].
        width: Body width [m].
        wheelbase: Axle distance L [m].
        rear_overhang: Rear bumper to rear axle [m].
        max_steer_deg: Front-wheel angle at full steer [deg].
        max_accel: Acceleration at full throttle from standstill [m/s^2].
        max_speed: Top speed, where engine force reaches zero [m/s].
        max_reverse_speed: Top speed in reverse [m/s].
        max_brake: Deceleration at full brake [m/s^2].
        hand_brake_decel: Deceleration with the hand brake [m/s^2].
        drag: Aerodynamic drag coefficient, deceleration = drag * v^2 [1/m].
        rolling: Rolling-resistance deceleration [m/s^2].
        mass: Mass [kg], used for collision impulses.
    """

    length: float = 4.9
    width: float = 2.1
    wheelbase: float = 2.875
    rear_overhang: float = 1.0
    max_steer_deg: float = 35.0
    max_accel: float = 4.0
    max_speed: float = 30.0
    max_reverse_speed: float = 5.0
    max_brake: float = 8.0
    hand_brake_decel: float = 6.0
    drag: float = 2.2e-4
    rolling: float = 0.15
    mass: float = 1800.0

    @property
    def center_offset(self) -> float:
        """Distance from the rear axle forward to the body centre [m]."""
        return self.length / 2.0 - self.rear_overhang


@dataclass
class BicycleState:
    """Mutable ego state: rear-axle position [m], heading [rad], signed speed [m/s], steer [rad]."""

    x: float
    y: float
    yaw: float
    speed: float = 0.0
    steer_angle: float = 0.0
    accel: float = 0.0


def _drive_accel(params: VehicleParams, control: VehicleControl, speed: float) -> float:
    """Engine acceleration along the heading, falling to zero at the top speed [m/s^2]."""
    if control.reverse:
        return (
            -control.throttle * params.max_accel * max(0.0, 1.0 + speed / params.max_reverse_speed)
        )
    return control.throttle * params.max_accel * max(0.0, 1.0 - speed / params.max_speed)


def _brake_decel(params: VehicleParams, control: VehicleControl) -> float:
    return control.brake * params.max_brake + (
        params.hand_brake_decel if control.hand_brake else 0.0
    )


def next_speed(params: VehicleParams, control: VehicleControl, speed: float, dt: float) -> float:
    """Speed after ``dt`` [m/s]: resistances oppose motion and stop the car, never reverse it."""
    drive = _drive_accel(params, control, speed)
    if abs(speed) < 1e-6:
        net = max(0.0, abs(drive) - _brake_decel(params, control))
        return math.copysign(net * dt, drive) if net > 0.0 else 0.0
    resist = _brake_decel(params, control) + params.drag * speed * speed + params.rolling
    new_speed = speed + (drive - math.copysign(resist, speed)) * dt
    return 0.0 if new_speed * speed < 0.0 else new_speed


def step_bicycle(
    state: BicycleState, control: VehicleControl, params: VehicleParams, dt: float
) -> None:
    """Advance ``state`` by ``dt`` seconds in place (semi-implicit: new speed, then exact arc)."""
    new_speed = next_speed(params, control, state.speed, dt)
    state.accel = (new_speed - state.speed) / dt
    state.speed = new_speed
    delta = control.steer * math.radians(params.max_steer_deg)
    state.steer_angle = delta
    distance = new_speed * dt
    curvature = math.tan(delta) / params.wheelbase
    turn = distance * curvature
    if abs(turn) < 1e-9:
        state.x += distance * math.cos(state.yaw)
        state.y += distance * math.sin(state.yaw)
    else:
        radius = 1.0 / curvature
        state.x += radius * (math.sin(state.yaw + turn) - math.sin(state.yaw))
        state.y += radius * (math.cos(state.yaw) - math.cos(state.yaw + turn))
        state.yaw = (state.yaw + turn + math.pi) % (2.0 * math.pi) - math.pi
