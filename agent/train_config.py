"""The training config of ``train.py``: one frozen dataclass, nested ``env`` and ``algo``
sections, strict keys.

YAML layout (see ``configs/ppo.yaml``)::

    algo: ppo                 # ppo | dqn | qrdqn
    total_steps: 1000000
    env: {towns: [Grid01], vehicles: 30, ...}      # any envs.config.EnvConfig field
    algo_kwargs: {learning_rate: 3.0e-4, ...}      # the SB3 constructor's keyword arguments
    ...

``--set key=value`` overrides use dotted keys for the sections (``env.vehicles=10``,
``algo_kwargs.learning_rate=1e-4``); values parse as YAML. Unknown keys anywhere are errors.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from envs.config import (
    EnvConfig,
    config_from_dict,
    config_to_dict,
    dataclass_from_dict,
    dataclass_to_dict,
    load_yaml_mapping,
    parse_overrides,
)

Algo = Literal["ppo", "dqn", "qrdqn"]
ALGOS: tuple[str, ...] = ("ppo", "dqn", "qrdqn")
SECTIONS = ("env", "algo_kwargs", "policy_kwargs")
MEASUREMENT_KEYS = ("speed", "control", "targets", "arcs", "command")
"""Every measurement key of the env's observation (``TrainConfig.measurements`` picks some)."""
POLICY_FEATURES = ("all", "affordances")


