"""The evaluation harness end to end on short Grid01 routes without traffic (~1 s a route)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import evaluate
from envs.backends.base import SimulatorBackend, SimulatorCrashed, WorldState
from envs.backends.carla_server import server_ports
from envs.backends.embedded import EmbeddedBackend
from envs.sim.weather import Weather
from envs.types import VehicleControl
from evaluation.agents import AgentError, make_agent, validate_sensors
from evaluation.runner import EvalConfig, EvaluationError, plan_jobs, worker_config
from evaluation.runner import evaluate as run_evaluation

START, END = (136.8, -328.25), (218.25, -250.2)  # ~170 m on Grid01 with one right turn

LB1 = f"""<routes>
  <route id="0" town="Grid01">
    <waypoint x="{START[0]}" y="{START[1]}" z="0" pitch="0" roll="0" yaw="0"/>
    <waypoint x="{END[0]}" y="{END[1]}" z="0" pitch="0" roll="0" yaw="0"/>
  </route>
  <route id="1" town="Grid01">
    <weather cloudiness="80" precipitation="50" sun_altitude_angle="20"/>
    <waypoint x="{START[0]}" y="{START[1]}" z="0"/>
    <waypoint x="{END[0]}" y="{END[1]}" z="0"/>
  </route>
</routes>
"""

LB2 = f"""<routes>
  <route id="7" town="Grid01">
    <weathers>
      <weather route_percentage="0" cloudiness="5" sun_altitude_angle="45"/>
      <weather route_percentage="100" cloudiness="100" precipitation="100"
               sun_altitude_angle="-90"/>
    </weathers>
    <waypoints>
      <position x="{START[0]}" y="{START[1]}" z="0"/>
      <position x="{END[0]}" y="{END[1]}" z="0"/>
    </waypoints>
    <scenarios>
      <scenario name="Accident_1" type="Accident"><trigger_point x="180" y="-328" z="0" yaw="0"/>
      </scenario>
    </scenarios>
  </route>
