"""The training run behind ``train.py``: envs, model, warm start, resume (``agent.callbacks``).

Layout of a run folder::

    runs/NAME/config.yaml          resolved config (a resumed run must match it)
    runs/NAME/events.out.tfevents  TensorBoard (SB3 scalars + driving metrics + evaluation)
    runs/NAME/progress.csv         SB3's scalars as CSV
    runs/NAME/eval.csv             periodic evaluation: steps, wall time, DS, RC, ...
    runs/NAME/checkpoints/step_000050000.zip ...   the last ``keep_checkpoints``
    runs/NAME/checkpoints/best.zip                 best evaluation driving score
    runs/NAME/checkpoints/warmstart.zip, dagger_<i>.zip   the warm start's stages
    runs/NAME/checkpoints/<stage>.demos.npz        their demonstrations, while the warm start
                                                   runs (a resume continues from them)
    runs/NAME/final.zip                            after the last step
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecNormalize,
    unwrap_vec_normalize,
)

from agent.callbacks import (
    CHECKPOINTS,
    FINAL,
    CriticWarmupCallback,
    DrivingMetricsCallback,
    RunCallback,
    tensorboard_writer,
)
from agent.checkpoint import load_model, read_checkpoint, save_checkpoint
from agent.features import FEATURES, EncoderExtractor, EncoderVecEnv, load_encoder, stack_lags
from agent.train_config import (
    TrainConfig,
    algorithm_class,
    config_from_mapping,
    config_to_mapping,
    dump_config,
)
from agent.warmstart import (
    Demonstrations,
    load_demonstrations,
    save_demonstrations,
    stage_name,
    warm_start,
)
from envs.atomic import write_text_atomic
from envs.backends.carla_server import server_ports
from envs.config import EnvConfig, load_yaml_mapping
from envs.driving_env import DrivingEnv

logger = logging.getLogger(__name__)


class ResumableCSV(CSVOutputFormat):
    """SB3's CSV log, continued instead of overwritten when a run resumes."""

    def __init__(self, path: Path) -> None:
        old = path.exists() and path.stat().st_size > 0
        self.file = path.open("r+" if old else "w+", encoding="utf-8")
        header = self.file.readline().strip() if old else ""
        self.keys = header.split(",") if header else []
        self.separator = ","
        self.quotechar = '"'
        self.file.seek(0, 2)


class RunError(ValueError):
    """A run folder that cannot be started or resumed; the message says why and what to do."""


# --------------------------------------------------------------------------------- envs
def env_config_for(config: TrainConfig, index: int) -> EnvConfig:
    """The config of training env ``index``: on CARLA, its own server (``server_ports``)."""
    env_config = config.env
    if config.finetune_encoder:
        env_config = replace(env_config, frame_stack=config.feature_stack)
    if env_config.backend == "carla":
        port, tm_port = server_ports(env_config.port, env_config.tm_port, index)
        env_config = replace(env_config, port=port, tm_port=tm_port)
    return env_config


def batch_scheduling() -> None:
    """Put this process under Linux's ``SCHED_BATCH`` policy (no-op elsewhere).

    An env process woken by the training process's action preempted it at once, so the actions
    for the other envs waited for a free core: with 4 envs on 2 cores, sending the actions took
    1.7 ms of a ~12 ms vectorised step. A batch process does not preempt on wake-up; sending
    takes 0.2-1 ms and PPO trained 2-4 % faster in paired runs (``benchmarks.throughput
    train``, within that host's run-to-run noise of ~10 %). Any process may choose the
    policy; it changes no priority.
    """
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _env_factory(config: TrainConfig, index: int) -> Callable[[], gym.Env[Any, Any]]:
    env_config = env_config_for(config, index)
    subprocess = config.n_envs > 1

    def make() -> gym.Env[Any, Any]:
        if subprocess:
            batch_scheduling()
        return Monitor(DrivingEnv(env_config))

    return make


