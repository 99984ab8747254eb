"""End-to-end training throughput, behind ``python -m benchmarks.throughput train``.

Times SB3's ``learn()`` on the real training stack (``agent.training.make_vec_env`` and
``build_model``): the driving envs in subprocesses, the frozen encoder batched in this process,
the policy's forward passes and its updates. The figure is env steps (decisions, summed over
the envs) per wall second, after a warm-up ``learn()`` that spawns the envs and runs the first
update. Two cheap reference loops on the same wrapped envs split it: random actions (collection
without the policy or its updates) and the encoder alone on batches of one frame per env.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from tqdm import tqdm

from agent.features import EncoderVecEnv
from agent.train_config import TrainConfig, load_config
from agent.training import build_model, make_vec_env, resolve_device
from perception.model import DEFAULT_WEIGHTS, PerceptionNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
OFF_POLICY_WARMUP = 256
"""Warm-up env steps of DQN / QR-DQN; their updates start halfway (``learning_starts``), so the
timed steps include updates however large the config's ``learning_starts`` is."""
RANDOM_WEIGHTS = "random default PerceptionNet (speed does not depend on the weights)"


class UpdateTimer(BaseCallback):
    """Wall time spent in the algorithm's updates, and a progress bar over the env steps.

    SB3 trains between the end of one rollout and the start of the next (after the last, before
    ``on_training_end``), so that interval is the update time.

    Args:
        total: Env steps the bar counts to.
        progress: Show the bar.
        label: The bar's description.
    """

    def __init__(self, total: int, progress: bool, label: str) -> None:
        super().__init__()
        self.seconds = 0.0
        self._since: float | None = None
        self._bar = tqdm(total=total, unit="step", desc=label, disable=not progress)

    def _stop(self) -> None:
        if self._since is not None:
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def _on_rollout_start(self) -> None:
        self._stop()

    def _on_rollout_end(self) -> None:
        self._since = time.perf_counter()

    def _on_step(self) -> bool:
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self._stop()
        self._bar.close()


