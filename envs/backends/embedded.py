"""The embedded simulator behind the ``SimulatorBackend`` protocol."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from envs.backends.base import (
    Actors,
    CameraFrame,
    CameraSpec,
    EgoState,
    EpisodeSpec,
    StopLine,
    TrafficLightInfo,
    WorldState,
)
from envs.sim.roadmap import RoadMap
from envs.sim.weather import Weather
from envs.sim.world import TickEvents, World, WorldConfig
from envs.types import TrafficLightState, VehicleControl

if TYPE_CHECKING:
    from envs.sim.camera import FrameRenderer


TOWN_CACHE = 4
"""Towns an ``EmbeddedBackend`` keeps loaded by default, the current one included."""


@dataclass
class _LoadedTown:
    """A town's world, its light layout and its renderer (made on the first frame)."""

    world: World
    lights: tuple[TrafficLightInfo, ...]
    renderer: FrameRenderer | None = None


class EmbeddedBackend:
    """Runs episodes in the in-process ``World``; cameras render with panda3d on demand.

    A town's ``World`` and renderer take ~0.4 s to build (sidewalk graph, raster, scene), so
    the backend keeps the last ``town_cache`` towns loaded: training that samples a town per
    episode switches between them for free. Every ``reset`` reseeds the whole world, so an
    episode does not depend on which towns were driven before it.

    Args:
        town: Shipped town name, ``.xodr`` path, or a loaded ``RoadMap``.
        config: World settings (step, traffic models, ego geometry).
        render_seed: Seed of the procedural scenery (buildings, trees).
        town_cache: Towns kept loaded, the current one included (least recently used dropped).
    """

    def __init__(
        self,
        town: str | Path | RoadMap,
        config: WorldConfig | None = None,
        render_seed: int = 0,
        town_cache: int = TOWN_CACHE,
    ) -> None:
        if town_cache < 1:
            raise ValueError(f"town_cache must be >= 1, got {town_cache}")
        self._config = config or WorldConfig()
        self._render_seed = render_seed
        self._town_cache = town_cache
        self._cameras: dict[str, CameraSpec] = {}
        self._loaded: OrderedDict[str, _LoadedTown] = OrderedDict()
        self._closed = False
        self._town = ""
        self.load_town(town if isinstance(town, RoadMap) else str(town))

    # --------------------------------------------------------------------------- protocol
    @property
    def road_map(self) -> RoadMap:
        """The current town."""
        return self.world.map

    @property
    def lights(self) -> tuple[TrafficLightInfo, ...]:
        """The current town's traffic lights (poles and stop lines), as ``WorldState.lights``."""
        return self._current.lights

    @property
    def renderer(self) -> FrameRenderer | None:
        """The current town's camera renderer (``None`` until the first frame)."""
        return self._current.renderer

    @property
    def dt(self) -> float:
        """Physics step [s]."""
        return self._config.dt

    def load_town(self, town: str | RoadMap) -> None:
        """Switch towns; a no-op when the town is the current one, and no rebuild when it is
        one of the last ``town_cache`` loaded."""
        name = town.name if isinstance(town, RoadMap) else str(town)
        if name == self._town:
            return
        loaded = self._loaded.pop(name, None)
        if loaded is None:
            world = World(town, self._config)
            loaded = _LoadedTown(world, _light_layout(world))
        self._loaded[name] = loaded  # most recently used last
        while len(self._loaded) > self._town_cache:
            _, dropped = self._loaded.popitem(last=False)
            if dropped.renderer is not None:
                dropped.renderer.close()
        self._current = loaded
        self.world = loaded.world
        self._town = name

    def set_cameras(self, cameras: Mapping[str, CameraSpec]) -> None:
        """Declare the ego's cameras by name."""
        self._cameras = dict(cameras)

    def reset(self, spec: EpisodeSpec) -> WorldState:
        """Respawn the ego and traffic (the map is kept), set weather and light mode."""
        world = self.world
        world.reset(seed=spec.seed, ego=spec.ego, vehicles=spec.vehicles, walkers=spec.walkers)
        world.set_weather(spec.weather)
        if spec.lights == "green":
            world.lights.force(TrafficLightState.GREEN)
        elif spec.lights == "red-at-start":
            world.lights.time = 0.0
            world.lights.offset[:] = 0.0
            world.lights.force(None)
            # Every controller starts at the red (all-clear) end of its turn: the first
            # approach meets a red light.
            world.lights.offset[:] = -world.lights.timing.green - world.lights.timing.yellow
            world.lights.tick(0.0)
        return self._state(TickEvents(), render=bool(self._cameras))

    def tick(self, control: VehicleControl, render: bool = False) -> WorldState:
        """One physics step; renders the declared cameras when ``render``."""
        events = self.world.tick(control)
        return self._state(events, render)

    def set_weather(self, weather: Weather) -> None:
        """Change the weather now."""
        self.world.set_weather(weather)

    def close(self) -> None:
        """Release the renderers' GL resources (idempotent)."""
        for loaded in self._loaded.values():
            if loaded.renderer is not None:
                loaded.renderer.close()
                loaded.renderer = None
        self._closed = True

    # -------------------------------------------------------------------------------- state
    def render(self) -> dict[str, CameraFrame]:
        """Images of every declared camera for the current state."""
        if not self._cameras:
            return {}
        current = self._current
        if current.renderer is None:
            from envs.sim.camera import make_renderer

            current.renderer = make_renderer(self.world, seed=self._render_seed)
        names = list(self._cameras)
        frames = current.renderer.render_many(self.world, [self._cameras[n] for n in names])
        return dict(zip(names, frames, strict=True))

    def _state(self, events: TickEvents, render: bool) -> WorldState:
        world = self.world
        params = world.config.ego
        ego = EgoState(
            transform=world.ego_transform(),
            speed=world.ego.speed,
            acceleration=world.ego.accel,
            control=world.control,
            length=params.length,
            width=params.width,
        )
        t, w = world.traffic, world.walkers
        vehicles = Actors(
            np.arange(len(t.s)),
            t.xyz.copy(),
            np.degrees(t.yaw),
            t.speed.copy(),
            t.extent.copy(),
        )
        live = np.flatnonzero(w.active)
        walkers = Actors(
            live,
            w.xyz[live],  # indexing with an array copies
            np.degrees(w.yaw[live]),
            w.speed[live],
            np.full((len(live), 2), 2 * world.config.walker.radius),
        )
        return WorldState(
            frame=world.frame,
            time=world.time,
            ego=ego,
            vehicles=vehicles,
            walkers=walkers,
            lights=self._current.lights,
            light_states=world.lights.state.copy(),
            collisions=events.collisions,
            lane_invasions=events.lane_invasions,
            cameras=self.render() if render else {},
            weather=world.weather,
        )


def _light_layout(world: World) -> tuple[TrafficLightInfo, ...]:
    """The town's lights as the backend protocol describes them (poles and stop lines)."""
    layout, roadmap = world.light_layout, world.map
    lights = []
    for i, lanes in enumerate(layout.lanes):
        left, right = roadmap.lane_edges(roadmap.segment_end(np.asarray(lanes)))
        lines = [
            StopLine(
                (float(a[0]), float(a[1])),
                (float(b[0]), float(b[1])),
                roadmap.keys[seg][0],
                roadmap.keys[seg][2],
            )
            for seg, a, b in zip(lanes, left, right, strict=True)
        ]
        pole = layout.pole[i]
        lights.append(
            TrafficLightInfo(i, (float(pole[0]), float(pole[1]), float(pole[2])), tuple(lines))
        )
    return tuple(lights)
