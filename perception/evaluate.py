"""Score the perception network on a collection: segmentation IoU and affordance errors.

Per-class IoU and mIoU over the classes present in the ground truth (at the labels' full
resolution), mIoU per weather preset, traffic-light state accuracy (on frames whose light is
within ``TL_RANGE``, and 4-way on all frames), and mean absolute errors of the regressed
affordances in SI units. Optional pictures: a row-normalised confusion matrix and rows of
input | prediction | ground truth.

Usage::

    python -m perception.evaluate --data data/seg_heldout --out results/perception
    python -m perception.evaluate --data data/seg_heldout --weights runs/perception/weights.pt \\
        --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm import tqdm

from envs.atomic import write_text_atomic
from perception.collect import LIGHT_CLASSES, MAX_DISTANCE
from perception.dataset import ShardDataset
from perception.figures import class_title, draw_confusion, draw_samples, spread_frames, write_png
from perception.metrics import confusion, mean_iou, per_class_iou, predict
from perception.model import DEFAULT_WEIGHTS, DISTANCE_KEYS, NUM_CLASSES, PerceptionNet

logger = logging.getLogger(__name__)

TL_RANGE = 30.0
"""[m] traffic-light state accuracy counts frames whose light ahead is at most this far."""
TARGETS = {"miou": 0.80, "tl_state_accuracy": 0.95}
"""The perception issue's targets (``targets_met`` in the result compares against them)."""
_NO_LIGHT = LIGHT_CLASSES.index("none")


def load_model(path: Path) -> PerceptionNet:
    """The network stored in ``path``; a missing default file says how to make it."""
    if path == DEFAULT_WEIGHTS and not path.is_file():
        raise FileNotFoundError(
            f"{path}: no shipped perception weights yet; train them with `python -m "
            "perception.train --data DIR --run-dir runs/perception`, then copy "
            f"runs/perception/weights.pt to {path} (or pass --weights)"
        )
    return PerceptionNet.from_weights(path)


