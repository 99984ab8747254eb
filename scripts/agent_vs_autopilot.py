"""Why does an agent stop (or not)? Drive one route with a checkpoint and log, at every decision,
what the policy did beside what the privileged autopilot would have done on the same state, and
what the encoder's light head read against the light that actually governs the lane.

    python scripts/agent_vs_autopilot.py --agent agent/checkpoints/ppo_embedded.zip \
        --routes routes/heldout.xml --route-id 4 --seconds 60 --out route4.csv

Prints one line every ``--print-every`` decisions and writes every decision to ``--out`` (CSV).
The route ends at the first collision (or, with ``--through-collisions``, drives on as
evaluate.py does), at ``--seconds`` of simulated time, or when the criteria end it. The
autopilot only watches: the agent drives.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

import torch

from agent.autopilot import teacher
from agent.policy_agent import CAMERA_ID, PolicyAgent
from envs.backends.base import SimulatorBackend, TrafficLightInfo, WorldState
from envs.observation import COMMANDS
from envs.routes import RoutePlan
from envs.sim.roadmap import RoadMap
from envs.types import TrafficLightState, VehicleControl
from evaluation.drive import RouteRunner
from evaluation.runner import EvalConfig, Job, make_backend, plan_jobs
from perception.collect import LIGHT_CLASSES, MAX_DISTANCE, heading_ahead

COLUMNS = (
    "time",
    "speed",
    "steer",
    "throttle",
    "brake",
    "expert_steer",
    "expert_throttle",
    "expert_brake",
    "command",
    *(f"p_{name}" for name in LIGHT_CLASSES),
    "seen_light_distance",
    "light_state",
    "light_distance",
    "seen_vehicle_gap",
    "vehicle_gap",
    "seen_walker_gap",
    "walker_gap",
    "seen_heading_ahead",
    "heading_ahead",
)


class WatchedAgent(PolicyAgent):
    """A checkpoint that drives while an autopilot on the same plan says what it would do."""

    rows: list[dict[str, Any]]

    def setup(
        self, plan: RoutePlan, roadmap: RoadMap, lights: tuple[TrafficLightInfo, ...]
    ) -> None:
        """New route for both drivers."""
        super().setup(plan, roadmap, lights)
        self.expert = teacher(self.config.env)  # the driver that training imitated
        self.expert.reset(plan, roadmap, lights)
        self.rows = []

    def act(self, state: WorldState) -> VehicleControl:
        """The policy's control; records it with the expert's and the encoder's reading."""
        control = super().act(state)
        expert = self.expert.run_step(state, self.config.env.decision_dt)
        image = self.observations.image_of(state.cameras[CAMERA_ID])
        with torch.inference_mode():
            out = self.encoder(torch.from_numpy(image[None]))
        probs = torch.softmax(out["light_state"], dim=1)[0].tolist()
        hazards = self.expert.last_hazards
        plan = self._plan
        assert plan is not None
        command = self.observations.command_of(self._index)
        row: dict[str, Any] = {
            "time": round(state.time, 2),
            "speed": round(state.ego.speed, 2),
            "steer": round(control.steer, 3),
            "throttle": round(control.throttle, 3),
            "brake": round(control.brake, 3),
            "expert_steer": round(expert.steer, 3),
            "expert_throttle": round(expert.throttle, 3),
            "expert_brake": round(expert.brake, 3),
            "command": COMMANDS[command].name if command is not None else "",
            "seen_light_distance": round(float(out["light_distance"][0]) * MAX_DISTANCE, 1),
            "light_state": TrafficLightState(int(hazards.light_state)).name,
            "light_distance": round(hazards.light_distance, 1),
            "seen_vehicle_gap": round(float(out["vehicle_gap"][0]) * MAX_DISTANCE, 1),
            "vehicle_gap": round(min(hazards.vehicle_gap, MAX_DISTANCE), 1),
            "seen_walker_gap": round(float(out["walker_gap"][0]) * MAX_DISTANCE, 1),
            "walker_gap": round(min(hazards.walker_gap, MAX_DISTANCE), 1),
            # degrees; encoders before weights version 4 have no such output
            "seen_heading_ahead": (
                round(math.degrees(float(out["heading_ahead"][0])), 1)
                if "heading_ahead" in out
                else ""
            ),
            "heading_ahead": round(
                math.degrees(heading_ahead(state, plan.yaw, plan.distance, self._index)), 1
            ),
        }
        row.update({f"p_{name}": round(p, 3) for name, p in zip(LIGHT_CLASSES, probs, strict=True)})
        self.rows.append(row)
        return control


def drives_on(tick: int, limit: int, collided: bool, through_collisions: bool) -> bool:
    """Whether the route goes on after physics tick ``tick`` (of ``limit``)."""
    return tick < limit and (through_collisions or not collided)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Drive the route; returns one row per decision."""
    config = EvalConfig(
        agent=str(args.agent),
        routes=args.routes,
        route_ids=(args.route_id,),
        weathers=(args.weather,),
        traffic=args.traffic,
        seed=args.seed,
    )
    job = plan_jobs(config)[0]
    agent = WatchedAgent.from_checkpoint(args.agent)
    limit = int(args.seconds / agent.config.env.physics_dt)
    ticks = [0]

    def observer(_backend: SimulatorBackend, state: WorldState, _plan: RoutePlan) -> bool:
        ticks[0] += 1
        return drives_on(ticks[0], limit, bool(state.collisions), args.through_collisions)

    def agent_factory(_job: Job, _dt: float) -> WatchedAgent:
        return agent

    runner = RouteRunner(config, make_backend, agent_factory, observer, report=False)
    try:
        runner.run(job)
    finally:
        runner.close()
    return agent.rows


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agent", type=Path, required=True, help="train.py checkpoint (.zip)")
    parser.add_argument("--routes", type=Path, required=True, help="route file (leaderboard XML)")
    parser.add_argument("--route-id", required=True, help="id of the route to drive")
    parser.add_argument("--weather", default="ClearNoon", help="weather preset (default ClearNoon)")
    parser.add_argument(
        "--traffic", default="regular", choices=("none", "regular", "dense"), help="traffic"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed, as evaluate.py's")
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated time to drive [s]")
    parser.add_argument(
        "--through-collisions",
        action="store_true",
        help="drive on after a collision, as evaluate.py does (default: stop at the first)",
    )
    parser.add_argument("--print-every", type=int, default=10, help="print every N decisions")
    parser.add_argument("--out", type=Path, help="CSV of every decision")
    args = parser.parse_args(argv)
    rows = run(args)
    shown = ("time", "speed", "throttle", "brake", "expert_throttle", "expert_brake", "command")
    lights = ("p_red", "p_green", "p_none", "light_state", "light_distance")
    print(" ".join(f"{c:>15}" for c in (*shown, *lights)))
    for row in rows[:: max(1, args.print_every)]:
        print(" ".join(f"{row[c]!s:>15}" for c in (*shown, *lights)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.out} ({len(rows)} decisions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
