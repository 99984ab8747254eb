"""Camera frames to policy inputs through the pretrained perception encoder.

``EncoderVecEnv`` runs the frozen encoder once per vectorised step on the newest frame of every
env (one batch) and keeps the last ``k`` feature vectors per env, so the policy -- and every
gradient step -- works on small feature vectors, never on images. ``EncoderExtractor`` is the
fine-tuning alternative: an SB3 features extractor that owns a trainable copy of the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn
from torch import Tensor

from agent.train_config import MEASUREMENT_KEYS as MEASUREMENTS
from perception.collect import LIGHT_CLASSES, MAX_DISTANCE
from perception.model import PerceptionNet

FEATURES = "features"


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> PerceptionNet:
    """The perception network of ``path`` for inference (``PerceptionNet.frozen``).

    Raises:
        FileNotFoundError: no file (the message says how to train one); ValueError: not a
            perception weight file, or one of another label set.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no perception weights; train them with python -m perception.train "
            "(README, 'Perception') or set encoder_weights in the config"
        )
    return PerceptionNet.from_weights(path).to(device).frozen()


def encode(encoder: PerceptionNet, images: Tensor, policy_features: str = "all") -> Tensor:
    """What the policy sees of each frame (B, ``encoded_dim``): the encoder's ``features``, or
    with ``policy_features="affordances"`` only its ``affordances``."""
    if policy_features == "affordances":
        return encoder.affordances(images)
    return encoder.features(images)


def encoded_dim(encoder: PerceptionNet, policy_features: str = "all") -> int:
    """Length of ``encode``'s rows."""
    if policy_features == "affordances":
        return encoder.config.affordance_outputs
    return encoder.feature_dim


def gap_column(encoder: PerceptionNet, policy_features: str = "all") -> int:
    """Column of the vehicle-gap reading in ``encode``'s rows.

    Raises:
        ValueError: the rows hold no affordances (``policy_features: all`` on an encoder
            without ``affordance_features``).
    """
    cfg = encoder.config
    index = len(LIGHT_CLASSES) + cfg.regressions.index("vehicle_gap")
    if policy_features == "affordances":
        return index
    if not cfg.affordance_features:
        raise ValueError(
            "gap_memory needs the encoder's vehicle-gap reading: use policy_features: "
            "affordances, or weights whose features end with the affordances"
        )
    return encoder.feature_dim - cfg.affordance_outputs + index


def vehicle_gaps(rows: NDArray[np.float32], column: int) -> NDArray[np.float64]:
    """The vehicle-gap readings [m] of encoded rows (``gap_column`` names the column)."""
    return rows[..., column].astype(np.float64) * MAX_DISTANCE


