"""The training run behind ``train.py``: envs, model, callbacks, checkpoints, resume.

Layout of a run folder::

    runs/NAME/config.yaml          resolved config (a resumed run must match it)
    runs/NAME/events.out.tfevents  TensorBoard (SB3 scalars + driving metrics + evaluation)
    runs/NAME/progress.csv         SB3's scalars as CSV
    runs/NAME/eval.csv             periodic evaluation: steps, wall time, DS, RC, ...
    runs/NAME/checkpoints/step_000050000.zip ...   the last ``keep_checkpoints``
    runs/NAME/checkpoints/best.zip                 best evaluation driving score
    runs/NAME/final.zip                            after the last step
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
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
from tqdm import tqdm

from agent.checkpoint import load_model, save_checkpoint
from agent.features import FEATURES, EncoderExtractor, EncoderVecEnv, load_encoder
from agent.policy_agent import PolicyAgent
from agent.tb_media import log_gif, rollout_frames
from agent.train_config import TrainConfig, algorithm_class, config_to_mapping, dump_config
from agent.warmstart import warm_start
from envs.atomic import atomic_path, write_text_atomic
from envs.config import load_yaml_mapping
from envs.criteria import INFRACTION_KEYS
from envs.driving_env import DrivingEnv
from evaluation.drive import RouteRunner
from evaluation.runner import EvalConfig, make_backend, plan_jobs
from evaluation.scoring import route_scores

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
BEST = "best.zip"
FINAL = "final.zip"
EVAL_CSV = "eval.csv"
EVAL_FIELDS = ("steps", "wall_time", "driving_score", "route_completion", "infraction_penalty")


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
def _env_factory(config: TrainConfig) -> Callable[[], gym.Env[Any, Any]]:
    env_config = config.env
    if config.finetune_encoder:
        env_config = replace(env_config, frame_stack=config.feature_stack)

    def make() -> gym.Env[Any, Any]:
        return Monitor(DrivingEnv(env_config))

    return make


def make_vec_env(config: TrainConfig, encoder_device: str = "cpu") -> VecEnv:
    """The training envs: subprocesses (spawned), encoder wrapper, observation normaliser."""
    factories = [_env_factory(config)] * config.n_envs  # seeds come from venv.seed()
    venv: VecEnv
    if config.n_envs > 1:
        venv = SubprocVecEnv(factories, start_method="spawn")  # no fork: EGL contexts
    else:
        venv = DummyVecEnv(factories)
    venv.seed(config.seed)
    if not config.finetune_encoder:
        encoder = load_encoder(config.encoder_path, encoder_device)
        venv = EncoderVecEnv(
            venv, encoder, config.feature_stack, encoder_device, config.measurements
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


# --------------------------------------------------------------------------- callbacks
class DrivingMetricsCallback(BaseCallback):
    """Episode driving score, route completion, infractions per km by kind, mean speed and
    the reward terms, as TensorBoard scalars (``driving/...``)."""

    def __init__(self) -> None:
        super().__init__()
        self._terms: list[dict[str, float]] = []
        self._speed: list[float] = []
        self._steps: list[int] = []

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs
        self._terms = [{} for _ in range(n)]
        self._speed = [0.0] * n
        self._steps = [0] * n

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        dones = self.locals["dones"]
        for i, info in enumerate(infos):
            for key, value in info.get("reward_terms", {}).items():
                self._terms[i][key] = self._terms[i].get(key, 0.0) + value
            self._speed[i] += abs(float(info.get("speed", 0.0)))
            self._steps[i] += 1
            if dones[i]:
                self._episode_end(i, info)
        return True

    def _episode_end(self, i: int, info: dict[str, Any]) -> None:
        record = self.logger.record_mean
        infractions = info.get("route_infractions", [])
        scores = route_scores(info.get("route_completion", 0.0), infractions, info["status"])
        record("driving/driving_score", scores["score_composed"])
        record("driving/route_completion", scores["score_route"])
        record("driving/infraction_penalty", scores["score_penalty"])
        record("driving/mean_speed", self._speed[i] / max(1, self._steps[i]))
        km = max(float(info.get("distance", 0.0)), 1.0) / 1000.0
        counts: dict[str, int] = info.get("infractions_total", {})
        for key in INFRACTION_KEYS:  # the leaderboard's keys, so none is misspelt
            record(f"driving/{key}_per_km", counts.get(key, 0) / km)
        for key, total in self._terms[i].items():
            record(f"reward_terms/{key}", total)
        self._terms[i], self._speed[i], self._steps[i] = {}, 0.0, 0


class RunCallback(BaseCallback):
    """Checkpoints, periodic route evaluation (with ``best.zip``), videos and the progress bar.

    Args:
        config: The run's config.
        run_dir: The run folder.
        progress: Show a tqdm bar (steps/s, ETA, latest evaluation score).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, progress: bool = True) -> None:
        super().__init__()
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.best = -math.inf
        self.last_score: float | None = None
        self._bar: tqdm | None = None
        self._started = time.monotonic()
        self._next: dict[str, int] = {}
        self._encoder_path = config.encoder_path
        self._eval_jobs: list[Any] = []
        self._wall_offset = 0.0

    # --------------------------------------------------------------------------- plumbing
    def _on_training_start(self) -> None:
        cfg, now = self.config, self.num_timesteps
        for name, every in (
            ("checkpoint", cfg.checkpoint_every),
            ("eval", cfg.eval_every),
            ("video", cfg.video_every),
        ):
            self._next[name] = (now // every + 1) * every if every else math.inf  # type: ignore[assignment]
        history = read_eval_history(self.run_dir)  # a resumed run goes on from its record
        self.best = max((r["driving_score"] for r in history), default=-math.inf)
        self._wall_offset = history[-1]["wall_time"] if history else 0.0
        self._started = time.monotonic()
        self._bar = tqdm(total=cfg.total_steps, initial=now, unit="step", disable=not self.progress)
        if cfg.eval_every:
            self._eval_jobs = plan_jobs(self._eval_config())
            if now == 0 and cfg.bc_steps:  # the warm-started policy's point on the curve
                self.evaluate()

    def _on_step(self) -> bool:
        assert self._bar is not None
        self._bar.update(self.training_env.num_envs)
        now = self.num_timesteps
        if now >= self._next.get("checkpoint", math.inf):
            self.save_periodic()
            self._next["checkpoint"] += self.config.checkpoint_every
        if now >= self._next.get("eval", math.inf):
            self.evaluate()
            self._next["eval"] += self.config.eval_every
        if now >= self._next.get("video", math.inf):
            self.video()
            self._next["video"] += self.config.video_every
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _set_postfix(self) -> None:
        if self._bar is not None and self.last_score is not None:
            self._bar.set_postfix(DS=f"{self.last_score:.1f}", best=f"{self.best:.1f}")

    # -------------------------------------------------------------------------- checkpoints
    def save(self, path: Path) -> Path:
        """A checkpoint of the current model at ``path``."""
        return save_checkpoint(
            path,
            self.model,
            self.config,
            self._encoder_path,
            unwrap_vec_normalize(self.training_env),
        )

    def save_periodic(self) -> None:
        """``checkpoints/step_N.zip`` (+ replay buffer when asked); prunes old ones."""
        folder = self.run_dir / CHECKPOINTS
        path = self.save(folder / f"step_{self.num_timesteps:09d}.zip")
        if self.config.save_replay_buffer and hasattr(self.model, "save_replay_buffer"):
            with atomic_path(path.with_suffix(".replay.pkl")) as tmp:
                self.model.save_replay_buffer(tmp)
        old = sorted(folder.glob("step_*.zip"))[: -self.config.keep_checkpoints or None]
        for stale in old if self.config.keep_checkpoints else []:
            stale.unlink(missing_ok=True)
            stale.with_suffix(".replay.pkl").unlink(missing_ok=True)

    # -------------------------------------------------------------------------- evaluation
    def _eval_config(self) -> EvalConfig:
        cfg = self.config
        return EvalConfig(
            agent="policy",
            routes=Path(cfg.eval_routes),
            route_ids=cfg.eval_route_ids or None,
            weathers=cfg.eval_weathers,
            traffic=cfg.eval_traffic,
            out=self.run_dir / "eval" / "latest.json",
            seed=cfg.seed,
        )

    def _agent(self) -> PolicyAgent:
        encoder = load_encoder(self._encoder_path)
        normalizer = unwrap_vec_normalize(self.training_env)
        return PolicyAgent(self.model, self.config, encoder, normalizer)

    def evaluate(self) -> dict[str, float]:
        """Drive the fixed evaluation routes with the current policy; log, maybe save best."""
        agent = self._agent()
        runner = RouteRunner(self._eval_config(), make_backend, lambda job, dt: agent)
        try:
            records = [runner.run(job) for job in self._eval_jobs]
        finally:
            runner.close()
        scores = {
            "driving_score": float(np.mean([r["scores"]["score_composed"] for r in records])),
            "route_completion": float(np.mean([r["scores"]["score_route"] for r in records])),
            "infraction_penalty": float(np.mean([r["scores"]["score_penalty"] for r in records])),
        }
        for key, value in scores.items():
            self.logger.record(f"eval/{key}", value)
        self.last_score = scores["driving_score"]
        if self.last_score > self.best:
            self.best = self.last_score
            self.save(self.run_dir / CHECKPOINTS / BEST)
        wall = self._wall_offset + time.monotonic() - self._started
        _append_eval(self.run_dir, {"steps": self.num_timesteps, "wall_time": wall, **scores})
        self._set_postfix()
        self.logger.dump(self.num_timesteps)
        return scores

    def video(self) -> None:
        """An evaluation clip (camera | predicted segmentation | BEV) as an animated image."""
        if not self._eval_jobs:
            return
        frames = rollout_frames(
            self._agent(), self._eval_jobs[0], self.config.video_steps, self._eval_config()
        )
        writer = _tensorboard_writer(self.logger)
        if writer is not None and frames:
            log_gif(writer, "eval/video", frames, self.num_timesteps, fps=10)


def _tensorboard_writer(sb3_logger: Any) -> Any:
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    for fmt in sb3_logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def _append_eval(run_dir: Path, row: dict[str, float]) -> None:
    path = run_dir / EVAL_CSV
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in EVAL_FIELDS})


