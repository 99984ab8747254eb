"""perception.evaluate (metrics, the CLI, its pictures); the encoder and train throughput
benchmarks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks import train_bench
from benchmarks.throughput import main as throughput_main
from perception import evaluate as evaluate_module
from perception.dataset import ShardDataset
from perception.evaluate import (
    TL_RANGE,
    affordance_errors,
    evaluate,
    light_state_figures,
    main,
)
from perception.figures import draw_confusion, spread_frames
from perception.metrics import confusion, evaluate_model, mean_iou, per_class_iou
from perception.model import LABEL_NAMES, PerceptionNet


def test_perfect_prediction_scores_one() -> None:
    labels = torch.tensor([[1, 1, 2], [11, 24, 24]])
    ious = per_class_iou(confusion(labels, labels))
    assert ious == {"ROAD": 1.0, "SIDEWALK": 1.0, "SKY": 1.0, "ROAD_LINE": 1.0}
    assert mean_iou(confusion(labels, labels)) == 1.0


def test_classes_absent_from_the_truth_are_left_out() -> None:
    truth = torch.tensor([1, 1, 1, 1])
    pred = torch.tensor([1, 1, 1, 14])  # one pixel called a car, which is not in the truth
    assert per_class_iou(confusion(pred, truth)) == {"ROAD": 0.75}
    assert mean_iou(confusion(pred, truth)) == 0.75


def test_two_class_iou() -> None:
    truth = torch.tensor([1, 1, 2, 2])
    pred = torch.tensor([1, 2, 2, 2])
    # road: 1 hit / (2 true + 1 predicted - 1); sidewalk: 2 / (2 + 3 - 2)
    assert per_class_iou(confusion(pred, truth)) == pytest.approx(
        {"ROAD": 1 / 2, "SIDEWALK": 2 / 3}
    )
    assert mean_iou(confusion(pred, truth)) == pytest.approx(7 / 12)
    assert np.isnan(mean_iou(np.zeros((29, 29), np.int64)))


def test_light_state_accuracy_counts_only_near_lights() -> None:
    # red at 10 m (right), green at 25 m (wrong), red at 35 m (beyond range), none
    truth = np.array([0, 2, 0, 3])
    pred = np.array([0, 0, 3, 3])
    distance = np.array([10.0, 25.0, TL_RANGE + 5, 50.0], np.float32)
    figures = light_state_figures(pred, truth, distance)
    assert figures["tl_state_accuracy"] == 0.5 and figures["tl_state_frames"] == 2
    assert figures["tl_state_accuracy_all"] == 0.5
    assert np.trace(np.array(figures["tl_state_confusion"]["counts"])) == 2
    bands = figures["tl_state_by_distance"]
    assert bands["0-10 m"] == {"accuracy": 1.0, "frames": 1}  # bands are (low, high]
    assert bands["10-20 m"] == {"accuracy": None, "frames": 0}
    assert bands["20-30 m"] == {"accuracy": 0.0, "frames": 1}
    assert light_state_figures(pred, truth, distance + 100)["tl_state_accuracy"] is None


def test_affordance_errors_in_si_units() -> None:
    truth = {
        "light_distance": np.array([10.0, 50.0]),
        "vehicle_gap": np.array([50.0, 50.0]),
        "walker_gap": np.array([20.0, 30.0]),
        "lateral_offset": np.array([0.5, -0.5]),
        "heading_error": np.array([0.1, 0.0]),
        "heading_ahead": np.array([0.5, -0.3]),
    }
    pred = {  # distances as fractions of MAX_DISTANCE (50 m)
        "light_distance": np.array([0.3, 1.0], np.float32),
        "vehicle_gap": np.array([1.0, 1.0], np.float32),
        "walker_gap": np.array([0.4, 0.4], np.float32),
        "lateral_offset": np.array([0.0, 0.0], np.float32),
        "heading_error": np.array([0.1, 0.2], np.float32),
    }
    without = affordance_errors(pred, truth, near=np.array([True, False]))  # format-3 weights
    assert "heading_ahead_rad" not in without
    pred["heading_ahead"] = np.array([0.4, -0.3], np.float32)
    errors = affordance_errors(pred, truth, near=np.array([True, False]))
    assert errors == pytest.approx(
        {
            "light_distance_m": 2.5,
            "vehicle_gap_m": 0.0,
            "walker_gap_m": 5.0,
            "light_distance_near_m": 5.0,
            "lateral_offset_m": 0.5,
            "heading_error_rad": 0.1,
            "heading_ahead_rad": 0.05,
        }
    )


def test_sample_frames_are_spread_over_weathers() -> None:
    weathers = np.array(["WetNoon"] * 6 + ["ClearNight"] * 2)
    picks = spread_frames(weathers, 5)
    assert len(set(picks)) == 5
    assert sorted(weathers[picks].tolist()) == ["ClearNight"] * 2 + ["WetNoon"] * 3
    assert sorted(spread_frames(weathers, 20)) == list(range(8))


def test_evaluate_on_a_tiny_collection(collected: Path, small_weights: Path) -> None:
    model = PerceptionNet.from_weights(small_weights)
    data = ShardDataset(collected)
    result = evaluate(model, data, batch_size=8)
    assert result["frames"] == len(data) == 20
    assert set(result["per_class"]) <= set(LABEL_NAMES) and "ROAD" in result["per_class"]
    assert all(0.0 <= v <= 1.0 for v in result["per_class"].values())
    assert 0.0 <= result["miou"] <= 1.0
    assert result["miou"] == pytest.approx(evaluate_model(model, data)["miou"])
    assert result["per_weather"] == {"ClearNoon": pytest.approx(result["miou"])}
    arrays = data.arrays()
    near = (arrays["light_state"] != 3) & (arrays["light_distance"] <= TL_RANGE)
    assert result["tl_state_frames"] == int(near.sum())
    assert 0.0 <= result["tl_state_accuracy_all"] <= 1.0
    assert all(v is None or v >= 0.0 for v in result["affordance_mae"].values())
    assert "heading_ahead_rad" in result["affordance_mae"]  # SMALL_NET is format 4
    counts = np.array(result["confusion"]["counts"])
    assert counts.sum() == 20 * 96 * 160
    assert result["confusion"]["classes"] == list(result["per_class"])
    assert set(result["targets_met"]) == {"miou", "tl_state_accuracy"}
    assert model.training  # evaluation switched it to eval mode and back


def _two_weathers(collected: Path, root: Path) -> Path:
    """A copy of the collection whose second shard is relabelled as another weather."""
    shutil.copytree(collected, root)
    shard = root / "shard_00001.npz"
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["weather"] = np.full_like(arrays["weather"], "HardRainNight", dtype="<U32")
    np.savez_compressed(shard, **arrays)
    return root


def test_cli_json_and_pictures(
    collected: Path, small_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _two_weathers(collected, tmp_path / "data")
    out = tmp_path / "out"
    args = ["--data", str(data), "--weights", str(small_weights), "--json", "--out", str(out)]
    assert main([*args, "--sample-frames", "4"]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout is the JSON object alone
    assert {"miou", "per_class", "per_weather", "tl_state_accuracy", "frames"} <= set(result)
    assert set(result["per_weather"]) == {"ClearNoon", "HardRainNight"}
    assert json.loads((out / "metrics.json").read_text()) == result
    samples = cv2.imread(str(out / "samples.png"))
    assert samples.shape[0] > 4 * 2 * 96 and samples.shape[1] > 3 * 2 * 160
    assert cv2.imread(str(out / "confusion.png")).ndim == 3
    assert main(["--data", str(data), "--weights", str(small_weights), "--no-progress"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_confusion_picture_grows_with_the_classes() -> None:
    two = draw_confusion(["ROAD", "SKY"], [[90, 10], [0, 50]])
    three = draw_confusion(["ROAD", "SKY", "TRAFFIC_LIGHT"], np.eye(3, dtype=np.int64))
    assert two.dtype == np.uint8 and two.ndim == 3
    assert three.shape[0] > two.shape[0]


def test_cli_names_a_bad_weight_file(
    collected: Path,
    small_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(256))
    assert main(["--data", str(collected), "--weights", str(junk), "--json"]) == 2
    assert "junk.pt: not a readable weight file" in capsys.readouterr().err
    payload = torch.load(small_weights, weights_only=True)
    payload["labels"] = payload["labels"][:-1]
    old = tmp_path / "old_labels.pt"
    torch.save(payload, old)
    assert main(["--data", str(collected), "--weights", str(old)]) == 2
    assert "old_labels.pt: weights were trained on another label set" in capsys.readouterr().err
    missing = tmp_path / "weights" / "perception.pt"
    monkeypatch.setattr(evaluate_module, "DEFAULT_WEIGHTS", missing)
    assert main(["--data", str(collected)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "python -m perception.train" in err


def test_encoder_benchmark_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert throughput_main(["encoder", "--seconds", "0.2", "--batch", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "encoder" and result["batch"] == 4
    assert result["memory_format"] in ("contiguous", "channels_last")
    for key in ("frames_per_s", "frames_per_s_batch4", "frames_per_s_channels_last"):
        assert result[key] > 0
    assert result["frames_per_s"] == max(
        result["frames_per_s_contiguous"], result["frames_per_s_channels_last"]
    )


def test_train_benchmark_prints_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No shipped weights: a random default network stands in, and the output says so.
    monkeypatch.setattr(train_bench, "DEFAULT_WEIGHTS", tmp_path / "missing.pt")
    smoke = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"
    argv = ["train", "--config", str(smoke), "--envs", "1", "--steps", "64", "--json"]
    assert throughput_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "train" and result["algo"] == "ppo" and result["envs"] == 1
    assert "random" in result["weights"]
    assert result["warmup_steps"] == 64 and result["steps"] == 64  # smoke: n_steps 64
    assert 0.0 <= result["update_share"] < 1.0
    for key in ("steps_per_s", "collection_only_steps_per_s", "encoder_only_steps_per_s"):
        assert result[key] > 0
    with pytest.raises(ValueError, match="--envs and --steps must be >= 1"):
        throughput_main(["train", "--envs", "0"])
