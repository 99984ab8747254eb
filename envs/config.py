"""Environment configuration: one frozen dataclass, loaded from flat YAML, strictly.

Unknown keys are errors that name the key (a typo must never silently fall back to a
default). ``--set key=value`` overrides parse values as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


@dataclass(frozen=True)
class EnvConfig:
    """Settings of the driving environment. Units in brackets.

    Attributes:
        backend: ``embedded`` (in-process simulator) or ``carla`` (a CARLA server).
        towns: Towns to drive in (shipped names, ``.xodr`` paths, or CARLA map names); one
            is drawn per episode.
        routes: A leaderboard route file; empty: random routes of ``route_length``.
        route_length: Random route length range [m].
        lane_change_share: Probability that a random route changes into a neighbouring
            same-direction lane on a multi-lane road it enters (``RoutePlanner.random_keypoints``;
            0: only where the shortest path needs a change).
        weathers: Weather presets drawn per episode, or ``route`` for the route file's.
        vehicles: NPC vehicles per episode (traffic density).
        walkers: Pedestrians per episode.
        lights: ``cycle``, ``green`` or ``red-at-start``.
        camera_width: Camera image width [px].
        camera_height: Camera image height [px].
        camera_fov: Horizontal field of view [deg].
        camera_x: Mount forward of the vehicle centre [m].
        camera_z: Mount height above ground [m].
        camera_pitch: Mount pitch, positive up [deg].
        image: What the image observation holds: ``rgb``, ``labels`` (privileged) or ``bev``.
        frame_stack: Number of stacked frames.
        bev_size: BEV raster side [px] (``image: bev``).
        bev_ppm: BEV resolution [px/m].
        action: ``continuous`` (steer, throttle, brake), ``continuous_accel`` (steer, signed
            acceleration) or ``discrete`` (a grid of steer x throttle/brake).
        discrete_steer: Steer values of the discrete grid.
        discrete_pedals: Signed pedal values of the discrete grid (negative = brake).
        decision_hz: Agent decisions per second [Hz]; actions repeat between decisions.
        physics_dt: Simulator step [s] (the leaderboard's 20 Hz is 0.05).
        reward: ``shaped`` (speed, lateral and heading terms, Roach/Toromanoff style) or
            ``simple`` (route progress times soft penalties, CaRL style).
        target_speed: Cruise speed the shaped reward asks for [m/s].
        standstill_penalty: Reward per second [1/s] taken away while the ego stands (below
            1 m/s) although nothing ahead asks it to: no red light, vehicle or pedestrian
            within its stopping distance (the shaped reward's speed profile). Both rewards;
            0 turns it off. Without it, a policy that stops for no reason pays nothing until
            ``blocked_time`` runs out.
        blocked_time: Standing still this long ends the episode as ``vehicle_blocked``, a
            failure [s]. The leaderboard's 180 s (evaluation always uses it); a shorter one in
            training makes a needless stop cost the terminal penalty and the rest of the route.
        num_targets: Route target points in the measurements.
        terminate_on_collision: End the episode at the first collision.
        terminate_on_red_light: End the episode at the first red-light infraction.
        leaderboard: Criteria version, 1 or 2 (off-road allowance differs).
        host: CARLA server host (``carla`` backend).
        port: CARLA RPC port.
        tm_port: Traffic Manager port.
        timeout: Bound on every wait for the CARLA server and its camera images [s].
        retries: Connection attempts to the CARLA server, with exponential backoff.
    """

    backend: Literal["embedded", "carla"] = "embedded"
    towns: tuple[str, ...] = ("Grid01",)
    routes: str = ""
    route_length: tuple[float, float] = (250.0, 600.0)
    lane_change_share: float = 0.0
    weathers: tuple[str, ...] = ("ClearNoon",)
    vehicles: int = 30
    walkers: int = 30
    lights: Literal["cycle", "green", "red-at-start"] = "cycle"
    camera_width: int = 160
    camera_height: int = 96
    camera_fov: float = 100.0
    camera_x: float = 1.5
    camera_z: float = 2.4
    camera_pitch: float = 0.0
    image: Literal["rgb", "labels", "bev"] = "rgb"
    frame_stack: int = 4
    bev_size: int = 96
    bev_ppm: float = 2.0
    action: Literal["continuous", "continuous_accel", "discrete"] = "continuous"
    discrete_steer: tuple[float, ...] = (-0.6, -0.3, -0.1, 0.0, 0.1, 0.3, 0.6)
    discrete_pedals: tuple[float, ...] = (-1.0, 0.0, 0.4, 0.8)
    decision_hz: float = 10.0
    physics_dt: float = 0.05
    reward: Literal["shaped", "simple"] = "shaped"
    target_speed: float = 8.0
    standstill_penalty: float = 0.0
    blocked_time: float = 180.0
    num_targets: int = 3
    terminate_on_collision: bool = True
    terminate_on_red_light: bool = True
    leaderboard: int = 2
    host: str = "localhost"
    port: int = 2000
    tm_port: int = 8000
    timeout: float = 10.0
    retries: int = 3

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def action_repeat(self) -> int:
        """Physics steps per decision."""
        return max(1, round(1.0 / (self.decision_hz * self.physics_dt)))

    @property
    def decision_dt(self) -> float:
        """Simulated time between decisions [s]."""
        return self.physics_dt * self.action_repeat


def _validate(config: EnvConfig) -> None:
    checks = [
        (config.frame_stack >= 1, "frame_stack must be >= 1"),
        (config.num_targets >= 1, "num_targets must be >= 1"),
        (
            0 < config.route_length[0] <= config.route_length[1],
            "route_length must be [min, max] with 0 < min <= max",
        ),
        (0.0 <= config.lane_change_share <= 1.0, "lane_change_share must be in [0, 1]"),
        (
            config.decision_hz > 0 and config.physics_dt > 0,
            "decision_hz and physics_dt must be positive",
        ),
        (len(config.towns) >= 1, "towns must name at least one town"),
        (len(config.weathers) >= 1, "weathers must name at least one preset (or 'route')"),
        (config.leaderboard in (1, 2), "leaderboard must be 1 or 2"),
        (config.vehicles >= 0 and config.walkers >= 0, "vehicles and walkers must be >= 0"),
        (config.standstill_penalty >= 0, "standstill_penalty must be >= 0"),
        (config.blocked_time > 0, "blocked_time must be > 0"),
        (config.timeout > 0 and config.retries >= 1, "timeout must be > 0 and retries >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"bad environment config: {message}")
    hints = get_type_hints(EnvConfig)
    for name, kind in hints.items():
        if get_origin(kind) is Literal and getattr(config, name) not in get_args(kind):
            value = getattr(config, name)
            raise ValueError(
                f"bad environment config: {name}={value!r}; choose one of {get_args(kind)}"
            )
    if "route" in config.weathers and not config.routes:
        raise ValueError("bad environment config: weathers: route needs a routes file")
    if not config.routes:
        from envs.sim.weather import PRESET_NAMES

        unknown = [w for w in config.weathers if w not in PRESET_NAMES]
        if unknown:
            presets = ", ".join(PRESET_NAMES)
            raise ValueError(f"bad environment config: unknown weather {unknown}; use {presets}")


def _coerce(name: str, kind: Any, value: Any) -> Any:
    origin = get_origin(kind)
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        args = get_args(kind)
        inner = args[0] if args else Any
        return tuple(_coerce(name, inner, v) for v in items)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is float:
        if number:
            return float(value)
        raise ValueError(f"bad config: {name} must be a number, got {value!r}")
    if kind is int:
        if number and (isinstance(value, int) or value.is_integer()):
            return int(value)  # 1e5 from YAML
        raise ValueError(f"bad config: {name} must be an integer, got {value!r}")
    return value


def dataclass_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from a mapping, strictly.

    Unknown keys raise ``ValueError`` naming them and the valid ones; lists become tuples and
    integers floats where the field says so. Shared by every config of the project.
    """
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    return cls(**{k: _coerce(k, hints[k], v) for k, v in values.items()})


def dataclass_to_dict(config: Any) -> dict[str, Any]:
    """Plain-YAML-friendly mapping of a config dataclass (tuples as lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader, with ``1e-4`` read as a float.

    PyYAML follows YAML 1.1, whose floats need a dot (``1.0e-4``), so ``--set
    algo_kwargs.learning_rate=1e-4`` arrived as the string ``"1e-4"`` and the model could not
    be built; YAML 1.2 and Python read it as a number.
    """


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse config YAML (``_ConfigLoader``): files, ``--set`` values, saved run configs."""
    return yaml.load(text, Loader=_ConfigLoader)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; clear errors for a missing file or another shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of key: value at the top level")
    return loaded


def config_from_dict(values: dict[str, Any], source: str = "config") -> EnvConfig:
    """Build an ``EnvConfig`` from a mapping; unknown keys raise ``ValueError`` naming them."""
    return dataclass_from_dict(EnvConfig, values, source)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> a mapping, values parsed as YAML (``towns=[Grid01, Multi01]``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"override {pair!r} must look like key=value")
        out[key.strip()] = load_yaml(text)
    return out


def load_env_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> EnvConfig:
    """Load a flat YAML file (optional) and apply ``key=value`` overrides."""
    values: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        source = str(path)
        values.update(load_yaml_mapping(path))
    values.update(parse_overrides(overrides or []))
    return config_from_dict(values, source)


def config_to_dict(config: EnvConfig) -> dict[str, Any]:
    """Plain-YAML-friendly mapping of an environment config (tuples as lists)."""
    return dataclass_to_dict(config)
