"""One CARLA server seen by one client: connect, reconnect, restart, load towns, sync settings.

``CarlaConnection`` owns the ``carla.Client``, the ``carla.World`` and the Traffic Manager handle.
Every network call is bounded by the client timeout. After a failure the handles are dropped
(``lose``); the next ``ensure`` reconnects with exponential backoff, restarting the server by its
process handle when one was given, reloads the town (which clears every actor left over) and
re-applies synchronous mode. ``generation`` counts fresh worlds, so the backend knows when its
per-town caches (spawn points, lights) are stale.
"""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envs.backends.base import BackendError, SimulatorCrashed
from envs.backends.carla_convert import town_name
from envs.backends.carla_server import ServerProcess

if TYPE_CHECKING:
    from envs.backends.carla_backend import CarlaBackend

logger = logging.getLogger(__name__)

LOAD_TIMEOUT = 120.0  # [s] longest wait for the server to load or generate a town


@dataclass(frozen=True)
class CarlaOptions:
    """Where a CARLA server is and how long to wait for it: what every CARLA user here takes.

    ``DrivingEnv`` (``EnvConfig``), ``evaluate.py`` and ``perception.collect`` build their
    backend from one of these, so the same flags mean the same thing everywhere.

    Attributes:
        host: Server address.
        port: Server RPC port (the server also uses ``port + 1``).
        tm_port: Traffic Manager port; must differ for each server on a machine.
        timeout: Bound on every wait for the server and its camera images [s] (a town load
            waits up to ``LOAD_TIMEOUT``).
        retries: Connection attempts, with exponential backoff, before giving up.
    """

    host: str = "localhost"
    port: int = 2000
    tm_port: int = 8000
    timeout: float = 10.0
    retries: int = 3

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def backend(self, dt: float = 0.05) -> CarlaBackend:
        """A ``CarlaBackend`` for this server (it connects on first use), stepping ``dt`` [s]."""
        from envs.backends.carla_backend import CarlaBackend

        return CarlaBackend(
            host=self.host,
            port=self.port,
            tm_port=self.tm_port,
            timeout=self.timeout,
            retries=self.retries,
            dt=dt,
        )


def import_carla() -> Any:
    """The ``carla`` client module, with an actionable error when it is missing."""
    try:
        return importlib.import_module("carla")
    except ImportError as error:
        raise BackendError(
            "the CARLA backend needs the CARLA client: pip install carla==0.9.16 "
            "(the same version as the server)"
        ) from error


@functools.lru_cache(maxsize=1)
def _shipped_towns() -> frozenset[str]:
    from envs.towns import available_towns

    return frozenset(available_towns())


