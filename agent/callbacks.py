"""Training-run callbacks: driving metrics for TensorBoard, and checkpoints, periodic route
evaluation (``best.zip``), videos and the progress bar; the run folder's file names."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import unwrap_vec_normalize
from tqdm import tqdm

from agent.checkpoint import save_checkpoint
from agent.features import load_encoder
from agent.policy_agent import PolicyAgent
from agent.tb_media import log_gif, rollout_frames
from agent.train_config import TrainConfig
from envs.atomic import atomic_path
from envs.criteria import INFRACTION_KEYS
from evaluation.drive import RouteRunner
from evaluation.runner import EvalConfig, make_backend, plan_jobs
from evaluation.scoring import route_scores

CHECKPOINTS = "checkpoints"
BEST = "best.zip"
FINAL = "final.zip"
EVAL_CSV = "eval.csv"
EVAL_FIELDS = ("steps", "wall_time", "driving_score", "route_completion", "infraction_penalty")


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


def actor_parameters(policy: Any) -> list[torch.nn.Parameter]:
    """The actor's parameters of an SB3 actor-critic policy: its policy network, action head
    and (Gaussian actions) log std; not the value network's."""
    log_std = getattr(policy, "log_std", None)
    return [
        *policy.mlp_extractor.policy_net.parameters(),
        *policy.action_net.parameters(),
        *([log_std] if isinstance(log_std, torch.nn.Parameter) else []),
    ]


class CriticWarmupCallback(BaseCallback):
    """Train only PPO's value function while ``num_timesteps <= steps``: the actor (policy
    network, action head and log std) takes no gradient in those updates.

    A policy that starts from a clone (or from a checkpoint trained on another reward) has a
    value head that predicts the wrong returns, and its first advantages are noise that the
    actor's first updates follow. The decision is taken per update, after each rollout.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _freeze(self, frozen: bool) -> None:
        for parameter in actor_parameters(self.model.policy):
            parameter.requires_grad_(not frozen)

    def _on_rollout_end(self) -> None:
        self._freeze(self.num_timesteps <= self.steps)

    def _on_training_end(self) -> None:
        self._freeze(False)

    def _on_step(self) -> bool:
        return True


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
            seed=cfg.eval_seed,
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
        writer = tensorboard_writer(self.logger)
        if writer is not None and frames:
            log_gif(writer, "eval/video", frames, self.num_timesteps, fps=10)


def tensorboard_writer(sb3_logger: Any) -> Any:
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
