"""The results file: round trip, atomic save, resume keys, bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envs import atomic as atomic_module
from envs.criteria import Infraction
from evaluation.results import (
    ResultsFile,
    ResultsFileError,
    entry_status,
    parse_route_key,
    route_key,
)
from evaluation.scoring import LABELS, route_record, route_scores

META = {"route_length": 500.0, "duration_game": 60.0, "duration_system": 30.0}


def record(route: str, rep: int, status: str = "completed", rc: float = 100.0) -> dict[str, Any]:
    events = [
        Infraction("red_light", 10, 0.5, 1.0, 2.0, "Agent ran a red light 4 at (x=1, y=2, z=0)")
    ]
    scores = route_scores(rc, events, status)
    return route_record(0, route_key(route, rep), status, events, scores, META)


def test_route_keys() -> None:
    assert route_key("12", 3) == "RouteScenario_12_rep3"
    assert parse_route_key("RouteScenario_12_rep3") == ("12", 3)
    assert parse_route_key("RouteScenario_town_01_rep0") == ("town_01", 0)
    with pytest.raises(ValueError, match="RouteScenario_<id>_rep<n>"):
        parse_route_key("route 12")


def test_round_trip_and_layout(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    results = ResultsFile(
        path, total_routes=3, sensors=[{"id": "front", "type": "sensor.camera.rgb"}]
    )
    results.add(record("2", 0))
    results.add(record("1", 0, "route_dev", rc=40.0))
    results.save()
    data = json.loads(path.read_text())
    assert set(data) == {"_checkpoint", "entry_status", "eligible", "sensors", "values", "labels"}
    checkpoint = data["_checkpoint"]
    assert checkpoint["progress"] == [2, 3]
    assert [r["route_id"] for r in checkpoint["records"]] == [
        "RouteScenario_1_rep0",
        "RouteScenario_2_rep0",
    ]
    assert [r["index"] for r in checkpoint["records"]] == [0, 1]
    assert data["entry_status"] == "Started" and data["eligible"] is False
    assert data["labels"] == list(LABELS) and len(data["values"]) == len(LABELS)
    assert set(checkpoint["global_record"]) >= {
        "scores_mean",
        "scores_std_dev",
        "infractions",
        "meta",
    }
    # the mean is over the run's 3 routes, as the leaderboard divides by its total
    assert checkpoint["global_record"]["scores_mean"]["score_composed"] == pytest.approx(
        (70 + 28) / 3
    )

    again = ResultsFile(path)
    again.load()
    assert again.total_routes == 3
    assert again.records == checkpoint["records"]
    assert again.sensors == [{"id": "front", "type": "sensor.camera.rgb"}]
    again.add(record("3", 0))
    again.save()
    final = json.loads(path.read_text())
    assert final["entry_status"] == "Finished" and final["eligible"] is True
    assert final["_checkpoint"]["progress"] == [3, 3]


def test_crashed_run_entry_status() -> None:
    done = [record("1", 0), record("2", 0, "simulation_crashed", rc=10.0)]
    assert entry_status(done, 2) == "Crashed"
    assert entry_status(done, 3) == "Started"
    assert entry_status([record("1", 0)], 1) == "Finished"


def test_resume_keys_skip_done_and_rerun_crashed(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path / "r.json", total_routes=4)
    results.add(record("1", 0))
    results.add(record("1", 1, "route_timeout", rc=30.0))
    results.add(record("2", 0, "simulation_crashed", rc=5.0))
    results.add(record("3", 0, "agent_crashed", rc=0.0))
    results.save()
    resumed = ResultsFile(tmp_path / "r.json", total_routes=4)
    resumed.load()
    assert resumed.done_keys() == {("1", 0), ("1", 1)}
    resumed.add(record("2", 0))  # the rerun replaces the crashed record
    assert [r["route_id"] for r in resumed.records].count("RouteScenario_2_rep0") == 1
    assert resumed.done_keys() == {("1", 0), ("1", 1), ("2", 0)}


def test_crash_between_write_and_rename_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.json"
    results = ResultsFile(path, total_routes=2)
    results.add(record("1", 0))
    results.save()
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(atomic_module.os, "replace", crash)  # results save through envs.atomic
    results.add(record("2", 0))
    with pytest.raises(OSError, match="power cut"):
        results.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left
    monkeypatch.undo()
    results.save()
    assert json.loads(path.read_text())["_checkpoint"]["progress"] == [2, 2]


def test_corrupt_file_names_path_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"_checkpoint": {"records": [')
    with pytest.raises(ResultsFileError, match=r"results\.json: not valid JSON.*delete or move it"):
        ResultsFile(path).load()


def test_foreign_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ResultsFileError, match=r"other\.json: no '_checkpoint\.records'"):
        ResultsFile(path).load()
    path.write_text(json.dumps({"_checkpoint": {"records": [{"route_id": "x"}]}}))
    with pytest.raises(ResultsFileError, match="lacks"):
        ResultsFile(path).load()


def test_mismatched_route_count_rejected(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    results = ResultsFile(path, total_routes=2)
    results.add(record("1", 0))
    results.save()
    with pytest.raises(ResultsFileError, match="written for 2 routes but this run has 5"):
        ResultsFile(path, total_routes=5).load()


def test_missing_or_empty_file_starts_afresh(tmp_path: Path) -> None:
    missing = ResultsFile(tmp_path / "none.json")
    missing.load()
    assert missing.records == [] and missing.done_keys() == set()
    empty = tmp_path / "empty.json"
    empty.write_text("")
    fresh = ResultsFile(empty, total_routes=1)
    fresh.load()
    assert fresh.records == []
