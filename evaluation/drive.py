"""Drive one evaluation route: spawn, tick the agent until the criteria end it, score, draw.

``RouteRunner`` keeps one backend across routes (rebuilt after a crash) and a planner and a
road raster per town. It writes the route's picture (and, when recording, its video) itself,
so a parallel worker leaves nothing for the parent to do but save the record.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from envs.backends.base import EpisodeSpec, SimulatorBackend, SimulatorCrashed, WorldState
from envs.criteria import CriteriaParams, CriteriaStatus, Infraction, RouteCriteria
from envs.planner import RoutePlanner
from envs.routes import RoutePlan
from envs.sim.camera import CameraSpec
from envs.sim.raster import RoadRaster
from envs.sim.weather import Weather
from envs.types import Transform
from evaluation.agents import Agent, make_agent
from evaluation.report import RouteTrace, route_picture
from evaluation.scoring import route_record, route_scores

if TYPE_CHECKING:
    from evaluation.runner import EvalConfig, Job

logger = logging.getLogger(__name__)

__all__ = ["TRAFFIC", "RouteRunner"]

TRAFFIC = {"none": (0, 0), "regular": (30, 30), "dense": (60, 60)}
"""Vehicles and pedestrians per traffic level."""
TRACE_EVERY = 5  # ticks between trajectory samples
WEATHER_EVERY = 20  # ticks between updates of an interpolated route weather
RECORD_EVERY = 2  # ticks between video frames
REPORT_PPM = 2.0  # [px/m] scale of the route pictures
RECORD_CAMERA = CameraSpec(320, 192, depth=False)

BackendFactory = Callable[["EvalConfig", str], SimulatorBackend]
AgentFactory = Callable[["Job", float], Agent]
Observer = Callable[[SimulatorBackend, WorldState, RoutePlan], bool]
RECORD_ID = "_record"  # the video camera's id (agents' sensor ids are theirs)


def agent_cameras(sensors: list[dict[str, Any]]) -> dict[str, CameraSpec]:
    """Camera specs of an agent's (validated) RGB / segmentation / depth sensor declarations.

    Depth is rendered only for an agent that declares a depth camera.
    """
    depth = any(sensor["type"] == "sensor.camera.depth" for sensor in sensors)
    cameras = {}
    for sensor in sensors:
        if str(sensor["type"]).startswith("sensor.camera."):
            cameras[str(sensor["id"])] = CameraSpec(
                width=int(sensor["width"]),
                height=int(sensor["height"]),
                fov=float(sensor["fov"]),
                x=float(sensor["x"]),
                y=float(sensor["y"]),
                z=float(sensor["z"]),
                pitch=float(sensor["pitch"]),
                yaw=float(sensor["yaw"]),
                depth=depth,
            )
    return cameras


class _Video:
    """camera RGB | segmentation palette | BEV, side by side, into an MP4."""

    def __init__(self, path: Path, fps: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps = path, fps
        self.writer: cv2.VideoWriter | None = None

    def add(self, backend: SimulatorBackend, state: WorldState, plan: RoutePlan) -> None:
        from envs.sim.bev import bev, bev_to_rgb
        from envs.sim.labels import labels_to_palette

        frame = state.cameras.get(RECORD_ID)
        world = getattr(backend, "world", None)
        if frame is None or world is None:
            return
        height = frame.rgb.shape[0]
        top = bev_to_rgb(bev(world, (height, height), 4.0, plan.points[:, :2]))
        image = np.hstack([frame.rgb, labels_to_palette(frame.labels), top])
        image = np.ascontiguousarray(image[:, :, ::-1])
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
            size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class RouteRunner:
    """Runs routes one after another on one backend.

    Args:
        config: The evaluation settings.
        backend_factory: ``(config, town) -> backend``; called again after a crash.
        agent_factory: ``(job, dt) -> agent`` (e.g. the policy being trained); default: the
            agent named by ``config.agent`` (``evaluation.agents.make_agent``).
        observer: ``(backend, state, plan) -> keep_going`` called after every tick (e.g. to
            film the policy); returning False ends the route early, scored as it stands.
        report: Write the per-route picture and JSON into ``config.report_dir``.
    """

    def __init__(
        self,
        config: EvalConfig,
        backend_factory: BackendFactory,
        agent_factory: AgentFactory | None = None,
        observer: Observer | None = None,
        report: bool = True,
    ) -> None:
        self.config = config
        self._factory = backend_factory
        self._agent_factory = agent_factory
        self._observer = observer
        self._write_report = report
        self._backend: SimulatorBackend | None = None
        self._planners: dict[str, RoutePlanner] = {}
        self._rasters: dict[str, RoadRaster] = {}
        self._status: CriteriaStatus | None = None
        self._last_time = 0.0  # [s] simulated time of the latest tick

    def close(self) -> None:
        """Close the backend."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _backend_for(self, town: str) -> SimulatorBackend:
        if self._backend is None:
            self._backend = self._factory(self.config, town)
        self._backend.load_town(town)
        return self._backend

    def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception as err:  # a dead simulator may fail to close; it is gone anyway
                logger.warning("closing the crashed backend failed: %s", err)

    def _plan(self, job: Job, backend: SimulatorBackend) -> RoutePlan:
        if job.plan is not None:
            return job.plan
        if job.town not in self._planners:
            self._planners[job.town] = RoutePlanner(backend.road_map)
        return self._planners[job.town].plan(job.route.keypoints)

    # --------------------------------------------------------------------------------- run
    def run(self, job: Job) -> dict[str, Any]:
        """Drive one route and return its leaderboard record (never raises for a crash)."""
        started = time.monotonic()
        trace: list[tuple[float, float, float]] = []
        plan: RoutePlan | None = None
        self._status = None
        self._last_time = 0.0
        try:
            backend = self._backend_for(job.town)
            plan = self._plan(job, backend)
            outcome = self._drive(job, backend, plan, trace)
        except SimulatorCrashed as err:
            logger.warning(
                "%s: simulator crashed (%s); the next route gets a new one", job.key, err
            )
            self._drop_backend()
            outcome = "simulation_crashed"
        status = self._status
        infractions: list[Infraction] = list(status.infractions) if status is not None else []
        completion = status.route_completion if status is not None else 0.0
        meta = {
            "route_length": plan.length if plan is not None else 0.0,
            "duration_game": self._last_time,
            "duration_system": time.monotonic() - started,
            "town_name": job.route.town,
            "weather": job.weather,
            "seed": job.seed,
            "traffic": self.config.traffic,
            "lights": self.config.lights,
        }
        scores = route_scores(completion, infractions, outcome)
        record = route_record(0, job.key, outcome, infractions, scores, meta)
        if plan is not None and self._write_report:
            self._report(job, plan, trace, infractions, record)
        return record

    def _drive(
        self,
        job: Job,
        backend: SimulatorBackend,
        plan: RoutePlan,
        trace: list[tuple[float, float, float]],
    ) -> str:
        """Tick until the criteria end the route; returns the outcome (a criteria status or a
        crash name). The latest criteria status is kept in ``self._status``."""
        if self._agent_factory is not None:
            agent = self._agent_factory(job, backend.dt)
        else:
            agent = make_agent(self.config.agent, job.seed, backend.dt)
        cameras = agent_cameras(agent.sensors())
        render_every = max(1, int(getattr(agent, "render_every", 1)))
        route = job.route
        weather = route.weather_at(0.0) if job.weather == "route" else Weather.preset(job.weather)
        video = None
        if self.config.record is not None:
            video = _Video(self.config.record / f"{job.key}.mp4", 1.0 / (backend.dt * RECORD_EVERY))
        if video is not None:
            cameras[RECORD_ID] = RECORD_CAMERA
        backend.set_cameras(cameras)
        vehicles, walkers = TRAFFIC[self.config.traffic]
        ego = Transform(
            float(plan.points[0, 0]),
            float(plan.points[0, 1]),
            float(plan.points[0, 2]) + 0.2,
            math.degrees(float(plan.yaw[0])),
        )
        spec = EpisodeSpec(job.seed, ego, vehicles, walkers, weather, self.config.lights)
        state = backend.reset(spec)
        criteria = RouteCriteria(plan, backend.road_map, CriteriaParams(version=2))
        status = self._status = criteria.update(state)
        try:
            agent.setup(plan, backend.road_map, state.lights)
        except Exception:
            logger.exception("%s: agent setup failed", job.key)
            return "agent_setup"
        tick = 0
        try:
            while not status.done:
                try:
                    control = agent.run_step(state)
                except Exception:
                    logger.exception("%s: the agent raised", job.key)
                    return "agent_crashed"
                record = video is not None and tick % RECORD_EVERY == 0
                sees = bool(cameras) and (tick + 1) % render_every == 0
                state = backend.tick(control, render=record or sees)
                self._last_time = state.time
                status = self._status = criteria.update(state)
                if tick % TRACE_EVERY == 0:
                    ego_t = state.ego.transform
                    trace.append((ego_t.x, ego_t.y, abs(state.ego.speed)))
                if job.weather == "route" and route.weathers and tick % WEATHER_EVERY == 0:
                    now = route.weather_at(status.route_completion)
                    if now != weather:
                        backend.set_weather(now)
                        weather = now
                if record and video is not None:
                    video.add(backend, state, plan)
                if self._observer is not None and not self._observer(backend, state, plan):
                    break  # scored as it stands (status running)
                tick += 1
        finally:
            if video is not None:
                video.close()
        return status.status

    # ------------------------------------------------------------------------------ report
    def _report(
        self,
        job: Job,
        plan: RoutePlan,
        trace: list[tuple[float, float, float]],
        infractions: list[Infraction],
        record: dict[str, Any],
    ) -> None:
        """Write ``report/<key>.png`` and ``report/<key>.json`` (trajectory, infractions)."""
        folder = self.config.report_dir
        folder.mkdir(parents=True, exist_ok=True)
        events = [(e.key, e.x, e.y) for e in infractions]
        data = {
            "route_id": job.key,
            "trajectory": [[round(v, 2) for v in row] for row in trace],
            "trajectory_every_ticks": TRACE_EVERY,
            "infractions": [
                {"key": e.key, "x": e.x, "y": e.y, "time": e.time, "message": e.message}
                for e in infractions
            ],
        }
        (folder / f"{job.key}.json").write_text(json.dumps(data) + "\n", encoding="utf-8")
        if job.town not in self._rasters:
            if self._backend is None:  # crashed: no picture unless the town is a file we can read
                try:
                    from envs.sim.world import load_town

                    roadmap = load_town(job.town)
                except (ValueError, OSError):
                    return
            else:
                roadmap = self._backend.road_map
            self._rasters[job.town] = RoadRaster(roadmap, REPORT_PPM)
        scores = record["scores"]
        lines = (
            record["status"],
            f"DS {scores['score_composed']:.1f}  RC {scores['score_route']:.1f}  "
            f"IP {scores['score_penalty']:.2f}",
            f"{job.route.town}, seed {job.seed}, {self.config.traffic} traffic",
        )
        picture = route_picture(
            self._rasters[job.town],
            RouteTrace(
                f"{job.key} ({job.weather})",
                plan.points[:, :2],
                np.array(trace, dtype=np.float64).reshape(-1, 3),
                events,
                lines,
            ),
        )
        cv2.imwrite(str(folder / f"{job.key}.png"), picture)
