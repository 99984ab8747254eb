"""An in-memory stand-in for the server side of CARLA, for testing ``CarlaBackend`` offline.

Only server-side objects are faked (client, world, actors, sensors, Traffic Manager, batch
commands). Value types come from the real ``carla`` client package, which works without a
server: ``carla.Transform``/``Location``/``Rotation``/``Vector3D``/``BoundingBox``,
``VehicleControl``, ``WeatherParameters``, ``WorldSettings``, the enums, and ``carla.Map`` built
from one of the project's OpenDRIVE towns (so waypoints and stop lines are real).

``FakeSimulator`` is the server: every client made for it sees the same world. Its switches:
``crash()`` makes every call raise CARLA's time-out ``RuntimeError`` until ``restart()``;
``hang`` makes ``World.tick`` raise the time-out at once (no real sleep); ``drop_images`` stops
the cameras; ``blocked`` lists locations where spawning collides.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import carla
import numpy as np

from envs.backends.carla_convert import DEPTH_FAR, town_name
from envs.towns import town_path

TIMEOUT_MESSAGE = (
    "time-out of {ms}ms while waiting for the simulator, make sure the simulator is ready and "
    "connected to localhost:2000"
)
FAKE_DEPTH = 12.5
"""Depth every fake depth camera pixel shows [m]."""
EGO_TOP_SPEED = 10.0
"""Fake ego speed at full throttle [m/s]."""


@functools.lru_cache(maxsize=8)
def real_map(town: str) -> carla.Map:
    """A real client-side ``carla.Map`` of a shipped town, named as a server would name it."""
    return carla.Map(f"Carla/Maps/{town}", town_path(town).read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------- commands
class SpawnActor:
    """Stand-in for ``carla.command.SpawnActor`` (the real one needs a real blueprint)."""

    def __init__(self, blueprint: Any, transform: carla.Transform, parent: Any = None) -> None:
        self.blueprint, self.transform, self.parent = blueprint, transform, parent
        self.chained: list[Any] = []

    def then(self, command: Any) -> SpawnActor:
        self.chained.append(command)
        return self


class SetAutopilot:
    def __init__(self, actor: Any, enabled: bool, tm_port: int = 8000) -> None:
        self.actor, self.enabled, self.tm_port = actor, enabled, tm_port


class DestroyActor:
    def __init__(self, actor: Any) -> None:
        self.actor = actor


command = types.SimpleNamespace(
    SpawnActor=SpawnActor, SetAutopilot=SetAutopilot, DestroyActor=DestroyActor, FutureActor=0
)


class FakeCarlaModule:
    """The real ``carla`` module, with ``command`` replaced by the stand-ins above."""

    command = command

    def __getattr__(self, name: str) -> Any:
        return getattr(carla, name)


@dataclass
class Response:
    actor_id: int = 0
    error: str = ""

    def has_error(self) -> bool:
        return bool(self.error)


# ---------------------------------------------------------------------------------- blueprints
class Attribute:
    def __init__(self, value: str, recommended: Iterable[str] = ()) -> None:
        self.value, self.recommended_values = value, list(recommended)

    def as_int(self) -> int:
        return int(self.value)

    def as_str(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.value


class Blueprint:
    def __init__(self, bp_id: str, **attributes: Attribute) -> None:
        self.id, self.tags = bp_id, bp_id.split(".")
        self.attributes = {"role_name": Attribute(""), **attributes}

    def has_attribute(self, name: str) -> bool:
        return name in self.attributes

    def get_attribute(self, name: str) -> Attribute:
        return self.attributes[name]

    def set_attribute(self, name: str, value: str) -> None:
        if name not in self.attributes:
            raise IndexError(f"blueprint {self.id} has no attribute {name}")
        self.attributes[name] = Attribute(str(value), self.attributes[name].recommended_values)

    def copy(self) -> Blueprint:
        bp = Blueprint(self.id)
        bp.attributes = {
            k: Attribute(v.value, v.recommended_values) for k, v in self.attributes.items()
        }
        return bp


def _library() -> list[Blueprint]:
    cam = {
        "image_size_x": Attribute("800"),
        "image_size_y": Attribute("600"),
        "fov": Attribute("90"),
    }
    vehicles = [
        Blueprint(name, number_of_wheels=Attribute(wheels))
        for name, wheels in (
            ("vehicle.lincoln.mkz_2020", "4"),
            ("vehicle.tesla.model3", "4"),
            ("vehicle.audi.a2", "4"),
            ("vehicle.bh.crossbike", "2"),
        )
    ]
    walkers = [
        Blueprint(
            f"walker.pedestrian.000{i}",
            is_invincible=Attribute("true"),
            speed=Attribute("1.4", ("0.0", "1.4", "2.5")),
        )
        for i in (1, 2)
    ]
    sensors = [
        Blueprint(f"sensor.camera.{k}", **{n: Attribute(a.value) for n, a in cam.items()})
        for k in ("rgb", "semantic_segmentation", "depth")
    ]
    others = [Blueprint(n) for n in ("sensor.other.collision", "sensor.other.lane_invasion")]
    return [*vehicles, *walkers, *sensors, *others, Blueprint("controller.ai.walker")]


class BlueprintLibrary(list[Blueprint]):
    def find(self, bp_id: str) -> Blueprint:
        for bp in self:
            if bp.id == bp_id:
                return bp.copy()
        raise IndexError(f"blueprint '{bp_id}' not found")

    def filter(self, pattern: str) -> BlueprintLibrary:
        return BlueprintLibrary(bp.copy() for bp in self if fnmatch.fnmatch(bp.id, pattern))


class ActorList(list[Any]):
    def filter(self, pattern: str) -> ActorList:
        return ActorList(a for a in self if fnmatch.fnmatch(a.type_id, pattern))

    def find(self, actor_id: int) -> Any:
        return next((a for a in self if a.id == actor_id), None)


# -------------------------------------------------------------------------------------- actors
class FakeActor:
    """A server-side actor. Plain attributes (id, type_id, bounding_box) need no server."""

    EXTENT: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Half sizes of the bounding box [m]."""

    def __init__(
        self,
        world: FakeWorld,
        actor_id: int,
        bp: Blueprint,
        transform: carla.Transform,
        parent: FakeActor | None = None,
    ) -> None:
        self.world, self.id, self.type_id, self.parent = world, actor_id, bp.id, parent
        self.attributes = {k: v.value for k, v in bp.attributes.items()}
        self.transform = carla.Transform(transform.location, transform.rotation)
        self.velocity = carla.Vector3D()
        self.acceleration = carla.Vector3D()
        extent = self.EXTENT
        self.bounding_box = carla.BoundingBox(
            carla.Location(0.1, 0.0, extent[2]), carla.Vector3D(*extent)
        )
        self.alive = True

    @property
    def is_alive(self) -> bool:
        return self.alive

    def get_transform(self) -> carla.Transform:
        self.world.sim.check()
        if self.parent is not None:
            return self.parent.get_transform()
        return carla.Transform(self.transform.location, self.transform.rotation)

    def get_location(self) -> carla.Location:
        return self.get_transform().location

    def get_velocity(self) -> carla.Vector3D:
        self.world.sim.check()
        return carla.Vector3D(self.velocity.x, self.velocity.y, self.velocity.z)

    def get_acceleration(self) -> carla.Vector3D:
        self.world.sim.check()
        return carla.Vector3D(self.acceleration.x, self.acceleration.y, self.acceleration.z)

    def destroy(self) -> bool:
        self.world.sim.check()
        return self.world.remove(self.id)

    def move(self, speed: float, dt: float) -> None:
        forward = self.transform.get_forward_vector()
        self.velocity = carla.Vector3D(forward.x * speed, forward.y * speed, 0.0)
        loc = self.transform.location
        self.transform = carla.Transform(
            carla.Location(loc.x + forward.x * speed * dt, loc.y + forward.y * speed * dt, loc.z),
            self.transform.rotation,
        )