def make_vec_env(config: TrainConfig, encoder_device: str = "cpu") -> VecEnv:
    """The training envs: subprocesses (spawned), encoder wrapper, observation normaliser."""
    factories = [_env_factory(config, i) for i in range(config.n_envs)]  # seeds: venv.seed()
    venv: VecEnv
    if config.n_envs > 1:
        venv = SubprocVecEnv(factories, start_method="spawn")  # no fork: EGL contexts
    else:
        venv = DummyVecEnv(factories)
    venv.seed(config.seed)
    if not config.finetune_encoder:
        encoder = load_encoder(config.encoder_path, encoder_device)
        venv = EncoderVecEnv(
            venv,
            encoder,
            config.feature_stack,
            encoder_device,
            config.measurements,
            config.policy_features,
            config.feature_lags,
            config.gap_decisions,
            config.env.decision_dt,
        )
    if config.normalize:
        keys = [*config.measurements] + ([] if config.finetune_encoder else [FEATURES])
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False, norm_obs_keys=keys)
    return venv


def build_model(config: TrainConfig, venv: VecEnv, device: str) -> BaseAlgorithm:
    """A fresh SB3 model for ``config``."""
    policy_kwargs = dict(config.policy_kwargs)
    if config.finetune_encoder:
        policy_kwargs.update(
            features_extractor_class=EncoderExtractor,
            features_extractor_kwargs={
                "weights": str(config.encoder_path),
                "measurements": config.measurements,
                "policy_features": config.policy_features,
            },
            normalize_images=False,
        )
    cls = algorithm_class(config.algo)
    return cls(
        "MultiInputPolicy",
        venv,
        seed=config.seed,
        device=device,
        policy_kwargs=policy_kwargs,
        verbose=0,
        **config.algo_kwargs,
    )


def _adopt_statistics(venv: VecEnv, saved: VecNormalize | None) -> None:
    """Give the venv's normaliser the observation statistics of a checkpoint's."""
    norm = unwrap_vec_normalize(venv)
    if norm is not None and saved is not None:
        norm.obs_rms = saved.obs_rms


def _initial_model(config: TrainConfig, venv: VecEnv, device: str) -> BaseAlgorithm:
    """A fresh run's model from ``config.init_from``: its policy (and optimizer) and its
    normalisation statistics, this config's algorithm settings, the step counter at 0."""
    path = Path(config.init_from)
    if not path.is_file():
        raise RunError(f"init_from: {path}: no such checkpoint")
    previous = read_checkpoint(path)
    if previous.config.algo != config.algo:
        raise RunError(
            f"init_from: {path} is a {previous.config.algo} checkpoint, this run is {config.algo}"
        )
    if previous.config.measurements != config.measurements:
        raise RunError(
            f"init_from: {path} saw measurements {previous.config.measurements}, this config "
            f"gives {config.measurements}"
        )
    if previous.config.policy_features != config.policy_features:
        raise RunError(
            f"init_from: {path} saw policy_features {previous.config.policy_features}, this "
            f"config gives {config.policy_features}"
        )
    seen = stack_lags(previous.config.feature_stack, previous.config.feature_lags)
    wanted = stack_lags(config.feature_stack, config.feature_lags)
    if seen != wanted:
        raise RunError(
            f"init_from: {path} saw the encoded frames of decisions {list(seen)} back, this "
            f"config gives {list(wanted)} (set feature_stack / feature_lags to match)"
        )
    if previous.config.gap_decisions != config.gap_decisions:
        raise RunError(
            f"init_from: {path} remembered {previous.config.gap_memory} s of vehicle gaps, this "
            f"config {config.gap_memory} s (set gap_memory to match)"
        )
    # SB3's ``load`` seeds the model and re-seeds the envs with the seed it finds, so this
    # run's seed goes in with the settings (the checkpoint's would make every run the same).
    model, extras = load_model(
        path, env=venv, device=device, seed=config.seed, **config.algo_kwargs
    )
    _adopt_statistics(venv, extras.normalizer)
    model.num_timesteps = 0
    logger.info("starting from %s (trained %d steps)", path, extras.num_timesteps)
    return model