def bench_config(
    path: Path, algo: str | None, envs: int, device: str, seed: int, weights: Path
) -> TrainConfig:
    """The training config ``path`` at ``envs`` envs, with evaluation and videos off.

    ``algo``, when given, overrides the file's. Off-policy algorithms start learning halfway
    through the warm-up.
    """
    overrides = [f"n_envs={envs}", f"seed={seed}", f"device={device}", "eval_every=0"]
    overrides += ["video_every=0", f"encoder_weights={weights}"]
    if algo:
        overrides.append(f"algo={algo}")
    train_config = load_config(path, overrides)
    if train_config.algo == "ppo":
        return train_config
    kwargs = {**train_config.algo_kwargs, "learning_starts": OFF_POLICY_WARMUP // 2}
    return replace(train_config, algo_kwargs=kwargs)


def random_weights(folder: Path, seed: int) -> Path:
    """A randomly initialised default ``PerceptionNet`` saved in ``folder``."""
    torch.manual_seed(seed)
    path = folder / "random_perception.pt"
    PerceptionNet().save_weights(path)
    return path


def _encoder_env(venv: VecEnv) -> EncoderVecEnv | None:
    """The ``EncoderVecEnv`` layer of a wrapped env (none when the encoder is fine-tuned)."""
    while not isinstance(venv, EncoderVecEnv):
        inner = getattr(venv, "venv", None)
        if inner is None:
            return None
        venv = inner
    return venv


def collection_rate(venv: VecEnv, steps: int, seed: int, progress: bool) -> float:
    """Env steps/s of ``venv.step`` with random actions (drawn beforehand): env + encoder."""
    venv.action_space.seed(seed)
    calls = math.ceil(steps / venv.num_envs)
    sample = venv.action_space.sample
    actions = [np.stack([sample() for _ in range(venv.num_envs)]) for _ in range(calls)]
    start = time.perf_counter()
    for action in tqdm(actions, unit="call", desc="collection only", disable=not progress):
        venv.step(action)
    return calls * venv.num_envs / (time.perf_counter() - start)


def encoder_rate(venv: VecEnv, steps: int, seed: int) -> float | None:
    """Env steps/s the frozen encoder alone sustains, one batch of ``num_envs`` frames a step."""
    encoder_env = _encoder_env(venv)
    if encoder_env is None:
        return None
    space = encoder_env.venv.observation_space
    assert isinstance(space, spaces.Dict), "EncoderVecEnv checks for Dict observations"
    shape = (venv.num_envs, *(space["image"].shape or ()))
    images = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    encoder_env.encode(images)  # warm-up: the first call allocates
    calls = math.ceil(steps / venv.num_envs)
    start = time.perf_counter()
    for _ in range(calls):
        encoder_env.encode(images)
    return calls * venv.num_envs / (time.perf_counter() - start)


def timed_learn(model: BaseAlgorithm, steps: int, progress: bool) -> dict[str, Any]:
    """Warm up, then time ``learn(steps)``; PPO rounds up to whole rollouts."""
    if isinstance(model, OnPolicyAlgorithm):
        warmup = model.n_steps * model.n_envs  # one rollout and its update
    else:
        warmup = OFF_POLICY_WARMUP
    model.learn(warmup, callback=UpdateTimer(warmup, progress, "warm-up"))
    before = model.num_timesteps
    timer = UpdateTimer(steps, progress, "train")
    start = time.perf_counter()
    model.learn(steps, callback=timer, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    done = model.num_timesteps - before
    return {
        "warmup_steps": before,
        "steps": done,
        "seconds": seconds,
        "steps_per_s": done / seconds,
        "update_share": timer.seconds / seconds,
    }


def run_train(
    *,
    algo: str | None = None,
    config: str | None = None,
    envs: int = 4,
    steps: int = 4096,
    device: str = "cpu",
    threads: int = 0,
    weights: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train for ``steps`` env steps on the real stack and report env steps per second.

    Args:
        algo: ``ppo``, ``dqn`` or ``qrdqn`` (default ``ppo``; with ``config``, overrides it).
        config: Training config file (default ``configs/<algo>.yaml``).
        envs: Parallel envs (``n_envs``).
        steps: Timed env steps, summed over the envs.
        device: Torch device of the policy and the encoder.
        threads: Torch CPU threads of this process (0: the config's ``torch_threads``).
        weights: Encoder weights (default: the shipped ones, else a random default network).
        seed: Config seed.
        progress: Show progress bars.

    Returns:
        The figures: ``steps_per_s`` end to end, ``update_share`` of the timed wall time,
        ``collection_only_steps_per_s`` (random actions) and ``encoder_only_steps_per_s``
        (``None`` when the config fine-tunes the encoder).
    """
    if envs < 1 or steps < 1:
        raise ValueError("train benchmark: --envs and --steps must be >= 1")
    device = resolve_device(device)
    load = os.getloadavg()[0]
    config_path = Path(config) if config else CONFIGS / f"{algo or 'ppo'}.yaml"
    if weights is None and DEFAULT_WEIGHTS.is_file():
        weights = str(DEFAULT_WEIGHTS)
    with ExitStack() as stack:
        if weights is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            weights_path = random_weights(Path(folder), seed)
        else:
            weights_path = Path(weights)
        algo_override = algo if config else None
        train_config = bench_config(config_path, algo_override, envs, device, seed, weights_path)
        if threads or train_config.torch_threads:
            torch.set_num_threads(threads or train_config.torch_threads)
        venv = make_vec_env(train_config, device)
        stack.callback(venv.close)
        model = build_model(train_config, venv, device)
        timed = timed_learn(model, steps, progress)
        collection = collection_rate(venv, steps, seed, progress)
        encoder = encoder_rate(venv, steps, seed)
    return {
        "benchmark": "train",
        "algo": train_config.algo,
        "config": config or f"configs/{algo or 'ppo'}.yaml",
        "envs": envs,
        "device": device,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": load,
        "weights": weights or RANDOM_WEIGHTS,
        **timed,
        "collection_only_steps_per_s": collection,
        "encoder_only_steps_per_s": encoder,
    }
