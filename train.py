"""Train a driving policy (PPO, DQN or QR-DQN) on camera frames through the frozen encoder.

Examples::

    python train.py                                   # configs/ppo.yaml, embedded simulator
    python train.py --config configs/qrdqn.yaml --run-dir runs/qrdqn
    python train.py --set total_steps=200000 env.vehicles=10 n_envs=2
    python train.py --resume runs/ppo                 # continue after an interruption
    tensorboard --logdir runs

The run folder gets the resolved ``config.yaml``, TensorBoard events, ``progress.csv``,
``eval.csv`` (periodic route evaluation), ``checkpoints/`` (the last few, and ``best.zip`` by
evaluation driving score) and ``final.zip``. Any checkpoint drives in ``evaluate.py --agent``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "ppo.yaml"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every config key is documented in agent/train_config.py (TrainConfig) and "
        "envs/config.py (EnvConfig, the env: section).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML training config (default: configs/ppo.yaml; with --resume: the run's own "
        "config.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, values parsed as YAML; dotted keys reach the env, "
        "algo_kwargs and policy_kwargs sections (env.vehicles=10). Takes several pairs "
        "(--set n_envs=2 env.vehicles=10) and can be repeated.",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="run folder (default: runs/<config name>); must not hold a run unless --resume",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint (step counter, optimizer, "
        "normalisation statistics, replay buffer if saved); a run stopped in its warm start "
        "continues after the last finished stage (warmstart, dagger_<i>)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="torch device of the policy and encoder (default: the config's, auto)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from agent.checkpoint import CheckpointError
    from agent.train_config import ConfigError, load_config
    from agent.training import RunError, train

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.resume is not None:
        run_dir = args.resume
        config_path = args.config or run_dir / "config.yaml"
    else:
        config_path = args.config or DEFAULT_CONFIG
        run_dir = args.run_dir or Path("runs") / config_path.stem
    try:
        config = load_config(config_path, overrides)
        train(config, run_dir, resume=args.resume is not None, progress=not args.no_progress)
    except (ConfigError, RunError, CheckpointError, FileNotFoundError) as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the latest checkpoint in {run_dir} is intact: "
            f"python train.py --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    print(f"done: {run_dir / 'final.zip'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
