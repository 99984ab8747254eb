"""Collect camera frames, semantic labels and affordances with the noisy autopilot.

The autopilot drives random routes in the embedded simulator with steer noise (so the data holds
recoveries, not only the lane centre); every ``every``-th tick the front camera is rendered and
stored with what lies ahead on the route. Frames go into compressed shards
(``shard_00000.npz``...) and a ``manifest.json`` lists them with the collection config.

Shard ``i`` depends only on the config and ``(seed, i)``: it starts fresh episodes from its own
generator, so a collection is deterministic, resumable shard by shard, and extendable.

Usage::

    python -m perception.collect --out data/seg --frames 20000 --weathers train
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from agent.autopilot import Autopilot, AutopilotParams
from envs.atomic import atomic_path, write_text_atomic
from envs.backends.base import CameraSpec, EpisodeSpec, WorldState
from envs.backends.embedded import EmbeddedBackend
from envs.hazards import Hazards
from envs.planner import RoutePlanner
from envs.sim.weather import PRESET_NAMES, Weather
from envs.types import TrafficLightState, Transform

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
MAX_DISTANCE = 50.0
"""[m] distances (stop line, vehicle, pedestrian) are clipped here; ``MAX_DISTANCE`` = none."""
LIGHT_RANGE = 40.0
"""[m] a stop line farther than this along the route counts as no light ahead."""

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
)
"""Per-frame affordance arrays of a shard (besides ``rgb``, ``labels``, and the metadata)."""
SHARD_KEYS = ("rgb", "labels", *AFFORDANCE_KEYS, "weather", "town", "episode")


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    Attributes:
        frames: Total frames to collect.
        towns: Shipped town names; shard ``i`` is driven in ``towns[i % len(towns)]``.
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
    """

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

    def __post_init__(self) -> None:
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


class _Collector:
    """Owns the backend and drives the episodes of one shard at a time."""

    def __init__(self, config: CollectConfig) -> None:
        self.config = config
        self.backend = EmbeddedBackend(config.towns[0])
        self.backend.set_cameras({"front": CameraSpec(width=config.width, height=config.height)})
        self._planners: dict[str, RoutePlanner] = {}

    def close(self) -> None:
        self.backend.close()

    def _planner(self, town: str) -> RoutePlanner:
        self.backend.load_town(town)
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
        episode = 0
        while len(rows) < wanted:
            self._episode(planner, town, episode, rng, rows, wanted, progress)
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
        """Drive one random route, appending frames to ``rows`` until done or ``wanted``."""
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
        pilot = Autopilot(
            AutopilotParams(steer_noise=cfg.steer_noise), int(rng.integers(2**31 - 1))
        )
        state = self.backend.reset(spec)
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
                rows.append(
                    self._row(state, pilot.last_hazards, lateral, heading, weather, town, episode)
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
        lateral: float,
        heading: float,
        weather: str,
        town: str,
        episode: int,
    ) -> dict[str, Any]:
        frame = state.cameras["front"]
        return {
            "rgb": np.asarray(frame.rgb, np.uint8),
            "labels": np.asarray(frame.labels, np.uint8),
            "light_state": np.int8(light_class(hazards)),
            "light_distance": np.float32(min(hazards.light_distance, MAX_DISTANCE)),
            "vehicle_gap": np.float32(min(hazards.vehicle_gap, MAX_DISTANCE)),
            "walker_gap": np.float32(min(hazards.walker_gap, MAX_DISTANCE)),
            "speed": np.float32(state.ego.speed),
            "lateral_offset": np.float32(lateral),
            "heading_error": np.float32(heading),
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
    old.pop("frames", None)
    new.pop("frames")
    if old != new:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"{path}: collected with a different config (differs in {changed}); "
            "use another --out directory or the same settings"
        )
    manifest["config"] = config.to_json()
    return manifest


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2))


