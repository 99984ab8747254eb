"""Leaderboard scoring: per-route scores and records, and the global record over routes.

Pure functions over ``envs.criteria.Infraction`` lists and record dicts, following the CARLA
leaderboard 2.0 ``leaderboard/utils/statistics_manager.py`` (``compute_route_statistics``,
``compute_global_statistics``): the same penalty coefficients, status strings, rounding, record
layout and global figures, so results files read like the leaderboard's.

Choices, where the leaderboard leaves room or where this project departs from it:
  * min-speed events are penalised as DESIGN §5 says, ``× (1 − 0.3·(1 − pct/100))`` (the
    leaderboard's 'decreases' rule); the leaderboard's current master marks that penalty
    'unused' (``apply_min_speed=False`` reproduces that);
  * routes whose simulator crashed (``Failed - Simulation crashed``) stay in the means, as the
    leaderboard keeps every record and divides by the total number of routes; they are listed
    in ``meta.exceptions`` and make the entry status ``Crashed``, so a reader can tell them from
    agent failures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from envs.criteria import FAILURE_MESSAGES, INFRACTION_KEYS, Infraction

PENALTY: Mapping[str, float] = MappingProxyType(
    {
        "collisions_pedestrian": 0.50,
        "collisions_vehicle": 0.60,
        "collisions_layout": 0.65,
        "red_light": 0.70,
        "stop_infraction": 0.80,
        "scenario_timeouts": 0.70,
        "yield_emergency_vehicle_infractions": 0.70,
    }
)
"""Penalty factor per event (leaderboard 2.0 ``PENALTY_VALUE_DICT``)."""

MIN_SPEED_FACTOR = 0.7  # min-speed event: × (1 − (1 − 0.7)·(1 − pct/100)) (PENALTY_PERC_DICT)
ROUND_DIGITS = 3  # leaderboard rounding of durations, lengths, std devs and rates
ROUND_DIGITS_SCORE = 6  # ... and of scores

STATUS_PERFECT = "Perfect"
STATUS_COMPLETED = "Completed"
STATUS_FAILED = "Failed"
CRASH_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "simulation_crashed": "Simulation crashed",
        "agent_crashed": "Agent crashed",
        "agent_setup": "Agent couldn't be set up",
        "sensors_invalid": "Agent's sensors were invalid",
    }
)
"""Failures from outside the criteria (leaderboard ``FAILURE_MESSAGES``), by short name."""

LABELS = (
    "Avg. driving score",
    "Avg. route completion",
    "Avg. infraction penalty",
    "Collisions with pedestrians",
    "Collisions with vehicles",
    "Collisions with layout",
    "Red lights infractions",
    "Stop sign infractions",
    "Off-road infractions",
    "Route deviations",
    "Route timeouts",
    "Agent blocked",
    "Yield emergency vehicles infractions",
    "Scenario timeouts",
    "Min speed infractions",
)
"""The results file's ``labels``; ``values`` follow the same order."""
_VALUE_KEYS = (
    "collisions_pedestrian",
    "collisions_vehicle",
    "collisions_layout",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "route_dev",
    "route_timeout",
    "vehicle_blocked",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "min_speed_infractions",
)
_METERS = re.compile(r"for about ([-+0-9.eE]+) meters")


def infraction_penalty(infractions: Iterable[Infraction], apply_min_speed: bool = True) -> float:
    """The product of every event's penalty factor, in [0, 1].

    Args:
        infractions: Events of one route.
        apply_min_speed: Penalise ``min_speed_infractions`` (see the module notes).

    Raises:
        ValueError: a percentage event without its ``value``.
    """
    penalty = 1.0
    for event in infractions:
        if event.key in PENALTY:
            penalty *= PENALTY[event.key]
        elif event.key in ("outside_route_lanes", "min_speed_infractions"):
            if event.value is None:
                raise ValueError(f"{event.key} event without its percentage value: {event}")
            pct = min(max(event.value, 0.0), 100.0)
            if event.key == "outside_route_lanes":
                penalty *= 1.0 - pct / 100.0
            elif apply_min_speed:
                penalty *= 1.0 - (1.0 - MIN_SPEED_FACTOR) * (1.0 - pct / 100.0)
    return penalty


