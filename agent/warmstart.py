"""Behaviour-cloning warm start for PPO: imitate the autopilot before reinforcement learning.

On a 2-core CPU the RL budget is a few hundred thousand steps, far below the millions that
pure-RL driving agents need (Roach: 10M). Starting PPO from a policy that already imitates the
privileged autopilot -- the recipe of CIRL (Liang et al., ECCV 2018) -- spends the RL budget on
improving a driver instead of discovering driving. The policy still only sees what it will see
at test time (encoder features and measurements); only the labels are privileged.

Demonstrations follow DART (Laskey et al., CoRL 2017): the executed action is the expert's plus
steer noise, the label is the clean expert action, so the data shows how to recover from drift.
The value head is regressed on the demonstrations' discounted returns so that PPO's first
advantages are not noise.

A clone drifts into states the expert never visits (standing at a green light, half-way into a
junction turn) and has no label there. DAgger (Ross et al., AISTATS 2011) closes that gap: after
the first clone, further rounds let the clone drive (mixed with the expert, whose share halves
every round), label every visited state with the expert's action, add it to the data and clone
again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv, unwrap_vec_normalize
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

from envs.atomic import atomic_path

logger = logging.getLogger(__name__)

STANDING_SPEED = 0.5  # [m/s] below this a demonstration sample counts as standing still
PEDAL_MEMORY = 0.9  # AR(1) coefficient of the pedal noise per decision step
GO_ACTION = 0.05  # expert action 1 (throttle / acceleration) above which it drives off
TURN_STEER = 0.15  # |expert steer| above which a sample counts as turning
BRAKE_ACTION = 0.3  # expert deceleration (or brake) above which a sample counts as braking
MAX_REPEAT = 10  # most uses of one sample when turns or braking are rebalanced


Driver = Callable[[dict[str, NDArray[Any]]], NDArray[np.float32]]
"""The learner during DAgger rounds: the venv's (normalised) observation -> actions."""
Demonstrations = tuple[dict[str, NDArray[Any]], NDArray[np.float32], NDArray[np.float32]]
"""Raw observations, the expert's actions, discounted returns of the executed drive."""
StageCallback = Callable[[str, dict[str, float], Demonstrations], None]
"""``on_stage(name, losses, new_data)`` after each clone of ``warm_start``."""
_HALF_PRECISION = ("features",)  # observation keys saved as float16 (the bulk of the data)


def stage_name(index: int) -> str:
    """Name of warm-start stage ``index``: 0 is the first clone, ``i`` the i-th DAgger round."""
    return "warmstart" if index == 0 else f"dagger_{index}"


def save_demonstrations(path: str | Path, data: Demonstrations) -> None:
    """Write ``data`` to ``path`` (``.npz``) atomically; features are stored at half precision
    (~2.3 kB per sample at the default feature stack instead of 4.7)."""
    observations, actions, returns = data
    arrays: dict[str, Any] = {
        f"obs.{k}": v.astype(np.float16) if k in _HALF_PRECISION else v
        for k, v in observations.items()
    }
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, actions=actions, returns=returns, **arrays)


def load_demonstrations(paths: Sequence[str | Path]) -> Demonstrations:
    """The concatenation of the ``save_demonstrations`` files ``paths``, in order.

    Raises:
        ValueError: a file that cannot be read as demonstrations (the message names it).
    """
    if not paths:
        raise ValueError("load_demonstrations: no files given")
    parts: list[Demonstrations] = []
    for path in paths:
        try:
            with np.load(path) as f:
                observations = {
                    k.removeprefix("obs."): f[k].astype(np.float32)
                    if k.removeprefix("obs.") in _HALF_PRECISION
                    else f[k]
                    for k in f.files
                    if k.startswith("obs.")
                }
                parts.append((observations, f["actions"], f["returns"]))
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: unreadable demonstrations ({error})") from error
    data = parts[0]
    for part in parts[1:]:
        data = _concat(data, part)
    return data


