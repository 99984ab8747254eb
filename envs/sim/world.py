"""The embedded world: a town, traffic lights, NPC vehicles, pedestrians and the ego.

``World`` owns every piece of simulation state and advances it at a fixed step (default 0.05 s,
the leaderboard's 20 Hz). All randomness comes from one ``numpy.random.Generator`` seeded in
``reset``, so a seed reproduces every actor's trajectory bit for bit. Reset respawns actors on
the already loaded map; the map, its raster, lights and sidewalk graph are built once.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.sim.collision import CellGrid, box_corners, boxes_overlap, circles_in_box
from envs.sim.lights import LightLayout, LightTiming, TrafficLights
from envs.sim.physics import BicycleState, VehicleParams, step_bicycle
from envs.sim.raster import OUTSIDE, SIDEWALK, RoadRaster
from envs.sim.roadmap import LaneTracker, RoadMap
from envs.sim.traffic import Traffic, TrafficParams
from envs.sim.walkers import SidewalkGraph, WalkerParams, Walkers
from envs.sim.weather import Weather
from envs.types import ActorKind, CollisionEvent, LaneInvasionEvent, Transform, VehicleControl

logger = logging.getLogger(__name__)

POLE_RADIUS = 0.2  # [m]
_NO_OBSTACLES = (np.zeros((0, 2)), np.zeros(0), np.zeros(0))
_MARKING_NAMES = (
    "Other",
    "Broken",
    "Solid",
    "SolidSolid",
    "SolidBroken",
    "BrokenSolid",
    "BrokenBroken",
    "BottsDots",
    "Grass",
    "Curb",
    "NONE",
)
_MARKING_COLORS = ("White", "Blue", "Green", "Red", "Yellow", "Other")


@dataclass(frozen=True)
class WorldConfig:
    """Settings of the embedded world.

    Attributes:
        dt: Fixed physics step [s] (the leaderboard runs at 20 Hz).
        vehicles: Number of NPC vehicles.
        walkers: Number of pedestrians.
        ego_clearance: NPCs spawn at least this far from the ego [m].
        raster_ppm: Resolution of the town raster [pixels per metre].
        lights: Traffic-light timings.
        traffic: NPC driver model.
        walker: Pedestrian behaviour.
        ego: Ego vehicle geometry and limits.
    """

    dt: float = 0.05
    vehicles: int = 50
    walkers: int = 50
    ego_clearance: float = 15.0
    raster_ppm: float = 4.0
    lights: LightTiming = field(default_factory=LightTiming)
    traffic: TrafficParams = field(default_factory=TrafficParams)
    walker: WalkerParams = field(default_factory=WalkerParams)
    ego: VehicleParams = field(default_factory=VehicleParams)

    def __post_init__(self) -> None:
        if not 0.0 < self.dt <= 0.5:
            raise ValueError(f"dt must be in (0, 0.5] seconds, got {self.dt}")
        if self.vehicles < 0 or self.walkers < 0:
            raise ValueError(
                f"actor counts must be >= 0, got vehicles={self.vehicles}, walkers={self.walkers}"
            )


@dataclass(frozen=True)
class TickEvents:
    """What the ego's sensors reported during one tick."""

    collisions: tuple[CollisionEvent, ...] = ()
    lane_invasions: tuple[LaneInvasionEvent, ...] = ()


@functools.lru_cache(maxsize=16)
def _load_cached(path: str) -> RoadMap:
    return RoadMap.from_file(path)


def load_town(town: str | Path | RoadMap) -> RoadMap:
    """A town by shipped name (``Grid01``), by ``.xodr`` path, or an already loaded map.

    Maps are cached per process, so several worlds on one town share it.

    Raises:
        ValueError: for an unknown town name (the message lists the shipped towns).
        FileNotFoundError: for a path that does not exist.
    """
    if isinstance(town, RoadMap):
        return town
    text = str(town)
    if text.endswith(".xodr") or Path(text).suffix or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"OpenDRIVE file {path} does not exist")
        return _load_cached(str(path.resolve()))
    from envs.towns import town_path

    return _load_cached(str(town_path(text)))


