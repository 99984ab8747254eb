"""Leaderboard scoring arithmetic against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from envs.criteria import INFRACTION_KEYS, Infraction
from evaluation.scoring import (
    LABELS,
    PENALTY,
    global_record,
    global_values,
    infraction_penalty,
    record_status,
    route_record,
    route_scores,
)


def event(key: str, value: float | None = None, message: str = "") -> Infraction:
    return Infraction(key, 0, 0.0, 0.0, 0.0, message or f"{key} happened", value)


def outside(pct: float, meters: float) -> Infraction:
    text = (
        f"Agent went outside its route lanes for about {meters} meters "
        f"({pct}% of the completed route)"
    )
    return event("outside_route_lanes", pct, text)


META = {"route_length": 1000.0, "duration_game": 100.0, "duration_system": 50.0}


def test_penalty_table_is_leaderboard_2() -> None:
    assert dict(PENALTY) == {
        "collisions_pedestrian": 0.5,
        "collisions_vehicle": 0.6,
        "collisions_layout": 0.65,
        "red_light": 0.7,
        "stop_infraction": 0.8,
        "scenario_timeouts": 0.7,
        "yield_emergency_vehicle_infractions": 0.7,
    }


def test_penalty_multiplies_per_event() -> None:
    assert infraction_penalty([]) == 1.0
    assert infraction_penalty([event("collisions_pedestrian")] * 2) == pytest.approx(0.25)
    assert infraction_penalty([event("route_dev"), event("route_timeout")]) == 1.0
    assert infraction_penalty([outside(25.0, 10.0)]) == pytest.approx(0.75)
    assert infraction_penalty([event("min_speed_infractions", 50.0)]) == pytest.approx(0.85)
    assert infraction_penalty([event("min_speed_infractions", 50.0)], apply_min_speed=False) == 1.0
    with pytest.raises(ValueError, match="percentage"):
        infraction_penalty([event("outside_route_lanes")])


def test_several_infractions_of_several_kinds_on_one_route() -> None:
    events = [
        event("collisions_vehicle"),
        event("collisions_vehicle"),
        event("red_light"),
        outside(10.0, 50.0),
    ]
    scores = route_scores(80.0, events, "route_dev")
    expected_penalty = 0.6 * 0.6 * 0.7 * 0.9
    assert scores["score_route"] == 80.0
    assert scores["score_penalty"] == pytest.approx(expected_penalty)
    assert scores["score_composed"] == pytest.approx(80.0 * expected_penalty)


def test_completed_route_scores_full_completion() -> None:
    assert route_scores(99.4, [], "completed") == {
        "score_route": 100.0,
        "score_penalty": 1.0,
        "score_composed": 100.0,
    }


def test_status_lines_match_the_leaderboard() -> None:
    assert record_status("completed", 0) == "Perfect"
    assert record_status("completed", 2) == "Completed"
    assert record_status("route_dev", 1) == "Failed - Agent deviated from the route"
    assert record_status("vehicle_blocked", 1) == "Failed - Agent got blocked"
    assert record_status("route_timeout", 1) == "Failed - Agent timed out"
    assert record_status("simulation_crashed", 0) == "Failed - Simulation crashed"
    assert record_status("agent_crashed", 0) == "Failed - Agent crashed"
    assert record_status("running", 0) == "Failed"
    with pytest.raises(ValueError, match="unknown route status"):
        record_status("exploded", 0)


def test_route_record_layout() -> None:
    events = [event("collisions_vehicle", message="hit"), event("red_light", message="ran")]
    scores = route_scores(50.0, events, "running")
    record = route_record(3, "RouteScenario_7_rep1", "route_timeout", events, scores, META)
    assert set(record) == {
        "index", "route_id", "status", "num_infractions", "infractions", "scores", "meta",
    }  # fmt: skip
    assert record["status"] == "Failed - Agent timed out"
    assert record["num_infractions"] == 2
    assert list(record["infractions"]) == list(INFRACTION_KEYS)
    assert record["infractions"]["collisions_vehicle"] == ["hit"]
    assert record["infractions"]["route_dev"] == []
    assert record["meta"] == META
    perfect = route_record(
        0, "RouteScenario_0_rep0", "completed", [], route_scores(100, [], "completed"), META
    )
    assert perfect["status"] == "Perfect"
    with pytest.raises(ValueError, match="meta lacks"):
        route_record(0, "RouteScenario_0_rep0", "completed", [], scores, {"route_length": 1.0})


def _record(index: int, rc: float, events: list[Infraction], status: str, length: float) -> dict:
    scores = route_scores(rc, events, status)
    meta = {"route_length": length, "duration_game": 10.0, "duration_system": 5.0}
    return route_record(index, f"RouteScenario_{index}_rep0", status, events, scores, meta)


def test_global_mean_std_and_rates() -> None:
    records = [
        _record(0, 100.0, [], "completed", 1000.0),  # DS 100
        _record(
            1, 50.0, [event("collisions_vehicle")] * 2 + [event("route_dev")], "route_dev", 2000.0
        ),
        _record(
            2,
            40.0,
            [event("red_light"), outside(20.0, 100.0), event("vehicle_blocked")],
            "vehicle_blocked",
            500.0,
        ),
    ]
    ds = [100.0, 50.0 * 0.36, 40.0 * 0.7 * 0.8]
    g = global_record(records)
    mean = sum(ds) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in ds) / 2)
    assert g["scores_mean"]["score_composed"] == pytest.approx(mean)
    assert g["scores_std_dev"]["score_composed"] == pytest.approx(std, abs=1e-3)
    assert g["scores_mean"]["score_route"] == pytest.approx(190.0 / 3)
    assert g["scores_mean"]["score_penalty"] == pytest.approx((1.0 + 0.36 + 0.56) / 3)
    km = 1.0 * 1.0 + 2.0 * 0.5 + 0.5 * 0.4  # route length x completion
    assert g["infractions"]["collisions_vehicle"] == pytest.approx(round(2 / km, 3))
    assert g["infractions"]["red_light"] == pytest.approx(round(1 / km, 3))
    assert g["infractions"]["route_dev"] == pytest.approx(round(1 / km, 3))
    assert g["infractions"]["vehicle_blocked"] == pytest.approx(round(1 / km, 3))
    assert g["infractions"]["outside_route_lanes"] == pytest.approx(0.1)  # km, as the leaderboard
    assert g["status"] == "Failed"
    assert [e[0] for e in g["meta"]["exceptions"]] == [
        "RouteScenario_1_rep0",
        "RouteScenario_2_rep0",
    ]
    assert g["meta"]["total_length"] == pytest.approx(3500.0)
    assert g["meta"]["duration_game"] == pytest.approx(30.0)
    assert global_record(records, total_km=2.0)["infractions"]["collisions_vehicle"] == 1.0


def test_global_single_route_and_crash_kept_in_mean() -> None:
    one = global_record([_record(0, 100.0, [], "completed", 100.0)])
    assert one["status"] == "Perfect" and one["scores_std_dev"]["score_composed"] == 0.0
    crashed = _record(1, 0.0, [], "simulation_crashed", 100.0)
    both = global_record([_record(0, 100.0, [], "completed", 100.0), crashed])
    assert both["scores_mean"]["score_composed"] == pytest.approx(50.0)
    assert both["meta"]["exceptions"] == [
        ["RouteScenario_1_rep0", 1, "Failed - Simulation crashed"]
    ]
    completed = global_record([_record(0, 100.0, [event("red_light")], "completed", 100.0)])
    assert completed["status"] == "Completed"


def test_global_values_follow_labels() -> None:
    g = global_record([_record(0, 100.0, [event("red_light")], "completed", 1000.0)])
    values = global_values(g)
    assert len(values) == len(LABELS) == 15
    assert values[:3] == ["70.0", "100.0", "0.7"]
    assert values[LABELS.index("Red lights infractions")] == "1.0"
    assert LABELS[:3] == ("Avg. driving score", "Avg. route completion", "Avg. infraction penalty")