def route_scores(
    route_completion: float,
    infractions: Iterable[Infraction],
    status: str,
    apply_min_speed: bool = True,
) -> dict[str, float]:
    """Scores of one route.

    Args:
        route_completion: Route completion [0-100].
        infractions: The route's events.
        status: The criteria status (``completed`` scores a route completion of 100).
        apply_min_speed: See ``infraction_penalty``.

    Returns:
        ``score_route`` (RC), ``score_penalty`` and ``score_composed`` = RC × penalty; a failed
        route keeps its RC and its penalty.
    """
    score_route = 100.0 if status == "completed" else min(max(route_completion, 0.0), 100.0)
    penalty = infraction_penalty(infractions, apply_min_speed)
    return {
        "score_route": round(score_route, ROUND_DIGITS_SCORE),
        "score_penalty": round(penalty, ROUND_DIGITS_SCORE),
        "score_composed": round(max(score_route * penalty, 0.0), ROUND_DIGITS_SCORE),
    }


def record_status(status: str, num_infractions: int) -> str:
    """The leaderboard status line of a route.

    Args:
        status: A criteria status (``completed``, ``route_dev``, ``vehicle_blocked``,
            ``route_timeout``, ``running`` for a route cut short) or a crash name from
            ``CRASH_MESSAGES`` (``simulation_crashed``, ``agent_crashed``...).
        num_infractions: Events of the route, of any kind.

    Returns:
        ``Perfect``, ``Completed``, ``Failed`` or ``Failed - <reason>``.
    """
    if status == "completed":
        return STATUS_PERFECT if num_infractions == 0 else STATUS_COMPLETED
    reason = FAILURE_MESSAGES.get(status) or CRASH_MESSAGES.get(status)
    if reason is None and status != "running":
        raise ValueError(
            f"unknown route status {status!r}; use a criteria status "
            f"({', '.join(['completed', 'running', *FAILURE_MESSAGES])}) or one of "
            f"{', '.join(CRASH_MESSAGES)}"
        )
    return f"{STATUS_FAILED} - {reason}" if reason else STATUS_FAILED


