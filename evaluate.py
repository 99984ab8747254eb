"""Evaluate an agent on a route file, leaderboard style.

Example::

    python evaluate.py --agent autopilot --routes routes/heldout.xml --weathers ClearNoon \
        --traffic regular --out results/autopilot.json

Writes the results file (CARLA leaderboard layout, saved after every route), a ``report/``
folder beside it (one picture per route, ``scores_by_weather.png``) and prints a summary table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from envs.routes import RouteFileError
from evaluation.agents import AGENT_NAMES, AgentError
from evaluation.drive import TRAFFIC
from evaluation.results import ResultsFileError
from evaluation.runner import EvalConfig, EvaluationError, evaluate, worker_threads


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (every flag documented in ``--help``)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--agent",
        required=True,
        help=f"agent to drive: {', '.join(AGENT_NAMES)}, or a checkpoint .zip written by train.py",
    )
    p.add_argument(
        "--routes",
        required=True,
        type=Path,
        help="route file, leaderboard 1.0 or 2.0 XML (e.g. routes/heldout.xml)",
    )
    p.add_argument(
        "--route-ids",
        default=None,
        help="comma-separated route ids to run, e.g. 0,3,7 (default: all)",
    )
    p.add_argument(
        "--maps-dir",
        type=Path,
        default=None,
        help="folder of <town>.xodr files named after the routes' town attribute "
        "(runs CARLA towns on the embedded simulator); shipped towns need none",
    )
    p.add_argument(
        "--weathers",
        default="route",
        help="'route' (the route's own weather, interpolated as it is driven), "
        "'all' (every preset), or comma-separated presets "
        "(e.g. ClearNoon,HardRainSunset)",
    )
    p.add_argument(
        "--repetitions",
        type=int,
        default=1,
        help="runs of each route and weather, with different seeds (default 1)",
    )
    p.add_argument(
        "--traffic",
        choices=list(TRAFFIC),
        default="regular",
        help="none: 0/0, regular: 30/30, dense: 60/60 vehicles/pedestrians",
    )
    p.add_argument(
        "--lights",
        choices=["cycle", "green", "red-at-start"],
        default="cycle",
        help="traffic lights: normal cycle, always green, or red at the start",
    )
    p.add_argument(
        "--backend",
        choices=["embedded", "carla"],
        default="embedded",
        help="simulator: the embedded one (default) or a running CARLA server",
    )
    p.add_argument("--host", default="localhost", help="CARLA server host (--backend carla)")
    p.add_argument(
        "--port",
        type=int,
        default=2000,
        help="CARLA server RPC port (--backend carla); with --workers N, worker i uses "
        "port + 3i, so start one server per worker (2000, 2003, ...)",
    )
    p.add_argument(
        "--tm-port",
        type=int,
        default=8000,
        help="Traffic Manager port (--backend carla); worker i uses tm-port + i",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the CARLA server to answer a call or deliver a camera image "
        "before reconnecting (--backend carla; a town load waits up to 120 s)",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="connection attempts to a CARLA server, with exponential backoff, before the "
        "route is recorded as failed (--backend carla)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads of each process that drives (default 1: a policy encodes one frame "
        "per tick, where more threads gain little and lose much when anything else uses the "
        "cores); 0 shares the cores out among the workers",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="parallel workers, each with its own simulator (default 1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results.json"),
        help="results file (leaderboard JSON); report/ is written beside it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the routes already in --out (reruns crashed ones)",
    )
    p.add_argument(
        "--record",
        type=Path,
        default=None,
        help="folder for one MP4 per route: camera | segmentation | BEV (embedded backend only)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base seed; route i, repetition r uses seed + 1000*i + r",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The evaluation the parsed command line asks for."""
    return EvalConfig(
        agent=args.agent,
        routes=args.routes,
        route_ids=tuple(args.route_ids.split(",")) if args.route_ids else None,
        maps_dir=args.maps_dir,
        weathers=tuple(w.strip() for w in args.weathers.split(",") if w.strip()),
        repetitions=args.repetitions,
        traffic=args.traffic,
        lights=args.lights,
        backend=args.backend,
        host=args.host,
        tm_port=args.tm_port,
        port=args.port,
        timeout=args.timeout,
        retries=args.retries,
        workers=args.workers,
        out=args.out,
        resume=args.resume,
        record=args.record,
        seed=args.seed,
        torch_threads=args.torch_threads,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; returns the exit code (2 for bad input)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    config = eval_config(args)
    if config.workers == 1:  # the workers of a pool set their own
        import torch

        torch.set_num_threads(worker_threads(config))
    try:
        results, table = evaluate(config)
    except (RouteFileError, EvaluationError, AgentError, ResultsFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nresults: {results.path}  report: {config.report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
