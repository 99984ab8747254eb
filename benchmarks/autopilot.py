"""The autopilot's figure: ``python -m benchmarks.autopilot [--routes 50] [--json]``.

Drives random routes of 300-1,000 m on the shipped towns with default traffic at ClearNoon
and reports how many it completes (RC >= 95 %) with no collision and no red-light infraction.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from agent.autopilot import drive_plan
from envs.backends.base import EpisodeSpec
from envs.backends.embedded import EmbeddedBackend
from envs.planner import RoutePlanner
from envs.types import Transform

SERIOUS = ("collisions_pedestrian", "collisions_vehicle", "collisions_layout", "red_light")


def drive_route(
    backend: EmbeddedBackend,
    planner: RoutePlanner,
    rng: np.random.Generator,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One random route; returns its completion, infractions and status."""
    plan = planner.plan(planner.random_keypoints(rng, args.min_length, args.max_length))
    spec = EpisodeSpec(
        seed=seed, ego=Transform(0.0, 0.0), vehicles=args.vehicles, walkers=args.walkers
    )
    status = drive_plan(backend, plan, spec)
    keys = [i.key for i in status.infractions]
    serious = [k for k in keys if k in SERIOUS]
    return {
        "town": backend.road_map.name,
        "length": plan.length,
        "rc": status.route_completion,
        "status": status.status,
        "serious": serious,
        "clean": status.route_completion >= 95.0 and not serious,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the routes round-robin over the towns and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autopilot", description=__doc__)
    parser.add_argument("--routes", type=int, default=50, help="number of routes (default 50)")
    parser.add_argument("--towns", default="Grid01,Multi01,Curve01", help="comma-separated towns")
    parser.add_argument("--vehicles", type=int, default=30, help="NPC vehicles (default 30)")
    parser.add_argument("--walkers", type=int, default=30, help="pedestrians (default 30)")
    parser.add_argument("--min-length", type=float, default=300.0, help="route length min [m]")
    parser.add_argument("--max-length", type=float, default=1000.0, help="route length max [m]")
    parser.add_argument("--seed", type=int, default=0, help="seed of routes and traffic")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    towns = args.towns.split(",")
    backends = {t: EmbeddedBackend(t) for t in towns}
    planners = {t: RoutePlanner(b.road_map) for t, b in backends.items()}
    rng = np.random.default_rng(args.seed)
    results = []
    start = time.perf_counter()
    for i in tqdm(range(args.routes), desc="autopilot routes", disable=args.json):
        town = towns[i % len(towns)]
        results.append(drive_route(backends[town], planners[town], rng, args.seed + i, args))
    summary: dict[str, Any] = {
        "routes": len(results),
        "clean_fraction": float(np.mean([r["clean"] for r in results])),
        "mean_route_completion": float(np.mean([r["rc"] for r in results])),
        "completed_fraction": float(np.mean([r["status"] == "completed" for r in results])),
        "serious_infractions": sum(len(r["serious"]) for r in results),
        "wall_s": time.perf_counter() - start,
        "failures": [r for r in results if not r["clean"]],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "failures":
                print(
                    f"{key:<24} {value:.3f}" if isinstance(value, float) else f"{key:<24} {value}"
                )
        for r in summary["failures"]:
            where = f"{r['town']} {r['length']:.0f} m"
            print(f"  not clean: {where} rc={r['rc']:.1f} {r['status']} {r['serious']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
