"""The evaluation harness: every (route x weather x repetition) on a backend, leaderboard-scored.

``evaluate(config)`` validates everything first (route file, towns, weathers, the agent's
sensors, the plans), then runs the routes, in this process or in a ``spawn`` pool of workers
each with its own backend, and saves the results file after every route so an interruption
loses nothing (``resume`` skips what is done). A dead simulator is recorded as
``Failed - Simulation crashed``, never as an agent failure, and the next route gets a fresh
backend. ``RouteRunner`` drives one route; ``evaluation.report`` draws the pictures.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
from tqdm import tqdm

from envs.backends.base import LightMode, SimulatorBackend
from envs.backends.carla_connection import CarlaOptions
from envs.backends.carla_server import server_ports
from envs.planner import RoutePlanner
from envs.routes import RoutePlan, RouteSpec, load_routes, select_routes
from envs.sim.weather import PRESET_NAMES
from envs.towns import available_towns
from evaluation.agents import make_agent, validate_sensors
from evaluation.drive import TRAFFIC, BackendFactory, RouteRunner
from evaluation.report import summary_table, weather_chart
from evaluation.results import ResultsFile, parse_route_key, route_key

logger = logging.getLogger(__name__)

__all__ = ["TRAFFIC", "EvalConfig", "EvaluationError", "Job", "evaluate", "plan_jobs"]

SEED_STRIDE = 1000  # the i-th route of the file, repetition r, runs with seed + i * SEED_STRIDE + r


class EvaluationError(ValueError):
    """Bad evaluation input; the message names the file or field and the fix."""


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run (the fields mirror ``evaluate.py``'s flags).

    Attributes:
        agent: Agent name (``evaluation.agents.AGENT_NAMES``).
        routes: Route file (leaderboard 1.0 or 2.0).
        route_ids: Run only these route ids; ``None``: all.
        maps_dir: Folder of ``<town>.xodr`` files (so CARLA towns run embedded).
        weathers: ``("route",)``, ``("all",)`` or preset names.
        repetitions: Runs of each route and weather.
        traffic: ``none``, ``regular`` or ``dense`` (see ``TRAFFIC``).
        lights: Traffic-light mode.
        backend: ``embedded`` or ``carla``.
        host, port: CARLA server address.
        tm_port: Traffic Manager port (CARLA).
        timeout: Bound on every wait for the CARLA server [s].
        retries: Connection attempts to the CARLA server, with exponential backoff.
        workers: Parallel workers, each with its own backend; on CARLA each with its own server:
            worker ``i`` on ``port + 3 i`` with its Traffic Manager on ``tm_port + i``.
        out: Results file.
        resume: Skip the routes the results file already holds.
        record: Folder for one MP4 per route (embedded backend only); ``None``: no videos.
        seed: Base seed.
        torch_threads: Torch threads of each process that drives (``worker_threads``); 0:
            the cores shared out among the workers.
    """

    agent: str
    routes: Path
    route_ids: tuple[str, ...] | None = None
    maps_dir: Path | None = None
    weathers: tuple[str, ...] = ("route",)
    repetitions: int = 1
    traffic: Literal["none", "regular", "dense"] = "regular"
    lights: LightMode = "cycle"
    backend: Literal["embedded", "carla"] = "embedded"
    host: str = "localhost"
    port: int = 2000
    tm_port: int = 8000
    timeout: float = 10.0
    retries: int = 3
    workers: int = 1
    out: Path = Path("results.json")
    resume: bool = False
    record: Path | None = None
    seed: int = 0
    torch_threads: int = 1

    @property
    def carla(self) -> CarlaOptions:
        """The CARLA server this evaluation (or worker) drives on."""
        return CarlaOptions(self.host, self.port, self.tm_port, self.timeout, self.retries)

    @property
    def report_dir(self) -> Path:
        """The ``report/`` folder beside the results file."""
        return self.out.parent / "report"


@dataclass(frozen=True)
class Job:
    """One route run.

    Attributes:
        key: The results-file route id (``RouteScenario_<id>_rep<n>``).
        route: The route.
        town: Town to load (shipped name, ``.xodr`` path or CARLA map).
        weather: ``route`` or a preset name.
        repetition: Repetition number.
        seed: Episode seed.
    """

    key: str
    route: RouteSpec
    town: str
    weather: str
    repetition: int
    seed: int
    plan: RoutePlan | None = field(default=None, compare=False)


