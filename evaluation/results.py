"""The results file: leaderboard-layout JSON, rewritten atomically after every route.

Layout (leaderboard 2.0 ``statistics_manager.Results.to_json``)::

    {"_checkpoint": {"global_record": {...}, "progress": [done, total], "records": [...]},
     "entry_status": "Started" | "Finished" | "Crashed" | "Rejected",
     "eligible": bool, "sensors": [...], "values": [...], "labels": [...]}

``--resume`` loads the file and skips the routes it holds, except those the leaderboard also
reruns on resume (``Failed``, ``Failed - Simulation crashed``, ``Failed - Agent crashed``,
see its ``RouteIndexer.validate_and_resume``); a rerun replaces the old record.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envs.atomic import write_text_atomic
from evaluation.scoring import LABELS, global_record, global_values

logger = logging.getLogger(__name__)

RERUN_STATUSES = frozenset({"Failed", "Failed - Simulation crashed", "Failed - Agent crashed"})
"""Statuses that a resumed run does not count as done."""
ELIGIBLE = {"Started": False, "Finished": True, "Rejected": False, "Crashed": False}
_ROUTE_ID = re.compile(r"^RouteScenario_(?P<id>.+)_rep(?P<rep>\d+)$")


class ResultsFileError(ValueError):
    """A results file that cannot be used; the message names the file and the fix."""


def route_key(route_id: str, repetition: int) -> str:
    """The leaderboard's route id of a route file id and repetition: ``RouteScenario_3_rep0``."""
    return f"RouteScenario_{route_id}_rep{repetition}"


def parse_route_key(key: str) -> tuple[str, int]:
    """Inverse of ``route_key``.

    Raises:
        ValueError: ``key`` is not of the form ``RouteScenario_{id}_rep{n}``.
    """
    match = _ROUTE_ID.match(key)
    if match is None:
        raise ValueError(f"route id {key!r} is not of the form RouteScenario_<id>_rep<n>")
    return match.group("id"), int(match.group("rep"))


def _sort_key(record: Mapping[str, Any]) -> tuple[int, Any, int]:
    """Sort like the leaderboard (route id, then repetition), numeric ids before others."""
    rid, rep = parse_route_key(record["route_id"])
    return (0, int(rid), rep) if rid.isdigit() else (1, rid, rep)


def entry_status(records: Sequence[Mapping[str, Any]], total: int) -> str:
    """``Started`` until every route has a record; then ``Crashed`` if a simulator crashed,
    ``Rejected`` if the agent's sensors were invalid, else ``Finished`` (leaderboard rules)."""
    if len(records) < total:
        return "Started"
    statuses = [r["status"] for r in records]
    if any("Simulation crashed" in s for s in statuses):
        return "Crashed"
    if any("Agent's sensors were invalid" in s for s in statuses):
        return "Rejected"
    return "Finished"


class ResultsFile:
    """A leaderboard results file, kept in memory and saved after every route.

    Args:
        path: The JSON file.
        total_routes: Routes in the run (routes × repetitions); ``None`` keeps the loaded
            file's, or the number of records.
        sensors: The agent's sensor descriptions, stored as the leaderboard does.
    """

    def __init__(
        self,
        path: str | Path,
        total_routes: int | None = None,
        sensors: Sequence[Any] = (),
    ) -> None:
        self.path = Path(path)
        self.total_routes = total_routes
        self.sensors = list(sensors)
        self.records: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------ reading
    def _fail(self, problem: str) -> ResultsFileError:
        return ResultsFileError(
            f"results file {self.path}: {problem}; delete or move it, or give another results "
            "path, to start afresh (it cannot be resumed)"
        )

    def load(self) -> None:
        """Read an existing file; a missing or empty file leaves no records.

        Raises:
            ResultsFileError: the file is not JSON, is not a results file, or was written for
                a different number of routes.
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            logger.info("no results in %s yet: starting afresh", self.path)
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise self._fail(f"not valid JSON ({err})") from None
        checkpoint = data.get("_checkpoint") if isinstance(data, dict) else None
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("records"), list):
            raise self._fail("no '_checkpoint.records' list: not a leaderboard results file")
        records = checkpoint["records"]
        for record in records:
            self._check_record(record)
        progress = checkpoint.get("progress") or [len(records), len(records)]
        if not (isinstance(progress, list) and len(progress) == 2):
            raise self._fail(f"'_checkpoint.progress' is {progress!r}, not [done, total]")
        if self.total_routes is None:
            self.total_routes = int(progress[1])
        elif int(progress[1]) != self.total_routes:
            raise self._fail(
                f"it was written for {progress[1]} routes but this run has {self.total_routes}"
            )
        self.sensors = self.sensors or list(data.get("sensors") or [])
        self.records = sorted((dict(r) for r in records), key=_sort_key)
        logger.info("resuming from %s: %d route records", self.path, len(self.records))

    def _check_record(self, record: Any) -> None:
        needed = {"route_id", "status", "infractions", "scores", "meta"}
        if not isinstance(record, dict) or needed - set(record):
            raise self._fail(f"a record lacks {sorted(needed - set(record or {}))}")
        try:
            parse_route_key(record["route_id"])
        except ValueError as err:
            raise self._fail(str(err)) from None

    # ------------------------------------------------------------------------------ writing
    def add(self, record: Mapping[str, Any]) -> None:
        """Add a route record, replacing an earlier one of the same route id."""
        self._check_record(record)
        self.records = [r for r in self.records if r["route_id"] != record["route_id"]]
        self.records.append(dict(record))
        self.records.sort(key=_sort_key)
        for i, r in enumerate(self.records):
            r["index"] = i

    def done_keys(self) -> set[tuple[str, int]]:
        """``(route id, repetition)`` of the routes a resumed run must not run again."""
        return {
            parse_route_key(r["route_id"])
            for r in self.records
            if r["status"] not in RERUN_STATUSES
        }

    def to_json(self) -> dict[str, Any]:
        """The whole file as a JSON-ready dict."""
        total = self.total_routes if self.total_routes is not None else len(self.records)
        record = global_record(self.records, total_routes=max(total, 1))
        status = entry_status(self.records, total)
        return {
            "_checkpoint": {
                "global_record": record,
                "progress": [len(self.records), total],
                "records": self.records,
            },
            "entry_status": status,
            "eligible": ELIGIBLE[status],
            "sensors": self.sensors,
            "values": global_values(record),
            "labels": list(LABELS),
        }

    def save(self) -> None:
        """Write the file atomically (``envs.atomic``): a crash at any point leaves either the
        old file or the new one, never a torn file."""
        write_text_atomic(self.path, json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