class World:
    """One embedded simulation: create once per town, ``reset`` per episode, ``tick`` per step."""

    def __init__(self, town: str | Path | RoadMap, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self.map = load_town(town)
        self.raster = RoadRaster(self.map, self.config.raster_ppm)
        self.light_layout = LightLayout(self.map)
        self.lights = TrafficLights(self.light_layout, self.config.lights)
        self.traffic = Traffic(self.map, self.light_layout.seg_light, self.config.traffic)
        self.sidewalks = SidewalkGraph(self.map, self.config.walker, self.raster)
        self.walkers = Walkers(self.sidewalks, self.config.walker)
        self.weather = Weather.preset("ClearNoon")
        self.ego = BicycleState(0.0, 0.0, 0.0)
        self._center_key: tuple[float, float, float] | None = None
        self._center = np.zeros(2)
        self.ego_z = 0.0
        self.control = VehicleControl()
        self.frame = 0
        self.sanitized_controls = 0
        self._rng = np.random.default_rng()
        self._ego_lane: tuple[int, int, int] | None = None
        self._tracker = LaneTracker(self.map)
        # Poles the ego's box may touch, from a coarse grid built once (poles never move).
        reach = math.hypot(self.config.ego.length, self.config.ego.width) / 2.0 + POLE_RADIUS
        self._poles = CellGrid(self.light_layout.pole[:, :2].tolist(), reach, 10.0)

    # ------------------------------------------------------------------------------- episode
    def reset(
        self,
        seed: int | None = None,
        ego: Transform | None = None,
        vehicles: int | None = None,
        walkers: int | None = None,
    ) -> None:
        """Start an episode without reloading the map.

        Args:
            seed: Seeds every random choice of the episode; ``None`` continues the current stream.
            ego: Ego spawn transform (CARLA frame, degrees); a random lane slot if ``None``.
            vehicles: NPC vehicle count (default: the config's).
            walkers: Pedestrian count (default: the config's).

        Raises:
            ValueError: for a spawn point off the road or an impossible density.
        """
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        rng = self._rng
        ego = ego if ego is not None else self._random_spawn(rng)
        self._check_on_road(ego)
        self._place_ego(ego)
        self.lights.reset(rng)
        count = self.config.vehicles if vehicles is None else vehicles
        center = self.ego_center()
        self.traffic.reset(rng, count, center, self.config.ego_clearance)
        self.walkers.reset(rng, self.config.walkers if walkers is None else walkers)
        self.frame = 0
        self.sanitized_controls = 0
        self.control = VehicleControl()
        self._tracker.reset()
        self._ego_lane = self._lane_key(center)

    def _random_spawn(self, rng: np.random.Generator) -> Transform:
        segs, offsets = self.traffic.slots
        if len(segs) == 0:
            raise ValueError(f"town {self.map.name!r} has no lane long enough to spawn on")
        pick = int(rng.integers(len(segs)))
        xyz, yaw = self.map.pose(segs[pick : pick + 1], offsets[pick : pick + 1])
        return Transform(float(xyz[0, 0]), float(xyz[0, 1]), float(xyz[0, 2]), math.degrees(yaw[0]))

    def _check_on_road(self, ego: Transform) -> None:
        hit = self.map.locate(ego.x, ego.y, ego.z)
        if hit is None:
            raise ValueError(
                f"spawn point ({ego.x:.1f}, {ego.y:.1f}) is off the road: no driving lane near it"
            )
        seg, _, lateral, _ = hit
        limit = self.map.seg_width[seg] / 2.0 + 0.5
        if lateral > limit:
            raise ValueError(
                f"spawn point ({ego.x:.1f}, {ego.y:.1f}) is off the road: the nearest driving lane "
                f"centre is {lateral:.1f} m away (at most {limit:.1f} m allowed)"
            )

    def _place_ego(self, ego: Transform) -> None:
        yaw = math.radians(ego.yaw)
        back = self.config.ego.center_offset
        self.ego = BicycleState(ego.x - back * math.cos(yaw), ego.y - back * math.sin(yaw), yaw)
        self.ego_z = ego.z

    # ---------------------------------------------------------------------------------- state
    def ego_center(self) -> np.ndarray:
        """(2,) centre of the ego's body [m] (read-only: kept until the ego moves)."""
        ego = self.ego
        key = (ego.x, ego.y, ego.yaw)
        if key != self._center_key:  # a tick asks several times for the same pose
            off = self.config.ego.center_offset
            center = np.array([ego.x + off * math.cos(ego.yaw), ego.y + off * math.sin(ego.yaw)])
            center.flags.writeable = False
            self._center, self._center_key = center, key
        return self._center

    def ego_transform(self) -> Transform:
        """The ego's body-centre pose in CARLA's frame (degrees)."""
        c = self.ego_center()
        return Transform(float(c[0]), float(c[1]), self.ego_z, math.degrees(self.ego.yaw))

    @property
    def time(self) -> float:
        """Simulated seconds since reset."""
        return self.frame * self.config.dt

    def set_weather(self, weather: Weather | str) -> None:
        """Change the weather now, by value or preset name."""
        self.weather = Weather.preset(weather) if isinstance(weather, str) else weather

    # ----------------------------------------------------------------------------------- step
    def tick(self, control: VehicleControl) -> TickEvents:
        """Advance the world by one fixed step with the ego driven by ``control``."""
        dt = self.config.dt
        control, changed = control.sanitized()
        self.sanitized_controls += int(changed)
        self.control = control
        previous = BicycleState(**vars(self.ego))
        step_bicycle(self.ego, control, self.config.ego, dt)
        self.lights.tick(dt)
        walkers = self.walkers
        if self.traffic.needs_obstacles:
            # Only pedestrians on the carriageway can be in an NPC's way; skip the sidewalks.
            on_road = walkers.active & (self.raster.classify(walkers.xyz[:, :2]) != SIDEWALK)
            obstacles = np.concatenate([self.ego_center()[None, :], walkers.xyz[on_road, :2]])
            speeds = np.concatenate([[abs(self.ego.speed)], walkers.speed[on_road]])
            radii = np.concatenate(
                [
                    [self.config.ego.length / 2.0],
                    np.full(int(on_road.sum()), self.config.walker.radius),
                ]
            )
        else:
            obstacles, speeds, radii = _NO_OBSTACLES
        self.traffic.step(self._rng, dt, self.lights.state, obstacles, speeds, radii)
        walkers.step(self._rng, dt)
        self.frame += 1
        collisions = self._collisions(previous)
        invasions = self._lane_invasions()
        return TickEvents(tuple(collisions), tuple(invasions))

    def _collisions(self, previous: BicycleState) -> list[CollisionEvent]:
        params = self.config.ego
        center, yaw = self.ego_center(), self.ego.yaw
        half = (params.length / 2.0, params.width / 2.0)
        events: list[CollisionEvent] = []
        radius = math.hypot(*half)  # bounding circle: farther centres cannot touch
        cx, cy = float(center[0]), float(center[1])
        t = self.traffic
        near = np.nonzero(
            (t.xyz[:, 0] - cx) ** 2 + (t.xyz[:, 1] - cy) ** 2 < (radius + t.bound_radius) ** 2
        )[0]
        if len(near):
            halves = np.stack([t.half_length[near], t.half_width[near]], axis=1)
            for i in near[boxes_overlap(center, yaw, half, t.xyz[near, :2], t.yaw[near], halves)]:
                events.append(
                    self._event(
                        ActorKind.VEHICLE, int(i), "vehicle.npc", t.xyz[i, :2], t.speed[i], t.yaw[i]
                    )
                )
                # No forced stop for the NPC: its own driver model brakes when the ego is
                # in its path and drives clear when it is not (a forced stop deadlocked both).
        w = self.walkers
        reach2 = (radius + self.config.walker.radius) ** 2
        near = np.nonzero(((w.xyz[:, 0] - cx) ** 2 + (w.xyz[:, 1] - cy) ** 2 < reach2) & w.active)[
            0
        ]
        if len(near):
            for i in near[
                circles_in_box(center, yaw, half, w.xyz[near, :2], self.config.walker.radius)
            ]:
                events.append(
                    self._event(
                        ActorKind.WALKER, int(i), "walker.pedestrian", w.xyz[i, :2], 0.0, 0.0
                    )
                )
                w.knock_down(int(i))
        for i in self._poles.candidates(cx, cy):
            pole = self.light_layout.pole[i, :2]
            if circles_in_box(center, yaw, half, pole[None, :], POLE_RADIUS)[0]:
                events.append(self._event(ActorKind.STATIC, -1, "static.pole", pole, 0.0, 0.0))
        for corner in box_corners(center, yaw, half).tolist():
            if self.raster.classify_point(corner[0], corner[1]) == OUTSIDE:
                events.append(
                    self._event(ActorKind.STATIC, -1, "static.building", corner, 0.0, 0.0)
                )
                break
        if any(self._pushes_into(e, previous) for e in events):
            # A solid contact stops the car where it was, as CARLA's physics would. Moves
            # that back away from what it touches are allowed, so it can never get stuck.
            self.ego = previous
            self.ego.speed = 0.0
        return events

    def _pushes_into(self, event: CollisionEvent, previous: BicycleState) -> bool:
        """Whether this tick's ego move goes deeper into a solid contact."""
        if event.other_kind == ActorKind.WALKER:
            return False
        off = self.config.ego.center_offset
        before = (
            previous.x + off * math.cos(previous.yaw) - event.x,
            previous.y + off * math.sin(previous.yaw) - event.y,
        )
        now = self.ego_center() - (event.x, event.y)
        return bool(math.hypot(now[0], now[1]) < math.hypot(*before) + 1e-6)

    def _event(
        self,
        kind: ActorKind,
        other: int,
        type_id: str,
        where: np.ndarray | list[float],
        speed: float,
        yaw: float,
    ) -> CollisionEvent:
        ego_v = np.array([math.cos(self.ego.yaw), math.sin(self.ego.yaw)]) * self.ego.speed
        other_v = np.array([math.cos(yaw), math.sin(yaw)]) * speed
        closing = float(np.linalg.norm(ego_v - other_v))
        return CollisionEvent(
            self.frame,
            kind,
            other,
            type_id,
            closing,
            closing * self.config.ego.mass,
            float(where[0]),
            float(where[1]),
        )

    def _lane_key(self, center: np.ndarray) -> tuple[int, int, int] | None:
        """The ego's lane (also refreshes the ego's height from the road)."""
        hit = self._tracker.locate(float(center[0]), float(center[1]), self.ego_z)
        if hit is None:
            return None
        self.ego_z = hit[3]
        return self.map.keys[hit[0]]

    def _lane_invasions(self) -> list[LaneInvasionEvent]:
        key = self._lane_key(self.ego_center())
        previous, self._ego_lane = self._ego_lane, key
        if (
            key is None
            or previous is None
            or key == previous
            or key[0] != previous[0]
            or key[1] != previous[1]
        ):
            return []
        seg = self.map.key_to_seg[previous]
        index = self.map.point_index(np.array([seg]), np.array([0.0]))[0]
        # Moving to a lane with a larger |id| means crossing the right marking (RHT lanes).
        right = abs(key[2]) > abs(previous[2]) and key[2] * previous[2] > 0
        kind = self.map.right_marking[index] if right else self.map.left_marking[index]
        color = self.map.right_color[index] if right else self.map.left_color[index]
        return [
            LaneInvasionEvent(self.frame, _MARKING_NAMES[int(kind)], _MARKING_COLORS[int(color)])
        ]