# ------------------------------------------------------------------------------- validation
def _weathers(names: Sequence[str]) -> tuple[str, ...]:
    if list(names) == ["all"]:
        return PRESET_NAMES
    for name in names:
        if name != "route" and name not in PRESET_NAMES:
            raise EvaluationError(
                f"--weathers: unknown weather {name!r}; use 'route', 'all' or presets from "
                f"{', '.join(PRESET_NAMES)}"
            )
    return tuple(names)


def resolve_town(town: str, maps_dir: Path | None, backend: str) -> str:
    """The town argument for the backend: ``<maps_dir>/<town>.xodr``, a shipped name, or (CARLA
    only) the map name as it is.

    Raises:
        EvaluationError: an embedded run on a town with no OpenDRIVE file.
    """
    if maps_dir is not None and (maps_dir / f"{town}.xodr").is_file():
        return str(maps_dir / f"{town}.xodr")
    if town in available_towns() or backend == "carla":
        return town
    where = f"{maps_dir}/{town}.xodr" if maps_dir else "no --maps-dir given"
    raise EvaluationError(
        f"town {town!r} has no OpenDRIVE file ({where}); put {town}.xodr in the --maps-dir "
        f"folder or use a shipped town ({', '.join(available_towns())})"
    )


def _check_plans(jobs: Sequence[Job], backend: str) -> list[Job]:
    """Plan every route once per town (off-road keypoints fail here, before any spawn)."""
    from envs.sim.world import load_town

    planners: dict[str, RoutePlanner] = {}
    plans: dict[tuple[str, str], RoutePlan] = {}
    out = []
    for job in jobs:
        if backend == "carla" and job.town not in available_towns() and "/" not in job.town:
            out.append(job)  # the server's map: planned when it is loaded
            continue
        if job.town not in planners:
            planners[job.town] = RoutePlanner(load_town(job.town))
        cache = (job.town, job.route.route_id)
        if cache not in plans:
            try:
                plans[cache] = planners[job.town].plan(job.route.keypoints)
            except ValueError as err:
                raise EvaluationError(
                    f"{job.route.route_id!r} in {job.town}: {err}; move the waypoints onto a "
                    "driving lane"
                ) from None
        out.append(replace(job, plan=plans[cache]))
    return out


def plan_jobs(config: EvalConfig) -> list[Job]:
    """Every (route x weather x repetition) of the run, validated and planned.

    Raises:
        RouteFileError: a bad route file.
        EvaluationError: an unknown weather or town, off-road waypoints, bad counts.
    """
    if config.repetitions < 1 or config.workers < 1:
        raise EvaluationError("--repetitions and --workers must be at least 1")
    if config.torch_threads < 0:
        raise EvaluationError("--torch-threads must be >= 0 (0: the cores shared out)")
    if config.timeout <= 0 or config.retries < 1:
        raise EvaluationError("--timeout must be > 0 seconds and --retries at least 1")
    if config.traffic not in TRAFFIC:
        raise EvaluationError(f"--traffic {config.traffic!r}: use one of {', '.join(TRAFFIC)}")
    weathers = _weathers(config.weathers)
    # A route's seed comes from its place in the file, so that a run of some of the routes
    # (--route-ids) drives each of them exactly as the run of the whole file does.
    routes = load_routes(config.routes)
    position = {route.route_id: i for i, route in enumerate(routes)}
    if config.route_ids is not None:
        routes = select_routes(routes, list(config.route_ids), config.routes)
    jobs = []
    for route in routes:
        index = position[route.route_id]
        town = resolve_town(route.town, config.maps_dir, config.backend)
        for weather in weathers:
            route_id = route.route_id if len(weathers) == 1 else f"{route.route_id}_{weather}"
            for rep in range(config.repetitions):
                seed = config.seed + index * SEED_STRIDE + rep
                jobs.append(Job(route_key(route_id, rep), route, town, weather, rep, seed))
    return _check_plans(jobs, config.backend)


