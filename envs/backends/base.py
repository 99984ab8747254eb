"""The simulator boundary: a ``SimulatorBackend`` protocol and the values that cross it.

The Gymnasium environment, the criteria, the autopilot and the evaluation harness see a
simulator only through this module. Two backends implement it: the embedded simulator
(``envs.backends.embedded``) and a CARLA server (``envs.backends.carla_backend``). Everything is
in CARLA's world frame (x forward/east, y right/south, z up, yaw in degrees from +x towards +y)
and SI units, and both backends expose the town as the same ``RoadMap`` (built from the server's
OpenDRIVE for CARLA), so routes, criteria and plots never care which simulator ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from envs.sim.camera import CameraFrame, CameraSpec
from envs.sim.roadmap import RoadMap
from envs.sim.weather import Weather
from envs.types import (
    CollisionEvent,
    LaneInvasionEvent,
    TrafficLightState,
    Transform,
    VehicleControl,
)

__all__ = [
    "Actors",
    "BackendError",
    "CameraFrame",
    "CameraSpec",
    "EgoState",
    "EpisodeSpec",
    "LightMode",
    "SimulatorBackend",
    "SimulatorCrashed",
    "StopLine",
    "TrafficLightInfo",
    "WorldState",
]

LightMode = Literal["cycle", "green", "red-at-start"]
"""``cycle``: normal operation; ``green``: every light held green; ``red-at-start``: every light
starts red (then cycles) so that the first junction is approached on red."""


class BackendError(RuntimeError):
    """A simulator could not do what was asked (bad spawn, unknown blueprint...)."""


class SimulatorCrashed(BackendError):
    """The simulator died or stopped answering; the episode cannot go on.

    The environment truncates the episode with ``info["truncation_reason"] = "simulator"``;
    evaluation records the route as ``Failed - Simulation crashed``, never as a driving failure.
    """


@dataclass(frozen=True)
class EgoState:
    """The ego vehicle after a tick.

    Attributes:
        transform: Body-centre pose.
        speed: Signed speed along the heading [m/s] (negative in reverse).
        acceleration: Longitudinal acceleration [m/s^2].
        control: The control that was applied (after sanitising).
        length, width: Body size [m].
    """

    transform: Transform
    speed: float
    acceleration: float
    control: VehicleControl
    length: float
    width: float


@dataclass(frozen=True)
class Actors:
    """Other road users of one kind (NPC vehicles, or pedestrians), as arrays.

    Arrays rather than one object per actor: a town holds a hundred of them and a tick must
    cost microseconds.

    Attributes:
        ids: (N,) actor ids, stable within an episode.
        xyz: (N, 3) body-centre positions [m].
        yaw: (N,) headings [deg].
        speed: (N,) speeds [m/s].
        extent: (N, 2) footprint length and width [m].
    """

    ids: NDArray[np.int64]
    xyz: NDArray[np.float64]
    yaw: NDArray[np.float64]
    speed: NDArray[np.float64]
    extent: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: NDArray[np.int64]) -> Actors:
        """The actors at positions ``index``."""
        return Actors(
            self.ids[index], self.xyz[index], self.yaw[index], self.speed[index], self.extent[index]
        )

    @classmethod
    def empty(cls) -> Actors:
        """No actors."""
        return cls(
            np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0), np.zeros(0), np.zeros((0, 2))
        )


@dataclass(frozen=True)
class StopLine:
    """Where a light's stop line crosses one incoming lane.

    Attributes:
        start, end: End points of the line across the lane [m].
        road_id, lane_id: OpenDRIVE ids of the lane it governs.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    road_id: int
    lane_id: int


@dataclass(frozen=True)
class TrafficLightInfo:
    """Where a traffic light is; its state is in ``WorldState.light_states``."""

    id: int
    position: tuple[float, float, float]
    stop_lines: tuple[StopLine, ...]


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything a backend needs to start an episode.

    Attributes:
        seed: Seed of the episode (traffic, pedestrians, light phases).
        ego: Ego spawn pose.
        vehicles: NPC vehicle count.
        walkers: Pedestrian count.
        weather: Weather at the start.
        lights: How the traffic lights behave (``LightMode``).
    """

    seed: int
    ego: Transform
    vehicles: int = 50
    walkers: int = 50
    weather: Weather = field(default_factory=lambda: Weather.preset("ClearNoon"))
    lights: LightMode = "cycle"


@dataclass(frozen=True)
class WorldState:
    """A snapshot after one physics tick.

    Attributes:
        frame: Simulation frame number since the episode start.
        time: Simulated time since the episode start [s].
        ego: The ego vehicle.
        vehicles: NPC vehicles.
        walkers: Pedestrians still in play.
        lights: Every traffic light of the town (the same tuple every tick).
        light_states: (L,) ``TrafficLightState`` values, aligned with ``lights``.
        collisions: Collisions the ego's sensor reported during this tick.
        lane_invasions: Markings the ego crossed during this tick.
        cameras: Images by camera name (empty unless the tick asked for them).
        weather: The weather in force.
    """

    frame: int
    time: float
    ego: EgoState
    vehicles: Actors
    walkers: Actors
    lights: tuple[TrafficLightInfo, ...]
    light_states: NDArray[np.int64]
    collisions: tuple[CollisionEvent, ...]
    lane_invasions: tuple[LaneInvasionEvent, ...]
    cameras: Mapping[str, CameraFrame]
    weather: Weather

    def light_state(self, light_index: int) -> TrafficLightState:
        """State of ``lights[light_index]``."""
        return TrafficLightState(int(self.light_states[light_index]))


@runtime_checkable
class SimulatorBackend(Protocol):
    """What the environment needs from a simulator.

    A backend is created once, given its cameras, and then ``reset``/``tick`` many times.
    ``load_town`` reloads only when the town changes. ``close`` is idempotent.
    """

    @property
    def road_map(self) -> RoadMap:
        """The current town."""
        ...

    @property
    def dt(self) -> float:
        """Fixed physics step [s]."""
        ...

    def load_town(self, town: str) -> None:
        """Switch to a town (a shipped name, a ``.xodr`` path, or a CARLA map name)."""
        ...

    def set_cameras(self, cameras: Mapping[str, CameraSpec]) -> None:
        """Declare the ego's cameras (before ``reset``)."""
        ...

    def reset(self, spec: EpisodeSpec) -> WorldState:
        """Start an episode: respawn the ego and traffic, set weather and lights."""
        ...

    def tick(self, control: VehicleControl, render: bool = False) -> WorldState:
        """Apply ``control`` and advance one physics step; render the cameras if asked."""
        ...

    def set_weather(self, weather: Weather) -> None:
        """Change the weather now."""
        ...

    def close(self) -> None:
        """Release every resource (actors, sockets, GL buffers)."""
        ...
