"""Agents the evaluation harness can drive, and the validation of their sensor declarations.

An agent is anything with ``setup(plan, roadmap, lights)``, ``run_step(state)`` and
``sensors()`` (``Agent``). As on the CARLA leaderboard, the harness asks for the sensor
declarations and validates them before anything spawns, so a bad declaration rejects the run
instead of failing in the middle of a route.

Shipped agents: ``autopilot`` (the privileged expert of ``agent.autopilot``), ``random``
(uniform random controls, seeded) and ``constant`` (throttle 0.5, steer 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agent.autopilot import Autopilot
from envs.backends.base import TrafficLightInfo, WorldState
from envs.routes import RoutePlan
from envs.sim.roadmap import RoadMap
from envs.types import VehicleControl

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "AgentError",
    "AutopilotAgent",
    "ConstantAgent",
    "RandomAgent",
    "make_agent",
    "validate_sensors",
]

AGENT_NAMES = ("autopilot", "random", "constant")
"""Agents selectable by name on the command line."""

CHECKPOINT_SUFFIXES = (".zip",)

_CAMERA_KEYS = ("x", "y", "z", "roll", "pitch", "yaw", "width", "height", "fov")
SENSOR_KEYS: Mapping[str, tuple[str, ...]] = {
    "sensor.camera.rgb": _CAMERA_KEYS,
    "sensor.camera.semantic_segmentation": _CAMERA_KEYS,
    "sensor.camera.depth": _CAMERA_KEYS,
    "sensor.other.imu": ("x", "y", "z", "roll", "pitch", "yaw"),
    "sensor.other.gnss": ("x", "y", "z"),
    "sensor.speedometer": (),
    "sensor.opendrive_map": (),
}
"""Sensor types an agent may declare, with the keys each declaration must give."""
MAX_CAMERA_SIDE = 4096  # [px]


class AgentError(ValueError):
    """An agent that cannot be built or whose sensors are invalid; the message says the fix."""


@runtime_checkable
class Agent(Protocol):
    """What the harness needs from an agent."""

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """Prepare for a new route (called after the episode has been reset)."""
        ...

    def run_step(self, state: WorldState) -> VehicleControl:
        """The control for the current simulator state."""
        ...

    def sensors(self) -> list[dict[str, Any]]:
        """Leaderboard-style sensor declarations (``type``, ``id`` and the type's keys)."""
        ...


class AutopilotAgent:
    """The privileged expert: reads the world state directly (no sensors but the map).

    Args:
        seed: Seed of the autopilot's noise generator (no noise by default).
        dt: Physics step [s].
    """

    def __init__(self, seed: int = 0, dt: float = 0.05) -> None:
        self._pilot = Autopilot(seed=seed)
        self._dt = dt

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """Take the route."""
        self._pilot.reset(plan, roadmap, lights)

    def run_step(self, state: WorldState) -> VehicleControl:
        """Pure pursuit and PI speed control towards hazard-aware target speeds."""
        return self._pilot.run_step(state, self._dt)

    def sensors(self) -> list[dict[str, Any]]:
        """The map track's privileged declaration plus a speedometer."""
        return [
            {"type": "sensor.opendrive_map", "id": "OpenDRIVE", "reading_frequency": 1},
            {"type": "sensor.speedometer", "id": "SPEED"},
        ]


class RandomAgent:
    """Uniform random controls: throttle, brake in [0, 1], steer in [-1, 1].

    Args:
        seed: Seed of the agent's generator; the same seed gives the same controls.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """Nothing to prepare."""

    def run_step(self, state: WorldState) -> VehicleControl:
        """A random control."""
        throttle, brake = self._rng.uniform(0.0, 1.0, size=2)
        steer = self._rng.uniform(-1.0, 1.0)
        return VehicleControl(throttle=float(throttle), steer=float(steer), brake=float(brake))

    def sensors(self) -> list[dict[str, Any]]:
        """No sensors: it does not look."""
        return []


class ConstantAgent:
    """Throttle 0.5, steer 0, forever: the floor any learnt agent must beat."""

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """Nothing to prepare."""

    def run_step(self, state: WorldState) -> VehicleControl:
        """The same control every tick."""
        return VehicleControl(throttle=0.5, steer=0.0)

    def sensors(self) -> list[dict[str, Any]]:
        """No sensors: it does not look."""
        return []


def make_agent(name: str, seed: int = 0, dt: float = 0.05) -> Agent:
    """Build an agent by name.

    Args:
        name: One of ``AGENT_NAMES``, or a checkpoint ``.zip`` written by ``train.py``.
        seed: Seed of the agent's randomness.
        dt: Physics step [s].

    Raises:
        AgentError: an unknown name, or a checkpoint that cannot be loaded (the message
            names the file and the problem).
    """
    if name == "autopilot":
        return AutopilotAgent(seed, dt)
    if name == "random":
        return RandomAgent(seed)
    if name == "constant":
        return ConstantAgent()
    if Path(name).suffix in CHECKPOINT_SUFFIXES or Path(name).exists():
        from agent.checkpoint import CheckpointError
        from agent.policy_agent import PolicyAgent

        try:
            return PolicyAgent.from_checkpoint(name)
        except (CheckpointError, FileNotFoundError) as exc:
            raise AgentError(f"--agent {name}: {exc}") from exc
    raise AgentError(
        f"--agent {name!r}: unknown agent; use one of {', '.join(AGENT_NAMES)} "
        "or a checkpoint .zip written by train.py"
    )


def _check_sensor(sensor: Any, where: str) -> str:
    if not isinstance(sensor, Mapping):
        raise AgentError(f"{where}: a sensor declaration must be a dict, got {type(sensor)}")
    kind, ident = sensor.get("type"), sensor.get("id")
    if not isinstance(kind, str) or kind not in SENSOR_KEYS:
        raise AgentError(
            f"{where}: unknown sensor type {kind!r}; supported: {', '.join(SENSOR_KEYS)}"
        )
    if not isinstance(ident, str) or not ident:
        raise AgentError(f"{where}: every sensor needs a non-empty string 'id'")
    missing = [k for k in SENSOR_KEYS[kind] if k not in sensor]
    if missing:
        raise AgentError(f"{where}: sensor {ident!r} ({kind}) lacks {missing}")
    if kind.startswith("sensor.camera."):
        width, height = sensor["width"], sensor["height"]
        if not (0 < int(width) <= MAX_CAMERA_SIDE and 0 < int(height) <= MAX_CAMERA_SIDE):
            raise AgentError(
                f"{where}: camera {ident!r} is {width}x{height} px; each side must be "
                f"1..{MAX_CAMERA_SIDE}"
            )
    return ident


def validate_sensors(sensors: Sequence[Any], agent: str = "agent") -> list[dict[str, Any]]:
    """Check an agent's sensor declarations before anything spawns.

    Args:
        sensors: What ``Agent.sensors()`` returned.
        agent: The agent's name, for messages.

    Returns:
        The declarations as plain dicts (for the results file's ``sensors``).

    Raises:
        AgentError: a declaration of an unknown type, without its keys, with a duplicate id,
            or with an impossible camera size.
    """
    if not isinstance(sensors, Sequence):
        raise AgentError(f"{agent}.sensors() must return a list of dicts, got {type(sensors)}")
    seen: set[str] = set()
    for i, sensor in enumerate(sensors):
        ident = _check_sensor(sensor, f"{agent}.sensors()[{i}]")
        if ident in seen:
            raise AgentError(f"{agent}.sensors(): duplicate sensor id {ident!r}")
        seen.add(ident)
    return [dict(s) for s in sensors]
