"""Launching and stopping a CARLA server process that this program owns.

``CarlaServer`` starts ``CarlaUE4.sh`` in its own process group, keeps the handle, waits (bounded)
until the RPC port answers, and stops the whole group by that handle (SIGTERM, then SIGKILL).
A server on RPC port ``P`` also uses ``P + 1`` for sensor streaming, so servers on one machine
need ports 3 apart (2000, 2003, 2006: ``server_ports``), each with its own Traffic Manager port.
The CARLA location comes from the caller or ``$CARLA_ROOT``, never from committed config.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

from envs.backends.base import BackendError

logger = logging.getLogger(__name__)

LAUNCHER = "CarlaUE4.sh"


PORT_STRIDE = 3
"""RPC ports of consecutive servers on one machine: a server on ``P`` also takes ``P + 1``
(streaming) and, from CARLA 0.9.12, ``P + 2`` (its secondary-server port)."""


def server_ports(port: int, tm_port: int, index: int) -> tuple[int, int]:
    """RPC and Traffic Manager ports of the ``index``-th of several servers on one machine.

    Env ``i`` of a training run and worker ``i`` of an evaluation each drive their own server:
    ``port + PORT_STRIDE * i`` with its Traffic Manager on ``tm_port + i`` (a Traffic Manager
    belongs to one server, so two clients must not share its port).
    """
    if index < 0:
        raise ValueError(f"server index must be >= 0, got {index}")
    return port + PORT_STRIDE * index, tm_port + index


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (bounded by ``timeout`` [s])."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_executable(path: str | Path | None) -> Path:
    """The server launcher from a CARLA folder, the launcher itself, or ``$CARLA_ROOT``.

    Raises:
        BackendError: if nothing is given and ``CARLA_ROOT`` is unset, or the file is missing.
    """
    if path is None:
        root = os.environ.get("CARLA_ROOT")
        if not root:
            raise BackendError(
                "no CARLA server location: pass the CARLA folder (or its CarlaUE4.sh) or set "
                "the CARLA_ROOT environment variable"
            )
        path = root
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        candidate = candidate / LAUNCHER
    if not candidate.is_file():
        raise BackendError(f"CARLA launcher {candidate} does not exist; check CARLA_ROOT")
    return candidate


class ServerProcess(Protocol):
    """What ``CarlaBackend`` needs of a server it may start and restart (``CarlaServer``)."""

    port: int
    starts: int

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        ...

    def start(self) -> None:
        """Launch and wait until the RPC port answers."""
        ...

    def stop(self) -> None:
        """Stop the process group."""
        ...

    def restart(self) -> None:
        """Stop, then start."""
        ...


class CarlaServer:
    """A CARLA server process owned by this program.

    Example::

        with CarlaServer("/opt/carla-0.9.16", port=2000, gpu=0) as server:
            backend = CarlaBackend(port=2000, tm_port=8000, server=server)

    Args:
        path: CARLA folder, or the launcher script; ``None`` uses ``$CARLA_ROOT``.
        port: RPC port; the server also takes ``port + 1`` for streaming.
        extra_args: Flags passed before the port (headless by default).
        gpu: Graphics adapter index (``-graphicsadapter``); ``None`` lets the server choose.
        host: Address to probe for readiness.
        startup_timeout: Longest wait for the RPC port to open [s].
        stop_timeout: Longest wait after SIGTERM before SIGKILL [s].
        log_path: File that receives the server's output (discarded when ``None``).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        port: int = 2000,
        extra_args: Sequence[str] = ("-RenderOffScreen",),
        gpu: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        log_path: str | Path | None = None,
    ) -> None:
        if not 1 <= port <= 65534:
            raise ValueError(f"CARLA RPC port must be in 1..65534 (it also takes port+1): {port}")
        self.executable = resolve_executable(path)
        self.port = port
        self.extra_args = tuple(extra_args)
        self.gpu = gpu
        self.host = host
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        """How many times the process was launched (restarts included)."""

    @property
    def command(self) -> list[str]:
        """The command line that launches the server."""
        cmd = [str(self.executable), *self.extra_args, f"-carla-rpc-port={self.port}", "-nosound"]
        if self.gpu is not None:
            cmd.append(f"-graphicsadapter={self.gpu}")
        return cmd

    @property
    def alive(self) -> bool:
        """Whether the launched process is still running."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the launcher (also its process-group id), if running."""
        return self._process.pid if self.alive and self._process is not None else None

    def start(self) -> None:
        """Launch the server and wait until its RPC port accepts connections.

        Raises:
            BackendError: if the port is already taken, the process exits early, or the port
                does not open within ``startup_timeout``; the process is stopped first.
        """
        if self.alive:
            return
        if port_open(self.host, self.port):
            raise BackendError(
                f"port {self.port} on {self.host} is already in use (another CARLA server?); "
                "pick a free port (servers need ports at least 2 apart: P and P+1)"
            )
        logger.info("starting CARLA: %s", " ".join(self.command))
        sink = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                self.command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log_path:
                sink.close()  # type: ignore[union-attr]  # the child holds its own copy
        self.starts += 1
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.alive:
                code = self._process.returncode if self._process else None
                self._process = None
                raise BackendError(f"CARLA server (port {self.port}) exited at start, code {code}")
            if port_open(self.host, self.port, timeout=0.5):
                logger.info("CARLA server ready on port %d (pid %s)", self.port, self.pid)
                return
            time.sleep(0.1)
        self.stop()
        raise BackendError(
            f"CARLA server did not open port {self.port} within {self.startup_timeout:.0f} s"
        )

    def stop(self) -> None:
        """Stop the server's whole process group: SIGTERM, bounded wait, then SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("CARLA server pid %d ignored SIGTERM; killing it", process.pid)
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=self.stop_timeout)
        # The launcher may exit before its children: make sure the group is gone too.
        self._signal(process, signal.SIGKILL)
        deadline = time.monotonic() + self.stop_timeout
        while port_open(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.1)

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # start_new_session: the group id is the pid

    def restart(self) -> None:
        """Stop the server (if running) and start a fresh one on the same port."""
        logger.warning("restarting CARLA server on port %d", self.port)
        self.stop()
        self.start()

    def __enter__(self) -> CarlaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
