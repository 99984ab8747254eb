"""Shared fixtures: a tiny collection (20 frames, two shards) and a small network's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception.collect import CollectConfig, collect
from perception.model import PerceptionConfig, PerceptionNet

SMALL_COLLECTION = CollectConfig(
    frames=20,
    towns=("Grid01",),
    weathers=("ClearNoon",),
    seed=3,
    frames_per_shard=10,
    every=3,
    warmup=10,
    vehicles=10,
    walkers=10,
)
SMALL_NET = PerceptionConfig(
    channels=(8, 16, 32, 64), decoder_channels=(16, 16, 8, 8), feature_channels=16
)
"""A network small enough to train a few steps in a test."""


@pytest.fixture(scope="session")
def small_collection() -> CollectConfig:
    """The config of ``collected``."""
    return SMALL_COLLECTION


@pytest.fixture(scope="session")
def small_net() -> PerceptionConfig:
    """``SMALL_NET``."""
    return SMALL_NET


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``SMALL_COLLECTION`` collected once per session (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("collect") / "a"
    collect(SMALL_COLLECTION, out, progress=False)
    return out


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ``SMALL_NET`` saved with ``save_weights``."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "small.pt"
    PerceptionNet(SMALL_NET).save_weights(path)
    return path
