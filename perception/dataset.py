"""A torch ``Dataset`` over the shards written by ``perception.collect``.

Every problem with the files (no manifest, a listed shard missing, a shard whose arrays do not
match the manifest) raises ``DatasetError`` naming the file and what to do.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from perception.collect import AFFORDANCE_KEYS, MANIFEST, MANIFEST_VERSION, SHARD_KEYS

_FLOAT_KEYS = tuple(k for k in AFFORDANCE_KEYS if k != "light_state")


class DatasetError(ValueError):
    """A collection on disk is missing, incomplete or inconsistent."""


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load and check ``root/manifest.json``.

    Raises:
        DatasetError: if the manifest is missing, unreadable, or of another version.
    """
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path}: no manifest; collect data with `python -m perception.collect`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        found = manifest.get("version") if isinstance(manifest, dict) else None
        raise DatasetError(
            f"{path}: manifest version {found!r}, expected {MANIFEST_VERSION}; re-collect the data"
        )
    for key in ("config", "shards"):
        if key not in manifest:
            raise DatasetError(f"{path}: manifest has no {key!r} entry")
    return manifest


def load_shard(path: Path, frames: int, height: int, width: int) -> dict[str, NDArray[Any]]:
    """Load one shard and check its arrays against what the manifest says.

    Raises:
        DatasetError: naming ``path`` when it is missing, unreadable, or mismatched.
    """
    if not path.is_file():
        raise DatasetError(
            f"{path}: shard listed in the manifest is missing; re-run the collection"
        )
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: unreadable shard ({exc}); delete it and re-run") from exc
    missing = [k for k in SHARD_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: shard lacks arrays {missing}")
    expected = {"rgb": (frames, height, width, 3), "labels": (frames, height, width)}
    for key in SHARD_KEYS:
        shape = expected.get(key, (frames,))
        if arrays[key].shape != shape:
            raise DatasetError(
                f"{path}: {key!r} has shape {arrays[key].shape}, the manifest implies {shape}"
            )
    return arrays


class ShardDataset(Dataset[dict[str, Any]]):
    """Frames of a collection, each a dict of tensors.

    Items: ``image`` (3, H, W) uint8, ``labels`` (H, W) int64 CARLA ids, ``light_state`` int64
    (index into ``perception.collect.LIGHT_CLASSES``), float32 scalars ``light_distance``,
    ``vehicle_gap``, ``walker_gap`` [m], ``speed`` [m/s], ``lateral_offset`` [m],
    ``heading_error`` [rad]; and strings ``weather`` and ``town``.

    Args:
        root: Directory holding ``manifest.json`` and the shards.
        in_memory: Load (and check) every shard up front; otherwise keep one shard cached,
            which suits sequential reads but thrashes under random access.
    """

    def __init__(self, root: str | Path, in_memory: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        config = self.manifest["config"]
        self.height, self.width = int(config["height"]), int(config["width"])
        self.shards = [(self.root / s["file"], int(s["frames"])) for s in self.manifest["shards"]]
        if not self.shards:
            raise DatasetError(f"{self.root / MANIFEST}: lists no shards; collection unfinished")
        for path, _ in self.shards:
            if not path.is_file():
                raise DatasetError(
                    f"{path}: shard listed in the manifest is missing; re-run the collection"
                )
        self._offsets = np.cumsum([0] + [n for _, n in self.shards])
        self._cache: dict[int, dict[str, NDArray[Any]]] = {}
        self._in_memory = in_memory
        self._joined: dict[str, NDArray[Any]] | None = None
        if in_memory:
            for i in range(len(self.shards)):
                self._cache[i] = self._load(i)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _load(self, shard: int) -> dict[str, NDArray[Any]]:
        path, frames = self.shards[shard]
        return load_shard(path, frames, self.height, self.width)

    def _arrays(self, shard: int) -> dict[str, NDArray[Any]]:
        if self._joined is not None:
            start, stop = int(self._offsets[shard]), int(self._offsets[shard + 1])
            return {k: v[start:stop] for k, v in self._joined.items()}
        if shard not in self._cache:
            if not self._in_memory:
                self._cache.clear()
            self._cache[shard] = self._load(shard)
        return self._cache[shard]

    def arrays(self) -> dict[str, NDArray[Any]]:
        """Every shard's arrays concatenated (loads them all; cached)."""
        if self._joined is None:
            parts = [self._arrays(i) for i in range(len(self.shards))]
            self._joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            self._cache.clear()
        return self._joined

    def batch(self, indices: NDArray[np.int64] | Sequence[int]) -> dict[str, Tensor]:
        """Frames ``indices`` as one batch: the same keys as items, stacked (no strings).

        Much faster than collating items; what the trainer and the evaluator use.
        """
        arrays = self.arrays()
        idx = np.asarray(indices, dtype=np.int64)
        rgb = np.ascontiguousarray(arrays["rgb"][idx].transpose(0, 3, 1, 2))
        out = {
            "image": torch.from_numpy(rgb),
            "labels": torch.from_numpy(arrays["labels"][idx].astype(np.int64)),
            "light_state": torch.from_numpy(arrays["light_state"][idx].astype(np.int64)),
        }
        for key in _FLOAT_KEYS:
            out[key] = torch.from_numpy(arrays[key][idx].astype(np.float32))
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} out of range for {len(self)} frames")
        index %= len(self)
        shard = int(np.searchsorted(self._offsets, index, side="right")) - 1
        local = index - int(self._offsets[shard])
        arrays = self._arrays(shard)
        item: dict[str, Any] = {
            "image": torch.from_numpy(
                np.ascontiguousarray(arrays["rgb"][local].transpose(2, 0, 1))
            ),
            "labels": torch.from_numpy(arrays["labels"][local].astype(np.int64)),
            "light_state": torch.tensor(int(arrays["light_state"][local]), dtype=torch.int64),
            "weather": str(arrays["weather"][local]),
            "town": str(arrays["town"][local]),
        }
        for key in _FLOAT_KEYS:
            item[key] = torch.tensor(float(arrays[key][local]), dtype=torch.float32)
        return item
