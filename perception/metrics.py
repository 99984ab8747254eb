"""Segmentation and affordance metrics, shared by training (validation) and evaluation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.nn import functional as F  # noqa: N812 (PyTorch's own convention)

from envs.sim.labels import PALETTE
from perception.dataset import ShardDataset
from perception.model import LABEL_NAMES, NUM_CLASSES, PerceptionNet


def confusion(pred: Tensor, target: Tensor, num_classes: int = NUM_CLASSES) -> NDArray[np.int64]:
    """(classes, classes) counts, rows the true class, columns the predicted one."""
    index = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def per_class_iou(matrix: NDArray[np.int64]) -> dict[str, float]:
    """IoU of every class that appears in the ground truth (absent classes are left out).

    A class absent from the ground truth would score 0 for any false positive and be undefined
    otherwise, so -- as in Cityscapes and CARLA benchmarks -- only present classes count.
    """
    true = matrix.sum(axis=1)
    pred = matrix.sum(axis=0)
    hits = np.diag(matrix)
    out = {}
    for c in np.flatnonzero(true):
        out[LABEL_NAMES[c]] = float(hits[c] / (true[c] + pred[c] - hits[c]))
    return out


def mean_iou(matrix: NDArray[np.int64]) -> float:
    """Mean of ``per_class_iou`` (NaN when the ground truth is empty)."""
    ious = per_class_iou(matrix)
    return float(np.mean(list(ious.values()))) if ious else float("nan")


def colorize(labels: Tensor) -> Tensor:
    """(B, H, W) label ids -> (B, 3, H, W) uint8 CARLA colours."""
    table = torch.from_numpy(PALETTE)
    return table[labels.long()].permute(0, 3, 1, 2)


def predict(model: PerceptionNet, images: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """All head outputs and the label ids (B, H, W) at the image size.

    The half-resolution logits are upsampled bilinearly before the argmax, as
    ``PerceptionNet.segment`` does, so IoU is scored at the labels' full resolution. Call it
    under ``torch.inference_mode()`` with the model in eval mode.
    """
    out = model(images)
    size = (images.shape[-2], images.shape[-1])
    logits = F.interpolate(out["segmentation"], size=size, mode="bilinear", align_corners=False)
    return out, logits.argmax(1)


def evaluate_model(
    model: PerceptionNet, data: ShardDataset, frames: int = 0, batch_size: int = 64
) -> dict[str, Any]:
    """Validation figures: ``miou``, the confusion matrix, light-state accuracy.

    ``frames`` > 0 scores that many frames spread evenly over ``data`` (0: all of them).
    ``perception.evaluate`` gives the full breakdown (per class, per weather, affordances).
    """
    n = len(data) if frames <= 0 else min(frames, len(data))
    order = np.linspace(0, len(data) - 1, n).astype(np.int64)
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    light_hits = 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = data.batch(order[start : start + batch_size])
            out, pred = predict(model, batch["image"])
            matrix += confusion(pred, batch["labels"])
            light_hits += int((out["light_state"].argmax(1) == batch["light_state"]).sum())
    model.train(was_training)
    return {"miou": mean_iou(matrix), "confusion": matrix, "light_accuracy": light_hits / n}
