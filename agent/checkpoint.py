"""Self-contained agent checkpoints: one ``.zip`` that SB3 can load, plus our extras.

SB3's own zip (policy, optimizer, step counter, hyperparameters) gets three more entries:
``segdrive/config.yaml`` (the resolved training config), ``segdrive/encoder.pt`` (the
perception weights the policy was trained on) and, when observations were normalised,
``segdrive/vecnormalize.pkl``. So ``evaluate.py --agent run/checkpoints/best.zip`` needs
nothing else, and a later re-trained encoder cannot silently change an old agent.

Saves go to a temporary file renamed into place: a kill in the middle of a save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agent.train_config import TrainConfig, algorithm_class, config_from_mapping, dump_config
from envs.atomic import atomic_path
from envs.config import load_yaml
from perception.model import PerceptionNet

FORMAT = "segdrive-agent"
VERSION = 1
_PREFIX = "segdrive/"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


@dataclass
class Checkpoint:
    """What a checkpoint holds besides the SB3 model."""

    config: TrainConfig
    encoder: PerceptionNet
    normalizer: VecNormalize | None
    num_timesteps: int


def save_checkpoint(
    path: str | Path,
    model: BaseAlgorithm,
    config: TrainConfig,
    encoder_path: str | Path,
    normalizer: VecNormalize | None,
) -> Path:
    """Write ``path`` (a ``.zip``) atomically; returns it."""
    path = Path(path)
    if path.suffix != ".zip":
        raise ValueError(f"{path}: checkpoints are .zip files")
    meta = {"format": FORMAT, "version": VERSION, "num_timesteps": int(model.num_timesteps)}
    with atomic_path(path) as tmp:
        sb3_file = tmp.with_name(tmp.name + ".zip")  # SB3 appends .zip to other names
        try:
            model.save(sb3_file)
            with zipfile.ZipFile(sb3_file, "a", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(_PREFIX + "meta.json", json.dumps(meta))
                archive.writestr(_PREFIX + "config.yaml", dump_config(config))
                archive.write(encoder_path, _PREFIX + "encoder.pt")
                if normalizer is not None:
                    archive.writestr(_PREFIX + "vecnormalize.pkl", pickle.dumps(normalizer))
            sb3_file.replace(tmp)
        finally:
            sb3_file.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Our extras of a checkpoint (the SB3 model is loaded by ``load_model``).

    Raises:
        CheckpointError: a missing file, not a zip, not a segdrive checkpoint, another format
            version, or a config this code no longer accepts.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if _PREFIX + "meta.json" not in names:
                raise CheckpointError(
                    f"{path}: not a segdrive agent checkpoint (no {_PREFIX}meta.json); "
                    "checkpoints are written by train.py"
                )
            meta = json.loads(archive.read(_PREFIX + "meta.json"))
            config_text = archive.read(_PREFIX + "config.yaml").decode("utf-8")
            encoder_bytes = archive.read(_PREFIX + "encoder.pt")
            norm_bytes = (
                archive.read(_PREFIX + "vecnormalize.pkl")
                if _PREFIX + "vecnormalize.pkl" in names
                else None
            )
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        raise CheckpointError(f"{path}: unreadable or incomplete checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {meta.get('format')} v{meta.get('version')}, "
            f"this code reads {FORMAT} v{VERSION}"
        )
    try:
        config = config_from_mapping(load_yaml(config_text), f"{path}: config")
    except ValueError as exc:
        raise CheckpointError(f"{path}: its config does not load here ({exc})") from exc
    try:
        encoder = PerceptionNet.from_weights(f"{path}:{_PREFIX}encoder.pt", encoder_bytes)
    except ValueError as exc:
        raise CheckpointError(f"{path}: its encoder does not load here ({exc})") from exc
    encoder = encoder.frozen()
    normalizer = _unpickle_normalizer(norm_bytes) if norm_bytes is not None else None
    return Checkpoint(config, encoder, normalizer, int(meta.get("num_timesteps", 0)))


def _unpickle_normalizer(data: bytes) -> VecNormalize:
    """A pickled ``VecNormalize`` that can be pickled again: SB3's ``__getstate__`` drops
    ``class_attributes`` and ``returns`` and deletes them again when pickling, so an unpickled
    one could not go into another checkpoint (``KeyError: 'class_attributes'``)."""
    normalizer: VecNormalize = pickle.loads(data)
    normalizer.class_attributes = {}
    normalizer.returns = np.zeros(normalizer.num_envs)
    return normalizer


def load_model(
    path: str | Path, env: VecEnv | None = None, device: str = "cpu", **kwargs: Any
) -> tuple[BaseAlgorithm, Checkpoint]:
    """The SB3 model of a checkpoint (with optimizer state) and its extras."""
    checkpoint = read_checkpoint(path)
    cls = algorithm_class(checkpoint.config.algo)
    try:
        model = cls.load(path, env=env, device=device, **kwargs)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: the model does not fit this environment or code ({exc})"
        ) from exc
    return model, checkpoint
