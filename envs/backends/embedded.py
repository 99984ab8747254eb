"""The embedded simulator behind the ``SimulatorBackend`` protocol."""

from __future__ import annotations

from collections.abc import Mapping
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


class EmbeddedBackend:
    """Runs episodes in the in-process ``World``; cameras render with panda3d on demand.

    Args:
        town: Shipped town name, ``.xodr`` path, or a loaded ``RoadMap``.
        config: World settings (step, traffic models, ego geometry).
        render_seed: Seed of the procedural scenery (buildings, trees).
    """

    def __init__(
        self, town: str | Path | RoadMap, config: WorldConfig | None = None, render_seed: int = 0
    ) -> None:
        self._config = config or WorldConfig()
        self._render_seed = render_seed
        self._cameras: dict[str, CameraSpec] = {}
        self._renderer: FrameRenderer | None = None
        self._closed = False
        self._town = ""
        self.load_town(town if isinstance(town, RoadMap) else str(town))

    # --------------------------------------------------------------------------- protocol
    @property
    def road_map(self) -> RoadMap:
        """The current town."""
        return self.world.map

    @property
    def dt(self) -> float:
        """Physics step [s]."""
        return self._config.dt

    def load_town(self, town: str | RoadMap) -> None:
        """Switch towns; a no-op when the town is already loaded."""
        name = town.name if isinstance(town, RoadMap) else str(town)
        if name == self._town:
            return
        self._close_renderer()
        self.world = World(town, self._config)
        self._lights = self._light_layout()
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
        """Release the renderer's GL resources (idempotent)."""
        self._close_renderer()
        self._closed = True

    # -------------------------------------------------------------------------------- state
    def render(self) -> dict[str, CameraFrame]:
        """Images of every declared camera for the current state."""
        if not self._cameras:
            return {}
        if self._renderer is None:
            from envs.sim.camera import make_renderer

            self._renderer = make_renderer(self.world, seed=self._render_seed)
        names = list(self._cameras)
        frames = self._renderer.render_many(self.world, [self._cameras[n] for n in names])
        return dict(zip(names, frames, strict=True))

    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _light_layout(self) -> tuple[TrafficLightInfo, ...]:
        layout, roadmap = self.world.light_layout, self.world.map
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
            np.stack([2 * t.half_length, 2 * t.half_width], axis=1),
        )
        live = np.flatnonzero(w.active)
        walkers = Actors(
            live,
            w.xyz[live].copy(),
            np.degrees(w.yaw[live]),
            w.speed[live].copy(),
            np.full((len(live), 2), 2 * world.config.walker.radius),
        )
        return WorldState(
            frame=world.frame,
            time=world.time,
            ego=ego,
            vehicles=vehicles,
            walkers=walkers,
            lights=self._lights,
            light_states=world.lights.state.copy(),
            collisions=events.collisions,
            lane_invasions=events.lane_invasions,
            cameras=self.render() if render else {},
            weather=world.weather,
        )
