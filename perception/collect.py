"""Collect camera frames, semantic labels and affordances with the noisy autopilot.

The autopilot drives random routes with steer noise (so the data holds recoveries, not only the
lane centre); every ``every``-th tick the front camera is rendered and stored with what lies
ahead on the route. Frames go into compressed shards (``shard_00000.npz``...) and a
``manifest.json`` lists them with the collection config.

Two simulators can drive: the embedded one (default), or a CARLA server (``--backend carla``),
whose RGB camera and semantic-segmentation camera on the same mount give the images and labels
of the same frame. Both write shards of the same keys, dtypes and shapes, so ``perception.train``
fine-tunes on CARLA recordings as it trains on embedded ones. A collection holds one backend's
frames only: resuming it with the other backend is refused.

Shard ``i`` depends only on the config and ``(seed, i)``: it starts fresh episodes from its own
generator, so a collection is resumable shard by shard, extendable, and on the embedded simulator
deterministic (a CARLA server's traffic and physics are not bit-exact between runs).

Usage::

    python -m perception.collect --out data/seg --frames 20000 --weathers train
    python -m perception.collect --out data/seg_carla --backend carla --port 2000 \
        --towns Town01,Town02 --frames 5000
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from agent.autopilot import Autopilot, AutopilotParams
from envs.atomic import atomic_path, write_text_atomic
from envs.backends.base import (
    BackendError,
    CameraSpec,
    EpisodeSpec,
    SimulatorBackend,
    SimulatorCrashed,
    WorldState,
)
from envs.backends.carla_connection import CarlaOptions
from envs.backends.embedded import EmbeddedBackend
from envs.hazards import Hazards
from envs.planner import RoutePlanner
from envs.sim.labels import NUM_LABELS
from envs.sim.weather import PRESET_NAMES, Weather
from envs.types import TrafficLightState, Transform

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
"""Version 2 added ``heading_ahead``; version 1 collections must be collected again."""
MAX_DISTANCE = 50.0
"""[m] distances (stop line, vehicle, pedestrian) are clipped here; ``MAX_DISTANCE`` = none."""
CLOSE_MARGIN = (0.5, 2.5)
"""[m] range of the stopping gap behind a car on close-following routes (``close_follow_share``)."""
CLOSE_HEADWAY = 0.2
"""[s] time gap behind a moving car on close-following routes."""
LIGHT_RANGE = 40.0
"""[m] a stop line farther than this along the route counts as no light ahead."""
HEADING_AHEAD = 10.0
"""[m] ``heading_ahead`` is the route's heading this far along the plan from the ego."""

STANDING_SPEED = 0.5
"""[m/s] below this the ego counts as standing still (see ``CollectConfig.standing_every``)."""

LIGHT_CLASSES = ("red", "yellow", "green", "none")
"""The 4-way traffic-light target: the light ahead within ``LIGHT_RANGE``, or none."""

TRAIN_WEATHERS: tuple[str, ...] = tuple(
    n
    for n in PRESET_NAMES
    if (n.endswith("Noon") or n.endswith("Sunset")) and not n.startswith("HardRain")
)
"""Noon and sunset presets; night and hard rain are held out for evaluation."""

AFFORDANCE_KEYS = (
    "light_state",
    "light_distance",
    "vehicle_gap",
    "walker_gap",
    "speed",
    "lateral_offset",
    "heading_error",
    "heading_ahead",
)
"""Per-frame affordance arrays of a shard (besides ``rgb``, ``labels``, and the metadata)."""
SHARD_KEYS = ("rgb", "labels", *AFFORDANCE_KEYS, "weather", "town", "episode")

Backend = Literal["embedded", "carla"]
BACKENDS: tuple[Backend, ...] = ("embedded", "carla")

SHARD_ATTEMPTS = 2
"""Tries of one shard when the simulator crashes while driving it (the backend reconnects
between); a simulator that never let an episode start is not tried again."""
MAX_FAILED_STARTS = 10
"""Routes in a row whose ego cannot spawn before a shard gives up (a CARLA start pose can be
occupied; a new route is drawn each time)."""