def route_record(
    index: int,
    route_id: str,
    status: str,
    infractions: Iterable[Infraction],
    scores: Mapping[str, float],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """One route's record in the leaderboard layout.

    Args:
        index: Position of the route in the run.
        route_id: ``RouteScenario_{id}_rep{n}``.
        status: A criteria status or crash name (converted by ``record_status``), or a
            leaderboard status line already (``Perfect``, ``Completed``, ``Failed...``).
        infractions: The route's events.
        scores: From ``route_scores``.
        meta: ``route_length`` [m], ``duration_game`` [s] (simulated), ``duration_system``
            [s] (wall clock); extra keys (``town_name``, ``weather``...) are kept.
    """
    events = list(infractions)
    grouped: dict[str, list[str]] = {key: [] for key in INFRACTION_KEYS}
    for event in events:
        if event.key not in grouped:
            raise ValueError(f"unknown infraction key {event.key!r}; valid: {INFRACTION_KEYS}")
        grouped[event.key].append(event.message)
    missing = {"route_length", "duration_game", "duration_system"} - set(meta)
    if missing:
        raise ValueError(f"route meta lacks {sorted(missing)}")
    line = status if status.startswith(("Perfect", "Completed", "Failed")) else None
    return {
        "index": index,
        "route_id": route_id,
        "status": line or record_status(status, len(events)),
        "num_infractions": len(events),
        "infractions": grouped,
        "scores": {k: float(scores[k]) for k in ("score_route", "score_penalty", "score_composed")},
        "meta": {k: round(v, ROUND_DIGITS) if isinstance(v, float) else v for k, v in meta.items()},
    }


def _outside_km(record: Mapping[str, Any]) -> float:
    """Km driven outside route lanes, read from the message as the leaderboard does."""
    messages = record["infractions"].get("outside_route_lanes", [])
    if not messages:
        return 0.0
    match = _METERS.search(messages[0])
    return float(match.group(1)) / 1000.0 if match else 0.0


def _downgrade(current: str, route_status: str) -> str:
    """Global status: Perfect, then Completed, then Failed, as routes are worse."""
    if route_status.startswith(STATUS_FAILED):
        return STATUS_FAILED
    if current == STATUS_PERFECT and route_status != STATUS_PERFECT:
        return route_status
    return current


def _mean_std(values: Sequence[float], total: int) -> tuple[float, float]:
    mean = sum(values) / total if total else 0.0
    if total <= 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (total - 1)
    return mean, math.sqrt(var)


def global_record(
    records: Sequence[Mapping[str, Any]],
    total_km: float | None = None,
    total_routes: int | None = None,
) -> dict[str, Any]:
    """The global record over route records (leaderboard ``compute_global_statistics``).

    Args:
        records: Route records from ``route_record``.
        total_km: Km driven, for the per-km rates; ``None``: as the leaderboard, the sum of
            route length × route completion over the records.
        total_routes: Routes the means are over (missing ones count as 0, as the leaderboard
            divides by its total); ``None``: ``len(records)``.

    Returns:
        ``index``/``route_id`` -1, ``status``, ``infractions`` (events per km driven, except
        ``outside_route_lanes``: km driven outside the route's lanes, as the leaderboard
        reports it), ``scores_mean``, ``scores_std_dev`` (sample, over routes) and ``meta``
        (``total_length`` [m], ``duration_game`` [s], ``duration_system`` [s],
        ``exceptions``: ``[route_id, index, status]`` of failed routes).
    """
    total = len(records) if total_routes is None else total_routes
    status = STATUS_PERFECT
    exceptions: list[list[Any]] = []
    for record in records:
        status = _downgrade(status, record["status"])
        if record["status"].startswith(STATUS_FAILED):
            exceptions.append([record["route_id"], record["index"], record["status"]])
    scores_mean, scores_std = {}, {}
    for key in ("score_composed", "score_route", "score_penalty"):
        mean, std = _mean_std([r["scores"][key] for r in records], total)
        scores_mean[key] = round(mean, ROUND_DIGITS_SCORE)
        scores_std[key] = round(std, ROUND_DIGITS)
    if total_km is None:
        total_km = sum(
            r["meta"]["route_length"] / 1000.0 * r["scores"]["score_route"] / 100.0 for r in records
        )
    km = max(total_km, 0.001)
    rates = {}
    for key in INFRACTION_KEYS:
        if key == "outside_route_lanes":
            rates[key] = round(sum(_outside_km(r) for r in records), ROUND_DIGITS)
        else:
            rates[key] = round(sum(len(r["infractions"][key]) for r in records) / km, ROUND_DIGITS)
    meta = {
        name: round(sum(r["meta"][source] for r in records), ROUND_DIGITS)
        for name, source in (
            ("total_length", "route_length"),
            ("duration_game", "duration_game"),
            ("duration_system", "duration_system"),
        )
    }
    return {
        "index": -1,
        "route_id": -1,
        "status": status,
        "infractions": rates,
        "scores_mean": scores_mean,
        "scores_std_dev": scores_std,
        "meta": {**meta, "exceptions": exceptions},
    }


def global_values(record: Mapping[str, Any]) -> list[str]:
    """The results file's ``values`` (strings, in the order of ``LABELS``)."""
    scores = record["scores_mean"]
    head = [scores["score_composed"], scores["score_route"], scores["score_penalty"]]
    return [str(v) for v in head + [record["infractions"][k] for k in _VALUE_KEYS]]
