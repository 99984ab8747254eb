"""Throughput beside a peer: ``python -m benchmarks.peers [--steps N] [--json]``.

Runs highway-env's ``highway-fast-v0`` with its grayscale image observation (a pygame top-down
rendering, 128x64, 4 stacked frames; install it with ``pip install -e '.[bench]'``) and
``segdrive/Embedded-v0`` (front camera 160x96, 4 stacked frames, 50 vehicles, 50 pedestrians)
in the same process, both with random actions, and prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from benchmarks.throughput import random_steps


def steps_per_second(env: gym.Env[Any, Any], steps: int, seed: int) -> float:
    """Random-action steps per second, resetting when an episode ends."""
    return steps / random_steps(env, steps, seed)[0]


def highway_env() -> gym.Env[Any, Any]:
    """highway-fast-v0 with the grayscale image observation of highway-env's documentation."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import highway_env  # noqa: F401
    except ImportError:
        raise SystemExit("highway-env is not installed: pip install -e '.[bench]'") from None
    config = {
        "observation": {
            "type": "GrayscaleObservation",
            "observation_shape": (128, 64),
            "stack_size": 4,
            "weights": [0.2989, 0.5870, 0.1140],
            "scaling": 1.75,
        },
    }
    return gym.make("highway-fast-v0", config=config)


def main(argv: list[str] | None = None) -> int:
    """Measure both environments and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument(
        "--steps", type=int, default=500, help="steps per environment (default 500)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    from envs.driving_env import DrivingEnv

    peer = highway_env()
    ours = DrivingEnv({"vehicles": 50, "walkers": 50})
    peer_rate = steps_per_second(peer, args.steps, args.seed)
    our_rate = steps_per_second(ours, args.steps, args.seed)
    peer.close()
    ours.close()
    result = {
        "highway_fast_v0_grayscale_steps_per_s": peer_rate,
        "segdrive_embedded_v0_steps_per_s": our_rate,
        "ratio": our_rate / peer_rate,
        "steps": args.steps,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<40} {np.round(value, 2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