class CollectError(RuntimeError):
    """The collection stopped early; the message says why and how to continue."""


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    Attributes:
        backend: ``embedded`` (the in-process simulator) or ``carla`` (a CARLA server; where
            it is comes from ``CarlaOptions``, which is not part of what is collected).
        frames: Total frames to collect.
        towns: Towns; shard ``i`` is driven in ``towns[i % len(towns)]``. Shipped names
            (``Grid01``) or ``.xodr`` paths; with ``carla`` also the server's maps (``Town01``).
        weathers: Weather preset names, drawn per episode.
        seed: Master seed; shard ``i`` uses the generator seeded with ``(seed, i)``.
        frames_per_shard: Frames in every shard but possibly the last.
        width, height: Front camera size [px].
        every: A frame is stored every ``every`` physics ticks (20 Hz).
        warmup: Ticks driven after a reset before the first frame (the car pulls away).
        max_episode_ticks: A new route starts after this many ticks even if unfinished.
        max_offset: A new route starts when the ego is this far off the route [m].
        steer_noise: Standard deviation of the autopilot's steer noise.
        vehicles, walkers: NPC counts per episode.
        standing_every: While the ego stands still (waiting at a light, in a queue) a frame is
            stored only every this many ticks, so the data is not dominated by red lights.
        close_follow_share: Share of routes on which the autopilot follows close: it stops
            ``CLOSE_MARGIN`` behind a car (drawn per route) with ``CLOSE_HEADWAY``, instead
            of 5 m plus 1 s. A policy that brakes late ends up nearer a car than the expert
            ever goes; without such frames the encoder read a car 0-3 m ahead at a median
            of 15 m (the car fills the view) and the agent drove on into queues.
    """

    backend: Backend = "embedded"
    frames: int = 1000
    towns: tuple[str, ...] = ("Grid01", "Multi01")
    weathers: tuple[str, ...] = TRAIN_WEATHERS
    seed: int = 0
    frames_per_shard: int = 500
    width: int = 160
    height: int = 96
    every: int = 5
    warmup: int = 20
    max_episode_ticks: int = 1200
    max_offset: float = 6.0
    steer_noise: float = 0.1
    vehicles: int = 40
    walkers: int = 40
    standing_every: int = 40
    close_follow_share: float = 0.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in (
            "frames",
            "frames_per_shard",
            "width",
            "height",
            "every",
            "max_episode_ticks",
            "standing_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.close_follow_share <= 1.0:
            raise ValueError(f"close_follow_share must be in [0, 1], got {self.close_follow_share}")
        if not self.towns:
            raise ValueError("towns must name at least one town")
        if not self.weathers:
            raise ValueError("weathers must name at least one preset")
        for name in self.weathers:
            Weather.preset(name)  # raises with the valid names

    @property
    def num_shards(self) -> int:
        """How many shards the collection has."""
        return math.ceil(self.frames / self.frames_per_shard)

    def shard_frames(self, index: int) -> int:
        """Frames in shard ``index`` (the last one may be short)."""
        return min(self.frames_per_shard, self.frames - index * self.frames_per_shard)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON-friendly values."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def make_backend(config: CollectConfig, carla: CarlaOptions) -> SimulatorBackend:
    """The simulator ``config.backend`` names; a CARLA backend connects on first use."""
    if config.backend == "carla":
        return carla.backend()
    return EmbeddedBackend(config.towns[0])


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f"shard_{index:05d}.npz"


def light_class(hazards: Hazards) -> int:
    """The 4-way light target (index into ``LIGHT_CLASSES``) from the autopilot's hazards."""
    if hazards.light_distance > LIGHT_RANGE:
        return 3
    state = hazards.light_state
    if state in (TrafficLightState.RED, TrafficLightState.YELLOW, TrafficLightState.GREEN):
        return int(state)  # RED=0, YELLOW=1, GREEN=2 line up with LIGHT_CLASSES
    return 3


def route_errors(
    state: WorldState, points: NDArray[np.float64], yaw: NDArray[np.float64], index: int
) -> tuple[float, float]:
    """Lateral offset [m] and heading error [rad] of the ego to plan point ``index``.

    Both are positive to the right of the route (CARLA's left-handed frame: yaw grows
    clockwise seen from above); the heading error is wrapped to [-pi, pi).
    """
    ego = state.ego.transform
    route_yaw = float(yaw[index])
    dx, dy = ego.x - float(points[index, 0]), ego.y - float(points[index, 1])
    lateral = -math.sin(route_yaw) * dx + math.cos(route_yaw) * dy
    error = (math.radians(ego.yaw) - route_yaw + math.pi) % (2.0 * math.pi) - math.pi
    return lateral, error


