"""The ego's CARLA sensors: cameras (RGB, semantic, depth), collision and lane invasion.

CARLA delivers sensor data on its own threads through ``Sensor.listen`` callbacks. Each sensor
here feeds a thread-safe queue; the backend drains the event queues after every tick and, when it
wants images, waits (bounded) for the camera frames whose number matches the world frame.
Camera images that are not wanted are dropped unconverted, so a tick without rendering costs no
image decoding and the queues never grow.

The RGB, semantic and depth cameras of one ``CameraSpec`` share one mount, and a ``CameraFrame``
is built only from images of the same world frame: an image of a later frame (another client
ticking the server) raises rather than pair a colour image with another instant's labels.
A spec with ``depth=False`` gets no depth camera (a third less rendering on the server).
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Mapping
from typing import Any

from envs.backends.base import CameraFrame, CameraSpec, SimulatorCrashed
from envs.backends.carla_convert import (
    RawCollision,
    camera_mount,
    collision_event,
    image_to_depth,
    image_to_labels,
    image_to_rgb,
    lane_invasion_events,
    raw_collision,
)
from envs.types import CollisionEvent, LaneInvasionEvent

logger = logging.getLogger(__name__)

CAMERA_KINDS = (
    ("rgb", "sensor.camera.rgb"),
    ("labels", "sensor.camera.semantic_segmentation"),
    ("depth", "sensor.camera.depth"),
)
"""Which CARLA camera produces each image of a ``CameraFrame``."""


def camera_kinds(spec: CameraSpec) -> tuple[tuple[str, str], ...]:
    """The ``CAMERA_KINDS`` a camera spec needs (no depth camera when ``spec.depth`` is off)."""
    return tuple((kind, bp) for kind, bp in CAMERA_KINDS if spec.depth or kind != "depth")


def _drain(q: queue.Queue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            return items


class SensorRig:
    """Sensors attached to one ego vehicle for one episode.

    Args:
        world: The ``carla.World``.
        ego: The ego ``carla.Vehicle``.
        cameras: Camera specs by name; each gets an RGB, a semantic and (``spec.depth``) a
            depth camera on one mount.
        carla: The ``carla`` module.
    """

    def __init__(self, world: Any, ego: Any, cameras: Mapping[str, CameraSpec], carla: Any) -> None:
        self.sensors: list[Any] = []
        self._specs = dict(cameras)
        self._images: dict[tuple[str, str], queue.Queue[Any]] = {}
        self._collisions: queue.Queue[RawCollision] = queue.Queue()
        self._invasions: queue.Queue[tuple[int, list[LaneInvasionEvent]]] = queue.Queue()
        library = world.get_blueprint_library()
        origin = carla.Transform()
        collision = self._spawn(world, library.find("sensor.other.collision"), origin, ego)
        collision.listen(lambda event: self._collisions.put(raw_collision(event)))
        invasion = self._spawn(world, library.find("sensor.other.lane_invasion"), origin, ego)
        invasion.listen(
            lambda event: self._invasions.put(
                (int(event.frame), lane_invasion_events(event.crossed_lane_markings, 0))
            )
        )
        for name, spec in self._specs.items():
            mount = camera_mount(spec, ego.bounding_box, carla)
            for kind, blueprint_id in camera_kinds(spec):
                blueprint = library.find(blueprint_id)
                blueprint.set_attribute("image_size_x", str(spec.width))
                blueprint.set_attribute("image_size_y", str(spec.height))
                blueprint.set_attribute("fov", str(spec.fov))
                sensor = self._spawn(world, blueprint, mount, ego)
                images: queue.Queue[Any] = queue.Queue()
                sensor.listen(images.put)
                self._images[(name, kind)] = images

    def _spawn(self, world: Any, blueprint: Any, mount: Any, ego: Any) -> Any:
        sensor = world.spawn_actor(blueprint, mount, attach_to=ego)
        self.sensors.append(sensor)
        return sensor

    @property
    def ids(self) -> list[int]:
        """Actor ids of every sensor (for a batch destroy)."""
        return [int(s.id) for s in self.sensors]

    def stop(self) -> None:
        """Stop every sensor's stream (before destroying them)."""
        for sensor in self.sensors:
            sensor.stop()

    def collisions(self, start_frame: int) -> tuple[CollisionEvent, ...]:
        """Collisions reported since the last call, frames counted from ``start_frame``."""
        return tuple(
            collision_event(raw, raw.frame - start_frame) for raw in _drain(self._collisions)
        )

    def lane_invasions(self, start_frame: int) -> tuple[LaneInvasionEvent, ...]:
        """Markings crossed since the last call, frames counted from ``start_frame``."""
        events: list[LaneInvasionEvent] = []
        for frame, crossed in _drain(self._invasions):
            events.extend(
                LaneInvasionEvent(frame - start_frame, e.marking_type, e.marking_color)
                for e in crossed
            )
        return tuple(events)

    def discard_images(self) -> None:
        """Drop the images that arrived (the tick did not ask for them)."""
        for images in self._images.values():
            _drain(images)

    def frames(self, frame: int, start_frame: int, timeout: float) -> dict[str, CameraFrame]:
        """The images of world frame ``frame`` from every camera, waiting at most ``timeout``.

        Args:
            frame: World frame number returned by ``World.tick``.
            start_frame: World frame of the episode start (``CameraFrame.frame`` is relative).
            timeout: Longest total wait [s].

        Raises:
            SimulatorCrashed: if a camera sends no image of that frame in time, or one of a
                later frame (its images would no longer line up with the other cameras').
        """
        deadline = time.monotonic() + timeout
        out: dict[str, CameraFrame] = {}
        for name, spec in self._specs.items():
            raw = {kind: self._wait(name, kind, frame, deadline) for kind, _ in camera_kinds(spec)}
            w, h = spec.width, spec.height
            out[name] = CameraFrame(
                rgb=image_to_rgb(raw["rgb"].raw_data, w, h),
                labels=image_to_labels(raw["labels"].raw_data, w, h),
                depth=image_to_depth(raw["depth"].raw_data, w, h) if "depth" in raw else None,
                frame=frame - start_frame,
            )
        return out

    def _wait(self, name: str, kind: str, frame: int, deadline: float) -> Any:
        images = self._images[(name, kind)]
        while True:
            remaining = deadline - time.monotonic()
            try:
                image = images.get(timeout=remaining) if remaining > 0 else images.get_nowait()
            except queue.Empty:
                raise SimulatorCrashed(
                    f"camera {name!r} ({kind}) sent no image for frame {frame} in time"
                ) from None
            if int(image.frame) == frame:
                return image
            if int(image.frame) > frame:
                raise SimulatorCrashed(
                    f"camera {name!r} ({kind}) sent frame {image.frame} while frame {frame} was "
                    "expected, so its images no longer line up with the other cameras'; is "
                    "another client ticking this server?"
                )
            # an older frame is a leftover of a tick that did not render: skip it
