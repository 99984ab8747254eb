"""An episode's CARLA traffic: NPC vehicles, pedestrians and the traffic lights' modes.

Everything goes through ``Client.apply_batch_sync`` (one round trip per batch), as CARLA's own
``generate_traffic.py`` does. Choices (spawn points, blueprints) come from the episode's
``numpy.random.Generator``; the Traffic Manager and the pedestrian navigation are seeded by the
backend, so an episode repeats for a given seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.backends.base import LightMode, TrafficLightInfo
from envs.backends.carla_convert import stop_lines

logger = logging.getLogger(__name__)

EGO_CLEARANCE = 15.0
"""NPC vehicles never spawn closer than this to the ego [m]."""

SPAWN_LIFT = 0.3
"""Height above the road at which vehicles are spawned, so they do not touch the ground [m]."""

FALLBACK_SPACING = 10.0
"""Spacing of the lane waypoints used as spawn points when a map recommends none [m]."""


@dataclass
class Traffic:
    """Actor ids of an episode's traffic, in the order they must be destroyed."""

    controllers: list[int] = field(default_factory=list)
    walkers: list[int] = field(default_factory=list)
    vehicles: list[int] = field(default_factory=list)

    def destroy_order(self) -> list[int]:
        """Controllers before their walkers, walkers before vehicles."""
        return [*self.controllers, *self.walkers, *self.vehicles]


def spawn_points(carla_map: Any, carla: Any) -> list[Any]:
    """The map's recommended spawn points, or lane waypoints outside junctions if it has none.

    Towns loaded from bare OpenDRIVE carry no recommended spawn points; their driving lanes
    sampled every ``FALLBACK_SPACING`` metres serve instead.
    """
    points = list(carla_map.get_spawn_points())
    if points:
        return points
    for wp in carla_map.generate_waypoints(FALLBACK_SPACING):
        if wp.is_junction:
            continue
        t = wp.transform
        points.append(
            carla.Transform(
                carla.Location(x=t.location.x, y=t.location.y, z=t.location.z + SPAWN_LIFT),
                t.rotation,
            )
        )
    return points


def _responses_ok(responses: Sequence[Any], what: str) -> list[int]:
    ids = []
    for response in responses:
        if response.error:
            logger.debug("%s spawn failed: %s", what, response.error)
        else:
            ids.append(int(response.actor_id))
    return ids


def _car_blueprints(library: Any) -> list[Any]:
    blueprints = []
    for bp in library.filter("vehicle.*"):
        has_wheels = bp.has_attribute("number_of_wheels")
        if has_wheels and bp.get_attribute("number_of_wheels").as_int() != 4:
            continue  # bikes and motorbikes: the Traffic Manager drives them poorly
        blueprints.append(bp)
    return sorted(blueprints, key=lambda bp: str(bp.id))


def spawn_vehicles(
    client: Any,
    world: Any,
    carla: Any,
    count: int,
    points: Sequence[Any],
    ego_location: Any,
    rng: np.random.Generator,
    tm_port: int,
) -> list[int]:
    """Spawn up to ``count`` NPC vehicles on autopilot at random free spawn points.

    Args:
        client: The ``carla.Client`` (for the batch).
        world: The ``carla.World``.
        carla: The ``carla`` module.
        count: Vehicles wanted; fewer spawn when points run out or are blocked.
        points: Candidate spawn transforms.
        ego_location: The ego's ``carla.Location``; points within ``EGO_CLEARANCE`` are skipped.
        rng: The episode's generator.
        tm_port: Traffic Manager port the autopilots register with.

    Returns:
        Ids of the vehicles that spawned.
    """
    if count <= 0:
        return []
    free = [
        p
        for p in points
        if math.hypot(p.location.x - ego_location.x, p.location.y - ego_location.y) > EGO_CLEARANCE
    ]
    if len(free) < count:
        logger.warning("only %d free spawn points for %d vehicles", len(free), count)
    blueprints = _car_blueprints(world.get_blueprint_library())
    cmd = carla.command
    batch = []
    for index in rng.permutation(len(free))[:count]:
        bp = blueprints[int(rng.integers(len(blueprints)))]
        if bp.has_attribute("role_name"):
            bp.set_attribute("role_name", "autopilot")
        spawn = cmd.SpawnActor(bp, free[int(index)])
        batch.append(spawn.then(cmd.SetAutopilot(cmd.FutureActor, True, tm_port)))
    return _responses_ok(client.apply_batch_sync(batch, False), "vehicle")