# ---------------------------------------------------------------------------------- running
def make_backend(config: EvalConfig, town: str) -> SimulatorBackend:
    """A fresh backend for ``config.backend``, on ``town``."""
    if config.backend == "carla":
        backend: SimulatorBackend = config.carla.backend()
        backend.load_town(town)
        return backend
    from envs.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(town)


_WORKER: RouteRunner | None = None


def worker_config(config: EvalConfig, index: int) -> EvalConfig:
    """The config of worker ``index``: on CARLA, its own server's ports (``server_ports``)."""
    if config.backend != "carla":
        return config
    port, tm_port = server_ports(config.port, config.tm_port, index)
    return replace(config, port=port, tm_port=tm_port)


def worker_threads(config: EvalConfig, cores: int | None = None) -> int:
    """Torch threads for each process that drives: ``config.torch_threads``, or with 0 the
    cores shared out among the workers (at least one).

    A policy agent runs its encoder on one frame per tick, where a second thread gains ~10 %
    (3.1 -> 2.8 ms here) and threads that wait on another process's are ruinous: two
    evaluations on two cores, each on torch's default of all cores, took ~170 ms per encoder
    call, and a 12-route evaluation 35 minutes instead of 2.5.
    """
    if config.torch_threads > 0:
        return config.torch_threads
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(config.workers, 1))


def _init_worker(config: EvalConfig, level: int, counter: Any) -> None:
    global _WORKER
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(worker_threads(config))
    with counter.get_lock():
        index = int(counter.value)
        counter.value += 1
    _WORKER = RouteRunner(worker_config(config, index), make_backend)


def _run_in_worker(job: Job) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def _results(
    config: EvalConfig, jobs: Sequence[Job], factory: BackendFactory | None
) -> Iterator[dict[str, Any]]:
    """Records as they finish, from this process or from a spawn pool."""
    if config.workers == 1 or factory is not None:
        runner = RouteRunner(config, factory or make_backend)
        try:
            for job in jobs:
                yield runner.run(job)
        finally:
            runner.close()
        return
    context = multiprocessing.get_context("spawn")  # never fork: panda3d/EGL state
    level = logging.getLogger().getEffectiveLevel()
    counter = context.Value("i", 0)  # hands each worker its index
    with context.Pool(config.workers, _init_worker, (config, level, counter)) as pool:
        yield from pool.imap_unordered(_run_in_worker, jobs)


def evaluate(
    config: EvalConfig,
    echo: Callable[[str], None] | None = None,
    backend_factory: BackendFactory | None = None,
) -> tuple[ResultsFile, str]:
    """Run the evaluation.

    Args:
        config: The run.
        echo: Where to write progress lines (``tqdm.write`` by default).
        backend_factory: ``(config, town) -> backend``, to run on a custom backend (tests);
            forces a single process. ``None``: from ``config.backend``.

    Returns:
        The results file (saved) and the summary table.

    Raises:
        RouteFileError, EvaluationError, AgentError: bad input, before anything spawns.
    """
    jobs = plan_jobs(config)
    sensors = validate_sensors(make_agent(config.agent).sensors(), config.agent)
    if config.record is not None and config.backend != "embedded":
        logger.warning("--record needs the embedded backend: no videos will be written")
        config = replace(config, record=None)
    results = ResultsFile(config.out, total_routes=len(jobs), sensors=sensors)
    if config.resume:
        results.load()
    else:
        results.records = []
    done = results.done_keys() if config.resume else set()
    todo = [job for job in jobs if parse_route_key(job.key) not in done]
    if len(todo) < len(jobs):
        logger.info("resume: %d of %d routes already done", len(jobs) - len(todo), len(jobs))
    results.save()
    write = echo or tqdm.write
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="route") as bar:
        for record in _results(config, todo, backend_factory):
            results.add(record)
            results.save()
            mean = sum(r["scores"]["score_composed"] for r in results.records) / len(
                results.records
            )
            bar.set_postfix(DS=f"{mean:.1f}")
            bar.update(1)
            write(
                f"{record['route_id']}: {record['status']}, DS "
                f"{record['scores']['score_composed']:.1f}"
            )
    config.report_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(config.report_dir / "scores_by_weather.png"), weather_chart(results.records))
    table = summary_table(results.records, results.to_json()["_checkpoint"]["global_record"])
    return results, table