def heading_ahead(
    state: WorldState,
    yaw: NDArray[np.float64],
    distance: NDArray[np.float64],
    index: int,
    ahead: float = HEADING_AHEAD,
) -> float:
    """The route's heading ``ahead`` metres along the plan from point ``index``, relative to
    the ego's heading [rad], positive when the route bends right of where the ego points.

    The lane affordances at the car (offset, heading error) say where the car is, not where
    the lane goes; this one is the steering feedforward of a curve or turn (the route targets
    the policy sees are up to 50 m apart and cut across curves). Wrapped to [-pi, pi).
    """
    target = min(int(np.searchsorted(distance, distance[index] + ahead)), len(yaw) - 1)
    ego_yaw = math.radians(state.ego.transform.yaw)
    return (float(yaw[target]) - ego_yaw + math.pi) % (2.0 * math.pi) - math.pi


class _Collector:
    """Owns the backend and drives the episodes of one shard at a time."""

    def __init__(self, config: CollectConfig, backend: SimulatorBackend) -> None:
        self.config = config
        self.backend = backend
        # depth=False: shards hold no depth, and CARLA then spawns no depth camera
        spec = CameraSpec(width=config.width, height=config.height, depth=False)
        self.backend.set_cameras({"front": spec})
        self._planners: dict[str, RoutePlanner] = {}
        self.maps: dict[str, str] = {}
        """Town asked for -> name of the map the simulator loaded for it."""
        self.episodes_started = 0

    def close(self) -> None:
        self.backend.close()

    def _planner(self, town: str) -> RoutePlanner:
        self.backend.load_town(town)
        self.maps[town] = self.backend.road_map.name
        if town not in self._planners:
            self._planners[town] = RoutePlanner(self.backend.road_map)
        return self._planners[town]

    def shard(self, index: int, progress: tqdm | None = None) -> dict[str, NDArray[Any]]:
        """Collect shard ``index`` from scratch."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        town = cfg.towns[index % len(cfg.towns)]
        planner = self._planner(town)
        wanted = cfg.shard_frames(index)
        rows: list[dict[str, Any]] = []
        episode = failed = 0
        while len(rows) < wanted:
            try:
                self._episode(planner, town, episode, rng, rows, wanted, progress)
                failed = 0
            except SimulatorCrashed:
                raise
            except BackendError as error:  # the ego could not spawn: draw another route
                failed += 1
                logger.warning(
                    "shard %d, episode %d: %s; trying another route", index, episode, error
                )
                if failed >= MAX_FAILED_STARTS:
                    raise CollectError(
                        f"shard {index}: {failed} routes in a row could not start in {town} "
                        f"(last: {error})"
                    ) from error
            episode += 1
        return {key: np.stack([r[key] for r in rows]) for key in SHARD_KEYS}

    def _episode(
        self,
        planner: RoutePlanner,
        town: str,
        episode: int,
        rng: np.random.Generator,
        rows: list[dict[str, Any]],
        wanted: int,
        progress: tqdm | None,
    ) -> None:
        """Drive one random route, appending frames to ``rows`` until done or ``wanted``.

        Raises:
            BackendError: if the episode cannot start (``SimulatorCrashed`` if the simulator
                failed, at the start or on the way).
        """
        cfg = self.config
        plan = planner.plan(planner.random_keypoints(rng, 200.0, 600.0))
        weather = cfg.weathers[int(rng.integers(len(cfg.weathers)))]
        start = plan.points[0]
        ego = Transform(
            float(start[0]), float(start[1]), float(start[2]) + 0.2, math.degrees(plan.yaw[0])
        )
        spec = EpisodeSpec(
            seed=int(rng.integers(2**31 - 1)),
            ego=ego,
            vehicles=cfg.vehicles,
            walkers=cfg.walkers,
            weather=Weather.preset(weather),
        )
        params = AutopilotParams(steer_noise=cfg.steer_noise)
        # Drawn only when asked for, so collections without close following stay as they were.
        if cfg.close_follow_share and rng.random() < cfg.close_follow_share:
            margin = float(rng.uniform(*CLOSE_MARGIN))
            params = dataclasses.replace(
                params, vehicle_margin=margin, follow_headway=CLOSE_HEADWAY
            )
        pilot = Autopilot(params, int(rng.integers(2**31 - 1)))
        state = self.backend.reset(spec)
        self.episodes_started += 1
        pilot.reset(plan, self.backend.road_map, state.lights)
        last_standing = -cfg.standing_every
        for tick in range(cfg.max_episode_ticks):
            # run_step updates last_hazards and index for this very state, so a frame rendered
            # on the previous tick is stored with its own affordances.
            control = pilot.run_step(state, self.backend.dt)
            lateral, heading = route_errors(state, plan.points, plan.yaw, pilot.index)
            standing = state.ego.speed < STANDING_SPEED
            if standing and tick - last_standing < cfg.standing_every:
                pass  # thin out the many near-identical frames of a car waiting
            elif self._wanted(tick) and "front" in state.cameras:
                if standing:
                    last_standing = tick
                ahead = heading_ahead(state, plan.yaw, plan.distance, pilot.index)
                rows.append(
                    self._row(
                        state, pilot.last_hazards, (lateral, heading, ahead), weather, town, episode
                    )
                )
                if progress is not None:
                    progress.update(1)
                if len(rows) >= wanted:
                    return
            near_end = plan.length - plan.distance[pilot.index] < 5.0
            if near_end or abs(lateral) > cfg.max_offset:
                return
            state = self.backend.tick(control, render=self._wanted(tick + 1))

    def _wanted(self, tick: int) -> bool:
        """Whether the state after ``tick`` ticks of an episode is stored."""
        cfg = self.config
        return tick >= cfg.warmup and (tick - cfg.warmup) % cfg.every == 0

    @staticmethod
    def _row(
        state: WorldState,
        hazards: Hazards,
        lane: tuple[float, float, float],
        weather: str,
        town: str,
        episode: int,
    ) -> dict[str, Any]:
        """One stored frame; ``lane`` is (lateral offset, heading error, heading ahead)."""
        frame = state.cameras["front"]
        labels = np.asarray(frame.labels, np.uint8)
        if int(labels.max()) >= NUM_LABELS:
            raise CollectError(
                f"the semantic camera sent label id {int(labels.max())}, beyond the "
                f"{NUM_LABELS} ids of CARLA >= 0.9.14 (envs/sim/labels.py); is the CARLA "
                "server another version than the client (0.9.16)?"
            )
        return {
            "rgb": np.asarray(frame.rgb, np.uint8),
            "labels": labels,
            "light_state": np.int8(light_class(hazards)),
            "light_distance": np.float32(min(hazards.light_distance, MAX_DISTANCE)),
            "vehicle_gap": np.float32(min(hazards.vehicle_gap, MAX_DISTANCE)),
            "walker_gap": np.float32(min(hazards.walker_gap, MAX_DISTANCE)),
            "speed": np.float32(state.ego.speed),
            "lateral_offset": np.float32(lane[0]),
            "heading_error": np.float32(lane[1]),
            "heading_ahead": np.float32(lane[2]),
            "weather": np.str_(weather),
            "town": np.str_(town),
            "episode": np.int32(episode),
        }


def _read_manifest(out: Path, config: CollectConfig) -> dict[str, Any]:
    """The existing manifest of ``out`` (or a fresh one); a different config is an error."""
    path = out / MANIFEST
    fresh = {
        "version": MANIFEST_VERSION,
        "seed": config.seed,
        "config": config.to_json(),
        "maps": {},
        "shards": [],
    }
    if not path.exists():
        return fresh
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it to start over") from exc
    old = dict(manifest.get("config", {}))
    new = config.to_json()
    old.setdefault("backend", "embedded")  # collections from before CARLA recording
    old.setdefault("close_follow_share", 0.0)  # and from before close following
    if old["backend"] != new["backend"]:
        raise ValueError(
            f"{path}: this collection was recorded with the {old['backend']} backend and "
            f"cannot be continued with {new['backend']} (one collection holds one simulator's "
            f"images); use another --out directory, or --backend {old['backend']} to extend it"
        )
    old.pop("frames", None)
    new.pop("frames")
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"{path}: collected with a different config (differs in {changed}); "
            "use another --out directory or the same settings"
        )
    manifest["config"] = config.to_json()
    manifest.setdefault("maps", {})
    return manifest


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))


def collect(
    config: CollectConfig,
    out: str | Path,
    progress: bool = True,
    carla: CarlaOptions | None = None,
) -> dict[str, Any]:
    """Collect (or finish collecting) ``config`` into ``out``.

    Shards already listed in the manifest with the expected frame count are kept; the others
    are (re)collected. Each shard is written atomically and the manifest updated after it, so
    a stop at any point (a dead server, Ctrl-C) loses at most the shard in progress. The
    manifest records the config (backend included), the CARLA server's version
    (``server_version``) and, under ``maps``, the map the simulator
    loaded for each town (for CARLA, the server's map name).

    Args:
        config: What to collect.
        out: Output directory (created).
        progress: Show a tqdm bar over frames.
        carla: The CARLA server (``config.backend == "carla"``); defaults to localhost:2000.

    Returns:
        The manifest as written.

    Raises:
        ValueError: if ``out`` holds a collection with a different config or backend.
        CollectError: if the simulator failed for good (the message names the CARLA server
            and how to continue) or kept refusing to start routes.
        BackendError: for a setting the simulator rejects (a town the server lacks...).
    """
    out = Path(out)
    carla = carla or CarlaOptions()
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out, config)
    done = {s["file"]: s["frames"] for s in manifest["shards"] if (out / s["file"]).exists()}
    todo = [
        i for i in range(config.num_shards) if done.get(shard_name(i)) != config.shard_frames(i)
    ]
    initial = config.frames - sum(config.shard_frames(i) for i in todo)
    shards = {name: frames for name, frames in done.items()}
    bar = tqdm(total=config.frames, initial=initial, unit="frame", disable=not progress)
    collector = _Collector(config, make_backend(config, carla)) if todo else None
    try:
        for index in todo:
            assert collector is not None
            try:
                data = _shard_with_retry(collector, index, bar)
            except SimulatorCrashed as error:
                raise CollectError(
                    _crash_message(config, carla, out, len(shards), error)
                ) from error
            path = out / shard_name(index)
            with atomic_path(path) as tmp, tmp.open("wb") as f:
                np.savez_compressed(f, **data)  # type: ignore[arg-type]
            shards[path.name] = config.shard_frames(index)
            manifest["shards"] = _shard_list(shards, config)
            manifest["maps"].update(collector.maps)
            version = getattr(collector.backend, "server_version", "")
            if version:  # CARLA: the server the shards came from (labels differ by version)
                manifest["server_version"] = version
            _write_json(out / MANIFEST, manifest)
            logger.info("wrote %s (%d frames)", path, config.shard_frames(index))
    finally:
        bar.close()
        if collector is not None:
            collector.close()
    manifest["shards"] = _shard_list(shards, config)
    _write_json(out / MANIFEST, manifest)
    return manifest


def _shard_with_retry(collector: _Collector, index: int, bar: tqdm) -> dict[str, NDArray[Any]]:
    """Shard ``index``, started over (the backend reconnects) if the simulator crashes."""
    for _ in range(SHARD_ATTEMPTS - 1):
        before, started = bar.n, collector.episodes_started
        try:
            return collector.shard(index, bar)
        except SimulatorCrashed as error:
            if collector.episodes_started == started:
                raise  # unreachable from the start: waiting through the backoff again is futile
            logger.warning("shard %d lost (%s); starting it again", index, error)
            bar.n = before  # the lost frames are collected again
            bar.refresh()
    return collector.shard(index, bar)


def _crash_message(
    config: CollectConfig, carla: CarlaOptions, out: Path, kept: int, error: Exception
) -> str:
    """What went wrong, what is kept, and what to do next."""
    kept_text = f"the {kept} complete shard(s) in {out} are kept"
    if config.backend != "carla":
        return f"the simulator failed ({error}); {kept_text}; run the same command to continue"
    return (
        f"the CARLA server at {carla.address} is unreachable or stopped answering ({error}); "
        f"{kept_text}. Start a CARLA 0.9.16 server there (e.g. $CARLA_ROOT/CarlaUE4.sh "
        f"-RenderOffScreen -carla-rpc-port={carla.port}; see docs/carla.md) or point --host/--port "
        "at a running one, then run the same command again to continue"
    )


def _shard_list(shards: dict[str, int], config: CollectConfig) -> list[dict[str, Any]]:
    """Manifest entries of this collection's shards, in order (stray extras dropped)."""
    names = [shard_name(i) for i in range(config.num_shards)]
    return [{"file": n, "frames": shards[n]} for n in names if n in shards]


if __name__ == "__main__":
    from perception.collect_cli import main

    sys.exit(main())