def spawn_walkers(
    client: Any, world: Any, carla: Any, count: int, rng: np.random.Generator
) -> tuple[list[int], list[int], list[float]]:
    """Spawn pedestrians on the navigation mesh, each with an AI controller.

    ``world.set_pedestrians_seed`` must have been called first: it seeds the random locations.

    Returns:
        Ids of every walker that spawned, of the controllers that spawned, and each
        controller's walking speed [m/s].
    """
    if count <= 0:
        return [], [], []
    library = world.get_blueprint_library()
    blueprints = sorted(library.filter("walker.pedestrian.*"), key=lambda bp: str(bp.id))
    cmd = carla.command
    batch, speeds = [], []
    for _ in range(count):
        location = world.get_random_location_from_navigation()
        if location is None:
            continue
        bp = blueprints[int(rng.integers(len(blueprints)))]
        if bp.has_attribute("is_invincible"):
            bp.set_attribute("is_invincible", "false")
        speed = 1.4
        if bp.has_attribute("speed"):
            speed = float(bp.get_attribute("speed").recommended_values[1])  # walking, not running
        batch.append(cmd.SpawnActor(bp, carla.Transform(location, carla.Rotation())))
        speeds.append(speed)
    walkers, kept = [], []
    for response, speed in zip(client.apply_batch_sync(batch, False), speeds, strict=True):
        if not response.error:
            walkers.append(int(response.actor_id))
            kept.append(speed)
    controller_bp = library.find("controller.ai.walker")
    batch = [cmd.SpawnActor(controller_bp, carla.Transform(), walker) for walker in walkers]
    controllers, controller_speeds = [], []
    responses = client.apply_batch_sync(batch, False)
    for response, speed in zip(responses, kept, strict=True):
        if not response.error:  # a walker without controller just stands; it is still destroyed
            controllers.append(int(response.actor_id))
            controller_speeds.append(speed)
    return walkers, controllers, controller_speeds


def start_walkers(world: Any, controller_ids: Sequence[int], speeds: Sequence[float]) -> None:
    """Start each controller towards a random destination (after one world tick)."""
    if not controller_ids:
        return
    controllers = {int(a.id): a for a in world.get_actors(list(controller_ids))}
    for actor_id, speed in zip(controller_ids, speeds, strict=True):
        controller = controllers.get(int(actor_id))
        if controller is None:
            continue
        controller.start()
        destination = world.get_random_location_from_navigation()
        if destination is not None:
            controller.go_to_location(destination)
        controller.set_max_speed(speed)


def stop_walkers(world: Any, controller_ids: Sequence[int]) -> None:
    """Stop the AI controllers (CARLA wants them stopped before they are destroyed)."""
    if controller_ids:
        for controller in world.get_actors(list(controller_ids)):
            controller.stop()


def destroy(client: Any, carla: Any, ids: Sequence[int]) -> None:
    """Destroy actors by id in one batch, in the given order."""
    if ids:
        client.apply_batch_sync([carla.command.DestroyActor(int(i)) for i in ids], False)


def read_lights(world: Any) -> tuple[list[Any], tuple[TrafficLightInfo, ...]]:
    """Every traffic light: its handle and its static parts (position, stop lines)."""
    handles, infos = [], []
    for light in world.get_actors().filter("traffic.traffic_light"):
        loc = light.get_transform().location
        position = (float(loc.x), float(loc.y), float(loc.z))
        lines = stop_lines(light.get_stop_waypoints())
        handles.append(light)
        infos.append(TrafficLightInfo(int(light.id), position, lines))
    return handles, tuple(infos)


def set_lights(world: Any, lights: Sequence[Any], mode: LightMode, carla: Any) -> None:
    """Put the lights in an episode's mode.

    ``green``: every light green and frozen; ``red-at-start``: every group restarts its cycle
    and every light is set red (they then cycle on); ``cycle``: unfrozen, cycles restarted.
    """
    if mode == "green":
        for light in lights:
            light.set_state(carla.TrafficLightState.Green)
        world.freeze_all_traffic_lights(True)
        return
    world.freeze_all_traffic_lights(False)
    world.reset_all_traffic_lights()
    if mode == "red-at-start":
        for light in lights:
            light.set_state(carla.TrafficLightState.Red)
