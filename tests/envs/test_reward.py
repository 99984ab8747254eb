"""Reward terms on hand-built hazards: the standstill cost pays only for needless stops."""

from __future__ import annotations

import math

import pytest

from envs.hazards import Hazards
from envs.reward import STANDING_SPEED, standstill_cost
from envs.types import TrafficLightState

CLEAR = Hazards()


@pytest.mark.parametrize(
    ("hazards", "cost"),
    [
        (CLEAR, -0.05),
        (Hazards(vehicle_gap=40.0), -0.05),  # far enough to drive up to it
        (Hazards(vehicle_gap=8.0), 0.0),  # queued behind a car
        (Hazards(vehicle_gap=9.0), -0.05),  # queued too far behind it
        (Hazards(walker_gap=4.0), 0.0),
        (Hazards(light_distance=6.0, light_state=TrafficLightState.RED), 0.0),
        (Hazards(light_distance=8.0, light_state=TrafficLightState.RED), 0.0),
        (Hazards(light_distance=6.0, light_state=TrafficLightState.GREEN), -0.05),
    ],
)
def test_standing_costs_only_when_the_way_is_clear(hazards: Hazards, cost: float) -> None:
    assert standstill_cost(0.0, hazards, 8.0, penalty=0.5, dt=0.1) == pytest.approx(cost)


def test_moving_or_no_penalty_costs_nothing() -> None:
    assert standstill_cost(STANDING_SPEED + 0.1, CLEAR, 8.0, penalty=0.5, dt=0.1) == 0.0
    assert standstill_cost(0.0, CLEAR, 8.0, penalty=0.0, dt=0.1) == 0.0
    assert math.isfinite(standstill_cost(-0.5, CLEAR, 8.0, penalty=0.5, dt=0.1))
