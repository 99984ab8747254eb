"""Ego physics against closed-form answers."""

from __future__ import annotations

import math

import pytest

from envs.sim.physics import BicycleState, VehicleParams, step_bicycle
from envs.types import VehicleControl

FRICTIONLESS = VehicleParams(drag=0.0, rolling=0.0)
DT = 0.05


def drive(state: BicycleState, control: VehicleControl, params: VehicleParams, steps: int) -> None:
    for _ in range(steps):
        step_bicycle(state, control, params, DT)


def test_braking_distance_matches_v_squared_over_2b() -> None:
    v0 = 20.0
    state = BicycleState(0.0, 0.0, 0.0, speed=v0)
    drive(state, VehicleControl(brake=1.0), FRICTIONLESS, 200)
    expected = v0**2 / (2 * FRICTIONLESS.max_brake)
    assert state.speed == 0.0
    # Semi-implicit Euler stops within one step's travel of the exact answer.
    assert state.x == pytest.approx(expected, abs=v0 * DT)


def test_turning_radius_is_wheelbase_over_tan_steer() -> None:
    state = BicycleState(0.0, 0.0, 0.0, speed=5.0)
    params = FRICTIONLESS
    xs, ys = [], []
    for _ in range(400):
        step_bicycle(state, VehicleControl(steer=1.0), params, DT)
        xs.append(state.x)
        ys.append(state.y)
    radius = params.wheelbase / math.tan(math.radians(params.max_steer_deg))
    # Positive steer turns right: towards +y in CARLA's frame, so the centre is at (0, R).
    for x, y in zip(xs, ys, strict=True):
        assert math.hypot(x, y - radius) == pytest.approx(radius, abs=1e-6)


def test_speed_never_exceeds_top_speed() -> None:
    state = BicycleState(0.0, 0.0, 0.0)
    drive(state, VehicleControl(throttle=1.0), VehicleParams(), 2000)
    assert 0.0 < state.speed < VehicleParams().max_speed


def test_brakes_stop_but_never_reverse() -> None:
    state = BicycleState(0.0, 0.0, 0.0, speed=3.0)
    drive(state, VehicleControl(brake=1.0, hand_brake=True), VehicleParams(), 100)
    assert state.speed == 0.0


def test_reverse_gear_drives_backwards() -> None:
    state = BicycleState(0.0, 0.0, 0.0)
    drive(state, VehicleControl(throttle=1.0, reverse=True), VehicleParams(), 100)
    assert state.speed < 0.0 and state.x < 0.0
    assert state.speed >= -VehicleParams().max_reverse_speed


def test_bad_controls_are_sanitised() -> None:
    safe, changed = VehicleControl(throttle=float("nan"), steer=3.0, brake=-1.0).sanitized()
    assert changed
    assert (safe.throttle, safe.steer, safe.brake) == (0.0, 1.0, 0.0)
    same, changed = VehicleControl(throttle=0.5, steer=-0.2).sanitized()
    assert not changed and same == VehicleControl(throttle=0.5, steer=-0.2)