def _hyperparameters(writer: Any, config: TrainConfig) -> None:
    """The config as TensorBoard hyperparameters (flattened, scalars and strings only)."""
    flat: dict[str, Any] = {}
    for key, value in config_to_mapping(config).items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in items:
            name = f"{key}.{sub}" if sub else key
            flat[name] = v if isinstance(v, int | float | str | bool) else str(v)
    from torch.utils.tensorboard.summary import hparams

    for summary in hparams(flat, {"eval/driving_score": 0.0}):
        writer.file_writer.add_summary(summary)


DEMOS_SUFFIX = ".demos.npz"


def _stage_file(run_dir: Path, stage: int | str, suffix: str = ".zip") -> Path:
    """A warm-start stage's checkpoint (or, with ``DEMOS_SUFFIX``, its demonstrations); the
    stage by index (``stage_name``) or by name."""
    name = stage_name(stage) if isinstance(stage, int) else stage
    return run_dir / CHECKPOINTS / f"{name}{suffix}"


def _warm_start(
    config: TrainConfig,
    run_dir: Path,
    model: BaseAlgorithm,
    venv: VecEnv,
    stage: tuple[int, Path] | None,
    progress: bool,
    sb3_logger: Any,
) -> None:
    """The behaviour-cloning warm start and DAgger rounds, resumable stage by stage.

    Every stage saves its demonstrations, then its checkpoint (so a checkpoint on disk means
    its data is too); a run killed in the warm start resumes after its last finished stage with
    that stage's policy and all demonstrations so far (the envs restart their episodes). The
    demonstration files are removed once the warm start is over.
    """

    def save_stage(name: str, losses: dict[str, float], new: Demonstrations) -> None:
        for key, value in losses.items():
            sb3_logger.record(f"warmstart/{key}", value)
        sb3_logger.dump(0)
        save_demonstrations(_stage_file(run_dir, name, DEMOS_SUFFIX), new)
        save_checkpoint(
            _stage_file(run_dir, name),
            model,
            config,
            config.encoder_path,
            unwrap_vec_normalize(venv),
        )

    if stage is None or stage[0] < config.dagger_rounds:
        resume = None
        if stage is not None:
            files = [_stage_file(run_dir, i, DEMOS_SUFFIX) for i in range(stage[0] + 1)]
            try:
                resume = (stage[0], load_demonstrations(files))
            except ValueError as error:
                raise RunError(
                    f"--resume {run_dir}: {error}; delete {stage[1]} to go back a stage, or "
                    "start the run again in a new --run-dir"
                ) from error
        warm_start(
            model,  # type: ignore[arg-type]
            venv,
            steps=config.bc_steps,
            epochs=config.bc_epochs,
            steer_noise=config.bc_noise,
            seed=config.seed,
            progress=progress,
            standing_keep=config.bc_standing_keep,
            pedal_noise=config.bc_pedal_noise,
            dagger_rounds=config.dagger_rounds,
            dagger_steps=config.dagger_steps,
            dagger_epochs=config.dagger_epochs,
            turn_share=config.bc_turn_share,
            steer_weight=config.bc_steer_weight,
            brake_share=config.bc_brake_share,
            on_stage=save_stage,
            resume=resume,
        )
    for path in (run_dir / CHECKPOINTS).glob(f"*{DEMOS_SUFFIX}"):
        path.unlink()