def perturb(
    expert: NDArray[np.float32],
    pedal: NDArray[np.float64],
    rng: np.random.Generator,
    steer_noise: float,
    pedal_noise: float,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """The executed actions (n, 2) of the demonstrations: the expert's plus DART steer noise and
    the AR(1) pedal noise ``pedal`` (n,), advanced one decision. Returns both (not clipped)."""
    executed = expert.copy()
    executed[:, 0] += rng.normal(0.0, steer_noise, size=len(expert))
    pedal = PEDAL_MEMORY * pedal + math.sqrt(1.0 - PEDAL_MEMORY**2) * rng.normal(
        0.0, pedal_noise, size=len(expert)
    )
    executed[:, 1] += pedal
    return executed, pedal


def collect_demonstrations(
    venv: VecEnv,
    steps: int,
    steer_noise: float,
    gamma: float,
    seed: int = 0,
    progress: bool = True,
    standing_keep: float = 1.0,
    pedal_noise: float = 0.0,
    driver: Driver | None = None,
    expert_share: float = 1.0,
) -> Demonstrations:
    """Drive ``venv`` with the autopilot (``env_method("expert_action")``) and record its labels.

    Args:
        standing_keep: Share of the waiting samples kept (standing still, the expert keeps
            it so); the rare samples where the expert drives off are oversampled instead (see
            ``_standing_balance``).
        pedal_noise: Standard deviation of an AR(1) noise (correlation time ~1 s at 10
            decisions/s) added to the executed throttle or acceleration (action 1).
        driver: The learner (DAgger): each env's step is driven by the expert (with the
            noises) with probability ``expert_share``, else by ``driver``. The labels are
            always the expert's.

    Returns:
        Raw observations (stacked over steps and envs), the expert's clean actions, and the
        discounted returns of the executed trajectories (cut at the last step).
    """
    rng = np.random.default_rng(seed)
    norm = unwrap_vec_normalize(venv)
    n = venv.num_envs
    rounds = max(1, steps // n)
    obs_log: list[dict[str, NDArray[Any]]] = []
    actions, rewards, dones = [], [], []
    pedal = np.zeros(n)
    obs = venv.reset()
    with tqdm(total=rounds * n, disable=not progress, unit="step", desc="demonstrations") as bar:
        for _ in range(rounds):
            raw = norm.get_original_obs() if norm is not None else obs
            assert isinstance(raw, dict)
            obs_log.append({k: np.array(v) for k, v in raw.items()})
            expert = np.asarray(venv.env_method("expert_action"), dtype=np.float32)
            executed, pedal = perturb(expert, pedal, rng, steer_noise, pedal_noise)
            if driver is not None:
                learner = rng.random(n) >= expert_share
                assert isinstance(obs, dict)
                executed[learner] = driver(obs)[learner]
            obs, reward, done, _ = venv.step(np.clip(executed, -1.0, 1.0))
            actions.append(expert)
            rewards.append(np.asarray(reward, dtype=np.float32))
            dones.append(np.asarray(done, dtype=bool))
            bar.update(n)
    returns = np.zeros((rounds, n), dtype=np.float32)
    running = np.zeros(n, dtype=np.float32)
    for t in range(rounds - 1, -1, -1):
        running = rewards[t] + gamma * running * (~dones[t])
        returns[t] = running
    stacked = {k: np.concatenate([o[k] for o in obs_log]) for k in obs_log[0]}
    flat_actions = np.concatenate(actions)
    flat_returns = returns.reshape(-1)
    if standing_keep < 1.0 and "speed" in stacked:
        keep = _standing_balance(stacked["speed"], flat_actions, standing_keep, rng)
        stacked = {k: v[keep] for k, v in stacked.items()}
        flat_actions, flat_returns = flat_actions[keep], flat_returns[keep]
    return stacked, flat_actions, flat_returns


def _standing_balance(
    speed: NDArray[Any], actions: NDArray[Any], keep_share: float, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Indices of the demonstration samples to clone, with standing still rebalanced.

    Standing samples are of two kinds: waiting (the expert keeps the car still: a red light, a
    queue) and starting (the expert's label drives off). A drive holds a hundred waiting
    samples for every start, so a clone learns "standing -> stay" and never moves again (causal
    confusion, as in CILRS). Waiting samples are thinned to ``keep_share``; starting samples
    are all kept and repeated until they are as many as the waiting ones kept (at most 20
    times each). Starts are told by the label, not by what the car did next, so that DAgger
    rounds, where the learner drives, count the greens it sat through as starts.

    Args:
        speed: Speeds [m/s] of the samples.
        actions: The expert's actions; ``actions[:, 1]`` is its throttle or acceleration.
    """
    standing = np.abs(speed.reshape(-1)) < STANDING_SPEED
    go = actions[:, 1] > GO_ACTION
    starting = standing & go
    waiting = standing & ~go
    kept = ~waiting | (rng.random(waiting.shape) < keep_share)
    index = np.flatnonzero(kept)
    waits = int((kept & waiting).sum())
    starts = np.flatnonzero(starting)
    repeat = min(20, max(1, round(waits / max(len(starts), 1))))
    logger.info(
        "demonstrations: %d samples, %d waiting (%d kept), %d starting (x%d)",
        speed.size,
        int(waiting.sum()),
        waits,
        len(starts),
        repeat,
    )
    return np.sort(np.concatenate([index, np.repeat(starts, repeat - 1)]))


def behaviour_clone(
    model: PPO,
    observations: dict[str, NDArray[Any]],
    actions: NDArray[np.float32],
    returns: NDArray[np.float32],
    epochs: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    steer_weight: float = 1.0,
) -> dict[str, float]:
    """Fit the policy mean to ``actions`` (MSE) and the value head to ``returns``.

    ``observations`` must already be normalised as the policy sees them. The policy's log-std
    is left alone so that PPO keeps its exploration. The steering error (action 0) weighs
    ``steer_weight`` times the others'. Returns the last epoch's mean losses.
    """
    policy = model.policy
    device = policy.device
    params = [p for name, p in policy.named_parameters() if name != "log_std"]
    optimizer = torch.optim.Adam(params, lr=lr)
    obs_t = {k: torch.as_tensor(v, device=device) for k, v in observations.items()}
    act_t = torch.as_tensor(actions, device=device)
    ret_t = torch.as_tensor(returns, device=device)
    weight = torch.ones(act_t.shape[1], device=device)
    weight[0] = steer_weight
    weight = weight * (len(weight) / weight.sum())  # the same scale as a plain mean
    size = len(act_t)
    generator = torch.Generator().manual_seed(seed)
    losses = {"action_mse": 0.0, "value_mse": 0.0}
    policy.set_training_mode(True)
    for _ in range(epochs):
        order = torch.randperm(size, generator=generator)
        totals = {"action_mse": 0.0, "value_mse": 0.0}
        for start in range(0, size, batch_size):
            idx = order[start : start + batch_size].to(device)
            batch = {k: v[idx] for k, v in obs_t.items()}
            distribution = policy.get_distribution(batch)
            mean = distribution.distribution.mean  # type: ignore[union-attr]
            action_loss = ((mean - act_t[idx]) ** 2 * weight).mean()
            value_loss = F.mse_loss(policy.predict_values(batch).flatten(), ret_t[idx])
            loss = action_loss + 0.5 * value_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals["action_mse"] += float(action_loss.detach()) * len(idx)
            totals["value_mse"] += float(value_loss.detach()) * len(idx)
        losses = {k: v / size for k, v in totals.items()}
        logger.info(
            "behaviour cloning: action MSE %.4f, value MSE %.3f",
            losses["action_mse"],
            losses["value_mse"],
        )
    policy.set_training_mode(False)
    return losses


def _repeats(selected: NDArray[np.bool_], share: float) -> int:
    """How many times to use each selected sample so that they make up ``share`` of the data
    (1 when ``share`` is 0 or nothing is selected; at most ``MAX_REPEAT``)."""
    count = int(selected.sum())
    if share <= 0.0 or count == 0:
        return 1
    wanted = share / max(1.0 - share, 1e-6) * (len(selected) - count)  # selected for that share
    return min(MAX_REPEAT, max(1, round(wanted / count)))


def is_turning(actions: NDArray[Any]) -> NDArray[np.bool_]:
    """Samples where the expert turns: steer (column 0) beyond ``TURN_STEER`` either way."""
    return np.asarray(np.abs(actions[:, 0]) > TURN_STEER)


def is_braking(actions: NDArray[Any]) -> NDArray[np.bool_]:
    """Samples where the expert brakes hard: acceleration (2 columns: steer, acceleration)
    below ``-BRAKE_ACTION``, or brake (3 columns: steer, throttle, brake) above it."""
    if actions.shape[1] == 2:
        return np.asarray(actions[:, 1] < -BRAKE_ACTION)
    return np.asarray(actions[:, 2] > BRAKE_ACTION)


def _rebalance(
    actions: NDArray[Any], turn_share: float, brake_share: float = 0.0
) -> NDArray[np.int64]:
    """Indices of the samples, with the turning and the braking ones repeated.

    Junction turns are a few seconds of every minute of driving, so a clone fitted by mean
    squared error steers a fraction of what the expert does in them (measured: -0.05 to -0.2
    where the expert steered -0.5 to -0.8) and drives into the corner. Braking hard is as rare,
    and a clone brakes too little behind a car (measured on a held-out route: brake 0-0.05
    with the car 7 m ahead at 5.6 m/s, where the expert braked 1.0). Samples whose expert steer
    exceeds ``TURN_STEER`` are repeated until they make up ``turn_share`` of the data, those
    that brake hard (``is_braking``) until ``brake_share``; a sample that is both takes the larger
    count (at most ``MAX_REPEAT``). Shares of 0 leave the data as it is.
    """
    turning = is_turning(actions)
    braking = is_braking(actions)
    turn_repeat, brake_repeat = _repeats(turning, turn_share), _repeats(braking, brake_share)
    counts = np.ones(len(actions), dtype=np.int64)
    counts[turning] = turn_repeat
    counts[braking] = np.maximum(counts[braking], brake_repeat)
    logger.info(
        "demonstrations: %d of %d turning (x%d), %d braking (x%d)",
        int(turning.sum()),
        len(actions),
        turn_repeat,
        int(braking.sum()),
        brake_repeat,
    )
    return np.repeat(np.arange(len(actions)), counts)


def _clone(
    model: PPO,
    venv: VecEnv,
    data: Demonstrations,
    epochs: int,
    seed: int,
    turn_share: float = 0.0,
    steer_weight: float = 1.0,
    brake_share: float = 0.0,
) -> dict[str, float]:
    """Clone ``data`` into ``model``, normalised with the venv's current statistics."""
    observations, actions, returns = data
    keep = _rebalance(actions, turn_share, brake_share)
    norm = unwrap_vec_normalize(venv)
    if norm is not None:  # normalise with the statistics the demonstrations built up
        observations = norm.normalize_obs(observations)  # type: ignore[assignment]
    observations = {k: np.asarray(v[keep], dtype=np.float32) for k, v in observations.items()}
    return behaviour_clone(
        model,
        observations,
        actions[keep],
        returns[keep],
        epochs,
        seed=seed,
        steer_weight=steer_weight,
    )


def _concat(a: Demonstrations, b: Demonstrations) -> Demonstrations:
    return (
        {k: np.concatenate([a[0][k], b[0][k]]) for k in a[0]},
        np.concatenate([a[1], b[1]]),
        np.concatenate([a[2], b[2]]),
    )


def warm_start(
    model: PPO,
    venv: VecEnv,
    steps: int,
    epochs: int,
    steer_noise: float,
    seed: int = 0,
    progress: bool = True,
    standing_keep: float = 1.0,
    pedal_noise: float = 0.0,
    dagger_rounds: int = 0,
    dagger_steps: int = 0,
    dagger_epochs: int = 5,
    turn_share: float = 0.0,
    steer_weight: float = 1.0,
    brake_share: float = 0.0,
    on_stage: StageCallback | None = None,
    resume: tuple[int, Demonstrations] | None = None,
) -> dict[str, float]:
    """Clone ``steps`` expert demonstrations into ``model``, then run ``dagger_rounds`` rounds.

    Round ``i`` drives ``dagger_steps`` steps with the expert's share at ``0.5 ** i``, adds the
    expert-labelled samples to the data and clones all of it again for ``dagger_epochs``.
    Turning and hard-braking samples are repeated to ``turn_share`` and ``brake_share`` of each
    clone's data (``_rebalance``);
    ``steer_weight`` weighs the steering error in the cloning loss (``behaviour_clone``).
    ``on_stage(name, losses, new_data)`` is called after the first clone (``warmstart``) and
    after each round (``dagger_<i>``) with the samples that stage added, e.g. to save a
    checkpoint and the data. ``resume=(stage, data)`` continues after stage ``stage`` (see
    ``stage_name``), ``model`` being that stage's clone and ``data`` all samples up to it.
    Returns the last losses (empty when no stage was left to run).
    """
    losses: dict[str, float] = {}
    if resume is None:
        data = collect_demonstrations(
            venv, steps, steer_noise, model.gamma, seed, progress, standing_keep, pedal_noise
        )
        losses = _clone(model, venv, data, epochs, seed, turn_share, steer_weight, brake_share)
        if on_stage is not None:
            on_stage(stage_name(0), losses, data)
        done = 0
    else:
        done, data = resume
        logger.info("warm start: resuming after stage %s", stage_name(done))

    def driver(obs: dict[str, NDArray[Any]]) -> NDArray[np.float32]:
        return np.asarray(model.predict(obs, deterministic=True)[0], dtype=np.float32)

    for i in range(done + 1, dagger_rounds + 1):
        share = 0.5**i
        logger.info("DAgger round %d: the expert drives %.0f %% of the steps", i, 100 * share)
        new = collect_demonstrations(
            venv,
            dagger_steps,
            steer_noise,
            model.gamma,
            seed + i,
            progress,
            standing_keep,
            pedal_noise,
            driver=driver,
            expert_share=share,
        )
        data = _concat(data, new)
        losses = _clone(
            model, venv, data, dagger_epochs, seed + i, turn_share, steer_weight, brake_share
        )
        if on_stage is not None:
            on_stage(stage_name(i), losses, new)
    # SB3 resets the envs when learning starts; the running statistics stay.
    return losses
