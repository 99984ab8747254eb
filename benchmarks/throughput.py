"""Throughput benchmarks: ``python -m benchmarks.throughput {sim,render,env,encoder,train}``.

Figures, not tests: run on an idle machine, and pin to one core with ``taskset -c 0`` to match
the README's numbers. Each sub-command prints a short table, or one JSON object with ``--json``.
``train`` measures whole training (env collection, encoder, updates) with the envs in
subprocesses: do not pin it, it needs the cores a real run has.
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


def random_steps(env: Any, steps: int, seed: int) -> tuple[float, int]:
    """Step ``env`` with random actions; (seconds, resets), resetting when an episode ends.

    The actions are drawn before the clock starts: gymnasium's sampler (~40 us a call) is the
    benchmark's cost, not the environment's, and a policy hands over its actions just the same.
    """
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    resets = 0
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
            resets += 1
    return time.perf_counter() - start, resets


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
    elapsed, resets = random_steps(env, args.steps, args.seed)
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


def _timed_frames(
    features: Callable[[Any], Any], images: Any, seconds: float, sync: Callable[[], None]
) -> tuple[int, float]:
    """Frames encoded and seconds taken by repeated ``features(images)`` over ``seconds``."""
    frames, start = 0, time.perf_counter()
    while True:
        features(images)
        frames += images.shape[0]
        sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return frames, elapsed


def run_encoder(args: argparse.Namespace) -> dict[str, Any]:
    """``PerceptionNet.features()`` frames/s on uint8 camera frames, under inference mode.

    The network is the inference copy training and evaluation use (``PerceptionNet.frozen``:
    batch norms folded into the convolutions).

    Measured with the model and input in the default (contiguous) layout and in
    ``torch.channels_last``, in alternating halves so that a drifting machine load biases
    neither; ``frames_per_s`` is the faster layout, ``frames_per_s_batch4`` the RL case (four
    environments) in that layout. Speed does not depend on the weights, so a randomly
    initialised default network stands in when no ``--weights`` is given. On cores another
    process keeps busy, give ``--threads 1``: torch's threads otherwise wait on each other and
    the figure drops tenfold and more.
    """
    import torch

    from perception.model import PerceptionNet

    if args.batch < 1 or args.seconds <= 0:
        raise ValueError("encoder benchmark: --batch must be >= 1 and --seconds > 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA device")
    torch.manual_seed(args.seed)
    model = PerceptionNet.from_weights(args.weights) if args.weights else PerceptionNet()
    model = model.eval().to(args.device)
    layouts = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    models = {k: model.frozen(channels_last=k == "channels_last") for k in layouts}
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(args.seed)
    rates: dict[tuple[str, int], float] = {}
    with torch.inference_mode():
        for batch in dict.fromkeys((args.batch, 4)):
            images = torch.randint(0, 256, (batch, 3, args.height, args.width), generator=generator)
            inputs = {
                k: images.to(device=args.device, dtype=torch.uint8, memory_format=v)
                for k, v in layouts.items()
            }
            totals = dict.fromkeys(layouts, (0, 0.0))
            for _ in range(2):
                for name, net in models.items():
                    net.features(inputs[name])  # warm-up: first calls allocate, pick kernels
                    sync()
                    frames, elapsed = _timed_frames(
                        net.features, inputs[name], args.seconds / 2, sync
                    )
                    totals[name] = (totals[name][0] + frames, totals[name][1] + elapsed)
            for name, (frames, elapsed) in totals.items():
                rates[name, batch] = frames / elapsed
    best = max(layouts, key=lambda k: rates[k, args.batch])
    return {
        "benchmark": "encoder",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "input": f"{args.width}x{args.height}",
        "batch": args.batch,
        "feature_dim": model.feature_dim,
        "parameters": sum(p.numel() for m in (model.encoder, model.reduce) for p in m.parameters()),
        "weights": str(args.weights) if args.weights else "random",
        "memory_format": best,
        "frames_per_s": rates[best, args.batch],
        "frames_per_s_batch4": rates[best, 4],
        "frames_per_s_contiguous": rates["contiguous", args.batch],
        "frames_per_s_channels_last": rates["channels_last", args.batch],
        "frames_per_s_batch4_contiguous": rates["contiguous", 4],
        "frames_per_s_batch4_channels_last": rates["channels_last", 4],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    """End-to-end training env steps/s (collection + encoding + updates); see ``train_bench``.

    ``peak_rss_mb`` is this process's (policy, encoder, buffers), not the env subprocesses'.
    """
    from benchmarks.train_bench import run_train as train

    result = train(
        algo=args.algo,
        config=args.config,
        envs=args.envs,
        steps=args.steps,
        device=args.device,
        threads=args.threads,
        weights=args.weights,
        seed=args.seed,
        progress=not args.json,
    )
    result["peak_rss_mb"] = peak_rss_mb()
    return result


BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "sim": run_sim,
    "render": run_render,
    "env": run_env,
    "encoder": run_encoder,
    "train": run_train,
}
DEFAULT_STEPS = {"train": 4096}
"""``--steps`` where it is not 5000."""


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
        "--steps",
        type=int,
        default=None,
        help="measured steps or frames (default 5000; train: 4096 env steps over all envs)",
    )
    parser.add_argument("--width", type=int, default=160, help="camera width in pixels (render)")
    parser.add_argument("--height", type=int, default=96, help="camera height in pixels (render)")
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    encoder = parser.add_argument_group("encoder (--threads, --weights, --device: train too)")
    encoder.add_argument("--batch", type=int, default=64, help="frames per call (default 64)")
    encoder.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads of this process (default: torch's; train: the config's)",
    )
    encoder.add_argument(
        "--seconds", type=float, default=3.0, help="measured time per case (default 3)"
    )
    encoder.add_argument(
        "--weights",
        default=None,
        help="weight file (default: a random default network; train: the shipped weights "
        "when present)",
    )
    encoder.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device")
    train = parser.add_argument_group(
        "train",
        "The env comes from the config: --town, --vehicles, --walkers, --width and "
        "--height do not apply.",
    )
    train.add_argument(
        "--algo", choices=("ppo", "dqn", "qrdqn"), default=None, help="algorithm (default ppo)"
    )
    train.add_argument("--envs", type=int, default=4, help="parallel envs (default 4)")
    train.add_argument(
        "--config",
        default=None,
        help="training config (default configs/<algo>.yaml; --algo, if given, overrides its algo)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.what, 5000)
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