class CarlaConnection:
    """Client-side handles on one CARLA server, rebuilt after failures.

    Args: see ``CarlaBackend``, which forwards its own.
    """

    def __init__(
        self,
        host: str,
        port: int,
        tm_port: int,
        timeout: float,
        dt: float,
        server: ServerProcess | None,
        client_factory: Callable[[str, int], Any] | None,
        retries: int,
        backoff: float,
        carla_module: Any,
    ) -> None:
        self.host, self.port, self.tm_port = host, port, tm_port
        self.timeout, self.dt, self.retries, self.backoff = timeout, dt, retries, backoff
        self.server = server
        self._client_factory = client_factory
        self._carla = carla_module
        self.town: str | None = None
        """The town asked for (reloaded after a failure); ``None`` keeps the server's."""
        self.original_settings: Any = None
        self.owns_server = False
        self.server_version = ""
        """The server's version string (``client.get_server_version()``), once connected."""
        self.crashed = False
        self.generation = 0
        self.drop()

    @property
    def carla(self) -> Any:
        """The ``carla`` module (imported on first use)."""
        if self._carla is None:
            self._carla = import_carla()
        return self._carla

    @property
    def connected(self) -> bool:
        """Whether the handles are usable (no failure since the last connection)."""
        return self.world is not None

    def drop(self) -> None:
        """Forget every server-side handle."""
        self.client: Any = None
        self.world: Any = None
        self.tm: Any = None
        self.loaded: str | None = None
        self._map: Any = None

    def lose(self, reason: str) -> None:
        """Record a failure: handles dropped, the next ``ensure`` rebuilds everything."""
        logger.error("%s; the episode is lost, the next reset reconnects", reason)
        self.drop()
        self.crashed = True

    def ensure(self) -> None:
        """Connect (or reconnect after a failure), waiting ``backoff * 2**k`` between attempts.

        Raises:
            SimulatorCrashed: after ``retries`` failed attempts.
        """
        if self.connected:
            return
        last: Exception | None = None
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                self._start_server(restart=self.crashed or attempt > 0)
                self._connect()
                self.crashed = False
                return
            except RuntimeError as error:  # BackendError from a server start included
                last = error
                logger.warning("CARLA attempt %d/%d: %s", attempt + 1, self.retries, error)
                self.drop()
        self.crashed = True
        raise SimulatorCrashed(
            f"cannot reach CARLA at {self.host}:{self.port} after {self.retries} attempts: {last}"
        )

    def _start_server(self, restart: bool) -> None:
        server = self.server
        if server is None:
            return
        if not server.alive:
            if server.starts == 0:
                self.owns_server = True  # never started by anyone: ours to stop
            server.start()
        elif restart:
            server.restart()

    def _connect(self) -> None:
        factory = self._client_factory or self.carla.Client
        client = factory(self.host, self.port)
        client.set_timeout(self.timeout)
        world = client.get_world()
        self.server_version = str(client.get_server_version())
        client_version = str(client.get_client_version())
        if client_version != self.server_version:
            logger.warning(
                "CARLA client %s and server %s differ: install the carla package of the "
                "server's version (pip install carla==%s)",
                client_version,
                self.server_version,
                self.server_version,
            )
        if self.original_settings is None:
            self.original_settings = world.get_settings()
        self.client, self.world = client, world
        self.tm = client.get_trafficmanager(self.tm_port)
        self.generation += 1
        if self.town is not None:
            self.load(self.town, force=True)  # a fresh world: no actors left from before
        else:
            self.apply_sync()
        logger.info("connected to CARLA at %s:%d", self.host, self.port)

    def apply_sync(self) -> None:
        """Synchronous mode with ``fixed_delta_seconds = dt``, Traffic Manager included."""
        settings = self.world.get_settings()
        settings.synchronous_mode = True
        settings.fixed_delta_seconds = self.dt
        self.world.apply_settings(settings)
        self.tm.set_synchronous_mode(True)

    def current_map(self) -> Any:
        """The ``carla.Map`` of the loaded town (fetched once per world)."""
        if self._map is None:
            self._map = self.world.get_map()
            if self.loaded is None:
                self.loaded = town_name(self._map.name)
        return self._map

    def loaded_name(self) -> str:
        """Short name of the town the server has loaded."""
        return self.loaded or town_name(self.current_map().name)

    def load(self, town: str, force: bool) -> bool:
        """Load ``town`` unless it is loaded already (or ``force``); re-applies sync mode.

        Returns:
            Whether a new world was loaded (every actor is gone then).
        """
        is_file = town.endswith(".xodr")
        target = Path(town).stem if is_file else town_name(town)
        if not force and target == self.loaded_name():
            self.town = town
            return False
        available = {town_name(m) for m in self.client.get_available_maps()}
        if not is_file and target not in available and target not in _shipped_towns():
            raise BackendError(f"town {town!r} is not on the server; it has {sorted(available)}")
        # A town load takes tens of seconds on a busy server, longer than any tick may take
        # (carla-simulator/carla#1837): the client waits LOAD_TIMEOUT for it, then goes back
        # to its own bound.
        self.client.set_timeout(max(self.timeout, LOAD_TIMEOUT))
        try:
            if target in available and not is_file:
                world = self.client.load_world(target)
            else:
                world = self._generate_world(town, target)
        finally:
            self.client.set_timeout(self.timeout)
        logger.info("loaded town %s", target)
        self.world, self.town, self.loaded, self._map = world, town, target, None
        self.generation += 1
        self.apply_sync()
        return True

    def _generate_world(self, town: str, target: str) -> Any:
        """Build a world from OpenDRIVE alone (the project's towns on a CARLA server)."""
        if town.endswith(".xodr"):
            path = Path(town)
            if not path.is_file():
                raise BackendError(f"OpenDRIVE file {path} does not exist")
        else:
            from envs.towns import town_path

            path = town_path(target)
        params = self.carla.OpendriveGenerationParameters(
            vertex_distance=2.0,
            max_road_length=50.0,
            wall_height=1.0,
            additional_width=0.6,
            smooth_junctions=True,
            enable_mesh_visibility=True,
            enable_pedestrian_navigation=True,
        )
        return self.client.generate_opendrive_world(path.read_text(encoding="utf-8"), params)

    def restore(self) -> None:
        """Give the server back as found: Traffic Manager asynchronous, original settings."""
        if not self.connected:
            return
        self.tm.set_synchronous_mode(False)
        if self.original_settings is not None:
            self.world.apply_settings(self.original_settings)

    def stop_owned_server(self) -> None:
        """Stop the server if this connection started it."""
        if self.owns_server and self.server is not None:
            self.server.stop()
            self.owns_server = False
