"""Data collection, the shard dataset, and the perception network."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import perception.collect as collect_module
from agent.autopilot import Autopilot, AutopilotParams
from envs.backends.base import WorldState
from perception.collect import (
    CLOSE_HEADWAY,
    CLOSE_MARGIN,
    LIGHT_CLASSES,
    MANIFEST,
    MAX_DISTANCE,
    SHARD_KEYS,
    TRAIN_WEATHERS,
    CollectConfig,
    collect,
    heading_ahead,
    shard_name,
)
from perception.collect_cli import parse_args
from perception.dataset import DatasetError, ShardDataset
from perception.model import (
    DISTANCE_KEYS,
    FEATURE_DIM,
    NUM_CLASSES,
    PerceptionConfig,
    PerceptionNet,
    perception_loss,
)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_collect_writes_shards_and_manifest(collected: Path) -> None:
    manifest = json.loads((collected / MANIFEST).read_text())
    assert manifest["seed"] == 3
    assert manifest["shards"] == [
        {"file": shard_name(0), "frames": 10},
        {"file": shard_name(1), "frames": 10},
    ]
    data = _arrays(collected / shard_name(0))
    assert set(SHARD_KEYS) <= set(data)
    assert data["rgb"].shape == (10, 96, 160, 3) and data["rgb"].dtype == np.uint8
    assert data["labels"].shape == (10, 96, 160) and data["labels"].max() < NUM_CLASSES
    assert set(np.unique(data["light_state"])) <= {0, 1, 2, 3}
    assert (data["weather"] == "ClearNoon").all() and (data["town"] == "Grid01").all()
    assert data["speed"][-1] > 1.0  # the autopilot is driving
    assert np.all(np.abs(data["heading_ahead"]) < np.pi)


def test_heading_ahead_is_the_route_heading_ten_metres_on_relative_to_the_ego() -> None:
    """The steering feedforward affordance: where the route points 10 m further on, seen from
    the car (positive to the right, CARLA's clockwise yaw)."""
    distance = np.arange(0.0, 30.0)  # a plan at 1 m spacing
    yaw = np.where(distance < 12.0, 0.0, np.radians(30.0))  # a right bend after 12 m
    ego = SimpleNamespace(ego=SimpleNamespace(transform=SimpleNamespace(yaw=5.0)))
    state = cast(WorldState, ego)
    assert heading_ahead(state, yaw, distance, 0) == pytest.approx(np.radians(-5.0))
    assert heading_ahead(state, yaw, distance, 3) == pytest.approx(np.radians(25.0))
    assert heading_ahead(state, yaw, distance, 25) == pytest.approx(np.radians(25.0))  # clipped
    ego.ego.transform.yaw = -175.0  # wrapped to [-pi, pi)
    assert heading_ahead(state, np.full(30, np.radians(175.0)), distance, 0) == pytest.approx(
        np.radians(-10.0)
    )


def test_collections_from_before_heading_ahead_must_be_collected_again(
    collected: Path, tmp_path: Path
) -> None:
    root = tmp_path / "old"
    shutil.copytree(collected, root)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["version"] = 1
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"manifest version 1, expected 2; re-collect"):
        ShardDataset(root)


