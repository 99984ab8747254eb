"""Who hit whom? Drive routes with a checkpoint (as evaluate.py does, through collisions) and
describe every counted collision: where the other road user was in the ego's frame, both
speeds, the controls, and what the encoder read of the gap against the privileged truth.

    python -m scripts.collision_report --agent agent/checkpoints/ppo_embedded.zip \
        --routes routes/heldout.xml --seed 0 --out collisions_s0.csv

Each collision gets a kind:

- ``rear_end``: the other was ahead of the ego (within 30 degrees of its heading) and the ego
  closed on it -- the ego drove into it;
- ``hit_from_behind``: the other was behind the ego and closed on it;
- ``side``: anything else (crossing traffic in a junction, a lane change, a walker stepping in).

Counted as the leaderboard counts (``envs.criteria.CollisionFilter``): one event per actor and
place, none below 0.1 m/s.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from envs.backends.base import Actors, SimulatorBackend, WorldState
from envs.criteria import CollisionFilter
from envs.routes import RoutePlan
from envs.types import ActorKind, CollisionEvent
from evaluation.drive import RouteRunner
from evaluation.runner import EvalConfig, Job, make_backend, plan_jobs
from scripts.agent_vs_autopilot import WatchedAgent

AHEAD_DEG = 30.0
"""Half-angle of the cone ahead of (or behind) the ego in which a contact is head-on to it."""

COLUMNS = (
    "route",
    "time",
    "other",
    "kind",
    "bearing_deg",
    "distance",
    "relative_yaw_deg",
    "ego_speed",
    "other_speed",
    "throttle",
    "brake",
    "expert_brake",
    "seen_vehicle_gap",
    "vehicle_gap",
    "seen_walker_gap",
    "walker_gap",
)


@dataclass(frozen=True)
class Contact:
    """Where the other road user was, seen from the ego, at a collision."""

    bearing: float  # [deg] from the ego's heading, positive to the right (CARLA's y)
    distance: float  # [m] centre to centre
    relative_yaw: float  # [deg] the other's heading minus the ego's, in (-180, 180]
    other_speed: float  # [m/s]


def contact(state: WorldState, event: CollisionEvent) -> Contact | None:
    """The other actor of ``event`` seen from the ego, or None when it is gone from ``state``."""
    actors: Actors = state.vehicles if event.other_kind == ActorKind.VEHICLE else state.walkers
    hits = [i for i, actor_id in enumerate(actors.ids.tolist()) if actor_id == event.other_id]
    if not hits:
        return None
    i = hits[0]
    ego = state.ego.transform
    dx, dy = float(actors.xyz[i, 0]) - ego.x, float(actors.xyz[i, 1]) - ego.y
    bearing = _wrap(math.degrees(math.atan2(dy, dx)) - ego.yaw)
    relative_yaw = _wrap(float(actors.yaw[i]) - ego.yaw)
    return Contact(bearing, math.hypot(dx, dy), relative_yaw, float(actors.speed[i]))


def classify(where: Contact, ego_speed: float) -> str:
    """``rear_end``, ``hit_from_behind`` or ``side`` (module docstring)."""
    closing_ego = ego_speed - where.other_speed * math.cos(math.radians(where.relative_yaw))
    if abs(where.bearing) <= AHEAD_DEG and closing_ego > 0.0:
        return "rear_end"
    if abs(where.bearing) >= 180.0 - AHEAD_DEG and closing_ego < 0.0:
        return "hit_from_behind"
    return "side"


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Drive every route; one row per counted collision."""
    config = EvalConfig(
        agent=str(args.agent),
        routes=args.routes,
        route_ids=tuple(args.route_id) or None,
        weathers=(args.weather,),
        traffic=args.traffic,
        seed=args.seed,
    )
    torch.set_num_threads(args.torch_threads)  # as evaluate.py: other thread counts drive
    agent = WatchedAgent.from_checkpoint(args.agent)  # (slightly) differently
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def observer(_backend: SimulatorBackend, state: WorldState, _plan: RoutePlan) -> bool:
        # the speed going into the tick too, as the criteria (a contact may stop the car)
        speed = max(abs(state.ego.speed), current["speed"])
        current["speed"] = abs(state.ego.speed)
        for event in current["filter"].filter(
            state.collisions, state.ego.transform, speed, state.time
        ):
            # a walker that is hit leaves the world in the same tick: look at the one before
            where = contact(state, event) or (
                contact(current["previous"], event) if current.get("previous") else None
            )
            last = agent.rows[-1] if agent.rows else {}
            row: dict[str, Any] = {
                "route": current["route"],
                "time": round(state.time, 2),
                "other": event.other_type,
                "ego_speed": round(speed, 2),
                **{k: last.get(k, "") for k in ("throttle", "brake", "expert_brake")},
                **{k: last.get(k, "") for k in COLUMNS[-4:]},
            }
            if where is None:
                row["kind"] = "static" if event.other_kind == ActorKind.STATIC else "unknown"
            else:
                row.update(
                    kind=classify(where, speed),
                    bearing_deg=round(where.bearing),
                    distance=round(where.distance, 1),
                    relative_yaw_deg=round(where.relative_yaw),
                    other_speed=round(where.other_speed, 2),
                )
            rows.append(row)
        current["previous"] = state
        return True

    def agent_factory(_job: Job, _dt: float) -> WatchedAgent:
        return agent

    runner = RouteRunner(config, make_backend, agent_factory, observer, report=False)
    try:
        for job in plan_jobs(config):
            current.update(
                route=job.route.route_id, filter=CollisionFilter(), previous=None, speed=0.0
            )
            runner.run(job)
            hits = sum(row["route"] == job.route.route_id for row in rows)
            print(f"route {job.route.route_id}: {hits} collisions", flush=True)
    finally:
        runner.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agent", type=Path, required=True, help="train.py checkpoint (.zip)")
    parser.add_argument("--routes", type=Path, required=True, help="route file (leaderboard XML)")
    parser.add_argument(
        "--route-id", action="append", default=[], help="route id (repeat; default all)"
    )
    parser.add_argument("--weather", default="ClearNoon", help="weather preset (default ClearNoon)")
    parser.add_argument(
        "--traffic", default="regular", choices=("none", "regular", "dense"), help="traffic"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed, as evaluate.py's")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads (default 1, as evaluate.py)"
    )
    parser.add_argument("--out", type=Path, help="CSV of every collision")
    args = parser.parse_args(argv)
    rows = run(args)
    counts = Counter((row["other"].split(".")[0], row["kind"]) for row in rows)
    print(f"{len(rows)} collisions")
    for (other, kind), n in sorted(counts.items()):
        print(f"  {other:8} {kind:16} {n}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