</routes>
"""


class Wrapped:
    """An embedded backend that counts calls and can fail on a chosen route (by reset count)."""

    def __init__(self, town: str, crash_on: int | None, interrupt_on: int | None) -> None:
        self.inner = EmbeddedBackend(town)
        self.crash_on, self.interrupt_on = crash_on, interrupt_on
        self.weathers: list[Weather] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def reset(self, spec: Any) -> WorldState:
        Wrapped.resets += 1
        return self.inner.reset(spec)

    def tick(self, control: VehicleControl, render: bool = False) -> WorldState:
        if Wrapped.resets == self.crash_on:
            raise SimulatorCrashed("fake server died")
        if Wrapped.resets == self.interrupt_on:
            raise KeyboardInterrupt
        return self.inner.tick(control, render)

    def set_weather(self, weather: Weather) -> None:
        self.weathers.append(weather)
        self.inner.set_weather(weather)

    resets = 0
    built = 0


def factory(crash_on: int | None = None, interrupt_on: int | None = None) -> Any:
    Wrapped.resets = 0
    Wrapped.built = 0

    def make(config: EvalConfig, town: str) -> SimulatorBackend:
        Wrapped.built += 1
        return Wrapped(town, crash_on, interrupt_on)  # type: ignore[return-value]

    return make


@pytest.fixture
def lb1(tmp_path: Path) -> Path:
    path = tmp_path / "lb1.xml"
    path.write_text(LB1)
    return path


def config(routes: Path, out: Path, **changes: Any) -> EvalConfig:
    return EvalConfig(agent="autopilot", routes=routes, traffic="none", out=out, **changes)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_lb1_routes_run_and_write_leaderboard_results(lb1: Path, tmp_path: Path) -> None:
    out = tmp_path / "res" / "r.json"
    _, table = run_evaluation(config(lb1, out), echo=lambda _: None)
    data = load(out)
    assert set(data) >= {"_checkpoint", "entry_status", "eligible", "sensors", "values", "labels"}
    assert data["_checkpoint"]["progress"] == [2, 2]
    assert data["entry_status"] == "Finished"
    ids = [r["route_id"] for r in data["_checkpoint"]["records"]]
    assert ids == ["RouteScenario_0_rep0", "RouteScenario_1_rep0"]
    for record in data["_checkpoint"]["records"]:
        assert record["status"] in ("Perfect", "Completed")
        assert record["scores"]["score_route"] == 100.0
    assert data["sensors"][0]["type"] == "sensor.opendrive_map"
    report = out.parent / "report"
    assert (report / "RouteScenario_0_rep0.png").stat().st_size > 1000
    assert (report / "scores_by_weather.png").is_file()
    trace = load(report / "RouteScenario_1_rep0.json")
    assert len(trace["trajectory"]) > 10
    assert "global: DS 100.00" in table


def test_lb2_route_interpolates_weather_and_skips_scenarios(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "lb2.xml"
    path.write_text(LB2)
    make = factory()
    out = tmp_path / "r.json"
    backends: list[Wrapped] = []

    def keep(cfg: EvalConfig, town: str) -> SimulatorBackend:
        backend = make(cfg, town)
        backends.append(backend)  # type: ignore[arg-type]
        return backend

    run_evaluation(config(path, out), echo=lambda _: None, backend_factory=keep)
    assert "Accident" in caplog.text
    record = load(out)["_checkpoint"]["records"][0]
    assert record["route_id"] == "RouteScenario_7_rep0"
    assert record["status"] in ("Perfect", "Completed")
    altitudes = [w.sun_altitude_angle for w in backends[0].weathers]
    assert len(altitudes) >= 3 and altitudes == sorted(altitudes, reverse=True)
    assert altitudes[-1] < 0.0  # night by the end of the route


def test_results_saved_after_each_route_and_resume_runs_each_route_once(
    lb1: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    cfg = config(lb1, out, repetitions=2)
    with pytest.raises(KeyboardInterrupt):  # interrupted during the second route
        run_evaluation(cfg, echo=lambda _: None, backend_factory=factory(interrupt_on=2))
    first = load(out)
    assert first["_checkpoint"]["progress"] == [1, 4]
    assert first["entry_status"] == "Started"
    done = first["_checkpoint"]["records"][0]["route_id"]
    ran: list[str] = []
    resumed = EvalConfig(**{**cfg.__dict__, "resume": True})
    run_evaluation(resumed, echo=ran.append, backend_factory=factory())
    ran_ids = [line.split(":")[0] for line in ran]
    assert done not in ran_ids
    assert len(ran_ids) == 3 == Wrapped.resets
    final = load(out)
    assert final["_checkpoint"]["progress"] == [4, 4]
    assert len({r["route_id"] for r in final["_checkpoint"]["records"]}) == 4


def test_simulator_crash_is_recorded_and_the_next_route_runs(lb1: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run_evaluation(config(lb1, out), echo=lambda _: None, backend_factory=factory(crash_on=1))
    data = load(out)
    first, second = data["_checkpoint"]["records"]
    assert first["status"] == "Failed - Simulation crashed"
    assert second["status"] in ("Perfect", "Completed")
    assert Wrapped.built == 2  # a fresh backend after the crash
    assert data["entry_status"] == "Crashed"
    assert data["_checkpoint"]["global_record"]["meta"]["exceptions"][0][2] == (
        "Failed - Simulation crashed"
    )


@pytest.mark.parametrize(
    ("routes_text", "extra", "needle"),
    [
        ("<routes><route id='0' town='Grid01'>", [], "malformed XML"),
        (LB1, ["--weathers", "ClearNoon,Sunny"], "unknown weather 'Sunny'"),
        (LB1.replace("Grid01", "Town05"), ["--maps-dir", "MAPS"], "Town05"),
        (
            "<routes><route id='0' town='Grid01'><waypoint x='1' y='1' z='0'/></route></routes>",
            [],
            "at least two waypoints",
        ),
        (LB1.replace(f'x="{END[0]}"', 'x="5000"'), [], "move the waypoints"),
        (LB1, ["--agent", "policy.zip"], "policy.zip: no such checkpoint"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    routes_text: str,
    extra: list[str],
    needle: str,
) -> None:
    path = tmp_path / "routes.xml"
    path.write_text(routes_text)
    extra = [str(tmp_path / "maps") if e == "MAPS" else e for e in extra]
    (tmp_path / "maps").mkdir()
    agent = [] if "--agent" in extra else ["--agent", "autopilot"]
    argv = [*agent, "--routes", str(path), "--out", str(tmp_path / "r.json"), *extra]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert "Traceback" not in err
    assert err.startswith("error: ") and "\n" not in err
    if needle == "Town05":
        assert str(tmp_path / "maps") in err


def test_cli_runs_and_prints_the_table(
    lb1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = ["--agent", "constant", "--routes", str(lb1), "--route-ids", "1", "--out", str(out)]
    assert evaluate.main([*argv, "--traffic", "none", "--weathers", "ClearNoon"]) == 0
    printed = capsys.readouterr().out
    assert "RouteScenario_1_rep0" in printed and "ClearNoon" in printed
    assert load(out)["_checkpoint"]["progress"] == [1, 1]


def test_a_route_gets_the_same_seed_whichever_routes_are_selected(
    lb1: Path, tmp_path: Path
) -> None:
    # Regression: the seed came from the route's place among the *selected* routes, so
    # `--route-ids 1` drove route 1 in other traffic than the run of the whole file did.
    whole = {job.key: job.seed for job in plan_jobs(config(lb1, tmp_path / "r.json"))}
    alone = plan_jobs(config(lb1, tmp_path / "r.json", route_ids=("1",)))
    assert [(job.key, job.seed) for job in alone] == [("RouteScenario_1_rep0", whole[alone[0].key])]
    assert len(set(whole.values())) == len(whole)


def test_agents_and_sensor_validation() -> None:
    for name in ("autopilot", "random", "constant"):
        validate_sensors(make_agent(name).sensors(), name)
    with pytest.raises(AgentError, match="unknown sensor type"):
        validate_sensors([{"type": "sensor.lidar.magic", "id": "L"}])
    with pytest.raises(AgentError, match="lacks"):
        validate_sensors([{"type": "sensor.camera.rgb", "id": "C", "x": 0}])
    with pytest.raises(AgentError, match="duplicate"):
        validate_sensors([{"type": "sensor.speedometer", "id": "S"}] * 2)
    a, b = make_agent("random", seed=3), make_agent("random", seed=3)
    state: Any = None
    assert a.run_step(state) == b.run_step(state)


def test_spawn_workers_give_the_same_records_as_one_process(lb1: Path, tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    run_evaluation(config(lb1, serial), echo=lambda _: None)
    run_evaluation(config(lb1, parallel, workers=2), echo=lambda _: None)

    def strip(path: Path) -> list[dict[str, Any]]:
        records = load(path)["_checkpoint"]["records"]
        for record in records:
            record["meta"].pop("duration_system")
        return records

    assert strip(serial) == strip(parallel)


def test_each_carla_worker_gets_its_own_server_ports(lb1: Path) -> None:
    """Regression: ``--workers N`` on CARLA sent every worker to the same server and TM port."""
    config = EvalConfig(agent="autopilot", routes=lb1, backend="carla", port=2000, tm_port=8100)
    assert [
        (worker_config(config, i).port, worker_config(config, i).tm_port) for i in range(3)
    ] == [
        (2000, 8100),
        (2003, 8101),
        (2006, 8102),
    ]
    embedded = EvalConfig(agent="autopilot", routes=lb1)
    assert worker_config(embedded, 4) == embedded
    with pytest.raises(ValueError, match=">= 0"):
        server_ports(2000, 8000, -1)


def test_carla_timeout_and_retries_reach_each_workers_backend(lb1: Path) -> None:
    """Regression: evaluate.py had no --timeout/--retries; its CARLA backend used the defaults."""
    from evaluate import eval_config, parse_args

    flags = ["--backend", "carla", "--port", "2003", "--timeout", "2.5", "--retries", "5"]
    config = eval_config(parse_args(["--agent", "autopilot", "--routes", str(lb1), *flags]))
    backend = worker_config(config, 1).carla.backend()  # connects on first use, not here
    conn = backend._conn
    assert (conn.port, conn.tm_port, conn.timeout, conn.retries) == (2006, 8001, 2.5, 5)
    with pytest.raises(EvaluationError, match="--timeout must be > 0"):
        plan_jobs(
            eval_config(
                parse_args(["--agent", "autopilot", "--routes", str(lb1), "--timeout", "0"])
            )
        )


def test_workers_share_the_cores_out_for_torch(lb1: Path) -> None:
    """Regression: each worker took all cores for torch, so two policy workers on two cores
    waited on each other's threads (~170 ms per encoder call instead of ~3 ms)."""
    import multiprocessing

    import torch

    from evaluation import runner

    def threads(workers: int, cores: int, torch_threads: int = 0) -> int:
        config = EvalConfig(agent="autopilot", routes=lb1, workers=workers)
        return runner.worker_threads(replace(config, torch_threads=torch_threads), cores)

    assert [threads(w, cores=2) for w in (1, 2, 3)] == [2, 1, 1]
    assert threads(2, cores=16) == 8 and threads(2, cores=16, torch_threads=3) == 3
    assert EvalConfig(agent="autopilot", routes=lb1).torch_threads == 1  # the default
    before = torch.get_num_threads()
    try:
        config = EvalConfig(agent="autopilot", routes=lb1, workers=64, torch_threads=0)
        runner._init_worker(config, logging.WARNING, multiprocessing.Value("i", 0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        runner._WORKER = None
