"""CarlaBackend against the in-memory CARLA test double, and CarlaServer with a fake launcher."""

from __future__ import annotations

import dataclasses
import math
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import carla
import numpy as np
import pytest

from envs.backends.base import (
    BackendError,
    CameraSpec,
    EpisodeSpec,
    SimulatorBackend,
    SimulatorCrashed,
)
from envs.backends.carla_backend import CarlaBackend
from envs.backends.carla_connection import LOAD_TIMEOUT
from envs.backends.carla_convert import (
    camera_mount,
    image_to_depth,
    image_to_labels,
    image_to_rgb,
    weather_from_carla,
)
from envs.backends.carla_server import CarlaServer, port_open
from envs.sim.weather import Weather
from envs.towns import town_path
from envs.types import ActorKind, TrafficLightState, Transform, VehicleControl
from tests.envs.backends.fake_carla import (
    EGO_TOP_SPEED,
    FAKE_DEPTH,
    FakeCarlaModule,
    FakeServerProcess,
    FakeSimulator,
    real_map,
)

CAMERA = CameraSpec(width=8, height=4, fov=90.0, x=1.5, z=2.4)


def ego_pose(town: str = "Grid01") -> Transform:
    """A pose on a straight lane, away from junctions."""
    wp = next(w for w in real_map(town).generate_waypoints(10.0) if not w.is_junction)
    t = wp.transform
    return Transform(t.location.x, t.location.y, t.location.z, t.rotation.yaw)


def make_backend(sim: FakeSimulator, **kwargs: object) -> CarlaBackend:
    options: dict[str, object] = {"timeout": 0.5, "backoff": 0.0, "retries": 2}
    options.update(kwargs)
    return CarlaBackend(client_factory=sim.factory, carla_module=FakeCarlaModule(), **options)  # type: ignore[arg-type]


def spec(seed: int = 1, **kwargs: object) -> EpisodeSpec:
    options: dict[str, object] = {"vehicles": 5, "walkers": 3}
    options.update(kwargs)
    return EpisodeSpec(seed=seed, ego=ego_pose(), **options)  # type: ignore[arg-type]


@pytest.fixture()
def sim() -> FakeSimulator:
    return FakeSimulator()


@pytest.fixture()
def backend(sim: FakeSimulator) -> Iterator[CarlaBackend]:
    b = make_backend(sim)
    yield b
    b.close()


# ----------------------------------------------------------------------------- episode set-up
def test_satisfies_the_protocol(backend: CarlaBackend) -> None:
    assert isinstance(backend, SimulatorBackend)
    assert backend.dt == pytest.approx(0.05)