def collect(config: CollectConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Collect (or finish collecting) ``config`` into ``out``.

    Shards already listed in the manifest with the expected frame count are kept; the others
    are (re)collected. Each shard is written atomically and the manifest updated after it.

    Args:
        config: What to collect.
        out: Output directory (created).
        progress: Show a tqdm bar over frames.

    Returns:
        The manifest as written.

    Raises:
        ValueError: if ``out`` holds a collection with a different config.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out, config)
    done = {s["file"]: s["frames"] for s in manifest["shards"] if (out / s["file"]).exists()}
    todo = [
        i for i in range(config.num_shards) if done.get(shard_name(i)) != config.shard_frames(i)
    ]
    initial = config.frames - sum(config.shard_frames(i) for i in todo)
    shards = {name: frames for name, frames in done.items()}
    bar = tqdm(total=config.frames, initial=initial, unit="frame", disable=not progress)
    collector = _Collector(config) if todo else None
    try:
        for index in todo:
            assert collector is not None
            data = collector.shard(index, bar)
            path = out / shard_name(index)
            with atomic_path(path) as tmp, tmp.open("wb") as f:
                np.savez_compressed(f, **data)  # type: ignore[arg-type]
            shards[path.name] = config.shard_frames(index)
            manifest["shards"] = _shard_list(shards, config)
            _write_json(out / MANIFEST, manifest)
            logger.info("wrote %s (%d frames)", path, config.shard_frames(index))
    finally:
        bar.close()
        if collector is not None:
            collector.close()
    manifest["shards"] = _shard_list(shards, config)
    _write_json(out / MANIFEST, manifest)
    return manifest


def _shard_list(shards: dict[str, int], config: CollectConfig) -> list[dict[str, Any]]:
    """Manifest entries of this collection's shards, in order (stray extras dropped)."""
    names = [shard_name(i) for i in range(config.num_shards)]
    return [{"file": n, "frames": shards[n]} for n in names if n in shards]


def _weathers(spec: str) -> tuple[str, ...]:
    if spec == "all":
        return PRESET_NAMES
    if spec == "train":
        return TRAIN_WEATHERS
    return tuple(w.strip() for w in spec.split(",") if w.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[CollectConfig, Path]:
    """Parse the command line into a config and an output directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--frames", type=int, default=CollectConfig.frames)
    parser.add_argument("--towns", default=",".join(CollectConfig.towns), help="comma-separated")
    parser.add_argument(
        "--weathers", default="train", help="all | train | comma-separated preset names"
    )
    parser.add_argument("--seed", type=int, default=CollectConfig.seed)
    parser.add_argument("--frames-per-shard", type=int, default=CollectConfig.frames_per_shard)
    parser.add_argument("--every", type=int, default=CollectConfig.every, help="ticks per frame")
    parser.add_argument("--width", type=int, default=CollectConfig.width)
    parser.add_argument("--height", type=int, default=CollectConfig.height)
    parser.add_argument("--vehicles", type=int, default=CollectConfig.vehicles)
    parser.add_argument("--walkers", type=int, default=CollectConfig.walkers)
    parser.add_argument("--steer-noise", type=float, default=CollectConfig.steer_noise)
    parser.add_argument(
        "--standing-every",
        type=int,
        default=CollectConfig.standing_every,
        help="while the ego stands still, store a frame only every this many ticks",
    )
    args = parser.parse_args(argv)
    config = CollectConfig(
        frames=args.frames,
        towns=tuple(t.strip() for t in args.towns.split(",") if t.strip()),
        weathers=_weathers(args.weathers),
        seed=args.seed,
        frames_per_shard=args.frames_per_shard,
        width=args.width,
        height=args.height,
        every=args.every,
        vehicles=args.vehicles,
        walkers=args.walkers,
        steer_noise=args.steer_noise,
        standing_every=args.standing_every,
    )
    return config, args.out


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config, out = parse_args(argv)
    manifest = collect(config, out)
    total = sum(s["frames"] for s in manifest["shards"])
    logger.info("%s: %d frames in %d shards", out, total, len(manifest["shards"]))


if __name__ == "__main__":
    main()