class GapMemory:
    """How close the last readings of the vehicle gap put a car that stood still since.

    The encoder reads a car ahead well down to a metre or two, then -- the car filling the
    frame -- reads 6, 20, 50 m (README, "Training"); a policy that sees only the newest frames
    accelerates into it. This memory is the smallest of the last ``decisions + 1`` readings,
    each less the distance driven since (odometry from the speedometer, trapezoidal): the gap
    left if what was read had stood still. Behind a moving car it under-reads by the distance
    driven in the window, which the policy sees beside the newest reading.

    Args:
        n: Episodes (vectorised envs) kept apart.
        decisions: Readings remembered besides the newest.
        dt: Time between decisions [s].
    """

    def __init__(self, n: int, decisions: int, dt: float) -> None:
        if decisions < 0 or dt <= 0.0:
            raise ValueError(f"GapMemory needs decisions >= 0 and dt > 0, got {decisions}, {dt}")
        self.dt = dt
        self.marks = np.zeros((n, decisions + 1))  # reading + odometry at that decision [m]
        self.odometry = np.zeros(n)  # distance driven this episode [m]
        self.speed = np.zeros(n)  # speed at the last decision [m/s]

    def restart(
        self,
        gaps: NDArray[np.floating[Any]],
        speeds: NDArray[np.floating[Any]],
        index: int | None = None,
    ) -> None:
        """Begin episode ``index`` (default: all) at readings ``gaps`` [m] and ``speeds``."""
        where = slice(None) if index is None else index
        self.odometry[where] = 0.0
        self.speed[where] = speeds
        self.marks[where] = np.asarray(gaps)[..., None]

    def _advance(
        self, gaps: NDArray[np.floating[Any]], speeds: NDArray[np.floating[Any]], rows: Any
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        odometry = self.odometry[rows] + 0.5 * (self.speed[rows] + speeds) * self.dt
        marks = np.concatenate([self.marks[rows, 1:], (gaps + odometry)[..., None]], axis=-1)
        return marks, odometry

    def push(self, gaps: NDArray[np.floating[Any]], speeds: NDArray[np.floating[Any]]) -> None:
        """Every episode's newest reading [m] and speed [m/s] ((n,) each)."""
        self.marks, self.odometry = self._advance(gaps, speeds, slice(None))
        self.speed = np.asarray(speeds, dtype=np.float64).copy()

    @staticmethod
    def _value(marks: NDArray[np.float64], odometry: NDArray[np.float64]) -> NDArray[np.float32]:
        gap = np.clip(marks.min(axis=-1) - odometry, 0.0, MAX_DISTANCE)
        return (gap / MAX_DISTANCE).astype(np.float32)  # the encoder's units

    def observe(self) -> NDArray[np.float32]:
        """(n, 1): the remembered gap as a fraction of ``MAX_DISTANCE``, like the reading."""
        return self._value(self.marks, self.odometry)[:, None]

    def observe_after(self, index: int, gap: float, speed: float) -> NDArray[np.float32]:
        """(1,) what episode ``index`` would observe after reading ``gap`` at ``speed``,
        without changing the memory."""
        marks, odometry = self._advance(np.array(gap), np.array(speed), index)
        return self._value(marks, odometry).reshape(1)


def _shape(space: spaces.Dict, key: str) -> tuple[int, ...]:
    shape = space[key].shape
    assert shape is not None, f"observation {key} has no shape"
    return shape


def feature_space(
    image_space: spaces.Dict,
    feature_dim: int,
    stack: int,
    measurements: Sequence[str],
    extra: int = 0,
) -> spaces.Dict:
    """The observation space after encoding: ``features`` (``stack`` vectors plus ``extra``
    numbers) plus the chosen measurements."""
    inner = {k: image_space[k] for k in measurements}
    box = spaces.Box(-np.inf, np.inf, shape=(feature_dim * stack + extra,), dtype=np.float32)
    return spaces.Dict({FEATURES: box, **inner})


def stack_lags(stack: int, lags: Sequence[int] = ()) -> tuple[int, ...]:
    """Decisions back of each feature vector the policy sees, oldest first, newest (0) last:
    ``lags`` sorted, or without them the last ``stack`` decisions."""
    if not lags:
        return tuple(range(stack - 1, -1, -1))
    return tuple(sorted(set(lags), reverse=True))


class FeatureHistory:
    """The encoded frames of ``n`` episodes, and the lagged ones the policy sees of them.

    Keeps the last ``max(lags) + 1`` feature vectors per episode; an episode's first frame
    fills its whole history (no zeros from before it began).

    Args:
        n: Episodes (vectorised envs) kept apart.
        dim: Length of one feature vector.
        lags: Decisions back of each vector the policy sees (``stack_lags``), oldest first.
    """

    def __init__(self, n: int, dim: int, lags: Sequence[int]) -> None:
        self.lags = tuple(lags)
        if (
            not self.lags
            or min(self.lags) < 0
            or list(self.lags) != sorted(self.lags, reverse=True)
        ):
            raise ValueError(f"lags must be >= 0, oldest first, got {self.lags}")
        depth = self.lags[0] + 1
        self._rows = [depth - 1 - lag for lag in self.lags]
        self.buffer = np.zeros((n, depth, dim), dtype=np.float32)

    @property
    def size(self) -> int:
        """Length of one observation row: ``len(lags) * dim``."""
        return len(self.lags) * self.buffer.shape[2]

    def restart(self, feats: NDArray[np.float32], index: int | None = None) -> None:
        """Begin episode ``index`` (default: all) at ``feats`` ((dim,) or (n, dim))."""
        if index is None:
            self.buffer[:] = feats[:, None, :]
        else:
            self.buffer[index] = feats

    def push(self, feats: NDArray[np.float32]) -> None:
        """Append every episode's newest vector ((n, dim))."""
        self.buffer[:, :-1] = self.buffer[:, 1:]
        self.buffer[:, -1] = feats

    def observe(self) -> NDArray[np.float32]:
        """(n, ``size``) lagged vectors, oldest first (a copy)."""
        n = self.buffer.shape[0]
        return self.buffer[:, self._rows].reshape(n, -1)

    def observe_after(self, index: int, feats: NDArray[np.float32]) -> NDArray[np.float32]:
        """(``size``,) what episode ``index`` would observe after ``feats`` (its last frame),
        without changing the history."""
        rolled = np.concatenate([self.buffer[index, 1:], feats[None]])
        return rolled[self._rows].reshape(-1)


class EncoderVecEnv(VecEnvWrapper):
    """Replace ``image`` observations by stacked encoder features.

    The wrapped envs must give single frames (``frame_stack: 1``), RGB (3, H, W) uint8.
    ``terminal_observation`` entries of the infos are encoded too (SB3 bootstraps truncated
    episodes from them), against the history of the episode that ended.

    Args:
        venv: The vectorised driving envs.
        encoder: The frozen perception network.
        stack: Feature vectors per observation (newest last).
        device: Where the encoder runs.
        measurements: Measurement keys passed on (the others are dropped).
        policy_features: ``all`` encoder features or only the ``affordances`` (``encode``).
        lags: Decisions back of each vector seen instead of the last ``stack`` (``stack_lags``).
        gap_memory: Decisions a ``GapMemory`` of the vehicle gap remembers, appended to
            ``features``; 0: none.
        decision_dt: Time between decisions [s] (the memory's odometry).
    """

    def __init__(
        self,
        venv: VecEnv,
        encoder: PerceptionNet,
        stack: int = 2,
        device: str | torch.device = "cpu",
        measurements: Sequence[str] = MEASUREMENTS,
        policy_features: str = "all",
        lags: Sequence[int] = (),
        gap_memory: int = 0,
        decision_dt: float = 0.1,
    ) -> None:
        image_space = venv.observation_space
        if not isinstance(image_space, spaces.Dict) or _shape(image_space, "image")[0] != 3:
            raise ValueError("EncoderVecEnv needs Dict observations with one RGB frame")
        self.encoder = encoder
        self.lags = stack_lags(stack, lags)
        self.stack = len(self.lags)
        self.device = torch.device(device)
        self.policy_features = policy_features
        self.feature_dim = encoded_dim(encoder, policy_features)
        self.measurements = tuple(measurements)
        super().__init__(
            venv,
            observation_space=feature_space(
                image_space, self.feature_dim, self.stack, self.measurements, int(gap_memory > 0)
            ),
        )
        self._history = FeatureHistory(self.num_envs, self.feature_dim, self.lags)
        self._memory: GapMemory | None = None
        if gap_memory > 0:
            self._gap = gap_column(encoder, policy_features)
            self._memory = GapMemory(self.num_envs, gap_memory, decision_dt)

    def encode(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(B, 3, H, W) uint8 -> (B, feature_dim) float32."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            return encode(self.encoder, x, self.policy_features).float().cpu().numpy()

    def _observation(self, obs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        out = {k: obs[k] for k in self.measurements}
        out[FEATURES] = self._history.observe()
        if self._memory is not None:
            out[FEATURES] = np.concatenate([out[FEATURES], self._memory.observe()], axis=1)
        return out

    def reset(self) -> dict[str, NDArray[Any]]:
        """Reset all envs; every history is filled with its first frame."""
        obs = self.venv.reset()
        assert isinstance(obs, dict)
        features = self.encode(obs["image"])
        self._history.restart(features)
        if self._memory is not None:
            self._memory.restart(vehicle_gaps(features, self._gap), obs["speed"][:, 0])
        return self._observation(obs)

    def step_wait(self) -> VecEnvStepReturn:
        """Step, encode the newest frames in one batch, roll the histories."""
        obs, rewards, dones, infos = self.venv.step_wait()
        assert isinstance(obs, dict)
        images = [obs["image"]]
        ended = [i for i, done in enumerate(dones) if done and "terminal_observation" in infos[i]]
        images += [infos[i]["terminal_observation"]["image"][None] for i in ended]
        features = self.encode(np.concatenate(images))
        current, terminal = features[: self.num_envs], features[self.num_envs :]
        for j, i in enumerate(ended):
            last = infos[i]["terminal_observation"]
            seen = self._history.observe_after(i, terminal[j])
            if self._memory is not None:
                gap = float(vehicle_gaps(terminal[j], self._gap))
                after = self._memory.observe_after(i, gap, float(last["speed"][0]))
                seen = np.concatenate([seen, after])
            infos[i]["terminal_observation"] = {
                **{k: last[k] for k in self.measurements},
                FEATURES: seen,
            }
        self._history.push(current)
        if self._memory is not None:
            self._memory.push(vehicle_gaps(current, self._gap), obs["speed"][:, 0])
        for i, done in enumerate(dones):
            if done:  # the obs is the next episode's first: restart its history
                self._history.restart(current[i], i)
                if self._memory is not None:
                    self._memory.restart(vehicle_gaps(current[i], self._gap), obs["speed"][i, 0], i)
        return self._observation(obs), rewards, dones, infos


class EncoderExtractor(BaseFeaturesExtractor):
    """SB3 features extractor that fine-tunes the encoder on stacked RGB frames.

    The observation's ``image`` holds ``k`` frames channel-first (3k, H, W); each goes through
    the encoder, and the features are concatenated with the flattened measurements.

    Args:
        observation_space: The env's ``Dict`` space (with ``image``).
        weights: Perception weights to start from.
        measurements: Measurement keys appended to the features (the others are ignored).
        policy_features: ``all`` encoder features or only the ``affordances`` (``encode``).
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        weights: str,
        measurements: Sequence[str] = MEASUREMENTS,
        policy_features: str = "all",
    ) -> None:
        encoder = PerceptionNet.from_weights(weights)
        frames = _shape(observation_space, "image")[0] // 3
        size = sum(math.prod(_shape(observation_space, k)) for k in measurements)
        super().__init__(observation_space, encoded_dim(encoder, policy_features) * frames + size)
        self.encoder = encoder
        self.frames = frames
        self.measurements = tuple(measurements)
        self.policy_features = policy_features

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        """Features of every frame (SB3 hands images as float [0, 255]) plus measurements."""
        images = observations["image"]
        b, _, h, w = images.shape
        frames = images.reshape(b * self.frames, 3, h, w) / 255.0
        feats = encode(self.encoder, frames, self.policy_features).reshape(b, -1)
        rest = [observations[k].reshape(b, -1) for k in self.measurements]
        return torch.cat([feats, *rest], dim=1)