def test_reset_spawns_ego_sensors_and_traffic(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.set_cameras({"front": CAMERA})
    state = backend.reset(spec())
    world = sim.world
    ego = world.hero()
    assert ego.type_id == "vehicle.lincoln.mkz_2020"
    sensors = world.of_type("sensor.*")
    assert sorted(s.type_id for s in sensors) == sorted(
        [
            "sensor.other.collision",
            "sensor.other.lane_invasion",
            "sensor.camera.rgb",
            "sensor.camera.semantic_segmentation",
            "sensor.camera.depth",
        ]
    )
    assert all(s.parent is ego for s in sensors)
    npcs = [v for v in world.of_type("vehicle.*") if v is not ego]
    assert len(npcs) == 5 and all(v.autopilot_port == 8000 for v in npcs)
    assert all(v.type_id != "vehicle.bh.crossbike" for v in npcs)
    assert len(world.of_type("walker.pedestrian.*")) == 3
    controllers = world.of_type("controller.ai.walker")
    assert len(controllers) == 3
    assert all(c.started and c.destination is not None and c.max_speed == 1.4 for c in controllers)
    assert world.pedestrian_seed == 1 and sim.tms[8000].seed == 1
    assert state.frame == 0 and state.time == 0.0
    assert len(state.vehicles) == 5 and len(state.walkers) == 3
    assert ego.id not in state.vehicles.ids
    assert state.vehicles.extent[0] == pytest.approx([4.8, 2.0])
    assert state.ego.length == pytest.approx(4.8) and state.ego.width == pytest.approx(2.0)
    assert state.ego.transform.distance(spec().ego) < 0.01
    assert set(state.cameras) == {"front"}


def test_npcs_keep_clear_of_the_ego_and_repeat_with_the_seed() -> None:
    def positions(seed: int) -> list[tuple[float, float]]:
        sim = FakeSimulator()
        backend = make_backend(sim)
        state = backend.reset(spec(seed, vehicles=8))
        backend.close()
        return [tuple(p) for p in state.vehicles.xyz[:, :2].round(3)]

    first = positions(3)
    assert first == positions(3)
    assert first != positions(4)
    ego = spec().ego
    assert all(math.hypot(x - ego.x, y - ego.y) > 15.0 for x, y in first)


def test_resets_destroy_the_previous_episode(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.set_cameras({"front": CAMERA})
    backend.reset(spec())
    count = len(sim.world.actors)
    for seed in range(20):
        sim.destroyed.clear()
        backend.reset(spec(seed))
        assert len(sim.world.actors) == count
    kinds = [t.split(".")[0] for t in sim.destroyed]
    order = ["sensor", "controller", "walker", "vehicle"]
    assert kinds == sorted(kinds, key=order.index)  # sensors first, vehicles last
    assert sim.loads == []  # resets never reload the map


def test_bad_ego_spawn_names_the_location(sim: FakeSimulator, backend: CarlaBackend) -> None:
    pose = spec().ego
    sim.blocked.append(carla.Location(pose.x, pose.y, pose.z))
    with pytest.raises(BackendError, match=rf"x={pose.x:.1f}, y={pose.y:.1f}") as info:
        backend.reset(spec())
    assert not isinstance(info.value, SimulatorCrashed)


def test_unknown_ego_blueprint(sim: FakeSimulator) -> None:
    backend = make_backend(sim, ego_blueprint="vehicle.nope")
    with pytest.raises(BackendError, match=r"vehicle\.nope"):
        backend.reset(spec())


def test_server_version_is_read_and_a_mismatch_is_named(
    sim: FakeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.server_version = "0.9.15"
    backend = make_backend(sim)
    assert backend.server_version == ""
    backend.load_town("Grid01")
    assert backend.server_version == "0.9.15"
    assert "pip install carla==0.9.15" in caplog.text
    backend.close()


def test_tick_before_reset_is_an_error(backend: CarlaBackend) -> None:
    with pytest.raises(BackendError, match="reset"):
        backend.tick(VehicleControl())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tm_port"):
        CarlaBackend(port=2000, tm_port=2001)
    with pytest.raises(ValueError, match="dt"):
        CarlaBackend(dt=0.5)


# ------------------------------------------------------------------------------ settings/town
def test_synchronous_settings_applied_and_restored(sim: FakeSimulator) -> None:
    backend = make_backend(sim, dt=0.05)
    backend.reset(spec())
    assert sim.settings.synchronous_mode and sim.settings.fixed_delta_seconds == pytest.approx(0.05)
    assert sim.tms[8000].synchronous
    backend.close()
    assert not sim.settings.synchronous_mode and sim.settings.no_rendering_mode
    assert not sim.settings.fixed_delta_seconds  # variable step again (None)
    assert not sim.tms[8000].synchronous
    assert len(sim.world.actors) == len(sim.world.lights())  # everything spawned is gone
    backend.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        backend.reset(spec())


def test_close_survives_a_dead_server(sim: FakeSimulator) -> None:
    backend = make_backend(sim)
    backend.reset(spec())
    sim.crash()
    backend.close()
    backend.close()


def test_load_town_only_when_the_town_changes(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.load_town("Grid01")
    assert sim.loads == []
    backend.load_town("Multi01")
    assert sim.loads == ["Multi01"]
    assert sim.settings.synchronous_mode  # re-applied after the load reset them
    backend.load_town("/Game/Carla/Maps/Multi01")
    backend.load_town("Multi01")
    assert sim.loads == ["Multi01"]
    state = backend.reset(EpisodeSpec(seed=0, ego=ego_pose("Multi01"), vehicles=2, walkers=0))
    assert len(state.vehicles) == 2
    with pytest.raises(BackendError, match="Town99"):
        backend.load_town("Town99")


def test_a_town_load_may_take_longer_than_a_tick() -> None:
    """Loading takes tens of seconds on a real server; the tick bound would abort it."""
    sim = FakeSimulator(towns=("Grid01", "Multi01"))
    backend = make_backend(sim, timeout=5.0)
    backend.load_town("Multi01")  # on the server
    backend.load_town("Curve01")  # shipped with segdrive: generated from its OpenDRIVE
    assert sim.load_timeouts == [LOAD_TIMEOUT, LOAD_TIMEOUT]
    assert all(client.timeout == 5.0 for client in sim.clients)  # the bound of every other call
    backend.close()


def test_project_towns_are_generated_from_opendrive() -> None:
    sim = FakeSimulator(towns=("Grid01",))
    backend = make_backend(sim)
    backend.load_town("Multi01")  # shipped with segdrive, not on this server
    assert sim.generated == [town_path("Multi01").read_text(encoding="utf-8")]
    assert sim.settings.synchronous_mode
    backend.load_town("Multi01")
    assert len(sim.generated) == 1
    assert backend.road_map.name == "Multi01"
    state = backend.reset(EpisodeSpec(seed=0, ego=ego_pose("Multi01"), vehicles=3, walkers=2))
    assert len(state.vehicles) == 3  # spawn points from the lanes: the map recommends none
    backend.load_town(str(town_path("Curve01")))
    assert len(sim.generated) == 2 and backend.road_map.name == "Curve01"
    backend.close()


def test_road_map_comes_from_the_servers_opendrive(backend: CarlaBackend) -> None:
    road_map = backend.road_map
    assert road_map.name == "Grid01"
    assert len(road_map.seg_length) > 0
    assert backend.road_map is road_map


def test_weather_passes_through(sim: FakeSimulator, backend: CarlaBackend) -> None:
    weather = Weather.preset("HardRainSunset").replace(fog_falloff=0.7, dust_storm=12.0)
    state = backend.reset(spec(weather=weather))
    assert state.weather == weather
    sent = dataclasses.asdict(weather_from_carla(sim.world.get_weather()))
    assert sent == pytest.approx(dataclasses.asdict(weather), rel=1e-6)  # float32 on the wire
    night = Weather.preset("ClearNight")
    backend.set_weather(night)
    assert backend.tick(VehicleControl()).weather == night
    assert sim.world.weather.sun_altitude_angle == pytest.approx(-90.0)


# ---------------------------------------------------------------------------------- ticking
def test_tick_applies_control_and_reads_the_ego(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.reset(spec(vehicles=0, walkers=0))
    state = backend.tick(VehicleControl(throttle=0.5, steer=float("nan")))
    control = sim.world.hero().control
    assert isinstance(control, carla.VehicleControl)
    assert control.throttle == pytest.approx(0.5) and control.steer == 0.0
    assert state.frame == 1 and state.time == pytest.approx(0.05)
    assert state.ego.speed == pytest.approx(0.5 * EGO_TOP_SPEED)
    assert state.ego.control.steer == 0.0
    reverse = backend.tick(VehicleControl(throttle=0.5, reverse=True))
    assert reverse.ego.speed == pytest.approx(-0.5 * EGO_TOP_SPEED)  # signed along the heading


def test_camera_frames_match_the_world_frame(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.set_cameras({"front": CAMERA, "back": CameraSpec(width=6, height=2, yaw=180.0)})
    backend.reset(spec(vehicles=0, walkers=0))
    backend.tick(VehicleControl())  # images not asked for: dropped, not queued
    state = backend.tick(VehicleControl(), render=True)
    frame = state.cameras["front"]
    assert frame.frame == state.frame == 2
    assert frame.rgb.shape == (4, 8, 3) and frame.rgb.dtype == np.uint8
    world_frame = sim.world.frame
    assert frame.rgb[0, 0].tolist() == [world_frame % 256, 20, 30]
    assert frame.labels[0].tolist() == list(range(8))
    assert np.allclose(frame.depth, FAKE_DEPTH, atol=1e-3) and frame.depth.dtype == np.float32
    assert state.cameras["back"].rgb.shape == (2, 6, 3)
    assert backend.tick(VehicleControl()).cameras == {}
    assert all(q.empty() for q in backend._rig._images.values())  # nothing piles up


def test_missing_images_raise_instead_of_hanging(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.set_cameras({"front": CAMERA})
    backend.reset(spec(vehicles=0, walkers=0))
    sim.drop_images = True
    with pytest.raises(SimulatorCrashed, match="camera 'front'"):
        backend.tick(VehicleControl(), render=True)


def test_collisions_are_mapped(sim: FakeSimulator, backend: CarlaBackend) -> None:
    state = backend.reset(spec(vehicles=1, walkers=1))
    world = sim.world
    npc = world.actors[int(state.vehicles.ids[0])]
    walker = world.actors[int(state.walkers.ids[0])]
    pole = world.static_actor("static.pole")
    world.pending_collisions = [(npc, (3.0, 4.0, 0.0)), (walker, (0, 0, 2.0)), (pole, (1, 0, 0))]
    # During the tick the ego drives at EGO_TOP_SPEED and the NPC at 5 m/s, along the same road.
    events = backend.tick(VehicleControl(throttle=1.0)).collisions
    assert [e.other_kind for e in events] == [ActorKind.VEHICLE, ActorKind.WALKER, ActorKind.STATIC]
    assert [e.other_id for e in events] == [npc.id, walker.id, -1]
    assert events[0].other_type == npc.type_id and events[2].other_type == "static.pole"
    assert events[0].impulse == pytest.approx(5.0) and events[1].impulse == pytest.approx(2.0)
    assert events[0].relative_speed == pytest.approx(EGO_TOP_SPEED - 5.0, abs=1e-3)
    assert events[2].relative_speed == pytest.approx(EGO_TOP_SPEED)
    assert all(e.frame == 1 for e in events)
    assert backend.tick(VehicleControl()).collisions == ()


def test_lane_invasions_one_event_per_marking(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.reset(spec(vehicles=0, walkers=0))
    sim.world.pending_invasions = [
        (carla.LaneMarkingType.Broken, carla.LaneMarkingColor.White),
        (carla.LaneMarkingType.SolidSolid, carla.LaneMarkingColor.Yellow),
    ]
    events = backend.tick(VehicleControl()).lane_invasions
    assert [(e.frame, e.marking_type, e.marking_color) for e in events] == [
        (1, "Broken", "White"),
        (1, "SolidSolid", "Yellow"),
    ]


# ----------------------------------------------------------------------------------- lights
def test_lights_stop_lines_and_states(sim: FakeSimulator, backend: CarlaBackend) -> None:
    state = backend.reset(spec(vehicles=0, walkers=0, lights="cycle"))
    fakes = {light.id: light for light in sim.world.lights()}
    assert len(state.lights) == len(fakes) > 0
    assert sim.world.lights_reset == 1 and not sim.world.frozen
    for info in state.lights:
        light = fakes[info.id]
        assert len(info.stop_lines) == len(light.stop_waypoints)
        for line, wp in zip(info.stop_lines, light.stop_waypoints, strict=True):
            mid = ((line.start[0] + line.end[0]) / 2, (line.start[1] + line.end[1]) / 2)
            loc = wp.transform.location
            assert mid == pytest.approx((loc.x, loc.y), abs=1e-4)
            length = math.dist(line.start, line.end)
            assert length == pytest.approx(wp.lane_width, abs=1e-4)
            assert (line.road_id, line.lane_id) == (wp.road_id, wp.lane_id)
    first = next(iter(fakes.values()))
    first.state = carla.TrafficLightState.Yellow
    after = backend.tick(VehicleControl())
    assert after.lights is state.lights  # the static layout is read once
    index = [info.id for info in after.lights].index(first.id)
    assert after.light_state(index) == TrafficLightState.YELLOW


def test_light_modes(sim: FakeSimulator, backend: CarlaBackend) -> None:
    state = backend.reset(spec(vehicles=0, walkers=0, lights="green"))
    assert all(s == TrafficLightState.GREEN for s in state.light_states)
    assert all(light.frozen for light in sim.world.lights())
    state = backend.reset(spec(vehicles=0, walkers=0, lights="red-at-start"))
    assert all(s == TrafficLightState.RED for s in state.light_states)
    assert not any(light.frozen for light in sim.world.lights())


# --------------------------------------------------------------------------------- failures
def test_crash_mid_episode_truncates_and_reset_reconnects(sim: FakeSimulator) -> None:
    backend = make_backend(sim)
    backend.load_town("Multi01")
    backend.reset(EpisodeSpec(seed=0, ego=ego_pose("Multi01"), vehicles=2, walkers=1))
    assert len(sim.clients) == 1
    sim.crash()
    with pytest.raises(SimulatorCrashed, match="time-out"):
        backend.tick(VehicleControl())
    with pytest.raises(BackendError, match="reset"):
        backend.tick(VehicleControl())  # the episode is gone until the next reset
    sim.restart()  # an operator (or a supervisor) brought the server back, on its default town
    state = backend.reset(EpisodeSpec(seed=0, ego=ego_pose("Multi01"), vehicles=2, walkers=1))
    assert len(sim.clients) == 2  # a fresh client
    assert sim.world.town == "Multi01"  # the town was rebuilt
    assert sim.settings.synchronous_mode and sim.tms[8000].synchronous
    assert len(state.vehicles) == 2
    assert backend.tick(VehicleControl()).frame == 1
    backend.close()


def test_a_hung_server_raises_after_the_timeout(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.reset(spec(vehicles=0, walkers=0))
    sim.hang = True
    with pytest.raises(SimulatorCrashed, match="time-out of 500ms"):
        backend.tick(VehicleControl())


def test_crash_with_a_managed_server_restarts_it(sim: FakeSimulator) -> None:
    server = FakeServerProcess(sim)
    backend = make_backend(sim, server=server)
    backend.reset(spec())
    sim.crash()
    with pytest.raises(SimulatorCrashed):
        backend.tick(VehicleControl())
    state = backend.reset(spec())  # restarts the server by its handle, then reconnects
    assert server.calls == ["restart"]
    assert len(state.vehicles) == 5
    backend.close()
    assert server.calls == ["restart"]  # not ours to stop: it was running when we came


def test_backend_starts_and_stops_a_server_it_launched(sim: FakeSimulator) -> None:
    server = FakeServerProcess(sim, starts=0, running=False)
    backend = make_backend(sim, server=server)
    backend.reset(spec(vehicles=0, walkers=0))
    backend.close()
    assert server.calls == ["start", "stop"]


def test_a_dead_server_gives_up_after_the_retries(sim: FakeSimulator) -> None:
    backend = make_backend(sim, retries=3)
    backend.reset(spec(vehicles=0, walkers=0))
    sim.crash()
    with pytest.raises(SimulatorCrashed):
        backend.tick(VehicleControl())
    with pytest.raises(SimulatorCrashed, match="after 3 attempts"):
        backend.reset(spec())
    assert len(sim.clients) == 1 + 3
    sim.restart()
    assert backend.reset(spec(vehicles=1, walkers=0)).frame == 0  # and recovers later


def test_crash_during_reset_is_rebuilt(sim: FakeSimulator, backend: CarlaBackend) -> None:
    backend.reset(spec(vehicles=0, walkers=0))
    world = sim.world
    original = world.set_pedestrians_seed

    def crash_once(seed: int) -> None:
        world.set_pedestrians_seed = original  # type: ignore[method-assign]
        sim.restart()  # the old world dies with the server
        raise RuntimeError("time-out of 500ms while waiting for the simulator")

    world.set_pedestrians_seed = crash_once  # type: ignore[method-assign]
    state = backend.reset(spec())
    assert len(state.vehicles) == 5 and len(sim.clients) == 2


# ------------------------------------------------------------------------------ conversions
def test_image_conversions() -> None:
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 1, 2, 3, 255
    bgra[1, 2, :3] = (0, 0, 24)  # a road line pixel for the semantic camera
    raw = bgra.tobytes()
    rgb = image_to_rgb(raw, 3, 2)
    assert rgb.shape == (2, 3, 3) and rgb[0, 0].tolist() == [3, 2, 1]
    assert image_to_labels(raw, 3, 2).tolist() == [[3, 3, 3], [3, 3, 24]]
    depth = np.zeros((1, 3, 4), np.uint8)
    depth[0, 1, 2] = 1  # R = 1: the smallest step
    depth[0, 2, :3] = 255  # B = G = R = 255: the far plane
    metres = image_to_depth(depth.tobytes(), 3, 1)
    assert metres[0].tolist() == pytest.approx([0.0, 1000.0 / (256**3 - 1), 1000.0])
    big = np.zeros((1, 1, 4), np.uint8)
    big[0, 0, :3] = (1, 2, 3)  # B=1, G=2, R=3
    assert image_to_depth(big.tobytes(), 1, 1)[0, 0] == pytest.approx(
        (3 + 2 * 256 + 1 * 65536) / (256**3 - 1) * 1000, rel=1e-6
    )
    with pytest.raises(ValueError, match="BGRA"):
        image_to_rgb(raw, 4, 2)


def test_camera_mount_is_relative_to_the_ground_below_the_body_centre() -> None:
    box = carla.BoundingBox(carla.Location(0.2, 0.0, 0.7), carla.Vector3D(2.4, 1.0, 0.75))
    mount = camera_mount(CameraSpec(x=1.5, y=0.1, z=2.4, pitch=-5.0, yaw=10.0), box, carla)
    assert (mount.location.x, mount.location.y) == pytest.approx((1.7, 0.1))
    assert mount.location.z == pytest.approx(2.4 + 0.7 - 0.75)
    assert (mount.rotation.pitch, mount.rotation.yaw) == pytest.approx((-5.0, 10.0))


# ---------------------------------------------------------------------------------- servers
FAKE_LAUNCHER = """\
#!{python}
import signal, socket, sys
port = int(next(a for a in sys.argv if a.startswith("-carla-rpc-port=")).split("=")[1])
if "-exit-now" in sys.argv:
    sys.exit(3)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    connection, _ = server.accept()
    connection.close()
"""


@pytest.fixture()
def launcher(tmp_path: Path) -> Path:
    path = tmp_path / "CarlaUE4.sh"
    path.write_text(textwrap.dedent(FAKE_LAUNCHER.format(python=sys.executable)))
    path.chmod(0o755)
    return tmp_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_start_stop_restart(launcher: Path) -> None:
    port = free_port()
    server = CarlaServer(launcher, port=port, gpu=1, startup_timeout=20.0, stop_timeout=5.0)
    assert server.command[1:] == [
        "-RenderOffScreen",
        f"-carla-rpc-port={port}",
        "-nosound",
        "-graphicsadapter=1",
    ]
    with server:
        assert server.alive and port_open("127.0.0.1", port)
        first = server.pid
        server.restart()
        assert server.alive and server.pid != first and server.starts == 2
    assert not server.alive and not port_open("127.0.0.1", port)
    server.stop()  # idempotent


def test_server_errors(launcher: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    early = CarlaServer(launcher, port=port, extra_args=("-exit-now",), startup_timeout=20.0)
    with pytest.raises(BackendError, match="exited"):
        early.start()
    assert not early.alive
    with (
        CarlaServer(launcher, port=port, startup_timeout=20.0),
        pytest.raises(BackendError, match="already in use"),
    ):
        CarlaServer(launcher, port=port).start()
    monkeypatch.setenv("CARLA_ROOT", str(launcher))
    assert CarlaServer(port=port).executable == launcher / "CarlaUE4.sh"
    monkeypatch.delenv("CARLA_ROOT")
    with pytest.raises(BackendError, match="CARLA_ROOT"):
        CarlaServer(port=port)
