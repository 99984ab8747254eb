"""scripts/collision_report.py: where the other road user was at a collision, and its kind."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from envs.backends.base import Actors
from envs.types import ActorKind, CollisionEvent, Transform
from scripts.collision_report import Contact, classify, contact


def _state(ego_yaw: float, other_xy: tuple[float, float], other_yaw: float) -> Any:
    vehicles = Actors(
        np.array([7]),
        np.array([[other_xy[0], other_xy[1], 0.0]]),
        np.array([other_yaw]),
        np.array([2.0]),
        np.array([[4.5, 2.0]]),
    )
    ego = SimpleNamespace(transform=Transform(10.0, 20.0, 0.0, ego_yaw), speed=6.0)
    return SimpleNamespace(ego=ego, vehicles=vehicles, walkers=Actors.empty())


def _event(other_id: int = 7) -> CollisionEvent:
    return CollisionEvent(3, ActorKind.VEHICLE, other_id, "vehicle.npc", 4.0, 6000.0, 0.0, 0.0)


def test_contact_is_in_the_ego_frame_with_carla_bearings() -> None:
    # ego heading +y (yaw 90 deg); a car 4 m further along +y is dead ahead
    where = contact(_state(90.0, (10.0, 24.0), 90.0), _event())
    assert where is not None
    assert where.bearing == pytest.approx(0.0, abs=1e-9)
    assert where.distance == pytest.approx(4.0)
    assert where.relative_yaw == pytest.approx(0.0)
    # CARLA's y is to the right of a car heading +x: a car at +y is at bearing +90
    right = contact(_state(0.0, (10.0, 23.0), 180.0), _event())
    assert right is not None
    assert right.bearing == pytest.approx(90.0)
    assert right.relative_yaw == pytest.approx(-180.0)  # wrapped into [-180, 180)


def test_an_actor_gone_from_the_state_has_no_contact() -> None:
    assert contact(_state(0.0, (14.0, 20.0), 0.0), _event(other_id=8)) is None


@pytest.mark.parametrize(
    ("where", "ego_speed", "kind"),
    [
        (Contact(5.0, 5.0, 0.0, 2.0), 6.0, "rear_end"),  # faster into a car ahead
        (Contact(5.0, 5.0, 0.0, 8.0), 6.0, "side"),  # a car ahead pulling away did not
        (Contact(175.0, 5.0, 0.0, 8.0), 2.0, "hit_from_behind"),
        (Contact(-170.0, 5.0, 0.0, 1.0), 6.0, "side"),  # a slower car behind cannot have caught up
        (Contact(-80.0, 3.0, 90.0, 6.0), 5.0, "side"),  # crossing traffic from the left
    ],
)
def test_classify(where: Contact, ego_speed: float, kind: str) -> None:
    assert classify(where, ego_speed) == kind
