"""The command line of ``python -m perception.collect`` (flags, validation, exit status).

See ``perception.collect`` for what a collection is; this module turns ``argv`` into its
config and the CARLA server to use, and errors into messages and exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from envs.backends.base import BackendError
from envs.sim.weather import PRESET_NAMES
from perception.collect import (
    BACKENDS,
    CLOSE_HEADWAY,
    CLOSE_MARGIN,
    TRAIN_WEATHERS,
    CarlaOptions,
    CollectConfig,
    CollectError,
    collect,
)

logger = logging.getLogger("perception.collect")


def _weathers(spec: str) -> tuple[str, ...]:
    if spec == "all":
        return PRESET_NAMES
    if spec == "train":
        return TRAIN_WEATHERS
    return tuple(w.strip() for w in spec.split(",") if w.strip())


_CARLA_FLAGS = ("host", "port", "tm_port", "timeout", "retries")


def parse_command_line(
    argv: Sequence[str] | None = None,
) -> tuple[CollectConfig, Path, CarlaOptions]:
    """Parse the command line into a config, an output directory and the CARLA server."""
    d, c = CollectConfig, CarlaOptions
    parser = argparse.ArgumentParser(
        prog="python -m perception.collect",
        description=__doc__.splitlines()[0],
        epilog="Recording on a CARLA server and fine-tuning on it: docs/carla.md.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--frames", type=int, default=d.frames, help="total frames to collect")
    parser.add_argument(
        "--towns",
        default=",".join(d.towns),
        help="comma-separated towns, one per shard in turn: shipped names or .xodr paths, and "
        "with --backend carla the server's maps (Town01,...)",
    )
    parser.add_argument(
        "--weathers", default="train", help="all | train | comma-separated preset names"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="master seed")
    parser.add_argument(
        "--frames-per-shard", type=int, default=d.frames_per_shard, help="frames per shard file"
    )
    parser.add_argument("--every", type=int, default=d.every, help="ticks (20 Hz) per frame")
    parser.add_argument("--width", type=int, default=d.width, help="camera width [px]")
    parser.add_argument("--height", type=int, default=d.height, help="camera height [px]")
    parser.add_argument("--vehicles", type=int, default=d.vehicles, help="NPC vehicles")
    parser.add_argument("--walkers", type=int, default=d.walkers, help="pedestrians")
    parser.add_argument(
        "--steer-noise",
        type=float,
        default=d.steer_noise,
        help="std of the autopilot's steer noise",
    )
    parser.add_argument(
        "--standing-every",
        type=int,
        default=d.standing_every,
        help="while the ego stands still, store a frame only every this many ticks",
    )
    parser.add_argument(
        "--close-follow-share",
        type=float,
        default=d.close_follow_share,
        help=f"share of routes on which the autopilot stops {CLOSE_MARGIN[0]:g}-"
        f"{CLOSE_MARGIN[1]:g} m behind cars ({CLOSE_HEADWAY:g} s headway) instead of 5 m, so "
        "the data holds the near gaps a policy's late braking leads to (default 0)",
    )
    server = parser.add_argument_group(
        "simulator", "Where the frames come from; the flags after --backend need --backend carla."
    )
    server.add_argument(
        "--backend",
        choices=BACKENDS,
        default=d.backend,
        help="embedded: the in-process simulator (default); carla: a running CARLA 0.9.16 "
        "server, recording its RGB camera and the semantic-segmentation camera on the same "
        "mount (label ids from its red channel). A collection keeps the backend it began with",
    )
    server.add_argument("--host", help=f"CARLA server host (default {c.host})")
    server.add_argument(
        "--port", type=int, help=f"CARLA RPC port; the server also uses port+1 (default {c.port})"
    )
    server.add_argument(
        "--tm-port",
        type=int,
        help=f"Traffic Manager port, distinct for each server on a machine (default {c.tm_port})",
    )
    server.add_argument(
        "--timeout",
        type=float,
        help=f"longest wait for any answer of the server or image of a camera [s] "
        f"(default {c.timeout:g})",
    )
    server.add_argument(
        "--retries",
        type=int,
        help="connection attempts, with growing pauses, before the collection stops with the "
        f"shards written so far kept (default {c.retries})",
    )
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in _CARLA_FLAGS if getattr(args, k) is not None}
    if given and args.backend != "carla":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        parser.error(f"{flags} set where the CARLA server is; add --backend carla")
    config = CollectConfig(
        backend=args.backend,
        frames=args.frames,
        towns=tuple(t.strip() for t in args.towns.split(",") if t.strip()),
        weathers=_weathers(args.weathers),
        seed=args.seed,
        frames_per_shard=args.frames_per_shard,
        width=args.width,
        height=args.height,
        every=args.every,
        vehicles=args.vehicles,
        walkers=args.walkers,
        close_follow_share=args.close_follow_share,
        steer_noise=args.steer_noise,
        standing_every=args.standing_every,
    )
    return config, args.out, CarlaOptions(**given)


def parse_args(argv: Sequence[str] | None = None) -> tuple[CollectConfig, Path]:
    """Parse the command line into a config and an output directory."""
    config, out, _ = parse_command_line(argv)
    return config, out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for bad input or a lost server)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config, out, carla = parse_command_line(argv)
    try:
        manifest = collect(config, out, carla=carla)
    except (CollectError, BackendError, ValueError) as error:
        print(f"perception.collect: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the complete shards in {out} are kept: run the same command to "
            "continue",
            file=sys.stderr,
        )
        return 130
    total = sum(s["frames"] for s in manifest["shards"])
    logger.info("%s: %d frames in %d shards", out, total, len(manifest["shards"]))
    return 0
