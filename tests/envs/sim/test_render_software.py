"""The software fallback renderer (p3tinydisplay): same labels and geometry as the GL one."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from envs.sim import pipe
from envs.sim.camera import CameraRenderer, CameraSpec, make_renderer
from envs.sim.labels import Label
from envs.sim.render_software import SoftwareRenderer
from envs.sim.world import World, WorldConfig
from envs.types import VehicleControl

pytestmark = pytest.mark.render

SPEC = CameraSpec(width=160, height=96)


@pytest.fixture(scope="module")
def world() -> World:
    w = World("Grid01", WorldConfig(vehicles=6, walkers=4))
    w.reset(seed=0)
    return w


@pytest.fixture(scope="module")
def software(world: World) -> Iterator[SoftwareRenderer]:
    r = SoftwareRenderer(world, seed=0)
    yield r
    r.close()


@pytest.fixture(scope="module")
def gl(world: World) -> Iterator[CameraRenderer]:
    r = CameraRenderer(world, seed=0)
    yield r
    r.close()


Choose = Callable[[str], None]


@pytest.fixture
def choose(monkeypatch: pytest.MonkeyPatch, gl: CameraRenderer) -> Iterator[Choose]:
    """Set SEGDRIVE_RENDERER for one test (the choice is cached per process). The GL pipe is
    made first, so that choosing software leaves the GL pipe's settings to later tests."""

    def set_choice(value: str) -> None:
        monkeypatch.setenv(pipe.RENDERER_ENV, value)
        pipe.renderer_kind.cache_clear()

    yield set_choice
    monkeypatch.delenv(pipe.RENDERER_ENV, raising=False)
    pipe.renderer_kind.cache_clear()


def test_the_environment_variable_picks_the_renderer(world: World, choose: Choose) -> None:
    choose("software")
    r = make_renderer(world)
    assert isinstance(r, SoftwareRenderer)
    r.close()
    choose("gl")
    r = make_renderer(world)
    assert isinstance(r, CameraRenderer)
    r.close()
    choose("vulkan")
    with pytest.raises(ValueError, match="SEGDRIVE_RENDERER='vulkan'"):
        make_renderer(world)


def test_a_vehicle_ahead_has_its_label_and_depth(world: World, software: SoftwareRenderer) -> None:
    world.traffic.xyz[:] = -1.0e4
    world.walkers.active[:] = False
    ego = world.ego_transform()
    yaw = math.radians(ego.yaw)
    ahead = 15.0
    world.traffic.xyz[0] = (ego.x + ahead * math.cos(yaw), ego.y + ahead * math.sin(yaw), ego.z)
    world.traffic.yaw[0] = yaw
    world.traffic.shape[0] = 1  # 4.6 m long
    frame = software.render(world, SPEC)
    row = int(SPEC.height / 2 - SPEC.focal * (0.7 - SPEC.z) / (ahead - 2.3 - SPEC.x))
    assert frame.labels[row, 80] == Label.CAR
    assert frame.depth is not None
    assert frame.depth[row, 80] == pytest.approx(ahead - 2.3 - SPEC.x, abs=0.1)
    up = software.render(world, CameraSpec(width=160, height=96, pitch=60.0))
    assert up.labels[0, 80] == Label.SKY and up.depth is not None and up.depth[0, 80] == 1000.0


def test_labels_and_depth_agree_with_the_gl_renderer(
    world: World, software: SoftwareRenderer, gl: CameraRenderer
) -> None:
    world.reset(seed=3)
    for _ in range(40):
        world.tick(VehicleControl(throttle=0.5))
    for spec in (SPEC, CameraSpec(width=160, height=96, pitch=-20.0)):
        ours, theirs = software.render(world, spec), gl.render(world, spec)
        assert ours.rgb.shape == theirs.rgb.shape and ours.labels.dtype == np.uint8
        assert (ours.labels == theirs.labels).mean() > 0.93
        assert ours.depth is not None and theirs.depth is not None
        near = theirs.depth < 100.0
        error = np.abs(ours.depth[near] - theirs.depth[near]) / theirs.depth[near]
        assert np.median(error) < 0.02 and np.mean(error < 0.05) > 0.9
        assert np.abs(ours.rgb.astype(int) - theirs.rgb).mean() < 40.0  # same scene, simpler look


def test_weather_changes_rgb_only_and_frames_repeat(
    world: World, software: SoftwareRenderer
) -> None:
    world.reset(seed=1)
    frames = []
    for name in ("ClearNoon", "HardRainNight", "ClearSunset", "SoftRainSunset"):
        world.set_weather(name)
        frames.append(software.render(world, SPEC))
    world.set_weather("ClearNoon")
    again = software.render(world, SPEC)
    second = SoftwareRenderer(world, seed=0)
    other = second.render(world, SPEC)
    second.close()
    for frame in frames[1:]:
        np.testing.assert_array_equal(frame.labels, frames[0].labels)
        np.testing.assert_array_equal(frame.depth, frames[0].depth)
        assert np.abs(frame.rgb.astype(int) - frames[0].rgb).mean() > 5.0
    for frame in (again, other):
        np.testing.assert_array_equal(frame.rgb, frames[0].rgb)
        np.testing.assert_array_equal(frame.labels, frames[0].labels)
        np.testing.assert_array_equal(frame.depth, frames[0].depth)


def test_fog_comes_from_the_decoded_depth(world: World, software: SoftwareRenderer) -> None:
    """p3tinydisplay has no fog: it is applied on the CPU, so far pixels fade, near ones not."""
    world.reset(seed=1)
    clear = software.render(world, SPEC)
    world.set_weather(world.weather.replace(fog_density=100.0))
    foggy = software.render(world, SPEC)
    world.set_weather("ClearNoon")
    assert clear.depth is not None
    change = np.abs(foggy.rgb.astype(int) - clear.rgb).sum(axis=2)
    ground = clear.labels != Label.SKY
    near, far = ground & (clear.depth < 6.0), ground & (clear.depth > 30.0)
    assert near.any() and far.any()
    assert change[far].mean() > 3 * change[near].mean()


def test_the_env_runs_on_the_software_renderer(choose: Choose) -> None:
    from envs.driving_env import DrivingEnv

    choose("software")
    env = DrivingEnv({"vehicles": 3, "walkers": 3, "route_length": (150.0, 250.0)})
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    renderer = env.backend.renderer  # type: ignore[attr-defined]
    env.close()
    assert isinstance(renderer, SoftwareRenderer)
    assert 96 in obs["image"].shape and 160 in obs["image"].shape
    assert obs["image"].std() > 5.0


def test_without_gl_the_choice_falls_back_to_software_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    choose: Choose,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @functools.lru_cache(maxsize=1)
    def no_egl() -> None:
        raise RuntimeError("no OpenGL over EGL for panda3d (p3headlessgl)")

    pages: list[str] = []  # config pages, recorded instead of loaded (GL tests follow)
    choose("")
    monkeypatch.setattr(pipe, "headless_pipe", no_egl)
    monkeypatch.setattr(pipe, "load_prc_file_data", lambda _name, text: pages.append(text))
    with caplog.at_level(logging.WARNING, logger="envs.sim.pipe"):
        assert pipe.renderer_kind() == "software"
    assert "Falling back to panda3d's software renderer" in caplog.text
    assert any("textures-power-2 down" in page for page in pages)
    choose("gl")
    with pytest.raises(RuntimeError, match="no OpenGL over EGL"):
        pipe.renderer_kind()