def read_eval_history(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``eval.csv`` (empty when the run has not evaluated yet)."""
    path = run_dir / EVAL_CSV
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


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


# --------------------------------------------------------------------------------- run
def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest periodic checkpoint of a run (or its final one)."""
    final = run_dir / FINAL
    candidates = sorted((run_dir / CHECKPOINTS).glob("step_*.zip"))[-1:]
    if final.exists():
        candidates.append(final)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


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
    if resume:
        if checkpoint is None:
            raise RunError(f"--resume {run_dir}: no checkpoint there to resume from")
        previous = load_yaml_mapping(saved) if saved.exists() else None
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
            model, extras = load_model(checkpoint, env=venv, device=device)
            norm = unwrap_vec_normalize(venv)
            if norm is not None and extras.normalizer is not None:
                norm.obs_rms = extras.normalizer.obs_rms
            replay = checkpoint.with_suffix(".replay.pkl")
            if replay.exists() and hasattr(model, "load_replay_buffer"):
                model.load_replay_buffer(replay)
            logger.info("resuming %s at step %d", checkpoint, model.num_timesteps)
        else:
            model = build_model(config, venv, device)
        sb3_logger = configure(str(run_dir), ["tensorboard"])
        sb3_logger.output_formats.append(ResumableCSV(run_dir / "progress.csv"))
        model.set_logger(sb3_logger)
        writer = _tensorboard_writer(sb3_logger)
        if writer is not None and checkpoint is None:
            _hyperparameters(writer, config)
        if checkpoint is None and config.bc_steps:
            losses = warm_start(
                model,  # type: ignore[arg-type]
                venv,
                config.bc_steps,
                config.bc_epochs,
                config.bc_noise,
                config.seed,
                progress,
                config.bc_standing_keep,
                config.bc_pedal_noise,
            )
            for key, value in losses.items():
                sb3_logger.record(f"warmstart/{key}", value)
            sb3_logger.dump(0)
            save_checkpoint(
                run_dir / CHECKPOINTS / "warmstart.zip",
                model,
                config,
                config.encoder_path,
                unwrap_vec_normalize(venv),
            )
        remaining = config.total_steps - model.num_timesteps
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList(
                    [DrivingMetricsCallback(), RunCallback(config, run_dir, progress)]
                ),
                reset_num_timesteps=False,
            )
        save_checkpoint(
            run_dir / FINAL, model, config, config.encoder_path, unwrap_vec_normalize(venv)
        )
    finally:
        venv.close()
    return model