def _anchor_policy(config: TrainConfig, run_dir: Path, device: str) -> Any:
    """The frozen policy the RL phase started from: ``init_from``'s, or the warm start's
    last stage (read from disk, so a resumed run keeps the same anchor), with ``action_std``
    applied (else the KL would pull the policy's spread back to the checkpoint's)."""
    path = (
        Path(config.init_from) if config.init_from else _stage_file(run_dir, config.dagger_rounds)
    )
    model = load_model(path, device=device)[0]
    if config.action_std:  # the start of the RL phase had this spread: anchor to that
        set_action_std(model, config.action_std)
    policy = model.policy
    policy.set_training_mode(False)
    for parameter in policy.parameters():
        parameter.requires_grad_(False)
    return policy


class AnchoredPPO(PPO):
    """PPO whose loss also holds ``anchor_coef * KL(anchor || policy)``.

    PPO's clipped objective bounds each update, not the sum of many noisy ones: a clone
    fine-tuned on a reward it already scores well on drifts on noise and forgets what it was
    taught. The anchor (the policy the RL phase started from) pulls it back wherever the
    advantages do not consistently push. A PPO model becomes one by ``anchor_to``; it saves
    and loads as plain PPO.

    SB3's loss is ``policy + ent_coef * (-entropy) + vf_coef * value``, with the entropy from
    ``policy.evaluate_actions``. During ``train`` the entropy coefficient is 1 and
    ``evaluate_actions`` returns ``ent_coef * entropy - anchor_coef * KL``, so the loss gains
    exactly the KL term (``train/entropy_loss`` then logs the sum, ``train/anchor_kl`` the KL).
    """

    anchor: Any
    anchor_coef: float

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "anchor", "anchor_coef"]

    def train(self) -> None:
        policy: Any = self.policy
        ent_coef, evaluate = float(self.ent_coef), policy.evaluate_actions

        def evaluate_anchored(observations: Any, actions: torch.Tensor) -> tuple[Any, Any, Any]:
            values, log_prob, entropy = evaluate(observations, actions)
            with torch.no_grad():
                target = self.anchor.get_distribution(observations).distribution
            current = policy.get_distribution(observations).distribution
            kl = torch.distributions.kl_divergence(target, current).sum(dim=-1)
            self.logger.record_mean("train/anchor_kl", float(kl.detach().mean()))
            entropy = -log_prob if entropy is None else entropy
            return values, log_prob, ent_coef * entropy - self.anchor_coef * kl

        self.ent_coef, policy.evaluate_actions = 1.0, evaluate_anchored
        try:
            super().train()
        finally:
            self.ent_coef = ent_coef
            del policy.evaluate_actions


def anchor_to(model: BaseAlgorithm, anchor: Any, coef: float) -> None:
    """Make a PPO ``model`` an ``AnchoredPPO`` that stays near the frozen policy ``anchor``."""
    if not isinstance(model, PPO):
        raise RunError("anchor_coef: only PPO can be anchored")
    model.__class__ = AnchoredPPO
    model.anchor, model.anchor_coef = anchor, coef  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------- run