def light_state_figures(
    pred: NDArray[np.int64], truth: NDArray[np.int64], distance: NDArray[np.float32]
) -> dict[str, Any]:
    """Traffic-light state accuracy near a light (``None`` without such frames) and overall."""
    near = (truth != _NO_LIGHT) & (distance <= TL_RANGE)
    matrix = np.zeros((len(LIGHT_CLASSES), len(LIGHT_CLASSES)), np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return {
        "tl_state_accuracy": float(np.mean(pred[near] == truth[near])) if near.any() else None,
        "tl_state_frames": int(near.sum()),
        "tl_state_accuracy_all": float(np.mean(pred == truth)),
        "tl_state_confusion": {"classes": list(LIGHT_CLASSES), "counts": matrix.tolist()},
        "tl_state_by_distance": _by_distance(pred, truth, distance),
    }


def _by_distance(
    pred: NDArray[np.int64], truth: NDArray[np.int64], distance: NDArray[np.float32]
) -> dict[str, dict[str, Any]]:
    """Light-state accuracy and frame count per 10 m band up to ``TL_RANGE``: a lamp 25 m away
    is one or two pixels at 160x96, so the bands show whether the state is seen or guessed."""
    bands: dict[str, dict[str, Any]] = {}
    for low in range(0, int(TL_RANGE), 10):
        sel = (truth != _NO_LIGHT) & (distance > low) & (distance <= low + 10)
        if low == 0:
            sel |= (truth != _NO_LIGHT) & (distance <= 0)
        accuracy = float(np.mean(pred[sel] == truth[sel])) if sel.any() else None
        bands[f"{low}-{low + 10} m"] = {"accuracy": accuracy, "frames": int(sel.sum())}
    return bands


def affordance_errors(
    pred: dict[str, NDArray[np.float32]], truth: dict[str, NDArray[Any]], near: NDArray[np.bool_]
) -> dict[str, float | None]:
    """Mean absolute errors: distances [m] (predictions are fractions of ``MAX_DISTANCE``),
    lateral offset [m], heading error and heading ahead [rad] (the latter when ``pred`` has it);
    ``light_distance_near_m`` on frames with a light within ``TL_RANGE``."""
    err = {k: np.abs(pred[k] * MAX_DISTANCE - truth[k]) for k in DISTANCE_KEYS}
    out: dict[str, float | None] = {f"{k}_m": float(v.mean()) for k, v in err.items()}
    out["light_distance_near_m"] = float(err["light_distance"][near].mean()) if near.any() else None
    units = {"lateral_offset": "m", "heading_error": "rad", "heading_ahead": "rad"}
    for key, unit in units.items():
        if key in pred:
            out[f"{key}_{unit}"] = float(np.abs(pred[key] - truth[key]).mean())
    return out


def evaluate(
    model: PerceptionNet,
    data: ShardDataset,
    batch_size: int = 64,
    frames: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``data`` (JSON-ready figures).

    Args:
        model: The network (put in eval mode for the pass, then restored).
        data: The collection.
        batch_size: Frames per forward pass.
        frames: Score this many frames spread evenly over ``data`` (0: all).
        progress: Show a progress bar.

    Returns:
        ``frames``, ``miou``, ``per_class`` (IoU by label name), ``per_weather`` (mIoU by
        preset), ``frames_per_weather``, the ``light_state_figures``, ``affordance_mae`` (see
        ``affordance_errors``), ``confusion`` (``classes`` present and their ``counts``),
        ``targets`` and ``targets_met``.
    """
    n = len(data) if frames <= 0 else min(frames, len(data))
    order = np.linspace(0, len(data) - 1, n).astype(np.int64)
    arrays = data.arrays()
    weathers = arrays["weather"][order]
    matrices = {str(w): np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64) for w in set(weathers)}
    light = np.empty(n, np.int64)
    keys = model.config.regressions
    regressions = {k: np.empty(n, np.float32) for k in keys}
    was_training = model.training
    model.eval()
    with torch.inference_mode(), tqdm(total=n, disable=not progress, unit="frame") as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            batch = data.batch(order[start:stop])
            out, pred = predict(model, batch["image"])
            for name in np.unique(weathers[start:stop]):
                mask = torch.from_numpy(weathers[start:stop] == name)
                matrices[str(name)] += confusion(pred[mask], batch["labels"][mask])
            light[start:stop] = out["light_state"].argmax(1).numpy()
            for key in keys:
                regressions[key][start:stop] = out[key].numpy()
            bar.update(stop - start)
    model.train(was_training)
    total = sum(matrices.values(), np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64))
    truth = {k: arrays[k][order] for k in ("light_state", *keys)}
    near = (truth["light_state"] != _NO_LIGHT) & (truth["light_distance"] <= TL_RANGE)
    present = np.flatnonzero(total.sum(axis=1))
    result: dict[str, Any] = {
        "frames": n,
        "miou": mean_iou(total),
        "per_class": per_class_iou(total),
        "per_weather": {w: mean_iou(m) for w, m in sorted(matrices.items())},
        "frames_per_weather": {w: int(np.sum(weathers == w)) for w in sorted(matrices)},
        **light_state_figures(
            light, truth["light_state"].astype(np.int64), truth["light_distance"]
        ),
        "affordance_mae": affordance_errors(regressions, truth, near),
        "confusion": {
            "classes": list(per_class_iou(total)),
            "counts": total[np.ix_(present, present)].tolist(),
        },
    }
    result["targets"] = dict(TARGETS)
    result["targets_met"] = {
        k: result[k] is not None and result[k] >= target for k, target in TARGETS.items()
    }
    return result


def format_report(result: dict[str, Any]) -> str:
    """The figures as a readable table."""
    lines = [f"{result['frames']} frames", "", f"{'class':<16}{'IoU':>7}"]
    lines += [f"{class_title(k):<16}{v:7.3f}" for k, v in result["per_class"].items()]
    met = "met" if result["targets_met"]["miou"] else "NOT met"
    lines += [f"{'mIoU':<16}{result['miou']:7.3f}  (target >= {TARGETS['miou']:.2f}: {met})"]
    lines += ["", f"{'weather':<22}{'mIoU':>7}{'frames':>8}"]
    for weather, miou in result["per_weather"].items():
        lines.append(f"{weather:<22}{miou:7.3f}{result['frames_per_weather'][weather]:8d}")
    accuracy = result["tl_state_accuracy"]
    met = "met" if result["targets_met"]["tl_state_accuracy"] else "NOT met"
    shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
    lines += [
        "",
        f"traffic-light state accuracy, light within {TL_RANGE:.0f} m: {shown} over "
        f"{result['tl_state_frames']} frames (target >= {TARGETS['tl_state_accuracy']:.2f}: "
        f"{met})",
        f"traffic-light state accuracy, all frames (4-way): {result['tl_state_accuracy_all']:.3f}",
    ]
    for band, figures in result["tl_state_by_distance"].items():
        value = figures["accuracy"]
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"  light {band:<10}{shown:>7} over {figures['frames']} frames")
    lines += ["mean absolute errors:"]
    for key, value in result["affordance_mae"].items():
        name, unit = key.rsplit("_", 1)
        lines.append(
            f"  {name.replace('_', ' '):<22}" + ("n/a" if value is None else f"{value:.3f} {unit}")
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.evaluate",
        description="Score perception weights on a collection (perception.collect output).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="collection folder")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weight file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="write metrics.json, confusion.png, samples.png")
    parser.add_argument("--confusion", type=Path, help="write the confusion matrix PNG here")
    parser.add_argument("--samples", type=Path, help="write input | prediction | truth rows here")
    parser.add_argument("--sample-frames", type=int, default=6, help="rows of --samples")
    parser.add_argument("--frames", type=int, default=0, help="frames scored, spread (0: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="frames per forward pass")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.sample_frames < 1:
        parser.error("--batch-size and --sample-frames must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad input)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.weights).frozen()
        data = ShardDataset(args.data)
    except (FileNotFoundError, ValueError) as err:  # DatasetError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = not (args.no_progress or args.json)
    result = evaluate(model, data, args.batch_size, args.frames, progress=progress)
    result = {"weights": str(args.weights), "data": str(args.data), **result}
    out: Path | None = args.out
    confusion_png = args.confusion or (out / "confusion.png" if out else None)
    samples_png = args.samples or (out / "samples.png" if out else None)
    if confusion_png:
        write_png(confusion_png, draw_confusion(**result["confusion"]))
    if samples_png:
        picks = spread_frames(data.arrays()["weather"], args.sample_frames)
        write_png(samples_png, draw_samples(model, data, picks))
    if out:
        write_text_atomic(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(format_report(result))
        for path in (confusion_png, samples_png, out and out / "metrics.json"):
            if path:
                logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