def test_collect_is_deterministic_and_resumes(
    collected: Path, small_collection: CollectConfig, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    collect(small_collection, out, progress=False)
    for i in range(2):
        first, second = _arrays(collected / shard_name(i)), _arrays(out / shard_name(i))
        for key in SHARD_KEYS:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    # Shard 1 gone: a re-run keeps shard 0 untouched and rebuilds shard 1 alone, identically.
    (out / shard_name(1)).unlink()
    before = (out / shard_name(0)).stat().st_mtime_ns
    collect(small_collection, out, progress=False)
    assert (out / shard_name(0)).stat().st_mtime_ns == before
    rebuilt = _arrays(out / shard_name(1))
    expected = _arrays(collected / shard_name(1))
    for key in SHARD_KEYS:
        np.testing.assert_array_equal(rebuilt[key], expected[key], err_msg=key)


def test_close_following_routes_stop_nearer_cars_than_the_expert_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``close_follow_share`` gives the autopilot of a route a stop margin drawn from
    ``CLOSE_MARGIN`` and ``CLOSE_HEADWAY``; the default share draws nothing, so collections
    made before the option are reproduced frame for frame (the determinism test above)."""
    made: list[AutopilotParams] = []
    real = collect_module.Autopilot

    def recording(params: AutopilotParams, seed: int) -> Autopilot:
        made.append(params)
        return real(params, seed)

    monkeypatch.setattr(collect_module, "Autopilot", recording)
    config = CollectConfig(
        frames=4, towns=("Grid01",), weathers=("ClearNoon",), frames_per_shard=2, every=3,
        warmup=1, max_episode_ticks=4, vehicles=2, walkers=0, close_follow_share=0.5,
    )  # fmt: skip
    collect(config, tmp_path / "close", progress=False)
    margins = [p.vehicle_margin for p in made]
    close = [p for p in made if p.vehicle_margin != AutopilotParams().vehicle_margin]
    assert close and len(close) < len(made), margins  # some routes of each kind
    for params in close:
        assert CLOSE_MARGIN[0] <= params.vehicle_margin <= CLOSE_MARGIN[1]
        assert params.follow_headway == CLOSE_HEADWAY
    with pytest.raises(ValueError, match="close_follow_share"):
        CollectConfig(close_follow_share=1.5)


def test_collect_refuses_a_directory_with_another_config(
    collected: Path, small_collection: CollectConfig, tmp_path: Path
) -> None:
    out = tmp_path / "c"
    shutil.copytree(collected, out)
    with pytest.raises(ValueError, match=r"manifest\.json.*seed"):
        collect(dataclasses.replace(small_collection, seed=4), out, progress=False)


def test_cli_parses_weather_sets(tmp_path: Path) -> None:
    config, out = parse_args(["--out", str(tmp_path), "--weathers", "train", "--towns", "Grid01"])
    assert out == tmp_path and config.weathers == TRAIN_WEATHERS
    assert not any("Night" in w or w.startswith("HardRain") for w in TRAIN_WEATHERS)
    config, _ = parse_args(["--out", "x", "--weathers", "ClearNoon,WetSunset"])
    assert config.weathers == ("ClearNoon", "WetSunset")
    with pytest.raises(ValueError, match="unknown weather preset 'Foggy'"):
        parse_args(["--out", "x", "--weathers", "Foggy"])


def test_dataset_items(collected: Path) -> None:
    dataset = ShardDataset(collected)
    assert len(dataset) == 20
    item = dataset[13]
    assert item["image"].shape == (3, 96, 160) and item["image"].dtype == torch.uint8
    assert item["labels"].shape == (96, 160) and item["labels"].dtype == torch.int64
    assert item["light_state"].dtype == torch.int64
    lazy = ShardDataset(collected, in_memory=False)
    assert torch.equal(lazy[13]["image"], item["image"])
    with pytest.raises(IndexError):
        dataset[20]


def test_dataset_errors_name_the_file(collected: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"manifest\.json: no manifest"):
        ShardDataset(tmp_path)
    root = tmp_path / "copy"
    shutil.copytree(collected, root)
    (root / shard_name(1)).unlink()
    with pytest.raises(DatasetError, match=r"shard_00001\.npz: shard listed .* missing"):
        ShardDataset(root)
    # A shard whose frame count disagrees with the manifest.
    shutil.copy(root / shard_name(0), root / shard_name(1))
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["shards"][1]["frames"] = 7
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"shard_00001\.npz: 'rgb' has shape"):
        ShardDataset(root)
    (root / MANIFEST).write_text("{not json")
    with pytest.raises(DatasetError, match=r"manifest\.json: not valid JSON"):
        ShardDataset(root)


def test_model_shapes() -> None:
    model = PerceptionNet().eval()
    images = torch.randint(0, 256, (2, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        out = model(images)
        features = model.features(images.float() / 255.0)
    assert features.shape == (2, FEATURE_DIM) == (2, model.feature_dim)
    torch.testing.assert_close(features, out["features"])  # uint8 and [0, 1] float agree
    assert out["segmentation"].shape == (2, NUM_CLASSES, 48, 80)  # half resolution
    assert model.segment(images).shape == (2, 96, 160)
    assert out["light_state"].shape == (2, 4)
    for key in (*DISTANCE_KEYS, "lateral_offset", "heading_error", "heading_ahead"):
        assert out[key].shape == (2,)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.features(torch.zeros(2, 96, 160, 3))


def test_per_image_standardisation_is_torch_std() -> None:
    """``normalize`` computes each image's contrast in two passes (torch's multi-dimension
    ``std`` took a third of the encoder's time); it must stay torch's Bessel-corrected std."""
    images = (
        torch.rand(4, 3, 24, 40) * torch.tensor([1.0, 0.3, 0.02, 0.0])[:, None, None, None]
    )  # bright, dim, nearly flat (clamped at the minimum contrast), constant
    out = PerceptionNet().normalize(images)
    centred = images - images.mean(dim=(2, 3), keepdim=True)
    expected = centred / images.std(dim=(1, 2, 3), keepdim=True).clamp_min(0.02)
    torch.testing.assert_close(out, expected)


def test_frozen_copy_folds_batch_norms_and_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    model = PerceptionNet()
    for module in model.modules():  # statistics and affines a trained network would have
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    model.eval()
    frozen = model.frozen()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters()) and not frozen.training
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # a copy
    images = torch.randint(0, 256, (3, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(
            frozen.features(images), model.features(images), atol=1e-4, rtol=1e-4
        )
        assert (frozen.segment(images) == model.segment(images)).float().mean() > 0.999


def test_training_steps_reduce_the_loss(collected: Path, small_net: PerceptionConfig) -> None:
    torch.manual_seed(0)
    model = PerceptionNet(small_net)
    batch = next(iter(DataLoader(ShardDataset(collected), batch_size=8, shuffle=False)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, terms = perception_loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(terms) >= {"segmentation", "light_state", "vehicle_gap"}
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_distance_error_of_metres_costs_as_much_as_a_confident_mistake() -> None:
    """Regression: with smooth-L1's default beta the distances were quadratic over their whole
    [0, 1] range, so a car 3 m ahead read as 15 m cost almost nothing next to the
    cross-entropies, and the vehicle-gap head never learned near cars."""
    batch_size = 4
    outputs = {
        "segmentation": torch.zeros(batch_size, NUM_CLASSES, 2, 2),
        "light_state": torch.zeros(batch_size, len(LIGHT_CLASSES)),
        "lateral_offset": torch.zeros(batch_size),
        "heading_error": torch.zeros(batch_size),
        **{k: torch.full((batch_size,), 15.0 / MAX_DISTANCE) for k in DISTANCE_KEYS},
    }
    batch = {
        "labels": torch.zeros(batch_size, 4, 4, dtype=torch.long),
        "light_state": torch.zeros(batch_size, dtype=torch.long),
        "lateral_offset": torch.zeros(batch_size),
        "heading_error": torch.zeros(batch_size),
        **{k: torch.full((batch_size,), 3.0) for k in DISTANCE_KEYS},
    }
    _, terms = perception_loss(outputs, batch)
    assert terms["vehicle_gap"] > 0.2  # ~12 m / 50 m, nearly L1 (was 0.5 * 0.24**2 = 0.03)


def test_weights_round_trip_and_mismatch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = PerceptionNet().eval()
    path = tmp_path / "w" / "perception.pt"
    model.save_weights(path)
    images = torch.randint(0, 256, (1, 3, 96, 160), dtype=torch.uint8)
    other = PerceptionNet().eval()
    other.load_weights(path)
    with torch.no_grad():
        torch.testing.assert_close(other.features(images), model.features(images))
        loaded = PerceptionNet.from_weights(path).eval()
        torch.testing.assert_close(loaded.features(images), model.features(images))
    small = PerceptionNet(PerceptionConfig(channels=(8, 16, 32, 64)))
    with pytest.raises(ValueError, match=r"perception\.pt: weights are for architecture"):
        small.load_weights(path)
    payload = torch.load(path, weights_only=True)
    payload["labels"] = payload["labels"][:-1]
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"old\.pt: weights were trained on another label set"):
        model.load_weights(tmp_path / "old.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.pt: not a readable weight file"):
        model.load_weights(tmp_path / "junk.pt")


def test_version_2_weights_still_load_as_they_were_built(tmp_path: Path) -> None:
    """Agents shipped with version-2 encoders (ImageNet normalisation, no light branch, no
    affordances in the features) keep working after the format moved on."""
    torch.manual_seed(2)
    legacy = PerceptionConfig(
        light_channels=0, input_norm="imagenet", affordance_features=False, heading_ahead=False
    )
    model = PerceptionNet(legacy).eval()
    path = tmp_path / "v2.pt"
    model.save_weights(path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 2
    for key in ("light_channels", "input_norm", "affordance_features", "heading_ahead"):
        del payload["architecture"][key]
    torch.save(payload, path)
    loaded = PerceptionNet.from_weights(path).eval()
    assert loaded.config == legacy and loaded.feature_dim == 512
    images = torch.randint(0, 256, (2, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(images), model.features(images))
    payload["version"] = 1
    torch.save(payload, path)
    with pytest.raises(
        ValueError, match=r"v2\.pt: weight format version 1, this code reads 2, 3, 4"
    ):
        PerceptionNet.from_weights(path)


def test_version_3_weights_load_without_the_heading_ahead_output(tmp_path: Path) -> None:
    """The agents shipped before version 4 carry encoders with five regressions; they load as
    built (no ``heading_ahead`` output, the feature size they were trained on)."""
    torch.manual_seed(4)
    model = PerceptionNet(PerceptionConfig(heading_ahead=False)).eval()
    path = tmp_path / "v3.pt"
    model.save_weights(path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 3
    del payload["architecture"]["heading_ahead"]
    torch.save(payload, path)
    loaded = PerceptionNet.from_weights(path).eval()
    assert not loaded.config.heading_ahead
    assert loaded.feature_dim == PerceptionNet().feature_dim - 1
    images = torch.randint(0, 256, (2, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        out = loaded(images)
        torch.testing.assert_close(loaded.features(images), model.features(images))
    assert "heading_ahead" not in out
    batch = {k: torch.zeros(2) for k in (*DISTANCE_KEYS, "lateral_offset", "heading_error")}
    batch["labels"] = torch.zeros(2, 96, 160, dtype=torch.long)
    batch["light_state"] = torch.zeros(2, dtype=torch.long)
    _, terms = perception_loss(out, batch)  # the batch has no heading_ahead either
    assert "heading_ahead" not in terms


def test_features_carry_the_affordance_predictions_and_ignore_exposure() -> None:
    torch.manual_seed(3)
    model = PerceptionNet().eval()
    images = torch.randint(30, 220, (2, 3, 96, 160), dtype=torch.uint8)
    with torch.no_grad():
        out = model(images)
        features = model.features(images)
        dark = model.features(images.float() / 255.0 * 0.25)  # the same scene, a quarter as bright
    n = model.config.map_feature_dim
    probs = features[:, n : n + 4]
    torch.testing.assert_close(probs, out["light_state"].softmax(1))
    torch.testing.assert_close(probs.sum(1), torch.ones(2))
    torch.testing.assert_close(features[:, n + 4], out["light_distance"])
    torch.testing.assert_close(dark, features, atol=1e-3, rtol=1e-3)  # per-image standardisation
    with torch.no_grad():
        affordances = model.affordances(images)
    assert affordances.shape == (2, model.config.affordance_outputs)
    torch.testing.assert_close(affordances, features[:, n:])  # the tail the policy may see alone