def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest periodic checkpoint of a run (or its final one)."""
    final = run_dir / FINAL
    candidates = sorted((run_dir / CHECKPOINTS).glob("step_*.zip"))[-1:]
    if final.exists():
        candidates.append(final)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def finished_warm_stage(run_dir: Path, config: TrainConfig) -> tuple[int, Path] | None:
    """The last warm-start stage a run can continue after: ``(stage, checkpoint)``.

    A stage counts when its checkpoint is there and, unless it is the last stage, so are the
    demonstrations of it and of every stage before it (the next DAgger round clones them all).
    """
    if not config.bc_steps or config.init_from:
        return None
    for stage in range(config.dagger_rounds, -1, -1):
        checkpoint = _stage_file(run_dir, stage)
        if not checkpoint.exists():
            continue
        if stage == config.dagger_rounds or all(
            _stage_file(run_dir, i, DEMOS_SUFFIX).exists() for i in range(stage + 1)
        ):
            return stage, checkpoint
    return None


def _restore(path: Path, venv: VecEnv, device: str) -> BaseAlgorithm:
    """The model of checkpoint ``path`` with its normalisation statistics (and replay buffer)."""
    model, extras = load_model(path, env=venv, device=device)
    _adopt_statistics(venv, extras.normalizer)
    replay = path.with_suffix(".replay.pkl")
    if replay.exists() and hasattr(model, "load_replay_buffer"):
        model.load_replay_buffer(replay)
    logger.info("resuming %s at step %d", path, model.num_timesteps)
    return model


def set_action_std(model: BaseAlgorithm, std: float) -> None:
    """Set a PPO policy's Gaussian action standard deviation (every action dimension)."""
    log_std = getattr(model.policy, "log_std", None)
    if not isinstance(log_std, torch.nn.Parameter):
        raise RunError("action_std: this policy has no Gaussian log_std (continuous PPO only)")
    with torch.no_grad():
        log_std.fill_(math.log(std))


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device}: no CUDA device here; use --device cpu")
    return device


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
) -> BaseAlgorithm:
    """Train (or resume) a run; returns the model after ``config.total_steps`` steps.

    Raises:
        RunError: a fresh run into a folder that holds one, or a resume with nothing to
            resume or with another config.
    """
    device = resolve_device(config.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    saved = run_dir / "config.yaml"
    checkpoint = latest_checkpoint(run_dir) if resume else None
    stage = finished_warm_stage(run_dir, config) if resume and checkpoint is None else None
    if resume:
        if checkpoint is None and stage is None:
            raise RunError(f"--resume {run_dir}: no checkpoint there to resume from")
        # Compared as resolved configs, so keys added to TrainConfig since the run started
        # (at their defaults) do not count as a difference.
        previous = (
            config_to_mapping(config_from_mapping(load_yaml_mapping(saved), str(saved)))
            if saved.exists()
            else None
        )
        if previous is not None and previous != config_to_mapping(config):
            raise RunError(
                f"--resume {run_dir}: the config differs from the run's {saved}; resume with "
                "the same config (--resume alone reloads it)"
            )
    elif saved.exists():
        raise RunError(
            f"{run_dir}: already holds a run; pass --resume {run_dir} to continue it, or "
            "choose another --run-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, dump_config(config))

    venv = make_vec_env(config, device)
    try:
        if checkpoint is not None:
            model = _restore(checkpoint, venv, device)
        elif stage is not None:
            model = _restore(stage[1], venv, device)
        elif config.init_from:
            model = _initial_model(config, venv, device)
        else:
            model = build_model(config, venv, device)
        sb3_logger = configure(str(run_dir), ["tensorboard"])
        sb3_logger.output_formats.append(ResumableCSV(run_dir / "progress.csv"))
        model.set_logger(sb3_logger)
        writer = tensorboard_writer(sb3_logger)
        if writer is not None and checkpoint is None and stage is None:
            _hyperparameters(writer, config)
        if checkpoint is None and config.bc_steps and not config.init_from:
            _warm_start(config, run_dir, model, venv, stage, progress, sb3_logger)
        if checkpoint is None and config.action_std:
            set_action_std(model, config.action_std)
        if config.anchor_coef:
            anchor_to(model, _anchor_policy(config, run_dir, device), config.anchor_coef)
        remaining = config.total_steps - model.num_timesteps
        norm = unwrap_vec_normalize(venv)
        if norm is not None and not config.normalize_update:
            norm.training = False  # the clone's input statistics, kept through the RL phase
        if remaining > 0:
            callbacks: list[BaseCallback] = [DrivingMetricsCallback()]
            if config.critic_warmup:
                callbacks.append(CriticWarmupCallback(config.critic_warmup))
            callbacks.append(RunCallback(config, run_dir, progress))
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList(callbacks),
                reset_num_timesteps=False,
            )
        save_checkpoint(run_dir / FINAL, model, config, config.encoder_path, norm)
    finally:
        venv.close()
    return model
