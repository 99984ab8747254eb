"""scripts/agent_vs_autopilot.py: the policy, the watching autopilot and the light head, logged."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scripts.agent_vs_autopilot import COLUMNS, drives_on, main

ROOT = Path(__file__).resolve().parents[1]


def test_logs_every_decision_of_the_shipped_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "log.csv"
    argv = [
        "--agent",
        str(ROOT / "agent/checkpoints/ppo_embedded.zip"),
        "--routes",
        str(ROOT / "routes/heldout.xml"),
        "--route-id",
        "2",
        "--traffic",
        "none",
        "--seconds",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert 15 <= len(rows) <= 21  # a decision every action_repeat ticks of 0.05 s
    times = [float(r["time"]) for r in rows]
    assert times == sorted(times)
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in ("red", "yellow", "green", "none")]
        assert sum(probs) == pytest.approx(1.0, abs=0.01)
        assert 0.0 <= float(row["expert_throttle"]) <= 1.0
    assert "wrote" in capsys.readouterr().out


def test_a_collision_ends_the_route_unless_asked_to_drive_through() -> None:
    assert drives_on(10, 100, collided=False, through_collisions=False)
    assert not drives_on(10, 100, collided=True, through_collisions=False)
    assert drives_on(10, 100, collided=True, through_collisions=True)  # as evaluate.py
    assert not drives_on(100, 100, collided=False, through_collisions=True)
