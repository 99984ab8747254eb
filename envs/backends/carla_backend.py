"""``SimulatorBackend`` on a CARLA server (client and server 0.9.16), synchronous and seeded.

The only module of the project that talks to a CARLA server; ``carla`` is imported lazily, so
the package installs and imports without a server. The backend runs the world in synchronous
mode at a fixed step, spawns the ego with its sensors (``carla_sensors``), NPC vehicles on the
Traffic Manager and pedestrians (``carla_traffic``), and turns the server's objects into the
boundary's frozen values (``carla_convert``).

A server that dies or stops answering never hangs the caller: every wait is bounded (the client
timeout, sensor waits). A failed ``tick`` raises ``SimulatorCrashed`` at once and drops the
connection; the next ``reset`` reconnects with exponential backoff (restarting the server by
its process handle when one was given), reloads the town and re-applies the settings.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import numpy as np

from envs.backends.base import (
    BackendError,
    CameraFrame,
    CameraSpec,
    EgoState,
    EpisodeSpec,
    SimulatorCrashed,
    TrafficLightInfo,
    WorldState,
)
from envs.backends.carla_connection import CarlaConnection
from envs.backends.carla_convert import (
    forward_component,
    light_state,
    pack_actors,
    transform_from_carla,
    transform_to_carla,
    weather_to_carla,
)
from envs.backends.carla_sensors import SensorRig
from envs.backends.carla_server import ServerProcess
from envs.backends.carla_traffic import (
    Traffic,
    destroy,
    read_lights,
    set_lights,
    spawn_points,
    spawn_vehicles,
    spawn_walkers,
    start_walkers,
    stop_walkers,
)
from envs.sim.roadmap import RoadMap
from envs.sim.weather import Weather
from envs.types import VehicleControl

logger = logging.getLogger(__name__)

EGO_SPAWN_LIFT = 0.5
"""The ego spawns this far above the given pose, as the leaderboard does [m]."""

NPC_GAP = 2.5
"""Distance the Traffic Manager keeps to the vehicle ahead [m] (CARLA's example value)."""


@functools.lru_cache(maxsize=4)
def _road_map(name: str, xodr_text: str) -> RoadMap:
    return RoadMap(name, xodr_text)


class CarlaBackend:
    """A CARLA server seen through the ``SimulatorBackend`` protocol.

    Args:
        host: Server address.
        port: Server RPC port (the server also uses ``port + 1``).
        tm_port: Traffic Manager port; must differ for each server on a machine.
        timeout: Bound on every network wait and on sensor waits [s].
        dt: Fixed simulation step [s] (synchronous mode; 0.05 s is the leaderboard's 20 Hz).
        ego_blueprint: Blueprint id of the ego vehicle.
        server: A server process this backend may start and restart (``CarlaServer``); when it
            is not running at first connection the backend starts it and stops it on ``close``.
        client_factory: ``(host, port) -> client``; defaults to ``carla.Client``.
        retries: Connection attempts before giving up (each waits longer than the previous).
        backoff: First wait between attempts [s]; doubles with every attempt.
        hybrid_physics: Let the Traffic Manager skip physics for NPCs far from the ego.
        carla_module: The ``carla`` module to use (tests pass a stand-in); imported lazily.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 2000,
        tm_port: int = 8000,
        timeout: float = 10.0,
        dt: float = 0.05,
        ego_blueprint: str = "vehicle.lincoln.mkz_2020",
        server: ServerProcess | None = None,
        client_factory: Callable[[str, int], Any] | None = None,
        retries: int = 3,
        backoff: float = 2.0,
        hybrid_physics: bool = False,
        carla_module: Any = None,
    ) -> None:
        if not 0.0 < dt <= 0.1:
            raise ValueError(f"dt must be in (0, 0.1] s for stable CARLA physics, got {dt}")
        if timeout <= 0 or retries < 1 or backoff < 0:
            raise ValueError(
                f"need timeout > 0, retries >= 1, backoff >= 0; got {timeout}, {retries}, {backoff}"
            )
        if tm_port in (port, port + 1):
            raise ValueError(f"tm_port {tm_port} clashes with the server's ports {port}/{port + 1}")
        if server is not None and server.port != port:
            raise ValueError(f"server runs on port {server.port} but the backend uses {port}")
        self._conn = CarlaConnection(
            host, port, tm_port, timeout, dt, server, client_factory, retries, backoff, carla_module
        )
        self._ego_blueprint = ego_blueprint
        self._hybrid_physics = hybrid_physics
        self._cameras: dict[str, CameraSpec] = {}
        self._weather = Weather.preset("ClearNoon")
        self._road_map: RoadMap | None = None
        self._closed = False
        self._generation = -1  # the connection generation the per-town caches belong to
        self._town_caches()

    def _forget_episode(self) -> None:
        self._ego: Any = None
        self._ego_size = (0.0, 0.0)
        self._rig: SensorRig | None = None
        self._traffic = Traffic()
        self._start_frame = 0

    def _town_caches(self) -> None:
        """Drop per-town caches when the server has a new world since they were built."""
        if self._generation != self._conn.generation:
            self._generation = self._conn.generation
            self._spawn_points: list[Any] | None = None
            self._lights: tuple[TrafficLightInfo, ...] | None = None
            self._light_handles: list[Any] = []
            self._forget_episode()  # a new world has none of the old actors
            if (
                self._road_map is not None
                and self._conn.connected
                and self._road_map.name != self._conn.loaded_name()
            ):
                self._road_map = None

    # ------------------------------------------------------------------------------ protocol
    @property
    def road_map(self) -> RoadMap:
        """The current town, built from the server's OpenDRIVE (cached per town name)."""
        self._check_open()
        if self._road_map is None:
            self._conn.ensure()
            try:
                xodr = self._conn.current_map().to_opendrive()
                self._road_map = _road_map(self._conn.loaded_name(), xodr)
            except BackendError:
                raise
            except RuntimeError as error:
                raise self._crash("reading the map", error) from error
        return self._road_map

    @property
    def dt(self) -> float:
        """Fixed simulation step [s]."""
        return self._conn.dt

    @property
    def server_version(self) -> str:
        """The connected server's version (``""`` before the first connection)."""
        return self._conn.server_version

    @property
    def timeout(self) -> float:
        """Bound on every wait for the server [s]."""
        return self._conn.timeout

    def load_town(self, town: str) -> None:
        """Load a town unless it is the one the server has now.

        Args:
            town: A CARLA map (``Town01`` or ``/Game/Carla/Maps/Town01``), a shipped project
                town the server does not have (``Grid01``) or a ``.xodr`` path; the last two
                are loaded with ``generate_opendrive_world``.
        """
        self._check_open()
        self._conn.ensure()
        try:
            if self._conn.town != town and self._ego is not None:
                self._destroy_episode()  # stop the sensor streams before the world goes
            if self._conn.load(town, force=False):
                self._road_map = None
        except BackendError:
            raise
        except RuntimeError as error:
            raise self._crash(f"loading town {town}", error) from error

    def set_cameras(self, cameras: Mapping[str, CameraSpec]) -> None:
        """Declare the ego's cameras; they are spawned at the next ``reset``."""
        self._cameras = dict(cameras)

    def reset(self, spec: EpisodeSpec) -> WorldState:
        """Start an episode; reconnects and rebuilds first if the server had failed.

        Raises:
            BackendError: if the ego cannot spawn at ``spec.ego`` or the blueprint is unknown.
            SimulatorCrashed: if the server cannot be reached after ``retries`` attempts.
        """
        self._check_open()
        last: Exception | None = None
        for _ in range(2):  # a failure during the reset itself gets one rebuild
            self._conn.ensure()
            try:
                return self._reset(spec)
            except SimulatorCrashed as error:
                last = error
            except BackendError:
                raise
            except RuntimeError as error:
                last = error
            self._lose(f"reset failed: {last}")
        raise SimulatorCrashed(f"CARLA at {self._where} failed during reset: {last}")

    def tick(self, control: VehicleControl, render: bool = False) -> WorldState:
        """Apply ``control``, advance one step and read the world.

        Raises:
            SimulatorCrashed: if the server fails or does not answer within ``timeout``; the
                episode is lost and the next ``reset`` reconnects.
        """
        self._check_open()
        if self._ego is None:
            raise BackendError("tick() without an episode: call reset(spec) first")
        safe, _ = control.sanitized()
        carla = self._conn.carla
        try:
            self._ego.apply_control(
                carla.VehicleControl(
                    throttle=safe.throttle,
                    steer=safe.steer,
                    brake=safe.brake,
                    hand_brake=safe.hand_brake,
                    reverse=safe.reverse,
                )
            )
            frame = int(self._conn.world.tick(self.timeout))
            return self._state(frame, safe, render)
        except SimulatorCrashed as error:
            self._lose(str(error))
            raise
        except BackendError:
            raise
        except RuntimeError as error:
            raise self._crash("tick", error) from error

    def set_weather(self, weather: Weather) -> None:
        """Change the weather now (or at the next reset when not connected)."""
        self._weather = weather
        if not self._conn.connected:
            return
        try:
            self._conn.world.set_weather(weather_to_carla(weather, self._conn.carla))
        except RuntimeError as error:
            raise self._crash("setting the weather", error) from error

    def close(self) -> None:
        """Destroy the episode's actors and restore the server's settings; idempotent.

        Never raises for a dead server (it logs instead). Stops the server only if this
        backend started it.
        """
        if self._closed:
            return
        self._closed = True
        if self._conn.connected:
            try:
                self._destroy_episode()
                self._conn.restore()
            except RuntimeError as error:
                logger.warning("CARLA did not answer while closing: %s", error)
        self._conn.drop()
        self._forget_episode()
        self._conn.stop_owned_server()

    def __enter__(self) -> CarlaBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------ failures
    @property
    def _where(self) -> str:
        return f"{self._conn.host}:{self._conn.port}"

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the CARLA backend is closed; create a new one")

    def _crash(self, what: str, error: Exception) -> SimulatorCrashed:
        """Drop the connection and describe the failure."""
        reason = f"CARLA at {self._where} failed while {what}: {error}"
        self._lose(reason)
        return SimulatorCrashed(reason)

    def _lose(self, reason: str) -> None:
        self._conn.lose(reason)
        self._forget_episode()

    # ------------------------------------------------------------------------------ episode
    def _reset(self, spec: EpisodeSpec) -> WorldState:
        conn = self._conn
        carla, world, client = conn.carla, conn.world, conn.client
        self._town_caches()
        self._destroy_episode()
        if conn.town is None:
            conn.town = conn.loaded_name()
        world.set_weather(weather_to_carla(spec.weather, carla))
        self._weather = spec.weather
        conn.tm.set_random_device_seed(spec.seed)
        conn.tm.set_hybrid_physics_mode(self._hybrid_physics)
        conn.tm.set_global_distance_to_leading_vehicle(NPC_GAP)
        world.set_pedestrians_seed(spec.seed)
        rng = np.random.default_rng(spec.seed)
        self._spawn_ego(spec)
        self._rig = SensorRig(world, self._ego, self._cameras, carla)
        if self._spawn_points is None:
            self._spawn_points = spawn_points(conn.current_map(), carla)
        self._traffic.vehicles = spawn_vehicles(
            client,
            world,
            carla,
            spec.vehicles,
            self._spawn_points,
            self._ego.get_transform().location,
            rng,
            conn.tm_port,
        )
        walkers, controllers, speeds = spawn_walkers(client, world, carla, spec.walkers, rng)
        self._traffic.walkers, self._traffic.controllers = walkers, controllers
        if controllers:
            world.tick(self.timeout)  # controllers must exist on the server before they start
            start_walkers(world, controllers, speeds)
        self._light_layout()
        set_lights(world, self._light_handles, spec.lights, carla)
        frame = int(world.tick(self.timeout))
        self._start_frame = frame
        self._rig.collisions(frame)  # contacts while everything settled are not the agent's
        self._rig.lane_invasions(frame)
        return self._state(frame, VehicleControl(), render=bool(self._cameras))

    def _spawn_ego(self, spec: EpisodeSpec) -> None:
        carla, world = self._conn.carla, self._conn.world
        try:
            blueprint = world.get_blueprint_library().find(self._ego_blueprint)
        except IndexError:
            raise BackendError(
                f"unknown ego blueprint {self._ego_blueprint!r}; see "
                "world.get_blueprint_library().filter('vehicle.*')"
            ) from None
        if blueprint.has_attribute("role_name"):
            blueprint.set_attribute("role_name", "hero")
        pose = transform_to_carla(spec.ego, carla, lift=EGO_SPAWN_LIFT)
        ego = world.try_spawn_actor(blueprint, pose)
        if ego is None:
            e = spec.ego
            raise BackendError(
                f"cannot spawn the ego at x={e.x:.1f}, y={e.y:.1f}, z={e.z:.1f}, yaw={e.yaw:.0f}: "
                "the place is occupied or off the map; choose another start pose"
            )
        self._ego = ego
        extent = ego.bounding_box.extent
        self._ego_size = (2.0 * float(extent.x), 2.0 * float(extent.y))

    def _destroy_episode(self) -> None:
        """Destroy everything the last episode spawned: sensors, controllers, walkers, cars."""
        ids: list[int] = []
        if self._rig is not None:
            self._rig.stop()
            ids += self._rig.ids
        stop_walkers(self._conn.world, self._traffic.controllers)
        ids += self._traffic.destroy_order()
        if self._ego is not None:
            ids.append(int(self._ego.id))
        destroy(self._conn.client, self._conn.carla, ids)
        self._forget_episode()

    def _light_layout(self) -> tuple[TrafficLightInfo, ...]:
        """Every traffic light's static parts (position, stop lines), read once per town."""
        if self._lights is None:
            self._light_handles, self._lights = read_lights(self._conn.world)
        return self._lights

    # -------------------------------------------------------------------------------- state
    def _state(self, frame: int, control: VehicleControl, render: bool) -> WorldState:
        assert self._ego is not None and self._rig is not None  # callers checked
        cameras: Mapping[str, CameraFrame] = {}
        if render and self._cameras:
            cameras = self._rig.frames(frame, self._start_frame, self.timeout)
        else:
            self._rig.discard_images()
        pose = self._ego.get_transform()
        ego = EgoState(
            transform=transform_from_carla(pose),
            speed=forward_component(self._ego.get_velocity(), pose),
            acceleration=forward_component(self._ego.get_acceleration(), pose),
            control=control,
            length=self._ego_size[0],
            width=self._ego_size[1],
        )
        actors = self._conn.world.get_actors()
        ego_id = int(self._ego.id)
        step = frame - self._start_frame
        return WorldState(
            frame=step,
            time=step * self.dt,
            ego=ego,
            vehicles=pack_actors([a for a in actors.filter("vehicle.*") if a.id != ego_id]),
            walkers=pack_actors(list(actors.filter("walker.pedestrian.*"))),
            lights=self._light_layout(),
            light_states=np.array(
                [int(light_state(h.get_state())) for h in self._light_handles], np.int64
            ),
            collisions=self._rig.collisions(self._start_frame),
            lane_invasions=self._rig.lane_invasions(self._start_frame),
            cameras=cameras,
            weather=self._weather,
        )
