"""Throughput benchmarks: ``python -m benchmarks.throughput {sim,render,env} [--json]``.

Figures, not tests: run on an idle machine, and pin to one core with ``taskset -c 0`` to match
the README's numbers. Each sub-command prints a short table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from envs.types import VehicleControl


def peak_rss_mb() -> float:
    """Peak resident memory of this process [MiB] (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _make_world(args: argparse.Namespace) -> Any:
    from envs.sim.world import World, WorldConfig

    town = args.xodr if args.xodr else args.town
    return World(town, WorldConfig(vehicles=args.vehicles, walkers=args.walkers))


def run_sim(args: argparse.Namespace) -> dict[str, Any]:
    """World steps per second with no camera; the ego waits on its lane (NPCs drive round it)."""
    world = _make_world(args)
    world.reset(seed=args.seed)
    control = VehicleControl(brake=1.0)
    for _ in range(min(200, args.steps)):  # warm-up: traffic gets moving
        world.tick(control)
    start = time.perf_counter()
    for _ in range(args.steps):
        world.tick(control)
    elapsed = time.perf_counter() - start
    moving = float((world.traffic.speed > 0.5).mean()) if len(world.traffic.speed) else 0.0
    return {
        "benchmark": "sim",
        "town": world.map.name,
        "vehicles": args.vehicles,
        "walkers": args.walkers,
        "steps": args.steps,
        "steps_per_s": args.steps / elapsed,
        "sim_seconds_per_wall_second": args.steps * world.config.dt / elapsed,
        "npc_moving_fraction": moving,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_render(args: argparse.Namespace) -> dict[str, Any]:
    """Camera frames per second (RGB + labels + depth) with traffic moving."""
    from benchmarks.render_bench import run_render as render

    result: dict[str, Any] = render(
        width=args.width,
        height=args.height,
        town=args.town,
        xodr=args.xodr,
        vehicles=args.vehicles,
        walkers=args.walkers,
        frames=args.steps,
        seed=args.seed,
    )
    result.update(benchmark="render", peak_rss_mb=peak_rss_mb())
    return result


def run_env(args: argparse.Namespace) -> dict[str, Any]:
    """Decision steps per second of ``segdrive/Embedded-v0`` with random actions."""
    from envs.driving_env import DrivingEnv

    town = args.xodr if args.xodr else args.town
    env = DrivingEnv(
        {
            "towns": [town],
            "vehicles": args.vehicles,
            "walkers": args.walkers,
            "camera_width": args.width,
            "camera_height": args.height,
        }
    )
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    resets = 0
    start = time.perf_counter()
    for _ in range(args.steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
            resets += 1
    elapsed = time.perf_counter() - start
    env.close()
    return {
        "benchmark": "env",
        "town": str(town),
        "vehicles": args.vehicles,
        "walkers": args.walkers,
        "camera": f"{args.width}x{args.height}",
        "frame_stack": env.config.frame_stack,
        "physics_steps_per_decision": env.config.action_repeat,
        "steps": args.steps,
        "resets": resets,
        "steps_per_s": args.steps / elapsed,
        "peak_rss_mb": peak_rss_mb(),
    }


BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "sim": run_sim,
    "render": run_render,
    "env": run_env,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line; every flag documented for ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__)
    parser.add_argument("what", choices=sorted(BENCHMARKS), help="which throughput to measure")
    parser.add_argument("--town", default="Grid01", help="shipped town name (default Grid01)")
    parser.add_argument(
        "--xodr", default=None, help="path to any OpenDRIVE file (overrides --town)"
    )
    parser.add_argument("--vehicles", type=int, default=50, help="NPC vehicles (default 50)")
    parser.add_argument("--walkers", type=int, default=50, help="pedestrians (default 50)")
    parser.add_argument(
        "--steps", type=int, default=5000, help="measured steps or frames (default 5000)"
    )
    parser.add_argument("--width", type=int, default=160, help="camera width in pixels (render)")
    parser.add_argument("--height", type=int, default=96, help="camera height in pixels (render)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = BENCHMARKS[args.what](args)
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