class ConfigError(ValueError):
    """A bad training config; the message names the key and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Units in brackets.

    Attributes:
        algo: ``ppo`` (continuous or discrete actions), ``dqn`` or ``qrdqn`` (discrete).
        total_steps: Environment steps (decisions) to train for.
        n_envs: Parallel environments (``SubprocVecEnv`` when > 1).
        seed: Master seed; env ``i`` is seeded ``seed + i``, the model with ``seed``.
        device: Torch device of the policy and encoder (``auto``: cuda when available).
        torch_threads: CPU threads of the main process (0: torch's default).
        env: Environment settings (``envs.config.EnvConfig`` fields; ``frame_stack`` is forced
            to 1, stacking happens on features).
        encoder_weights: Perception weights; empty: the shipped ones.
        init_from: A checkpoint (``.zip`` of ``train.py``) whose policy and normalisation
            statistics a fresh run starts from instead of a new policy and the warm start
            (e.g. PPO on the shipped cloned agent). It must have been trained with the same
            encoder and measurements; this config's ``algo_kwargs`` apply. Empty: off.
        feature_stack: Encoded frames the policy sees (newest last): the last
            ``feature_stack`` decisions.
        feature_lags: Decisions back of the encoded frames the policy sees instead (``0``:
            the newest), e.g. ``[20, 10, 5, 1, 0]``: a memory of what left the camera's view
            (a red light above the frame, a car ahead too close to read, README "Training").
            Empty: the last ``feature_stack``. Not with ``finetune_encoder``.
        gap_memory: Seconds of vehicle-gap readings the policy remembers (``GapMemory``,
            agent/features.py): it also sees the smallest of them less the distance driven
            since, the gap to a car that stood still, when the newest frames misread a car
            too close to see whole. 0: off. Needs the encoder's affordances.
        policy_features: What of the encoder's output the policy sees per frame: ``all``
            (the pooled feature map and the affordances, ``PerceptionNet.features``: 585
            numbers for the shipped encoder) or ``affordances`` (only the light-state
            probabilities and the regressed distances and lane pose,
            ``PerceptionNet.affordances``: 9). A clone of the autopilot on all 585 fits its
            demonstrations by memorising the map features and predicts acceleration on new
            drives with 2.2x the error of one that sees only the affordances, 3.6x when the
            autopilot brakes (``scripts/clone_probe.py``; README, "Training").
        measurements: Measurements the policy sees besides the features (``speed``,
            ``control``, ``targets``, ``arcs``, ``command``; see ``envs.observation``).
            ``control`` (the last action) is left out by default: a cloned policy that sees
            its own last action learns to repeat it and never starts again after a stop (the
            inertia problem, Codevilla et al., ICCV 2019).
        finetune_encoder: Train the encoder with the policy (images go into the rollout
            buffer; much slower). Off: the frozen encoder runs once per env step, batched.
        normalize: Running mean/std normalisation of the observations (VecNormalize).
        normalize_update: Whether the RL phase keeps updating the normalisation's running
            statistics. False freezes them where the warm start (or ``init_from``) left them,
            so that RL fine-tunes a clone on the inputs it was fitted to.
        action_std: Standard deviation of PPO's Gaussian actions at the start of the RL phase,
            set on the policy after the warm start or ``init_from`` (0: as the policy has it;
            ``policy_kwargs.log_std_init`` only reaches a new policy). A clone explored at
            0.20 loses 10-30 driving-score points within 50,000 PPO steps; at 0.07 it keeps
            them for 50,000 steps and loses them by 200,000 (README, "Training").
        critic_warmup: PPO env steps at the start of the RL phase in which only the value
            function learns (the actor frozen), so that a clone's first policy updates follow
            advantages from a critic fitted to this run's reward (0: off).
        anchor_coef: Weight of a KL penalty that keeps the PPO policy near the one the RL
            phase started from (``init_from``, or the warm start's last stage, with
            ``action_std`` applied): PPO's loss gains ``anchor_coef * KL(start || policy)``
            on every minibatch (``agent.training.AnchoredPPO``; 0: off).
        bc_steps: Autopilot demonstrations (env steps) cloned into the policy before RL
            (PPO with continuous actions; 0: pure RL). See ``agent.warmstart``.
        bc_epochs: Behaviour-cloning passes over the demonstrations.
        bc_noise: Steer noise added to the executed expert actions (DART) [-1..1 units].
        bc_standing_keep: Share of the demonstration samples kept while the ego stands
            still (see ``agent.warmstart.collect_demonstrations``).
        bc_pedal_noise: Standard deviation of a slowly varying (about 1 s) noise added to
            the executed throttle / acceleration, so the demonstrations also show the expert
            recovering its speed (stopped short of a stop line, too slow, too fast).
        dagger_rounds: DAgger rounds after the first clone: the clone drives (mixed with the
            expert, whose share halves each round), the expert labels what it visits, and
            the policy is cloned again on all the data (``agent.warmstart.warm_start``). Each
            round is saved as ``checkpoints/dagger_<i>.zip``.
        dagger_steps: Env steps driven per DAgger round.
        dagger_epochs: Behaviour-cloning passes over all the data after each round.
        bc_turn_share: Share of the cloned samples that are turning (expert steer above
            0.15), reached by repeating them (``agent.warmstart._rebalance``); 0: as driven.
        bc_brake_share: The same for samples where the expert brakes hard (deceleration or
            brake above 0.3).
        bc_steer_weight: Weight of the steering error against the other action's in the
            cloning loss (1: plain mean squared error over both).
        algo_kwargs: Keyword arguments of the SB3 algorithm (``learning_rate``, ``n_steps``...).
        policy_kwargs: SB3 ``policy_kwargs`` (``net_arch``...).
        checkpoint_every: Env steps between checkpoints.
        keep_checkpoints: Checkpoints kept (oldest deleted; ``best.zip`` is kept apart).
        save_replay_buffer: DQN family: save the replay buffer with each checkpoint so that
            ``--resume`` continues with it (large).
        eval_every: Env steps between evaluations on the fixed routes (0: never).
        eval_routes: Leaderboard route file of the periodic evaluation.
        eval_route_ids: Route ids evaluated (empty: all).
        eval_weathers: Weather presets of the periodic evaluation (each route in each).
        eval_traffic: ``none``, ``regular`` or ``dense``.
        eval_seed: Seed of the periodic evaluation's traffic. Fixed, not derived from ``seed``,
            so that runs with different training seeds are scored on the same traffic (with
            the training seed, one policy read DS 38.8, 25.3 and 9.1 on two routes).
        video_every: Env steps between evaluation videos in TensorBoard (0: never).
        video_steps: Decisions in an evaluation video.
        log_every: Env steps between the custom TensorBoard scalars.
    """

    algo: Algo = "ppo"
    total_steps: int = 1_000_000
    n_envs: int = 4
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    encoder_weights: str = ""
    init_from: str = ""
    feature_stack: int = 2
    feature_lags: tuple[int, ...] = ()
    gap_memory: float = 0.0
    policy_features: Literal["all", "affordances"] = "all"
    measurements: tuple[str, ...] = ("speed", "targets", "command")
    finetune_encoder: bool = False
    normalize: bool = True
    normalize_update: bool = True
    action_std: float = 0.0
    critic_warmup: int = 0
    anchor_coef: float = 0.0
    bc_steps: int = 0
    bc_epochs: int = 10
    bc_noise: float = 0.15
    bc_standing_keep: float = 1.0
    bc_pedal_noise: float = 0.0
    dagger_rounds: int = 0
    dagger_steps: int = 20_000
    dagger_epochs: int = 5
    bc_turn_share: float = 0.0
    bc_brake_share: float = 0.0
    bc_steer_weight: float = 1.0
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 3
    save_replay_buffer: bool = False
    eval_every: int = 100_000
    eval_routes: str = "routes/train.xml"
    eval_route_ids: tuple[str, ...] = ()
    eval_weathers: tuple[str, ...] = ("ClearNoon",)
    eval_traffic: Literal["none", "regular", "dense"] = "regular"
    eval_seed: int = 0
    video_every: int = 200_000
    video_steps: int = 200
    log_every: int = 2_000

    @property
    def gap_decisions(self) -> int:
        """Decisions ``gap_memory`` remembers besides the newest (0: off)."""
        if self.gap_memory <= 0.0:
            return 0
        return max(1, round(self.gap_memory / self.env.decision_dt))

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ConfigError(f"algo: {self.algo!r} is not one of {', '.join(ALGOS)}")
        for name in ("total_steps", "n_envs", "feature_stack", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "keep_checkpoints",
            "eval_every",
            "video_every",
            "log_every",
            "dagger_rounds",
            "dagger_steps",
            "dagger_epochs",
            "critic_warmup",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.feature_lags:
            if min(self.feature_lags) < 0 or 0 not in self.feature_lags:
                raise ConfigError(
                    f"feature_lags must be >= 0 and hold 0 (the newest frame), got "
                    f"{list(self.feature_lags)}"
                )
            if len(set(self.feature_lags)) != len(self.feature_lags):
                raise ConfigError(f"feature_lags has repeats: {list(self.feature_lags)}")
            if self.finetune_encoder:
                raise ConfigError(
                    "feature_lags needs the frozen encoder (finetune_encoder: false); "
                    "use feature_stack"
                )
        if self.gap_memory < 0.0 or not math.isfinite(self.gap_memory):
            raise ConfigError(f"gap_memory must be >= 0 seconds, got {self.gap_memory}")
        if self.gap_memory > 0.0 and self.finetune_encoder:
            raise ConfigError("gap_memory needs the frozen encoder (finetune_encoder: false)")
        if self.algo != "ppo" and self.env.action != "discrete":
            raise ConfigError(f"algo {self.algo} needs discrete actions: set env.action: discrete")
        unknown = sorted(set(self.measurements) - set(MEASUREMENT_KEYS))
        if unknown:
            raise ConfigError(f"measurements: unknown {unknown}; choose from {MEASUREMENT_KEYS}")
        if self.bc_steps and (self.algo != "ppo" or self.env.action == "discrete"):
            raise ConfigError(
                "bc_steps (behaviour-cloning warm start) needs ppo with continuous actions"
            )
        if not 0.0 <= self.bc_turn_share < 1.0:
            raise ConfigError(f"bc_turn_share must be in [0, 1), got {self.bc_turn_share}")
        if not 0.0 <= self.bc_brake_share < 1.0:
            raise ConfigError(f"bc_brake_share must be in [0, 1), got {self.bc_brake_share}")
        if self.bc_steer_weight <= 0.0:
            raise ConfigError(f"bc_steer_weight must be > 0, got {self.bc_steer_weight}")
        if self.action_std < 0.0:
            raise ConfigError(f"action_std must be >= 0 (0: keep), got {self.action_std}")
        if self.action_std and (self.algo != "ppo" or self.env.action == "discrete"):
            raise ConfigError("action_std needs ppo with continuous actions")
        if self.critic_warmup and self.algo != "ppo":
            raise ConfigError("critic_warmup needs ppo (DQN's Q-function is the policy)")
        if self.anchor_coef < 0.0:
            raise ConfigError(f"anchor_coef must be >= 0, got {self.anchor_coef}")
        if self.anchor_coef and (self.algo != "ppo" or not (self.init_from or self.bc_steps)):
            raise ConfigError(
                "anchor_coef needs ppo and a policy to stay near: set init_from or bc_steps"
            )
        if self.dagger_rounds and not self.bc_steps:
            raise ConfigError("dagger_rounds needs bc_steps > 0 (the first clone DAgger improves)")
        if self.policy_features not in POLICY_FEATURES:
            raise ConfigError(
                f"policy_features: {self.policy_features!r}; use one of {POLICY_FEATURES}"
            )
        if self.eval_traffic not in ("none", "regular", "dense"):
            raise ConfigError(f"eval_traffic: {self.eval_traffic!r}; use none, regular or dense")
        if self.env.image != "rgb":
            raise ConfigError("train.py trains on camera frames: env.image must be rgb")
        _check_algo_kwargs(self.algo, self.algo_kwargs)

    @property
    def encoder_path(self) -> Path:
        """The perception weights this run uses."""
        from perception.model import DEFAULT_WEIGHTS

        return Path(self.encoder_weights) if self.encoder_weights else DEFAULT_WEIGHTS


def algorithm_class(algo: str) -> Any:
    """The SB3 class of ``algo``."""
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "dqn":
        from stable_baselines3 import DQN

        return DQN
    from sb3_contrib import QRDQN

    return QRDQN


_RESERVED = {"self", "policy", "env", "seed", "device", "tensorboard_log", "policy_kwargs"}


def _check_algo_kwargs(algo: str, kwargs: dict[str, Any]) -> None:
    valid = set(inspect.signature(algorithm_class(algo).__init__).parameters) - _RESERVED
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ConfigError(
            f"algo_kwargs: unknown key(s) {unknown} for {algo}; valid: {sorted(valid)}"
        )


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"env.vehicles": 3}`` -> ``{"env": {"vehicles": 3}}``; sections only one level deep."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        head, dot, tail = key.partition(".")
        if not dot:
            out[key] = value
        elif head in SECTIONS:
            out.setdefault(head, {})[tail] = value
        else:
            raise ConfigError(f"--set {key}: only {', '.join(SECTIONS)} take dotted keys")
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if key in SECTIONS and isinstance(value, dict):
            section = out.get(key) or {}
            if not isinstance(section, dict):
                raise ConfigError(f"{key}: must be a mapping")
            out[key] = {**section, **value}
        else:
            out[key] = value
    return out


def config_from_mapping(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a ``TrainConfig``; the ``env`` section is checked against ``EnvConfig``."""
    values = dict(values)
    env_values = values.pop("env", None) or {}
    if not isinstance(env_values, dict):
        raise ConfigError(f"{source}: env must be a mapping of EnvConfig fields")
    try:
        env = config_from_dict({**env_values, "frame_stack": 1}, f"{source}: env")
        return dataclass_from_dict(TrainConfig, {**values, "env": env}, source)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A YAML file (optional; defaults otherwise) plus ``key=value`` overrides.

    Raises:
        ConfigError: unknown keys, bad values; FileNotFoundError: a missing file.
    """
    values: dict[str, Any] = load_yaml_mapping(path) if path is not None else {}
    try:
        extra = _nest(parse_overrides(overrides or []))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return config_from_mapping(_merge(values, extra), str(path or "config"))


def config_to_mapping(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-friendly values (``env`` nested)."""
    out = dataclass_to_dict(config)
    out["env"] = config_to_dict(config.env)
    return out


def dump_config(config: TrainConfig) -> str:
    """YAML text of the resolved config (what the run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(config_to_mapping(config), sort_keys=False)
