"""Conversions between CARLA's server-side objects and the backend boundary's value types.

Pure functions with no connection to a server: images (BGRA bytes to RGB, label ids and depth in
metres), weather, poses, sensor events and traffic-light stop lines. The ``carla`` module is
passed in where a CARLA value has to be built, so that this module never imports it at load time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from envs.backends.base import Actors, StopLine
from envs.sim.camera import CameraSpec
from envs.sim.weather import Weather
from envs.types import (
    ActorKind,
    CollisionEvent,
    LaneInvasionEvent,
    TrafficLightState,
    Transform,
)

DEPTH_FAR = 1000.0
"""Range of CARLA's depth camera [m]: the 24-bit code ``2**24 - 1`` means 1000 m."""

_DEPTH_SCALE = np.float32(DEPTH_FAR / (256**3 - 1))


def _bgra(raw: Any, width: int, height: int) -> NDArray[np.uint8]:
    """View a ``carla.Image.raw_data`` buffer as an (H, W, 4) BGRA array (no copy)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size != width * height * 4:
        raise ValueError(
            f"image buffer holds {data.size} bytes, expected {width}x{height}x4 = "
            f"{width * height * 4} (BGRA)"
        )
    return data.reshape(height, width, 4)


def image_to_rgb(raw: Any, width: int, height: int) -> NDArray[np.uint8]:
    """Convert an RGB camera's BGRA buffer to an (H, W, 3) uint8 RGB array.

    Args:
        raw: ``carla.Image.raw_data`` (bytes-like, 4 bytes per pixel in B, G, R, A order).
        width, height: Image size [px].
    """
    return np.ascontiguousarray(_bgra(raw, width, height)[:, :, 2::-1])


def image_to_labels(raw: Any, width: int, height: int) -> NDArray[np.uint8]:
    """Extract the ``carla.CityObjectLabel`` ids of a semantic camera: they are in the red byte.

    Args:
        raw: ``carla.Image.raw_data`` of ``sensor.camera.semantic_segmentation`` (raw, not
            converted with ``CityScapesPalette``).
        width, height: Image size [px].
    """
    return np.ascontiguousarray(_bgra(raw, width, height)[:, :, 2])


def image_to_depth(raw: Any, width: int, height: int) -> NDArray[np.float32]:
    """Decode a depth camera's buffer to planar depth [m].

    CARLA packs depth in 24 bits: ``(R + G * 256 + B * 256**2) / (256**3 - 1) * 1000`` metres.

    Args:
        raw: ``carla.Image.raw_data`` of ``sensor.camera.depth``.
        width, height: Image size [px].
    """
    bgra = _bgra(raw, width, height).astype(np.int32)
    code = bgra[:, :, 2] + bgra[:, :, 1] * 256 + bgra[:, :, 0] * 65536
    return code.astype(np.float32) * _DEPTH_SCALE


def weather_to_carla(weather: Weather, carla: Any) -> Any:
    """Build a ``carla.WeatherParameters`` with every field of ``weather`` (same names)."""
    values = {f.name: float(getattr(weather, f.name)) for f in dataclasses.fields(weather)}
    return carla.WeatherParameters(**values)


def weather_from_carla(params: Any) -> Weather:
    """Read a ``carla.WeatherParameters`` back into a ``Weather``."""
    return Weather(**{f.name: float(getattr(params, f.name)) for f in dataclasses.fields(Weather)})


def transform_from_carla(transform: Any) -> Transform:
    """Convert a ``carla.Transform`` (location [m], rotation [deg]) to ``envs.types.Transform``."""
    loc, rot = transform.location, transform.rotation
    return Transform(
        float(loc.x), float(loc.y), float(loc.z), float(rot.yaw), float(rot.pitch), float(rot.roll)
    )


def transform_to_carla(transform: Transform, carla: Any, lift: float = 0.0) -> Any:
    """Convert to a ``carla.Transform``, raised by ``lift`` [m] (spawns start above the road)."""
    return carla.Transform(
        carla.Location(x=transform.x, y=transform.y, z=transform.z + lift),
        carla.Rotation(pitch=transform.pitch, yaw=transform.yaw, roll=transform.roll),
    )


def camera_mount(spec: CameraSpec, bounding_box: Any, carla: Any) -> Any:
    """The attachment transform of a camera, relative to the vehicle actor's origin.

    ``CameraSpec`` places the camera relative to the vehicle's body centre at ground level.
    A CARLA vehicle's origin is not exactly there: its ``bounding_box.location`` is the body
    centre relative to the origin, and the bottom of the box (the wheels' contact plane) lies
    ``extent.z`` below that centre. The mount is therefore shifted by the box's centre in x, y
    and by its bottom in z, so a spec means the same place on every vehicle model.

    Args:
        spec: Camera mount and optics.
        bounding_box: The vehicle's ``carla.BoundingBox``.
        carla: The ``carla`` module.
    """
    centre, extent = bounding_box.location, bounding_box.extent
    ground = float(centre.z) - float(extent.z)
    return carla.Transform(
        carla.Location(x=spec.x + float(centre.x), y=spec.y + float(centre.y), z=spec.z + ground),
        carla.Rotation(pitch=spec.pitch, yaw=spec.yaw, roll=0.0),
    )


def actor_kind(type_id: str) -> ActorKind:
    """Collision category of a CARLA type id: ``vehicle.*``, ``walker.*`` or static layout."""
    if type_id.startswith("vehicle."):
        return ActorKind.VEHICLE
    if type_id.startswith("walker."):
        return ActorKind.WALKER
    return ActorKind.STATIC


@dataclasses.dataclass(frozen=True)
class RawCollision:
    """What the collision callback keeps of a ``carla.CollisionEvent`` (read on its thread).

    Attributes:
        frame: World frame of the contact.
        other_id, other_type: The other actor (``-1`` / ``static`` when CARLA gives none).
        impulse: Normal impulse vector (x, y, z) [N s].
        relative_velocity: Ego velocity minus the other actor's (x, y) [m/s].
        x, y: Where the ego's collision sensor was [m].
    """

    frame: int
    other_id: int
    other_type: str
    impulse: tuple[float, float, float]
    relative_velocity: tuple[float, float]
    x: float
    y: float


def raw_collision(event: Any) -> RawCollision:
    """Copy the fields of a ``carla.CollisionEvent`` that the boundary needs.

    The relative velocity uses both actors' current velocities, i.e. at contact.
    """
    other = event.other_actor
    ego_v = event.actor.get_velocity()
    if other is not None and hasattr(other, "get_velocity"):
        other_v = other.get_velocity()
        ov = (float(other_v.x), float(other_v.y))
    else:
        ov = (0.0, 0.0)
    impulse = event.normal_impulse
    loc = event.transform.location
    return RawCollision(
        frame=int(event.frame),
        other_id=int(other.id) if other is not None else -1,
        other_type=str(other.type_id) if other is not None else "static",
        impulse=(float(impulse.x), float(impulse.y), float(impulse.z)),
        relative_velocity=(float(ego_v.x) - ov[0], float(ego_v.y) - ov[1]),
        x=float(loc.x),
        y=float(loc.y),
    )


def collision_event(raw: RawCollision, frame: int) -> CollisionEvent:
    """Map a collision to the boundary's ``CollisionEvent``.

    Args:
        raw: The copied CARLA event.
        frame: Its frame counted from the episode start.
    """
    kind = actor_kind(raw.other_type)
    return CollisionEvent(
        frame=frame,
        other_kind=kind,
        other_id=raw.other_id if kind != ActorKind.STATIC else -1,
        other_type=raw.other_type,
        relative_speed=math.hypot(*raw.relative_velocity),
        impulse=math.sqrt(sum(c * c for c in raw.impulse)),
        x=raw.x,
        y=raw.y,
    )


def lane_invasion_events(markings: Iterable[Any], frame: int) -> list[LaneInvasionEvent]:
    """One ``LaneInvasionEvent`` per ``carla.LaneMarking`` crossed.

    Args:
        markings: ``carla.LaneInvasionEvent.crossed_lane_markings``.
        frame: Frame counted from the episode start.
    """
    return [LaneInvasionEvent(frame, str(m.type.name), str(m.color.name)) for m in markings]


def light_state(state: Any) -> TrafficLightState:
    """Map a ``carla.TrafficLightState`` to ``TrafficLightState`` by name (``Red`` -> RED)."""
    return TrafficLightState[str(state.name).upper()]


def stop_lines(waypoints: Iterable[Any]) -> tuple[StopLine, ...]:
    """Stop lines from a light's ``get_stop_waypoints()``: one across each governed lane.

    Each line runs through the stop waypoint, perpendicular to the lane, from the lane's left
    edge to its right edge (``location -/+ right_vector * lane_width / 2``).
    """
    lines = []
    for wp in waypoints:
        loc = wp.transform.location
        right = wp.transform.get_right_vector()
        half = float(wp.lane_width) / 2.0
        lines.append(
            StopLine(
                start=(float(loc.x - right.x * half), float(loc.y - right.y * half)),
                end=(float(loc.x + right.x * half), float(loc.y + right.y * half)),
                road_id=int(wp.road_id),
                lane_id=int(wp.lane_id),
            )
        )
    return tuple(lines)


def forward_component(vector: Any, transform: Any) -> float:
    """Component of a ``carla.Vector3D`` along a transform's forward axis (signed)."""
    yaw, pitch = math.radians(transform.rotation.yaw), math.radians(transform.rotation.pitch)
    fx, fy, fz = math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)
    return float(vector.x * fx + vector.y * fy + vector.z * fz)


def town_name(map_name: str) -> str:
    """Short town name of a CARLA map name: ``/Game/Carla/Maps/Town01`` -> ``Town01``."""
    return map_name.rstrip("/").rsplit("/", 1)[-1]


def pack_actors(actors: list[Any]) -> Actors:
    """Pack CARLA actors into the boundary's arrays (planar speed, footprint from the box)."""
    if not actors:
        return Actors.empty()
    count = len(actors)
    ids = np.empty(count, np.int64)
    xyz = np.empty((count, 3))
    yaw, speed = np.empty(count), np.empty(count)
    extent = np.empty((count, 2))
    for i, actor in enumerate(actors):
        pose, velocity, box = actor.get_transform(), actor.get_velocity(), actor.bounding_box
        ids[i] = int(actor.id)
        xyz[i] = (pose.location.x, pose.location.y, pose.location.z)
        yaw[i] = pose.rotation.yaw
        speed[i] = np.hypot(velocity.x, velocity.y)
        extent[i] = (2.0 * box.extent.x, 2.0 * box.extent.y)
    return Actors(ids, xyz, yaw, speed, extent)