class FakeVehicle(FakeActor):
    EXTENT = (2.4, 1.0, 0.75)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control = carla.VehicleControl()
        self.autopilot_port: int | None = None

    def apply_control(self, control: carla.VehicleControl) -> None:
        self.world.sim.check()
        self.control = control

    def step(self, dt: float) -> None:
        if self.autopilot_port is not None:
            self.move(5.0, dt)
        elif self.attributes.get("role_name") == "hero":
            c = self.control
            speed = 0.0 if c.brake > 0 else EGO_TOP_SPEED * c.throttle * (-1 if c.reverse else 1)
            self.move(speed, dt)


class FakeWalker(FakeActor):
    EXTENT = (0.3, 0.3, 0.9)


class FakeWalkerController(FakeActor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started, self.destination, self.max_speed = False, None, 0.0

    def start(self) -> None:
        self.world.sim.check()
        self.started = True

    def stop(self) -> None:
        self.world.sim.check()
        self.started = False

    def go_to_location(self, location: carla.Location) -> None:
        self.world.sim.check()
        self.destination = location

    def set_max_speed(self, speed: float) -> None:
        self.world.sim.check()
        self.max_speed = speed


@dataclass
class FakeImage:
    frame: int
    width: int
    height: int
    raw_data: bytes
    fov: float = 90.0


@dataclass
class FakeLaneMarking:
    type: carla.LaneMarkingType
    color: carla.LaneMarkingColor


@dataclass
class FakeCollisionEvent:
    frame: int
    actor: FakeActor
    other_actor: FakeActor
    normal_impulse: carla.Vector3D
    transform: carla.Transform


@dataclass
class FakeLaneInvasionEvent:
    frame: int
    actor: FakeActor
    crossed_lane_markings: list[FakeLaneMarking]


def fake_bgra(kind: str, width: int, height: int, frame: int) -> bytes:
    """The image a fake camera sends: known values per kind (see the tests)."""
    bgra = np.zeros((height, width, 4), np.uint8)
    bgra[:, :, 3] = 255
    if kind == "sensor.camera.rgb":
        bgra[:, :, 0], bgra[:, :, 1], bgra[:, :, 2] = 30, 20, frame % 256  # R carries the frame
    elif kind == "sensor.camera.semantic_segmentation":
        bgra[:, :, 2] = (np.arange(width)[None, :] + np.zeros((height, 1), int)) % 29
    else:
        code = round(FAKE_DEPTH / DEPTH_FAR * (256**3 - 1))
        bgra[:, :, 2], bgra[:, :, 1], bgra[:, :, 0] = code % 256, code // 256 % 256, code // 65536
    return bgra.tobytes()


class FakeSensor(FakeActor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.callback: Callable[[Any], None] | None = None

    def listen(self, callback: Callable[[Any], None]) -> None:
        self.world.sim.check()
        self.callback = callback

    def stop(self) -> None:
        self.world.sim.check()
        self.callback = None

    def is_listening(self) -> bool:
        return self.callback is not None

    def fire(self, frame: int) -> None:
        if self.callback is None or self.parent is None:
            return
        world = self.world
        if self.type_id.startswith("sensor.camera."):
            if not world.sim.drop_images:
                w, h = int(self.attributes["image_size_x"]), int(self.attributes["image_size_y"])
                self.callback(FakeImage(frame, w, h, fake_bgra(self.type_id, w, h, frame)))
        elif self.type_id == "sensor.other.collision":
            for other, impulse in world.pending_collisions:
                vector = carla.Vector3D(*impulse)
                event = FakeCollisionEvent(frame, self.parent, other, vector, self.get_transform())
                self.callback(event)
        elif self.type_id == "sensor.other.lane_invasion" and world.pending_invasions:
            markings = [FakeLaneMarking(t, c) for t, c in world.pending_invasions]
            self.callback(FakeLaneInvasionEvent(frame, self.parent, markings))


class FakeTrafficLight(FakeActor):
    def __init__(self, *args: Any, stop_waypoints: list[carla.Waypoint], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_waypoints = stop_waypoints
        self.state = carla.TrafficLightState.Green
        self.frozen = False

    def get_state(self) -> carla.TrafficLightState:
        self.world.sim.check()
        return self.state

    def set_state(self, state: carla.TrafficLightState) -> None:
        self.world.sim.check()
        self.state = state

    def freeze(self, frozen: bool) -> None:
        self.world.sim.check()
        self.frozen = frozen

    def is_frozen(self) -> bool:
        return self.frozen

    def reset_group(self) -> None:
        self.world.sim.check()
        self.state = carla.TrafficLightState.Red

    def get_stop_waypoints(self) -> list[carla.Waypoint]:
        self.world.sim.check()
        return list(self.stop_waypoints)


_KINDS: list[tuple[str, type[FakeActor]]] = [
    ("vehicle.*", FakeVehicle),
    ("walker.*", FakeWalker),
    ("controller.ai.walker", FakeWalkerController),
    ("sensor.*", FakeSensor),
]


# --------------------------------------------------------------------------------------- world
class FakeWorld:
    def __init__(self, sim: FakeSimulator, town: str, xodr: str | None = None) -> None:
        self.sim, self.town = sim, town
        self.map = real_map(town) if xodr is None else carla.Map("OpenDriveMap", xodr)
        self.frame = 1000 * (sim.restarts + 1)
        self.actors: dict[int, FakeActor] = {}
        self.weather = carla.WeatherParameters()
        self.pending_collisions: list[tuple[FakeActor, tuple[float, float, float]]] = []
        self.pending_invasions: list[tuple[carla.LaneMarkingType, carla.LaneMarkingColor]] = []
        self.pedestrian_seed: int | None = None
        self.frozen = False
        self.lights_reset = 0
        self._nav_rng = np.random.default_rng(0)
        self._nav_points = [wp.transform.location for wp in self.map.generate_waypoints(5.0)]
        self._make_lights()

    def _make_lights(self, limit: int = 6) -> None:
        """One light per road entering a junction, with that road's lanes as stop waypoints."""
        groups: dict[tuple[int, int], dict[int, carla.Waypoint]] = {}
        for entry, _ in self.map.get_topology():
            if not entry.is_junction:
                continue
            before = entry.previous(1.0)
            if not before or before[0].is_junction:
                continue
            stop = before[0]
            key = (entry.junction_id, stop.road_id)
            groups.setdefault(key, {})[stop.lane_id] = stop
        for stops in list(groups.values())[:limit]:
            wps = [stops[k] for k in sorted(stops)]
            loc = wps[0].transform.location
            right = wps[0].transform.get_right_vector()
            pose = carla.Transform(carla.Location(loc.x + 4 * right.x, loc.y + 4 * right.y, 0.0))
            self._add(
                FakeTrafficLight, Blueprint("traffic.traffic_light"), pose, stop_waypoints=wps
            )

    def _add(
        self, cls: type[FakeActor], bp: Blueprint, pose: carla.Transform, **kw: Any
    ) -> FakeActor:
        self.sim.next_id += 1
        actor = cls(self, self.sim.next_id, bp, pose, **kw)
        self.actors[actor.id] = actor
        return actor

    def remove(self, actor_id: int) -> bool:
        actor = self.actors.pop(actor_id, None)
        if actor is None:
            return False
        actor.alive = False
        self.sim.destroyed.append(actor.type_id)
        return True

    # --- the carla.World API used by the backend
    def get_settings(self) -> carla.WorldSettings:
        self.sim.check()
        return copy_settings(self.sim.settings)

    def apply_settings(self, settings: carla.WorldSettings, seconds: float = 0.0) -> int:
        self.sim.check()
        self.sim.settings = copy_settings(settings)
        return self.frame

    def get_map(self) -> carla.Map:
        self.sim.check()
        return self.map

    def get_blueprint_library(self) -> BlueprintLibrary:
        self.sim.check()
        return BlueprintLibrary(_library())

    def _collides(self, bp: Blueprint, pose: carla.Transform) -> bool:
        loc = pose.location
        if any(math.hypot(loc.x - b.x, loc.y - b.y) < 1.0 for b in self.sim.blocked):
            return True
        if not bp.id.startswith("vehicle."):
            return False
        return any(
            a.type_id.startswith("vehicle.")
            and math.hypot(loc.x - a.transform.location.x, loc.y - a.transform.location.y) < 3.0
            for a in self.actors.values()
        )

    def try_spawn_actor(
        self, bp: Blueprint, transform: carla.Transform, attach_to: FakeActor | None = None
    ) -> FakeActor | None:
        self.sim.check()
        if attach_to is None and self._collides(bp, transform):
            return None
        cls = next((c for pattern, c in _KINDS if fnmatch.fnmatch(bp.id, pattern)), FakeActor)
        return self._add(cls, bp, transform, parent=attach_to)

    def spawn_actor(
        self, bp: Blueprint, transform: carla.Transform, attach_to: FakeActor | None = None
    ) -> FakeActor:
        actor = self.try_spawn_actor(bp, transform, attach_to)
        if actor is None:
            raise RuntimeError("Spawn failed because of collision at spawn position")
        return actor

    def get_actors(self, actor_ids: list[int] | None = None) -> ActorList:
        self.sim.check()
        if actor_ids is None:
            return ActorList(self.actors.values())
        return ActorList(self.actors[i] for i in actor_ids if i in self.actors)

    def tick(self, seconds: float = 0.0) -> int:
        self.sim.check()
        if self.sim.hang:
            raise RuntimeError(TIMEOUT_MESSAGE.format(ms=int(seconds * 1000)))
        self.frame += 1
        dt = self.sim.settings.fixed_delta_seconds or 0.05
        for actor in list(self.actors.values()):
            if isinstance(actor, FakeVehicle):
                actor.step(dt)
        for actor in list(self.actors.values()):
            if isinstance(actor, FakeSensor):
                actor.fire(self.frame)
        self.pending_collisions, self.pending_invasions = [], []
        return self.frame

    def set_weather(self, weather: carla.WeatherParameters) -> None:
        self.sim.check()
        self.weather = weather

    def get_weather(self) -> carla.WeatherParameters:
        self.sim.check()
        return self.weather

    def set_pedestrians_seed(self, seed: int) -> None:
        self.sim.check()
        self.pedestrian_seed = seed
        self._nav_rng = np.random.default_rng(seed)

    def get_random_location_from_navigation(self) -> carla.Location:
        self.sim.check()
        loc = self._nav_points[int(self._nav_rng.integers(len(self._nav_points)))]
        return carla.Location(loc.x, loc.y, loc.z + 1.0)

    def freeze_all_traffic_lights(self, frozen: bool) -> None:
        self.sim.check()
        self.frozen = frozen
        for light in self.lights():
            light.frozen = frozen

    def reset_all_traffic_lights(self) -> None:
        self.sim.check()
        self.lights_reset += 1
        for light in self.lights():
            light.state = carla.TrafficLightState.Red

    # --- helpers for the tests
    def static_actor(self, type_id: str) -> FakeActor:
        """A piece of the static layout (not in the actor list), e.g. ``static.pole``."""
        return FakeActor(self, 0, Blueprint(type_id), carla.Transform())

    def lights(self) -> list[FakeTrafficLight]:
        return [a for a in self.actors.values() if isinstance(a, FakeTrafficLight)]

    def of_type(self, pattern: str) -> list[FakeActor]:
        return [a for a in self.actors.values() if fnmatch.fnmatch(a.type_id, pattern)]

    def hero(self) -> FakeVehicle:
        heroes = [a for a in self.actors.values() if a.attributes.get("role_name") == "hero"]
        assert len(heroes) == 1 and isinstance(heroes[0], FakeVehicle)
        return heroes[0]


def copy_settings(settings: carla.WorldSettings) -> carla.WorldSettings:
    out = carla.WorldSettings()
    for name in (
        "synchronous_mode",
        "no_rendering_mode",
        "fixed_delta_seconds",
        "substepping",
        "max_substep_delta_time",
        "max_substeps",
    ):
        setattr(out, name, getattr(settings, name))
    return out


class FakeTrafficManager:
    def __init__(self, sim: FakeSimulator, port: int) -> None:
        self.sim, self.port = sim, port
        self.synchronous, self.hybrid = False, False
        self.seed: int | None = None

    def set_synchronous_mode(self, mode: bool) -> None:
        self.sim.check()
        self.synchronous = mode

    def set_random_device_seed(self, seed: int) -> None:
        self.sim.check()
        self.seed = seed

    def set_hybrid_physics_mode(self, enabled: bool) -> None:
        self.sim.check()
        self.hybrid = enabled

    def set_global_distance_to_leading_vehicle(self, distance: float) -> None:
        self.sim.check()


# ---------------------------------------------------------------------------- server and client
@dataclass
class FakeSimulator:
    """The server: one world shared by every client, plus failure switches."""

    town: str = "Grid01"
    towns: tuple[str, ...] = ("Grid01", "Multi01")
    down: bool = False
    hang: bool = False
    drop_images: bool = False
    server_version: str = "0.9.16"
    blocked: list[carla.Location] = field(default_factory=list)
    restarts: int = 0
    next_id: int = 0
    loads: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    load_timeouts: list[float | None] = field(default_factory=list)  # client timeout at each load
    destroyed: list[str] = field(default_factory=list)
    clients: list[FakeClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = carla.WorldSettings()  # asynchronous, variable step
        self.settings.no_rendering_mode = True  # a marker to check that close() restores it
        self.tms: dict[int, FakeTrafficManager] = {}
        self.world = FakeWorld(self, self.town)

    def check(self) -> None:
        if self.down:
            raise RuntimeError(TIMEOUT_MESSAGE.format(ms=10000))

    def crash(self) -> None:
        """The server stops answering (every call raises, as a CARLA client would)."""
        self.down = True

    def restart(self) -> None:
        """A fresh server process: default settings, the same town, no actors."""
        self.down = self.hang = False
        self.restarts += 1
        self.__post_init__()

    def factory(self, host: str, port: int) -> FakeClient:
        """A ``client_factory`` for ``CarlaBackend``."""
        client = FakeClient(host, port, self)
        self.clients.append(client)
        return client


class FakeClient:
    def __init__(self, host: str, port: int, sim: FakeSimulator) -> None:
        self.host, self.port, self.sim = host, port, sim
        self.timeout: float | None = None

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def get_server_version(self) -> str:
        self.sim.check()
        return self.sim.server_version

    def get_client_version(self) -> str:
        return "0.9.16"

    def get_world(self) -> FakeWorld:
        self.sim.check()
        return self.sim.world

    def get_available_maps(self) -> list[str]:
        self.sim.check()
        return [f"/Game/Carla/Maps/{t}" for t in self.sim.towns]

    def load_world(
        self, map_name: str, reset_settings: bool = True, map_layers: Any = None
    ) -> FakeWorld:
        self.sim.check()
        self.sim.load_timeouts.append(self.timeout)
        town = town_name(map_name)
        if town not in self.sim.towns:
            raise RuntimeError(f"map '{map_name}' not found")
        self.sim.loads.append(town)
        self.sim.world = FakeWorld(self.sim, town)
        if reset_settings:
            self.sim.settings = carla.WorldSettings()
        return self.sim.world

    def generate_opendrive_world(
        self, opendrive: str, parameters: Any = None, reset_settings: bool = True
    ) -> FakeWorld:
        self.sim.check()
        self.sim.load_timeouts.append(self.timeout)
        assert isinstance(parameters, carla.OpendriveGenerationParameters)
        self.sim.generated.append(opendrive)
        self.sim.world = FakeWorld(self.sim, "OpenDriveMap", opendrive)
        if reset_settings:
            self.sim.settings = carla.WorldSettings()
        return self.sim.world

    def get_trafficmanager(self, port: int = 8000) -> FakeTrafficManager:
        self.sim.check()
        return self.sim.tms.setdefault(port, FakeTrafficManager(self.sim, port))

    def apply_batch_sync(self, commands: list[Any], do_tick: bool = False) -> list[Response]:
        self.sim.check()
        return [self._run(c) for c in commands]

    def _run(self, cmd: Any) -> Response:
        world = self.sim.world
        if isinstance(cmd, DestroyActor):
            actor_id = cmd.actor if isinstance(cmd.actor, int) else cmd.actor.id
            ok = world.remove(actor_id)
            return Response(actor_id, "" if ok else f"actor {actor_id} not found")
        if isinstance(cmd, SpawnActor):
            parent = cmd.parent
            if isinstance(parent, int):
                parent = world.actors.get(parent)
            actor = world.try_spawn_actor(cmd.blueprint, cmd.transform, parent)
            if actor is None:
                return Response(0, "Spawn failed because of collision at spawn position")
            for chained in cmd.chained:
                if isinstance(chained, SetAutopilot) and chained.actor == command.FutureActor:
                    actor.autopilot_port = chained.tm_port if chained.enabled else None  # type: ignore[attr-defined]
            return Response(actor.id)
        raise TypeError(f"the fake does not run {type(cmd).__name__}")


@dataclass
class FakeServerProcess:
    """A managed server handle (``ServerProcess``) whose restart revives a ``FakeSimulator``."""

    sim: FakeSimulator
    port: int = 2000
    starts: int = 1
    running: bool = True
    calls: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.running

    def start(self) -> None:
        self.calls.append("start")
        self.running, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def restart(self) -> None:
        self.calls.append("restart")
        self.sim.restart()
        self.starts += 1
