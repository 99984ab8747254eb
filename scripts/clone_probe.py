"""Which policy inputs let a clone of the autopilot generalise? A quick probe, no training run.

Drives the autopilot with the warm start's noises (DART steer noise, AR(1) pedal noise) on two
seeds of the training config's envs, records every decision's measurements, encoder output and
clean expert action, then fits one MLP per input set (the policy's default ``[256, 256]`` tanh
network, mean squared error on steer and acceleration) on the first seed's drives and scores it
on the second's. A set whose error on new drives is far above its training error is memorised,
not learnt.

    python scripts/clone_probe.py --steps 20000 --heldout-steps 8000
    python scripts/clone_probe.py --inputs affordances affordances+arcs all --json

Input sets: ``measurements`` (speed, route targets, command), ``affordances`` (plus the
encoder's light probabilities, distances and lane pose), ``all`` (plus every encoder feature),
each optionally ``+arcs`` (the bearings and curvatures of the arcs to the targets).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from agent.features import load_encoder
from agent.train_config import load_config
from agent.warmstart import is_braking, is_turning, perturb
from envs.driving_env import DrivingEnv

REPO = Path(__file__).resolve().parents[1]
INPUT_SETS = (
    "measurements",
    "measurements+arcs",
    "affordances",
    "affordances+arcs",
    "all",
    "all+arcs",
)
COLUMNS = ("train_mse", "steer_mse", "steer_mse_turning", "accel_mse", "accel_mse_braking")


def collect(config_path: Path, seed: int, steps: int, progress: bool) -> dict[str, NDArray[Any]]:
    """``steps`` decisions of the noisy autopilot on the config's env, seeded ``seed``."""
    config = load_config(config_path)
    if config.env.action != "continuous_accel":
        raise SystemExit(f"{config_path}: the probe needs env.action: continuous_accel")
    encoder = load_encoder(config.encoder_path)
    env = DrivingEnv(replace(config.env, frame_stack=1))
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    pedal = np.zeros(1)
    rows: dict[str, list[NDArray[Any]]] = {
        k: [] for k in ("speed", "targets", "arcs", "command", "features", "action")
    }
    affordances = encoder.config.affordance_outputs
    for _ in tqdm(range(steps), disable=not progress, desc=f"seed {seed}", unit="step"):
        expert = np.asarray(env.expert_action(), dtype=np.float32)
        with torch.inference_mode():
            image = torch.from_numpy(obs["image"][None])
            features = encoder.features(image)
            if not encoder.config.affordance_features:  # keep the affordances as the tail
                features = torch.cat([features, encoder.affordances(image)], dim=1)
        for key in ("speed", "targets", "arcs", "command"):
            rows[key].append(obs[key])
        rows["features"].append(features.numpy()[0])
        rows["action"].append(expert)
        executed, pedal = perturb(expert[None], pedal, rng, config.bc_noise, config.bc_pedal_noise)
        obs, _, terminated, truncated, _ = env.step(np.clip(executed[0], -1.0, 1.0))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    data = {k: np.stack(v).astype(np.float32) for k, v in rows.items()}
    data["affordance_columns"] = np.array(affordances)
    return data


def inputs(data: dict[str, NDArray[Any]], name: str) -> NDArray[np.float32]:
    """The columns of input set ``name`` (see ``INPUT_SETS``)."""
    base, _, extra = name.partition("+")
    columns = [data["speed"], data["targets"], data["command"]]
    if extra == "arcs":
        columns.append(data["arcs"])
    if base == "affordances":
        columns.append(data["features"][:, -int(data["affordance_columns"]) :])
    elif base == "all":
        columns.append(data["features"])
    return np.concatenate(columns, axis=1).astype(np.float32)


def _mean(values: NDArray[Any], where: NDArray[np.bool_]) -> float | None:
    """Mean of ``values[where]``; None when no sample qualifies (e.g. no braking in a short
    probe)."""
    return float(values[where].mean()) if where.any() else None


def fit(
    train: dict[str, NDArray[Any]],
    test: dict[str, NDArray[Any]],
    name: str,
    seed: int,
    epochs: int,
) -> dict[str, float | None]:
    """Fit one MLP on ``train``'s set ``name`` and score it on ``test``."""
    torch.manual_seed(seed)
    x, x_test = inputs(train, name), inputs(test, name)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = np.clip((x - mean) / std, -10.0, 10.0)
    x_test = np.clip((x_test - mean) / std, -10.0, 10.0)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 2),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(train["action"])
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 256):
            idx = order[start : start + 256]
            loss = ((net(xs[idx]) - ys[idx]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        fitted = net(xs).numpy()
        predicted = net(torch.from_numpy(x_test)).numpy()
    label = test["action"]
    error = (predicted - label) ** 2
    turning = is_turning(label)
    braking = is_braking(label)
    return {
        "train_mse": float(((fitted - train["action"]) ** 2).mean()),
        "steer_mse": float(error[:, 0].mean()),
        "steer_mse_turning": _mean(error[:, 0], turning),
        "accel_mse": float(error[:, 1].mean()),
        "accel_mse_braking": _mean(error[:, 1], braking),
        "inputs": int(x.shape[1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=REPO / "configs" / "ppo.yaml",
        help="training config whose env, encoder and noises are used (default configs/ppo.yaml)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=20000, help="training decisions (20000)")
    parser.add_argument("--heldout-steps", type=int, default=8000, help="held-out decisions (8000)")
    parser.add_argument("--seed", type=int, default=0, help="training drives' seed (0)")
    parser.add_argument("--heldout-seed", type=int, default=1, help="held-out drives' seed (1)")
    parser.add_argument(
        "--inputs", nargs="+", choices=INPUT_SETS, default=list(INPUT_SETS),
        help="input sets to compare (default: all six)",
    )  # fmt: skip
    parser.add_argument("--fits", type=int, default=3, help="fits per set, other seeds (3)")
    parser.add_argument("--epochs", type=int, default=15, help="passes per fit (15)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.steps, args.heldout_steps, args.fits, args.epochs) < 1:
        parser.error("--steps, --heldout-steps, --fits and --epochs must be >= 1")
    progress = not args.json
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 encoding gains nothing from more; the env is the cost
    try:
        train = collect(args.config, args.seed, args.steps, progress)
        test = collect(args.config, args.heldout_seed, args.heldout_steps, progress)
    finally:
        torch.set_num_threads(threads)
    results: dict[str, dict[str, float | None]] = {}
    for name in args.inputs:
        fits = [fit(train, test, name, seed, args.epochs) for seed in range(args.fits)]
        results[name] = {
            k: None if fits[0][k] is None else float(np.mean([f[k] for f in fits])) for k in fits[0]
        }
    if args.json:
        print(json.dumps({"config": str(args.config), "fits": args.fits, "results": results}))
        return 0
    turning = is_turning(test["action"])
    print(
        f"held-out: {len(test['action'])} decisions, {int(turning.sum())} turning; "
        f"label variance steer {test['action'][:, 0].var():.4f}, "
        f"accel {test['action'][:, 1].var():.4f}; mean of {args.fits} fits"
    )
    header = ("inputs", "n", "train", "steer", "steer turning", "accel", "accel braking")
    print("{:<18} {:>5} {:>7} {:>7} {:>13} {:>7} {:>13}".format(*header))
    for name, r in results.items():
        cells = [f"{r[k]:.4f}" if r[k] is not None else "-" for k in COLUMNS]
        print(f"{name:<18} {r['inputs']:>5.0f} " + "{:>7} {:>7} {:>13} {:>7} {:>13}".format(*cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
